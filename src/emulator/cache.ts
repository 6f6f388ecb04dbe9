/**
 * The per-user cache folder of emulator key material (emulated AMD ARK/ASK and chip secret, emulated vTPM CA).
 * Folder: `$CVM_SKR_EMULATOR_CACHE`, else `$XDG_CACHE_HOME/cvm-skr`, else `~/.cache/cvm-skr`; created 0700
 * and refused when others can read it. Files are written 0600 through a rename, so a reader never sees half
 * a file. The keys are emulator-only and trusted by nothing unless a caller opts in; they are cached because
 * generating an RSA-4096 ARK and ASK takes seconds.
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { EmulatorError } from './errors.js';

export const EMULATOR_CACHE_ENV = 'CVM_SKR_EMULATOR_CACHE';

/** The cache folder this process would use (not created). */
export function emulatorCacheDir(): string {
  const explicit = process.env[EMULATOR_CACHE_ENV];
  if (explicit) return path.resolve(explicit);
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'cvm-skr');
  return path.join(homedir(), '.cache', 'cvm-skr');
}

/** Creates the folder (0700) if needed and checks nobody else can read it. */
export async function ensureCacheDir(dir: string): Promise<string> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const info = await stat(dir);
    if (!info.isDirectory()) throw new EmulatorError(`emulator cache ${dir} is not a directory`);
    if (typeof process.getuid === 'function' && info.uid !== process.getuid()) {
      throw new EmulatorError(`emulator cache ${dir} belongs to another user; set ${EMULATOR_CACHE_ENV}`);
    }
    if ((info.mode & 0o077) !== 0) await chmod(dir, 0o700);
    return dir;
  } catch (error) {
    if (error instanceof EmulatorError) throw error;
    throw new EmulatorError(
      `cannot use the emulator cache folder ${dir}: check its permissions or set ${EMULATOR_CACHE_ENV}`,
      { cause: error },
    );
  }
}

/** Reads a cached JSON document; undefined when absent or unreadable (it is then regenerated). */
export async function readCached<T>(dir: string, name: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, name), 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Writes a JSON document 0600 through a temporary file and a rename. */
export async function writeCached(dir: string, name: string, value: unknown): Promise<void> {
  const target = path.join(dir, name);
  const temp = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await rename(temp, target);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw new EmulatorError(`cannot write ${target}: check the cache folder permissions`, { cause: error });
  }
}

const loading = new Map<string, Promise<unknown>>();

/**
 * Emulated key material made once per process and per cache folder: read from `<dir>/<name>` when it is
 * `usable`, else generated (slow: RSA keys) and written there. `cache: false` keeps it in memory only.
 * Concurrent callers share one load; a failed load is forgotten, so the next call tries again.
 */
export function loadCachedOnce<T>(
  cache: string | false,
  name: string,
  usable: (cached: T | undefined) => cached is T,
  generate: () => Promise<T>,
): Promise<T> {
  const key = `${cache || ':memory:'}|${name}`;
  let pending = loading.get(key) as Promise<T> | undefined;
  if (pending === undefined) {
    pending = (async () => {
      if (cache === false) return generate();
      const dir = await ensureCacheDir(cache);
      const cached = await readCached<T>(dir, name);
      if (usable(cached)) return cached;
      const fresh = await generate();
      await writeCached(dir, name, fresh);
      return fresh;
    })();
    loading.set(key, pending);
    pending.catch(() => loading.delete(key));
  }
  return pending;
}
