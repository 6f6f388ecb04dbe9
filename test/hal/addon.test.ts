import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { Worker } from 'node:worker_threads';
import type { ExecutionContext } from 'ava';
import { tryLoadAddon } from '../../src/hal/addon.js';
import { addonTest } from '../helpers/swtpm.js';
import { getRandomResponse, startScriptedServer, startSilentServer } from '../helpers/unix-tpm-server.js';

// The addon's lifecycle without close(): a handle the garbage collector reclaims, and a worker thread that ends at
// each stage of a handle's life. Node-API runs an ObjectWrap's destructor from its finalizer and an environment's
// async cleanup hooks when a worker stops (https://nodejs.org/api/n-api.html#napi_wrap,
// https://nodejs.org/api/n-api.html#napi_add_async_cleanup_hook); in both, native/addon.cc (TpmHandle::TearDown)
// must close the fd, which the stand-in TPM sees as its client going away.

const loaded = tryLoadAddon();

function addonPath(): string {
  if (loaded instanceof Error) throw loaded;
  return loaded.path;
}

const GET_RANDOM_8 = '[0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8]';

/** Waits until `done()` holds; fails the test if it still does not after `limitMs` (a hang, not a slow run). */
async function eventually(t: ExecutionContext, done: () => boolean, what: string, limitMs = 20_000) {
  const start = Date.now();
  while (!done()) {
    if (Date.now() - start > limitMs) return t.fail(`still waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  t.pass(what);
}

/** Runs `script` in a child `node --expose-gc`, line by line: it prints, the test answers on its stdin. */
function gcChild(t: ExecutionContext, script: string) {
  const child = spawn(process.execPath, ['--expose-gc', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    child,
    next: async () => (await lines.next()).value as string | undefined,
    send: (line: string) => child.stdin.write(`${line}\n`),
  };
}

addonTest('a handle dropped without close() is finalized by the garbage collector, closing its fd', async (t) => {
  const server = await startScriptedServer(t, (socket, command) => socket.write(getRandomResponse(command.readUInt16BE(10))));
  const { next, send, child } = gcChild(
    t,
    `const addon = require(${JSON.stringify(addonPath())});
     const lines = require('node:readline').createInterface({ input: process.stdin });
     let handle;
     (async () => {
       handle = await addon.openTpm(${JSON.stringify(server.socketPath)}, 60000);
       await handle.transmit(Uint8Array.from(${GET_RANDOM_8}));
       console.log('held');
       for await (const line of lines) {
         if (line !== 'drop') continue;
         handle = undefined;
         // Node-API may defer finalizers to a later turn: collect, let the loop turn, collect again.
         for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
         console.log('collected');
       }
     })();`,
  );
  t.is(await next(), 'held');
  // While a reference exists the connection stays open: the collector takes only unreachable handles.
  globalThis.gc?.();
  await new Promise((r) => setTimeout(r, 50));
  t.is(server.clients.size, 1, 'a reachable handle keeps its connection');
  send('drop');
  t.is(await next(), 'collected');
  await eventually(t, () => server.clients.size === 0, 'the finalizer closed the connection');
  t.is(child.exitCode, null, 'the process is still running: the close came from the finalizer, not from exit');
  child.stdin.end();
  const [code] = (await once(child, 'exit')) as [number | null];
  t.is(code, 0, 'the child then exits on its own, with nothing left keeping its loop alive');
});

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.addonPath);
const command = Uint8Array.from(${GET_RANDOM_8});
(async () => {
  if (workerData.stage === 'opening') {
    addon.openTpm(workerData.socketPath, 60000).catch(() => {});
    parentPort.postMessage('ready');
    return;
  }
  const handle = await addon.openTpm(workerData.socketPath, 60000);
  if (workerData.stage === 'after-close') {
    await handle.transmit(command);
    await handle.close();
  } else if (workerData.stage === 'idle') {
    await handle.transmit(command);
  }
  parentPort.postMessage('ready');
  if (workerData.stage === 'exits') {
    await handle.transmit(command);
    process.exit(0); // the worker ends itself, with the handle still open
  }
})().catch((e) => parentPort.postMessage('failed: ' + e.message));
`;

for (const stage of ['opening', 'idle', 'after-close', 'exits'] as const) {
  addonTest(`a worker that ends while its handle is ${stage} leaves no connection open and the addon usable`, async (t) => {
    const server = await startScriptedServer(t, (socket, command) =>
      socket.write(getRandomResponse(command.readUInt16BE(10))),
    );
    const worker = new Worker(workerSource, {
      eval: true,
      workerData: { addonPath: addonPath(), socketPath: server.socketPath, stage },
    });
    const exited = once(worker, 'exit');
    const [message] = (await once(worker, 'message')) as [string];
    t.is(message, 'ready');
    if (stage !== 'exits') await worker.terminate();
    await exited;
    await eventually(t, () => server.clients.size === 0, 'every connection the worker made is closed');

    // The main thread's instance of the addon is unaffected by the worker's teardown.
    const addon = tryLoadAddon();
    if (addon instanceof Error) return t.fail(addon.message);
    const handle = await addon.addon.openTpm(server.socketPath, 10_000);
    const response = await handle.transmit(Uint8Array.from([0x80, 1, 0, 0, 0, 12, 0, 0, 1, 0x7b, 0, 8]));
    t.is(response.length, 20);
    await handle.close();
  });
}

addonTest('a worker terminated with a command in flight on a silent TPM closes at once', async (t) => {
  const silent = await startSilentServer(t);
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const addon = require(workerData.addonPath);
     addon.openTpm(workerData.socketPath, 600000).then((h) => {
       h.transmit(Uint8Array.from(${GET_RANDOM_8})).catch(() => {});
       parentPort.postMessage('ready');
     });`,
    { eval: true, workerData: { addonPath: addonPath(), socketPath: silent.socketPath } },
  );
  t.is(((await once(worker, 'message')) as [string])[0], 'ready');
  await eventually(t, () => silent.clients.size === 1, 'the command reached the TPM');
  // Without the cleanup hook, terminate() would wait for the 10-minute command timeout.
  await worker.terminate();
  await eventually(t, () => silent.clients.size === 0, 'the worker closed its connection on teardown');
});

addonTest('a worker terminated while an SNP report request runs on the thread pool does not take the process down', async (t) => {
  // The request fails at once (no such device), so its completion races the worker's teardown: settling a promise
  // in an environment that is shutting down must not abort the process (native/addon.cc, SettleUnlessShuttingDown).
  const worker = new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const addon = require(workerData.addonPath);
     addon.snpGetReport('/nonexistent/cvm-skr/sev-guest', new Uint8Array(64), 0, false).catch(() => {});
     parentPort.postMessage('ready');`,
    { eval: true, workerData: { addonPath: addonPath() } },
  );
  t.is(((await once(worker, 'message')) as [string])[0], 'ready');
  await worker.terminate();
  const addon = tryLoadAddon();
  if (addon instanceof Error) return t.fail(addon.message);
  const error = (await addon.addon.snpGetReport('/nonexistent/cvm-skr/sev-guest', new Uint8Array(64), 0, false).catch(
    (e: unknown) => e,
  )) as { errno?: number };
  t.is(error.errno, 2, 'this thread still gets its ENOENT');
});
