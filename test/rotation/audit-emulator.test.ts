/**
 * The offline planner against what the emulated vault does on its virtual clock: one minute before the planned
 * instant nothing has happened, one minute after it the rotation (or notification) has happened exactly once,
 * stamped with the planned instant. And the vault-wide audit on an emulated vault with a mix of keys.
 */
import type { KeyClient, KeyRotationPolicyProperties } from '@azure/keyvault-keys';
import test, { type ExecutionContext } from 'ava';
import { KEY_VAULT_EVENT_TYPES, type KeyVaultEventType } from '../../src/emulator/keyvault/events.js';
import type { Emulator } from '../../src/emulator/start.js';
import { auditRotation } from '../../src/rotation/audit.js';
import { addDuration, parseDuration } from '../../src/rotation/duration.js';
import { planRotation } from '../../src/rotation/plan.js';
import { fromSdk } from '../../src/rotation/policy.js';
import { emulator } from '../helpers/e2e-emulator.js';

const MINUTE = 60_000;

function frozenEmulator(t: ExecutionContext) {
  // A frozen clock moves only when told to: "one minute before" means exactly that.
  return emulator(t, { vault: { clock: { frozen: true, start: new Date('2026-03-31T10:15:30Z') } } });
}

async function createKey(e: Emulator, client: KeyClient, name: string, expiresIn?: string) {
  const expiresOn = expiresIn ? addDuration(e.clock.now(), parseDuration(expiresIn)) : undefined;
  return client.createKey(name, 'EC', { curve: 'P-256', ...(expiresOn ? { expiresOn } : {}) });
}

function eventsOf(e: Emulator, name: string, type: KeyVaultEventType) {
  return e.events.history(type).filter((x) => x.data.ObjectName === name);
}

const cases: {
  title: string;
  keyExpiresIn: string;
  policy: KeyRotationPolicyProperties;
}[] = [
  {
    title: 'the documented example (Rotate P18M after create, Notify P30D before expiry, expiryTime P2Y)',
    keyExpiresIn: 'P2Y',
    policy: {
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P18M' },
        { action: 'Notify', timeBeforeExpiry: 'P30D' },
      ],
      expiresIn: 'P2Y',
    },
  },
  {
    title: 'rotate 60 days before expiry, notify 30 days before, expiryTime P1Y',
    keyExpiresIn: 'P1Y',
    policy: {
      lifetimeActions: [
        { action: 'Rotate', timeBeforeExpiry: 'P60D' },
        { action: 'Notify', timeBeforeExpiry: 'P30D' },
      ],
      expiresIn: 'P1Y',
    },
  },
  {
    title: 'the new version notified before its own rotation: Rotate P18M, Notify P30D, expiryTime P19M',
    keyExpiresIn: 'P2Y',
    policy: {
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P18M' },
        { action: 'Notify', timeBeforeExpiry: 'P30D' },
      ],
      expiresIn: 'P19M',
    },
  },
  {
    title: 'notification before rotation: Rotate P11M after create, Notify P45D, key expiring in P1Y',
    keyExpiresIn: 'P1Y',
    policy: {
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P11M' },
        { action: 'Notify', timeBeforeExpiry: 'P45D' },
      ],
      expiresIn: 'P13M',
    },
  },
];

for (const c of cases) {
  test(`plan matches the emulator: ${c.title}`, async (t) => {
    const e = await frozenEmulator(t);
    const client = e.keyClient();
    const created = await createKey(e, client, 'k', c.keyExpiresIn);
    const stored = await client.updateKeyRotationPolicy('k', c.policy);
    const plan = planRotation(
      fromSdk(stored),
      { createdOn: created.properties.createdOn!, expiresOn: created.properties.expiresOn },
      { now: e.clock.now() },
    );
    t.truthy(plan.rotation);
    const rotations = () => eventsOf(e, 'k', KEY_VAULT_EVENT_TYPES.newVersionCreated).length - 1;
    const notifications = () => eventsOf(e, 'k', KEY_VAULT_EVENT_TYPES.nearExpiry);

    // Whichever comes first, both instants are checked in time order.
    const steps = [
      { kind: 'rotation' as const, at: plan.rotation!.at },
      ...(plan.notification ? [{ kind: 'notification' as const, at: plan.notification.at }] : []),
    ].sort((a, b) => a.at.getTime() - b.at.getTime());
    for (const step of steps) {
      const before = step.kind === 'rotation' ? rotations() : notifications().length;
      await e.clock.advanceTo(new Date(step.at.getTime() - MINUTE));
      t.is(step.kind === 'rotation' ? rotations() : notifications().length, before, `no ${step.kind} before`);
      const currentBefore = (await client.getKey('k')).properties.version;
      await e.clock.advanceTo(new Date(step.at.getTime() + MINUTE));
      if (step.kind === 'rotation') {
        t.is(rotations(), before + 1, 'exactly one rotation');
        const versions: { version?: string; createdOn?: Date; expiresOn?: Date }[] = [];
        for await (const p of client.listPropertiesOfKeyVersions('k')) versions.push(p);
        t.is(versions.length, 2);
        const newest = versions.find((v) => v.version !== created.properties.version)!;
        t.is(newest.createdOn?.toISOString(), plan.rotation!.at.toISOString());
        t.is(newest.expiresOn?.toISOString(), plan.newVersionExpiresOn?.toISOString());
        const event = eventsOf(e, 'k', KEY_VAULT_EVENT_TYPES.newVersionCreated).at(-1)!;
        t.is(event.eventTime, plan.rotation!.at.toISOString());
      } else {
        const all = notifications();
        t.is(all.length, before + 1, 'exactly one notification');
        const event = all.at(-1)!;
        t.is(event.eventTime, plan.notification!.at.toISOString());
        // The plan says which version it is about: the current one, or one a rotation created since. Either
        // way it is the version current just before the notification instant.
        if (plan.notification!.version === 'current') t.is(currentBefore, created.properties.version);
        else t.not(currentBefore, created.properties.version);
        t.is(event.data.Version as string | undefined, currentBefore);
      }
    }
    if (!plan.notification) {
      // The plan says no notification will come: none comes through two more rotations either.
      t.regex(plan.notificationReason ?? '', /every version is rotated/);
      await e.clock.advanceTo(addDuration(plan.newVersionExpiresOn!, parseDuration('P2Y')));
      t.true(rotations() >= 3);
      t.is(notifications().length, 0);
      return;
    }
    // And nothing more happens until the next cycle's first instant.
    const after = { rotations: rotations(), notifications: notifications().length };
    const next = planRotation(fromSdk(stored), await currentDates(client, 'k'), { now: e.clock.now() });
    const nextFirst = Math.min(
      next.rotation?.at.getTime() ?? Infinity,
      next.notification?.at.getTime() ?? Infinity,
    );
    await e.clock.advanceTo(new Date(nextFirst - MINUTE));
    t.deepEqual({ rotations: rotations(), notifications: notifications().length }, after);
  });
}

async function currentDates(client: KeyClient, name: string) {
  const key = await client.getKey(name);
  return { createdOn: key.properties.createdOn!, expiresOn: key.properties.expiresOn };
}

test('audit on an emulated vault with a mix of keys gives the right verdicts', async (t) => {
  const e = await frozenEmulator(t);
  const client = e.keyClient();
  await createKey(e, client, 'no-policy', 'P2Y');
  await createKey(e, client, 'notify-only', 'P1Y');
  await client.updateKeyRotationPolicy('notify-only', {
    lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P30D' }],
    expiresIn: 'P1Y',
  });
  await createKey(e, client, 'rotate-18m', 'P2Y');
  await client.updateKeyRotationPolicy('rotate-18m', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P18M' }],
    expiresIn: 'P2Y',
  });
  await createKey(e, client, 'rotate-3y', 'P4Y');
  await client.updateKeyRotationPolicy('rotate-3y', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P3Y' }],
    expiresIn: 'P4Y',
  });
  // Rotates in time, but its current version expires first.
  await createKey(e, client, 'expires-first', 'P6M');
  await client.updateKeyRotationPolicy('expires-first', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P18M' }],
    expiresIn: 'P2Y',
  });

  const progress: number[] = [];
  const report = await auditRotation(client, {
    maximumDaysToRotate: 730,
    now: e.clock.now(),
    onProgress: (p) => progress.push(p.audited),
  });
  const verdict = Object.fromEntries(report.keys.map((k) => [k.name, [k.status, k.reason ?? null]]));
  t.deepEqual(verdict, {
    'no-policy': ['non-compliant', 'NO_POLICY'],
    'notify-only': ['non-compliant', 'ONLY_NOTIFY'],
    'rotate-18m': ['compliant', null],
    'rotate-3y': ['non-compliant', 'ROTATION_TOO_LATE'],
    'expires-first': ['compliant', null],
  });
  const byName = Object.fromEntries(report.keys.map((k) => [k.name, k]));
  t.regex(byName['rotate-3y']!.message, /1096 days after creation .*later than the 730 allowed/);
  t.true(byName['expires-first']!.expiresWithoutRotation);
  t.false(byName['rotate-18m']!.expiresWithoutRotation);
  t.is(
    byName['rotate-18m']!.scheduledRotationOn?.toISOString(),
    addDuration(byName['rotate-18m']!.createdOn!, parseDuration('P18M')).toISOString(),
  );
  t.like(report.summary, { total: 5, compliant: 2, nonCompliant: 3, errors: 0 });
  t.is(progress.at(-1), 5);

  // 18 months later the emulator has rotated rotate-18m: the new version is audited on its own dates.
  await e.clock.advance('P18M1D');
  const later = await auditRotation(client, { maximumDaysToRotate: 730, now: e.clock.now() });
  const rotated = later.keys.find((k) => k.name === 'rotate-18m')!;
  t.is(rotated.status, 'compliant');
  t.true(rotated.createdOn! > byName['rotate-18m']!.createdOn!);
  t.true(later.keys.find((k) => k.name === 'no-policy')!.expired === false);
});
