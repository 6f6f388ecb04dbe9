/**
 * Input and output of the CLI: files read with a coded error naming the flag, `--out` checked before any
 * work, `--timeout` parsed, and progress notes on stderr (silent with `--quiet` or `--json`).
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { whyUnreadable } from '../util/read-error.js';

const state = { quiet: false };

/** Set once by main.ts from `--quiet` / `--json`. */
export function setQuiet(quiet: boolean): void {
  state.quiet = quiet;
}

/** A progress note on stderr for a long step; stdout stays for the result. */
export function progress(message: string): void {
  if (!state.quiet) process.stderr.write(`cvm-skr: ${message}\n`);
}

/** Reads the file a flag names, or an `InvalidArgumentError` that names the flag and what is wrong. */
export async function readInput(file: string, flag: string): Promise<Buffer>;
export async function readInput(file: string, flag: string, encoding: 'utf8'): Promise<string>;
export async function readInput(file: string, flag: string, encoding?: 'utf8'): Promise<Buffer | string> {
  try {
    return encoding ? await readFile(file, encoding) : await readFile(file);
  } catch (error) {
    throw new InvalidArgumentError(`${flag} ${file}: ${whyUnreadable(error)}`, { cause: error });
  }
}

/** Reads and parses a JSON file a flag names; invalid JSON is an `InvalidArgumentError` naming the flag. */
export async function readJsonInput(file: string, flag: string): Promise<unknown> {
  const text = await readInput(file, flag, 'utf8');
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (error) {
    throw new InvalidArgumentError(`${flag} ${file} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * `--out`: its directory must exist and be writable, and the file must not exist yet (it is created with
 * O_EXCL later). Checked before the release, so a typo costs no key release.
 */
export async function checkOutPath(file: string, flag = '--out'): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const dirInfo = await stat(dir).catch(() => undefined);
  if (!dirInfo?.isDirectory()) throw new InvalidArgumentError(`${flag} ${file}: the directory ${dir} does not exist`);
  const exists = await stat(file).then(
    () => true,
    (error: NodeJS.ErrnoException) => error.code !== 'ENOENT',
  );
  if (exists) throw new InvalidArgumentError(`${flag} ${file} already exists; key material is never written over a file`);
  await access(dir, constants.W_OK).catch((error: unknown) => {
    throw new InvalidArgumentError(`${flag} ${file}: the directory ${dir} is not writable`, { cause: error });
  });
}

/** `--timeout <seconds>` to milliseconds. */
export function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(seconds > 0) || seconds > 2_000_000) {
    throw new InvalidArgumentError(
      `--timeout must be a number of seconds greater than 0 and at most 2000000 (23 days), not ${value}`,
    );
  }
  return Math.ceil(seconds * 1000);
}
