/**
 * Starts and stops swtpm (TPM 2.0 simulator) processes on temporary Unix sockets or loopback ports: for the
 * demo, the tests and the benchmarks. Nothing is left running: `stop()` kills the process and removes its state.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** True when swtpm is on PATH. */
export const haveSwtpm = spawnSync('sh', ['-c', 'command -v swtpm'], { stdio: 'ignore' }).status === 0;

export interface Swtpm {
  /** Unix socket of the TPM command channel (swtpm `--server type=unixio`). */
  socketPath: string;
  /** `host:port` of the TCP command channel when started with `tcp: true`. */
  tcp?: string;
  dir: string;
  process: ChildProcess;
  /** Kills swtpm at once (SIGKILL), e.g. to test a dead TPM. */
  kill(): void;
  /** Stops swtpm and removes its state; safe to call more than once. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(check: () => Promise<boolean>, what: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`swtpm exited with code ${child.exitCode} before ${what}`);
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`swtpm did not provide ${what} within 10 s`);
}

function canConnect(options: net.NetConnectOpts): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(options);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts a fresh swtpm (TPM 2.0, already started up) on a temporary Unix socket, or on a loopback TCP port.
 * The command channel accepts one client at a time; connect once per test. Call `stop()` in a
 * `finally` (or a test teardown) so it runs on every path.
 */
export async function startSwtpm(options: { tcp?: boolean } = {}): Promise<Swtpm> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-swtpm-'));
  const socketPath = path.join(dir, 'tpm.sock');
  const ctrlPath = path.join(dir, 'ctrl.sock');
  let tcp: string | undefined;
  const server = options.tcp
    ? await (async () => {
        const port = await freePort();
        tcp = `127.0.0.1:${port}`;
        return `type=tcp,port=${port},bindaddr=127.0.0.1`;
      })()
    : `type=unixio,path=${socketPath}`;
  const child = spawn(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${dir}`,
      '--server',
      server,
      '--ctrl',
      `type=unixio,path=${ctrlPath}`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 2000);
    await exited;
    clearTimeout(timer);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      () => canConnect(tcp ? { host: '127.0.0.1', port: Number(tcp.split(':')[1]) } : { path: socketPath }),
      'its command socket',
      child,
    );
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${stderr}`);
  }
  // canConnect used up the single client slot of a unixio server: swtpm accepts the next client afterwards.
  return {
    socketPath,
    ...(tcp ? { tcp } : {}),
    dir,
    process: child,
    kill: () => child.kill('SIGKILL'),
    stop,
  };
}
