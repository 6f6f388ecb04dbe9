/**
 * Optional persistence of the emulated vault: keys (with their private material, it is an emulator),
 * versions, policies and the emulator CA, in one JSON file. Writes are atomic (temp file in the same
 * directory, fsync, rename) and coalesced; a state file that exists but is not valid emulator state is
 * reported with `EmulatorStateError` and left exactly as it is.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { EmulatorStateError } from '../../errors.js';
import type { SavedEmulatorCa } from '../ca.js';
import { isKeyType } from './key-material.js';
import type { StoredKey } from './store.js';

export const STATE_FORMAT = 'cvm-skr-keyvault-emulator';
export const STATE_VERSION = 1;
/** Larger files are refused rather than read into memory. */
const MAX_STATE_BYTES = 256 * 1024 * 1024;

export interface VaultState {
  ca?: SavedEmulatorCa;
  keys: StoredKey[];
  /** The emulator's identity secret (base64url): only an emulator holding it restores its key backups. */
  secret?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkKey(k: unknown, i: number, path: string): StoredKey {
  const bad = (what: string) => new EmulatorStateError(`state file ${path}: keys[${i}] ${what}`, path);
  if (!isObject(k) || typeof k.name !== 'string' || !Array.isArray(k.versions) || k.versions.length === 0) {
    throw bad('is not a key with a name and versions');
  }
  for (const [j, v] of k.versions.entries()) {
    if (
      !isObject(v) ||
      typeof v.version !== 'string' ||
      !isKeyType(v.kty) ||
      !Array.isArray(v.keyOps) ||
      !isObject(v.material) ||
      !isObject(v.material.jwk) ||
      typeof v.enabled !== 'boolean' ||
      typeof v.exportable !== 'boolean' ||
      typeof v.created !== 'number' ||
      typeof v.updated !== 'number'
    ) {
      throw bad(`versions[${j}] is not a valid key version`);
    }
  }
  return k as unknown as StoredKey;
}

/** Reads a state file; `undefined` when it does not exist. */
export async function loadVaultState(path: string): Promise<VaultState | undefined> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const { size } = await fh.stat();
      if (size > MAX_STATE_BYTES) {
        throw new EmulatorStateError(`state file ${path} is larger than ${MAX_STATE_BYTES} bytes`, path);
      }
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (cause instanceof EmulatorStateError) throw cause;
    throw new EmulatorStateError(`state file ${path} cannot be read: check its permissions`, path, { cause });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new EmulatorStateError(
      `state file ${path} is not valid JSON; it was left untouched: fix or move it, or start without --state`,
      path,
      { cause },
    );
  }
  if (!isObject(doc) || doc.format !== STATE_FORMAT) {
    throw new EmulatorStateError(`state file ${path} is not a cvm-skr Key Vault emulator state file`, path);
  }
  if (doc.version !== STATE_VERSION) {
    throw new EmulatorStateError(
      `state file ${path} has version ${String(doc.version)}, expected ${STATE_VERSION}`,
      path,
    );
  }
  if (!Array.isArray(doc.keys)) throw new EmulatorStateError(`state file ${path} has no keys array`, path);
  const keys = doc.keys.map((k, i) => checkKey(k, i, path));
  let ca: SavedEmulatorCa | undefined;
  if (doc.ca !== undefined) {
    if (!isObject(doc.ca) || typeof doc.ca.certPem !== 'string' || typeof doc.ca.keyPem !== 'string') {
      throw new EmulatorStateError(`state file ${path} has an unreadable ca entry`, path);
    }
    ca = { certPem: doc.ca.certPem, keyPem: doc.ca.keyPem };
  }
  if (doc.secret !== undefined && (typeof doc.secret !== 'string' || !/^[A-Za-z0-9_-]{22,}$/.test(doc.secret))) {
    throw new EmulatorStateError(`state file ${path} has an unreadable secret entry`, path);
  }
  return { keys, ...(ca ? { ca } : {}), ...(typeof doc.secret === 'string' ? { secret: doc.secret } : {}) };
}

/** Writes state atomically: readers see the old file or the new one, never a torn write. */
export async function writeVaultState(path: string, state: VaultState): Promise<void> {
  const body = JSON.stringify({ format: STATE_FORMAT, version: STATE_VERSION, ...state });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (cause) {
    throw new EmulatorStateError(
      `state file ${path} could not be written: check that its directory exists and is writable`,
      path,
      { cause },
    );
  }
  try {
    await fh.writeFile(body, 'utf8');
    await fh.sync();
  } catch (cause) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw new EmulatorStateError(`state file ${path} could not be written`, path, { cause });
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (cause) {
    await unlink(tmp).catch(() => {});
    throw new EmulatorStateError(`state file ${path} could not be replaced`, path, { cause });
  }
}

/**
 * Coalesces writes: at most one write in flight, and one more queued that captures every change made
 * meanwhile. `flush()` resolves once everything changed so far is on disk.
 */
export class StateWriter {
  readonly path: string;
  readonly #snapshot: () => VaultState;
  #running: Promise<void> | undefined;
  #dirty = false;
  #lastError: unknown;

  readonly #onError: (error: unknown) => void;

  /** `onError` hears of every failed write at once (a write failure is never silent). */
  constructor(path: string, snapshot: () => VaultState, onError: (error: unknown) => void = () => {}) {
    this.path = path;
    this.#snapshot = snapshot;
    this.#onError = onError;
  }

  /** The last write failure, if the most recent write failed. */
  get lastError(): unknown {
    return this.#lastError;
  }

  schedule(): void {
    this.#dirty = true;
    if (!this.#running) this.#running = this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      while (this.#dirty) {
        this.#dirty = false;
        try {
          await writeVaultState(this.path, this.#snapshot());
          this.#lastError = undefined;
        } catch (e) {
          this.#lastError = e;
          try {
            this.#onError(e);
          } catch {
            // A failing listener must not stop later writes.
          }
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  async flush(): Promise<void> {
    while (this.#running) await this.#running;
    if (this.#lastError) throw this.#lastError;
  }
}
