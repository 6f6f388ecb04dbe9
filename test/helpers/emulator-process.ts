import { type ChildProcess, spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';

const cli = ['--import', 'tsx', 'src/cli/main.ts'];

/** `cvm-skr emulator --json <args>` in a child process, stopped at teardown, with the environment it prints. */
export async function serveEmulator(t: ExecutionContext, args: string[], env: NodeJS.ProcessEnv) {
  const child: ChildProcess = spawn(process.execPath, [...cli, 'emulator', '--json', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  let out = '';
  const info = await new Promise<{ vaultUrl: string; attestationUrl: string; environment: Record<string, string> }>(
    (resolve, reject) => {
      child.stdout!.on('data', (d) => {
        out += d;
        try {
          resolve(JSON.parse(out));
        } catch {
          // not complete yet
        }
      });
      child.once('exit', (code) => reject(new Error(`emulator exited with ${code}`)));
    },
  );
  return { child, exited, info };
}
