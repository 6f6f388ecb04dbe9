import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import {
  CvmSkrError,
  DeviceNotFoundError,
  TpmCommandRejectedError,
  TransportClosedError,
  TransportError,
  TransportTimeoutError,
} from '../../src/errors.js';
import { loadAddon, tryLoadAddon } from '../../src/hal/addon.js';
import { NativeTpmTransport } from '../../src/hal/native-transport.js';
import { openTpm } from '../../src/hal/open-tpm.js';
import { addonTest, startSwtpm, swtpmAddonTest } from '../helpers/swtpm.js';
import { getRandomResponse, startScriptedServer, startSilentServer } from '../helpers/unix-tpm-server.js';
import {
  createPrimaryRsaCommand,
  flushContextCommand,
  getRandomCommand,
  responseCode,
} from '../helpers/tpm-commands.js';


swtpmAddonTest('native transport: GetRandom round trip over swtpm Unix socket', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await openTpm({ path: tpm.socketPath });
  t.teardown(() => transport.close());
  t.true(transport instanceof NativeTpmTransport);
  t.true((transport as NativeTpmTransport).isSocket);
  const response = await transport.transmit(getRandomCommand(32));
  t.is(response.length, 12 + 32);
  t.is(responseCode(response), 0);
});

swtpmAddonTest('native transport: 1,000 sequential and 64 concurrent commands are all answered in order', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = (await openTpm({ path: tpm.socketPath })) as NativeTpmTransport;
  t.teardown(() => transport.close());
  let ok = 0;
  for (let i = 0; i < 1000; i++) {
    const size = 1 + (i % 32);
    const r = await transport.transmit(getRandomCommand(size));
    if (r.length === 12 + size && responseCode(r) === 0 && Buffer.from(r).readUInt16BE(10) === size) ok++;
  }
  t.is(ok, 1000);

  // Each concurrent command asks for a different length, so an interleaved or swapped response is detected.
  const sizes = Array.from({ length: 64 }, (_, i) => i + 1);
  const pending = sizes.map((n) => transport.transmit(getRandomCommand(n)));
  t.true(transport.pending > 1, 'commands queue behind the one in flight');
  const responses = await Promise.all(pending);
  responses.forEach((r, i) => {
    t.is(responseCode(r), 0);
    t.is(r.length, 12 + sizes[i]!, `response ${i} has the length its command asked for`);
  });
  t.is(transport.pending, 0);
});

swtpmAddonTest('native transport: swtpm killed mid-command gives a typed error and no hang', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await openTpm({ path: tpm.socketPath, timeoutMs: 20_000 });
  t.teardown(() => transport.close());
  const inFlight = transport.transmit(createPrimaryRsaCommand(3072));
  const queued = transport.transmit(getRandomCommand());
  tpm.kill();
  const error = await t.throwsAsync(inFlight);
  t.true(error instanceof CvmSkrError, `typed error, got ${error?.name}`);
  t.false(error instanceof TransportTimeoutError, 'the dead peer is noticed, not waited out');
  // Whatever was queued behind it fails too, and so does anything after.
  await t.throwsAsync(queued, { instanceOf: CvmSkrError });
  await t.throwsAsync(transport.transmit(getRandomCommand()), { instanceOf: TransportError });
});

addonTest('native transport: a TPM that never answers times out with a typed error', async (t) => {
  const silent = await startSilentServer(t);
  const transport = await openTpm({ path: silent.socketPath, timeoutMs: 150 });
  t.teardown(() => transport.close());
  await t.throwsAsync(transport.transmit(getRandomCommand()), { instanceOf: TransportTimeoutError });
  // The stream is out of step after a timeout: later commands are refused rather than mismatched.
  await t.throwsAsync(transport.transmit(getRandomCommand()), { instanceOf: TransportError });
});

addonTest('native transport: close() rejects the command in flight and everything queued', async (t) => {
  const silent = await startSilentServer(t);
  const transport = await openTpm({ path: silent.socketPath, timeoutMs: 60_000 });
  const inFlight = transport.transmit(getRandomCommand());
  const queued = transport.transmit(getRandomCommand());
  await new Promise((r) => setTimeout(r, 20));
  await transport.close();
  await t.throwsAsync(inFlight, { instanceOf: TransportClosedError });
  await t.throwsAsync(queued, { instanceOf: TransportClosedError });
  await transport.close();
  await t.throwsAsync(transport.transmit(getRandomCommand()), { instanceOf: TransportClosedError });
  // The server sees the connection go away: the fd was closed.
  while (silent.clients.size > 0) await new Promise((r) => setTimeout(r, 10));
  t.is(silent.clients.size, 0);
});

addonTest('native transport: a response that arrives in pieces is put together (partial reads)', async (t) => {
  const server = await startScriptedServer(t, (socket, command) => {
    const response = getRandomResponse(command.readUInt16BE(10));
    // Header split across writes, then the rest: each piece reaches the client as its own read.
    socket.write(response.subarray(0, 3));
    setTimeout(() => socket.write(response.subarray(3, 11)), 15);
    setTimeout(() => socket.write(response.subarray(11)), 30);
  });
  const transport = await openTpm({ path: server.socketPath, timeoutMs: 5000 });
  t.teardown(() => transport.close());
  for (const n of [1, 40, 300]) {
    const response = await transport.transmit(getRandomCommand(n));
    t.deepEqual(Buffer.from(response), getRandomResponse(n));
  }
});

addonTest('native transport: the event loop keeps running while a command waits for the TPM', async (t) => {
  const silent = await startSilentServer(t);
  const transport = await openTpm({ path: silent.socketPath, timeoutMs: 2000 });
  t.teardown(() => transport.close());
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const settled = transport.transmit(getRandomCommand()).catch((error: unknown) => error);
  // Timers fire while the command is outstanding: nothing waits on the fd on this thread.
  while (ticks < 3) await new Promise((r) => setTimeout(r, 5));
  t.is(transport instanceof NativeTpmTransport ? transport.pending : -1, 1, 'the command is still in flight');
  t.true((await settled) instanceof TransportTimeoutError);
  clearInterval(timer);
});

addonTest('native transport: a peer that hangs up while idle fails the next command at once, typed', async (t) => {
  const server = await startScriptedServer(t, (socket, command) => {
    socket.write(getRandomResponse(command.readUInt16BE(10)));
  });
  const transport = await openTpm({ path: server.socketPath, timeoutMs: 60_000 });
  t.teardown(() => transport.close());
  t.is(responseCode(await transport.transmit(getRandomCommand(4))), 0);
  for (const c of server.clients) c.destroy();
  while (server.clients.size > 0) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 20));
  const error = await t.throwsAsync(transport.transmit(getRandomCommand(4)), { instanceOf: TransportError });
  t.false(error instanceof TransportTimeoutError, 'noticed, not waited out');
});

addonTest('native transport: bytes from the TPM with no command in flight put the stream out of step', async (t) => {
  let sockets: net.Socket[] = [];
  const server = await startScriptedServer(t, (socket, command) => {
    sockets = [socket];
    socket.write(getRandomResponse(command.readUInt16BE(10)));
  });
  const transport = await openTpm({ path: server.socketPath, timeoutMs: 60_000 });
  t.teardown(() => transport.close());
  t.is(responseCode(await transport.transmit(getRandomCommand(4))), 0);
  sockets[0]!.write(getRandomResponse(4)); // a stray answer nobody asked for
  await new Promise((r) => setTimeout(r, 50));
  await t.throwsAsync(transport.transmit(getRandomCommand(4)), {
    instanceOf: TransportError,
    message: /out of step/,
  });
});

addonTest('native transport: an idle open transport does not keep the process alive', async (t) => {
  const server = await startScriptedServer(t, (socket, command) => {
    socket.write(getRandomResponse(command.readUInt16BE(10)));
  });
  const loaded = tryLoadAddon();
  if (loaded instanceof Error) return t.fail();
  // The child opens, answers one command and never closes: it must still exit on its own.
  const script = `
    const addon = require(${JSON.stringify(loaded.path)});
    addon.openTpm(${JSON.stringify(server.socketPath)}, 60000).then(async (h) => {
      const r = await h.transmit(Uint8Array.from([0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8]));
      process.stdout.write(String(r.length));
    });`;
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', script], { timeout: 30_000 });
  t.is(stdout, '20');
});

addonTest('native transport: a regular file is refused at open and nothing is written to it', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-file-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'not-a-tpm');
  await writeFile(file, 'keep');
  // epoll cannot watch a regular file, so the handle is never made (native/addon.cc, TpmHandle).
  const error = await t.throwsAsync(openTpm({ path: file }));
  t.true(error instanceof CvmSkrError, `typed error, got ${error?.name}`);
  t.is(await readFile(file, 'utf8'), 'keep');
});

addonTest('native transport: missing path is an ENOENT-coded DeviceNotFoundError', async (t) => {
  const error = await t.throwsAsync(openTpm({ path: '/nonexistent/cvm-skr/tpmrm0' }), {
    instanceOf: DeviceNotFoundError,
  });
  t.is(error?.code, 'ERR_DEVICE_NOT_FOUND');
  t.is(error?.systemCode, 'ENOENT');
  t.is(error?.syscall, 'open');
  t.is(error?.path, '/nonexistent/cvm-skr/tpmrm0');
  const cause = error?.cause as NodeJS.ErrnoException;
  t.is(cause.code, 'ENOENT');
  t.is(cause.errno, -2);
  t.regex(error?.message ?? '', /tpmrm0/);
});

swtpmAddonTest('native transport: oversized and malformed commands never reach the device', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await openTpm({ path: tpm.socketPath });
  t.teardown(() => transport.close());
  const oversized = new Uint8Array(4097);
  oversized.set([0x80, 0x01, 0, 0, 0x10, 0x01]);
  await t.throwsAsync(transport.transmit(oversized), { instanceOf: TpmCommandRejectedError });
  const lying = getRandomCommand();
  lying[5] = 40;
  await t.throwsAsync(transport.transmit(lying), { instanceOf: TpmCommandRejectedError });
  await t.throwsAsync(transport.transmit(new Uint8Array(4)), { instanceOf: TpmCommandRejectedError });

  // The addon enforces the same limits on its own, for callers that bypass the TypeScript wrapper.
  // swtpm serves one client at a time, so this second, raw handle only ever reaches the addon's own checks.
  const raw = await loadAddon().openTpm(tpm.socketPath, 1000);
  t.teardown(() => raw.close());
  await t.throwsAsync(raw.transmit(oversized), { message: /outside 10\.\.4096/ });
  await t.throwsAsync(raw.transmit(lying), { message: /header size disagrees/ });
  await raw.close();
  // Nothing bad reached swtpm: the stream is still in step.
  const response = await transport.transmit(getRandomCommand(8));
  t.is(responseCode(response), 0);
  t.is(response.length, 20);
});

swtpmAddonTest('native transport: many primaries created and flushed leave the TPM usable', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await openTpm({ path: tpm.socketPath });
  t.teardown(() => transport.close());
  for (let i = 0; i < 5; i++) {
    const r = await transport.transmit(createPrimaryRsaCommand());
    t.is(responseCode(r), 0);
    const handle = Buffer.from(r).readUInt32BE(10);
    t.is(handle >>> 24, 0x80, 'a transient handle');
    t.is(responseCode(await transport.transmit(flushContextCommand(handle))), 0);
  }
});

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.addonPath);
(async () => {
  const handle = await addon.openTpm(workerData.socketPath, workerData.timeoutMs);
  const command = Uint8Array.from([0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8]);
  const response = await handle.transmit(command);
  await handle.close();
  parentPort.postMessage({ length: response.length, rc: Buffer.from(response).readUInt32BE(6) });
})().catch((e) => parentPort.postMessage({ error: e.message }));
`;

swtpmAddonTest('native addon loads and works inside a worker thread', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const loaded = tryLoadAddon();
  if (loaded instanceof Error) return t.fail();
  const worker = new Worker(workerSource, {
    eval: true,
    workerData: { addonPath: loaded.path, socketPath: tpm.socketPath, timeoutMs: 5000 },
  });
  t.teardown(() => worker.terminate());
  const [message] = (await once(worker, 'message')) as [{ length?: number; rc?: number; error?: string }];
  t.deepEqual(message, { length: 20, rc: 0 });
});
