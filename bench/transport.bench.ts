/**
 * Native TPM transport vs a minimal raw socket client on the same swtpm socket, and event-loop delay while
 * 64 commands are in flight. Medians over alternating trials, so both sides see the same machine state.
 */
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { openTpm } from '../src/hal/open-tpm.js';
import { startSwtpm } from '../test/helpers/swtpm.js';
import { getRandomCommand } from '../test/helpers/tpm-commands.js';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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

async function nativeRoundTrips(socketPath: string, n: number): Promise<number> {
  const tpm = await openTpm({ path: socketPath });
  const command = getRandomCommand(16);
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await tpm.transmit(command);
  const ns = Number(process.hrtime.bigint() - start);
  await tpm.close();
  return ns / n / 1000;
}

export async function benchTransport(trials = 9, perTrial = 2000) {
  const swtpm = await startSwtpm();
  try {
    const raw: number[] = [];
    const native: number[] = [];
    await rawRoundTrips(swtpm.socketPath, 200);
    await nativeRoundTrips(swtpm.socketPath, 200);
    for (let t = 0; t < trials; t++) {
      raw.push(await rawRoundTrips(swtpm.socketPath, perTrial));
      native.push(await nativeRoundTrips(swtpm.socketPath, perTrial));
    }
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    const tpm = await openTpm({ path: swtpm.socketPath });
    histogram.enable();
    for (let round = 0; round < 20; round++) {
      await Promise.all(Array.from({ length: 64 }, () => tpm.transmit(getRandomCommand(32))));
    }
    histogram.disable();
    await tpm.close();
    return {
      rawUs: median(raw),
      nativeUs: median(native),
      ratio: median(native) / median(raw),
      loopDelayP50Ms: histogram.percentile(50) / 1e6,
      loopDelayP99Ms: histogram.percentile(99) / 1e6,
    };
  } finally {
    await swtpm.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchTransport());
}
