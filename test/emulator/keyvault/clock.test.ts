import test from 'ava';
import { type ClockTask, VirtualClock } from '../../../src/emulator/keyvault/clock.js';

const START = new Date('2031-01-31T00:00:00Z');

test('a frozen clock moves only when advanced, with calendar arithmetic', async (t) => {
  const clock = new VirtualClock({ start: START, frozen: true });
  t.is(clock.now().toISOString(), START.toISOString());
  await clock.advance('P1M');
  t.is(clock.now().toISOString(), '2031-02-28T00:00:00.000Z', 'Jan 31 + P1M clamps to Feb 28');
  await clock.advance(1500);
  t.is(clock.nowSeconds(), Date.parse('2031-02-28T00:00:01Z') / 1000);
  await t.throwsAsync(clock.advance('P1X'), { code: 'ERR_INVALID_DURATION' });
  await t.throwsAsync(clock.advance(-1), { code: 'ERR_INVALID_ARGUMENT' });
  await t.throwsAsync(clock.advanceTo(START), { message: /backwards/ });
});

test('a running clock follows real time plus the advances', async (t) => {
  const clock = new VirtualClock({ start: START });
  await clock.advance('P1D');
  const delta = clock.nowMs() - START.getTime();
  t.true(delta >= 86_400_000 && delta < 86_400_000 + 60_000);
});

test('advance stops at each due instant, in order, and runs each task once per due time', async (t) => {
  const clock = new VirtualClock({ start: START, frozen: true });
  const dues = [START.getTime() + 10_000, START.getTime() + 5_000, START.getTime() + 20_000];
  const ran: [number, number][] = [];
  const task: ClockTask = {
    nextDueMs: () => (dues.length ? Math.min(...dues) : undefined),
    runDue: async (now) => {
      const i = dues.indexOf(Math.min(...dues));
      ran.push([dues[i]!, now]);
      dues.splice(i, 1);
    },
  };
  const remove = clock.addTask(task);
  await clock.advance(15_000);
  t.deepEqual(ran, [
    [START.getTime() + 5_000, START.getTime() + 5_000],
    [START.getTime() + 10_000, START.getTime() + 10_000],
  ]);
  t.is(clock.nowMs(), START.getTime() + 15_000);
  remove();
  await clock.advance(10_000);
  t.is(ran.length, 2, 'a removed task does not run');
});

test('a task that never makes progress ends in an error, not a hang', async (t) => {
  const clock = new VirtualClock({ start: START, frozen: true });
  clock.addTask({ nextDueMs: () => START.getTime(), runDue: async () => {} });
  await t.throwsAsync(clock.advance('PT1S'), { message: /did not settle/ });
});
