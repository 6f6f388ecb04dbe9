/**
 * Runs the CLI from the sources (`node --import tsx src/cli/main.ts ...`) as a child process, as a user runs
 * `cvm-skr`: never throws, and a child killed by the timeout or a signal reports code -1.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TSX = import.meta.resolve('tsx');

export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', TSX, path.join(ROOT, 'src/cli/main.ts'), ...args],
      { env: options.env ?? process.env, cwd: options.cwd ?? ROOT, timeout: options.timeoutMs ?? 90_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}
