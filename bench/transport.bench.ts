/**
 * Native TPM transport vs a minimal raw socket client on the same swtpm socket, and event-loop delay while
 * 64 commands are in flight. Medians over alternating trials, so both sides see the same machine state.
 */
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openTpm } from '../src/hal/open-tpm.js';
import { SocketTpmTransport } from '../src/hal/socket-transport.js';
import { startSwtpm } from '../test/helpers/swtpm.js';
import { getRandomCommand } from '../test/helpers/tpm-commands.js';
import { median, pairedRatio } from './stats.js';

export interface TransportBench {
  perTrial: number;
  rawUs: number;
  nativeUs: number;
  /** native / raw round trip, median of the per-trial ratios (target <= 1.2). */
  ratio: number;
  rawTrialsUs: number[];
  nativeTrialsUs: number[];
  /** The pure TypeScript socket transport (for machines without the addon), for comparison. */
  tsSocketUs: number;
  tsSocketRatio: number;
  inFlight: number;
  /**
   * Event-loop delay (beyond the 1 ms sampling interval) while `inFlight` commands are queued, medians over
   * trials (target p99 < 2 ms).
   */
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** The same measurement with no TPM work: what the machine's scheduling alone costs. */
  idleLoopDelayP50Ms: number;
  idleLoopDelayP99Ms: number;
  /**
   * The same number of commands sent by the raw socket client (one in flight, each answer read on the event
   * loop): the event-loop delay of the floor, in the same run.
   */
  rawLoopDelayP50Ms: number;
  rawLoopDelayP99Ms: number;
  /** Where the time went, medians over trials: event-loop utilization (0..1) and involuntary context switches
   * per second (the kernel took the CPU away from this process), busy, idle and under the raw client. */
  busyElu: number;
  idleElu: number;
  rawElu: number;
  busyPreemptionsPerS: number;
  idlePreemptionsPerS: number;
  rawPreemptionsPerS: number;
  /** Longest synchronous submission of `inFlight` commands (ms), over all rounds of all trials. */
  submitMaxMs: number;
  loopTrials: LoopSample[];
}

interface LoopSample {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  elu: number;
  preemptionsPerS: number;
}

const RESOLUTION_MS = 1;

/**
 * Event-loop delay percentiles (ms) while `work` runs. The histogram records the time between the callbacks of
 * its 1 ms timer, so the sampling interval is taken off: what remains is how late the loop was.
 */
async function loopDelay(work: () => Promise<void>): Promise<LoopSample> {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  const elu = performance.eventLoopUtilization();
  const cs = process.resourceUsage().involuntaryContextSwitches;
  const start = performance.now();
  histogram.enable();
  await work();
  histogram.disable();
  const seconds = (performance.now() - start) / 1000;
  const late = (ns: number) => Math.max(0, ns / 1e6 - RESOLUTION_MS);
  return {
    p50Ms: late(histogram.percentile(50)),
    p99Ms: late(histogram.percentile(99)),
    maxMs: late(histogram.max),
    elu: performance.eventLoopUtilization(elu).utilization,
    preemptionsPerS: (process.resourceUsage().involuntaryContextSwitches - cs) / seconds,
  };
}

async function rawRoundTrips(socketPath: string, n: number): Promise<number> {
  const socket = net.connect({ path: socketPath });
  await new Promise((r) => socket.once('connect', r));
  socket.setNoDelay(true);
  const command = getRandomCommand(16);
  let pending: ((b: Buffer) => void) | undefined;
  let buffered = Buffer.alloc(0);
  socket.on('data', (d) => {
    buffered = Buffer.concat([buffered, d]);
    if (buffered.length >= 10 && buffered.length >= buffered.readUInt32BE(2)) {
      const done = pending!;
      pending = undefined;
      const out = buffered;
      buffered = Buffer.alloc(0);
      done(out);
    }
  });
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    await new Promise<Buffer>((resolve) => {
      pending = resolve;
      socket.write(command);
    });
  }
  const ns = Number(process.hrtime.bigint() - start);
  socket.destroy();
  await new Promise((r) => socket.once('close', r));
  return ns / n / 1000;
}

async function nativeRoundTrips(socketPath: string, n: number, ts = false): Promise<number> {
  const tpm = ts ? await SocketTpmTransport.connect({ socketPath }) : await openTpm({ path: socketPath });
  const command = getRandomCommand(16);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await tpm.transmit(command);
  const ns = Number(process.hrtime.bigint() - start);
  await tpm.close();
  return ns / n / 1000;
}

export async function benchTransport(trials = 21, perTrial = 1000, loopTrials = 7): Promise<TransportBench> {
  const swtpm = await startSwtpm();
  try {
    const raw: number[] = [];
    const native: number[] = [];
    const ts: number[] = [];
    await rawRoundTrips(swtpm.socketPath, 200);
    await nativeRoundTrips(swtpm.socketPath, 200);
    // Alternate which side goes first, so neither always runs on a warmer machine.
    for (let t = 0; t < trials; t++) {
      if (t % 2 === 0) {
        raw.push(await rawRoundTrips(swtpm.socketPath, perTrial));
        native.push(await nativeRoundTrips(swtpm.socketPath, perTrial));
      } else {
        native.push(await nativeRoundTrips(swtpm.socketPath, perTrial));
        raw.push(await rawRoundTrips(swtpm.socketPath, perTrial));
      }
      ts.push(await nativeRoundTrips(swtpm.socketPath, perTrial, true));
    }
    const inFlight = 64;
    const busy: LoopSample[] = [];
    const idle: LoopSample[] = [];
    const rawLoop: LoopSample[] = [];
    const rounds = 150;
    let submitMaxMs = 0;
    for (let t = 0; t < loopTrials; t++) {
      let elapsedMs = 0;
      // swtpm serves one connection at a time: the transport is closed before the raw client connects.
      const tpm = await openTpm({ path: swtpm.socketPath });
      try {
        busy.push(
          await loopDelay(async () => {
            const start = performance.now();
            for (let round = 0; round < rounds; round++) {
              const submit = performance.now();
              const all = Promise.all(Array.from({ length: inFlight }, () => tpm.transmit(getRandomCommand(32))));
              submitMaxMs = Math.max(submitMaxMs, performance.now() - submit);
              await all;
            }
            elapsedMs = performance.now() - start;
          }),
        );
      } finally {
        await tpm.close();
      }
      idle.push(await loopDelay(() => new Promise((resolve) => setTimeout(resolve, elapsedMs))));
      rawLoop.push(await loopDelay(() => rawRoundTrips(swtpm.socketPath, rounds * inFlight).then(() => {})));
    }
    return {
      perTrial,
      rawUs: median(raw),
      nativeUs: median(native),
      ratio: pairedRatio(native, raw),
      rawTrialsUs: raw,
      nativeTrialsUs: native,
      tsSocketUs: median(ts),
      tsSocketRatio: pairedRatio(ts, raw),
      inFlight,
      loopDelayP50Ms: median(busy.map((b) => b.p50Ms)),
      loopDelayP99Ms: median(busy.map((b) => b.p99Ms)),
      loopDelayMaxMs: Math.max(...busy.map((b) => b.maxMs)),
      idleLoopDelayP50Ms: median(idle.map((b) => b.p50Ms)),
      idleLoopDelayP99Ms: median(idle.map((b) => b.p99Ms)),
      rawLoopDelayP50Ms: median(rawLoop.map((b) => b.p50Ms)),
      rawLoopDelayP99Ms: median(rawLoop.map((b) => b.p99Ms)),
      busyElu: median(busy.map((b) => b.elu)),
      idleElu: median(idle.map((b) => b.elu)),
      rawElu: median(rawLoop.map((b) => b.elu)),
      busyPreemptionsPerS: median(busy.map((b) => b.preemptionsPerS)),
      idlePreemptionsPerS: median(idle.map((b) => b.preemptionsPerS)),
      rawPreemptionsPerS: median(rawLoop.map((b) => b.preemptionsPerS)),
      submitMaxMs,
      loopTrials: busy,
    };
  } finally {
    await swtpm.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchTransport());
}
