/**
 * Optional persistence of the emulated vault: keys (with their private material, it is an emulator),
 * versions, policies and the emulator CA.
 *
 * Durability: every change is appended to a journal (`<state>.journal`, one JSON record a line, each with
 * its byte length and CRC-32) and fsynced before the HTTP answer for it leaves the emulator. Changes made
 * while an fsync runs share the next one (group commit), so 64 concurrent writers cost a handful of
 * fsyncs, not 64. The journal is compacted into the snapshot (`<state>`: temp file, fsync, rename, fsync of
 * the directory) when it grows past the snapshot's size, on `flush()` and on close. A snapshot carries a
 * generation; a journal whose header names an older generation is already inside the snapshot (a crash
 * between the two renames of a compaction) and is ignored.
 *
 * Recovery: snapshot, then the journal replayed. A damaged record with no valid record after it is the torn
 * tail of a write the crash interrupted (never acknowledged): it is dropped with a warning. Anything else
 * that cannot be read stops start-up with `EmulatorStateError` naming the file and byte offset, and the
 * files are left exactly as they are.
 *
 * One owner: `<state>.lock` holds the owner's pid, created atomically (written to a temp file, then
 * `link`ed: link fails with EEXIST if the lock exists, so the lock is never seen half-written). A lock whose
 * process is gone (same host) is taken over.
 */
import { randomBytes } from 'node:crypto';
import { link, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { EmulatorStateError, EmulatorStateLockedError } from '../errors.js';
import type { SavedEmulatorCa } from '../ca.js';
import { isKeyType } from './key-material.js';
import type { StoredKey } from './store.js';

export const STATE_FORMAT = 'cvm-skr-keyvault-emulator';
/** The current format: snapshot + journal. Version 1 (a single snapshot file, no journal) is read as a snapshot. */
export const STATE_FORMAT_VERSION = 2;
const JOURNAL_FORMAT = 'cvm-skr-keyvault-journal';
/** Larger files are refused rather than read into memory. */
const MAX_STATE_BYTES = 256 * 1024 * 1024;

export interface VaultState {
  /** Snapshot generation: a journal with the same generation continues it. 0 for a version 1 file. */
  generation?: number;
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
  // Version 1 files have `version: 1` and no `formatVersion`; they are read as a generation-0 snapshot and
  // rewritten in the current format at start-up.
  const formatVersion = doc.formatVersion ?? (doc.version === 1 ? 1 : undefined);
  if (typeof formatVersion === 'number' && Number.isInteger(formatVersion) && formatVersion > STATE_FORMAT_VERSION) {
    throw new EmulatorStateError(
      `state file ${path} has format version ${formatVersion}, written by a newer cvm-skr (this one reads up to ${STATE_FORMAT_VERSION}): upgrade cvm-skr, or start with another --state file; the file was left untouched`,
      path,
    );
  }
  if (formatVersion !== 1 && formatVersion !== STATE_FORMAT_VERSION) {
    throw new EmulatorStateError(
      `state file ${path} has format version ${String(formatVersion)}, expected 1 or ${STATE_FORMAT_VERSION}`,
      path,
    );
  }
  const generation = formatVersion === 1 ? 0 : doc.generation;
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) {
    throw new EmulatorStateError(`state file ${path} has no valid generation`, path);
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
  return {
    generation,
    keys,
    ...(ca ? { ca } : {}),
    ...(typeof doc.secret === 'string' ? { secret: doc.secret } : {}),
  };
}

/** fsync of a directory makes a rename in it durable (POSIX leaves that to the directory's own fsync). */
async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `body` to `path` atomically and durably: temp file in the same directory, fsync, rename, fsync dir. */
async function replaceFile(path: string, body: string | Buffer, statePath: string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(tmp, 'wx', 0o600);
  } catch (cause) {
    throw new EmulatorStateError(
      `state file ${statePath} could not be written: check that its directory exists and is writable`,
      statePath,
      { cause },
    );
  }
  try {
    await fh.writeFile(body);
    await fh.sync();
  } catch (cause) {
    await fh.close().catch(() => {});
    await unlink(tmp).catch(() => {});
    throw new EmulatorStateError(`state file ${statePath} could not be written`, statePath, { cause });
  }
  await fh.close();
  try {
    await rename(tmp, path);
    await syncDir(dirname(path));
  } catch (cause) {
    await unlink(tmp).catch(() => {});
    throw new EmulatorStateError(`state file ${statePath} could not be replaced`, statePath, { cause });
  }
}

/** Writes a snapshot atomically: readers see the old file or the new one, never a torn write. */
export async function writeVaultState(path: string, state: VaultState): Promise<void> {
  const { generation = 0, ...rest } = state;
  // `version` too, so an older cvm-skr (which reads `version`) says "version 2, expected 1" rather than garbage.
  const body = JSON.stringify({
    format: STATE_FORMAT,
    formatVersion: STATE_FORMAT_VERSION,
    version: STATE_FORMAT_VERSION,
    generation,
    ...rest,
  });
  await replaceFile(path, body, path);
}

// ---------------------------------------------------------------------------------------------------------
// journal
// ---------------------------------------------------------------------------------------------------------

export function journalPath(statePath: string): string {
  return `${statePath}.journal`;
}

export function lockPath(statePath: string): string {
  return `${statePath}.lock`;
}

/** One key's whole stored form after a change (`v: null`: the key is gone), keyed by its lower-case name. */
export interface JournalChange {
  k: string;
  v: StoredKey | null;
}

interface JournalHeader {
  h: typeof JOURNAL_FORMAT;
  formatVersion: number;
  generation: number;
}

/** `<byte length of json>:<crc-32 of json, 8 hex>:<json>\n` */
export function journalRecord(value: unknown): string {
  const json = JSON.stringify(value);
  const bytes = Buffer.byteLength(json);
  const crc = crc32(json).toString(16).padStart(8, '0');
  return `${bytes}:${crc}:${json}\n`;
}

const RECORD_PREFIX = /^(\d{1,10}):([0-9a-f]{8}):/;

/** The record starting at `offset` (ending before `end`, the newline), or undefined when it is damaged. */
function readRecord(buf: Buffer, offset: number, end: number): unknown {
  const line = buf.subarray(offset, end);
  const head = RECORD_PREFIX.exec(line.subarray(0, 20).toString('latin1'));
  if (!head) return undefined;
  const json = line.subarray(head[0].length);
  if (json.length !== Number(head[1]) || crc32(json) !== parseInt(head[2]!, 16)) return undefined;
  try {
    return JSON.parse(json.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

export interface ParsedJournal {
  header?: JournalHeader;
  changes: JournalChange[];
  /** Bytes of intact records; a torn tail starts here. */
  validBytes: number;
  /** Set when a torn tail was dropped: its offset and length. */
  tornAt?: number;
  tornBytes?: number;
}

/**
 * Parses a journal. A damaged record followed by no intact record is the torn tail of an interrupted write
 * (dropped); a damaged record followed by an intact one is corruption, reported with its offset.
 */
export function parseJournal(buf: Buffer, path: string): ParsedJournal {
  const records: { offset: number; value: unknown }[] = [];
  let offset = 0;
  let damagedAt: number | undefined;
  while (offset < buf.length) {
    const nl = buf.indexOf(0x0a, offset);
    const end = nl === -1 ? buf.length : nl;
    const value = nl === -1 ? undefined : readRecord(buf, offset, end);
    if (value === undefined) {
      damagedAt ??= offset;
    } else if (damagedAt !== undefined) {
      throw new EmulatorStateError(
        `state journal ${path} has an unreadable record at byte offset ${damagedAt} followed by intact ones: the file is damaged, not torn by a crash; it was left untouched: restore it from a backup or move it away (losing the changes since the last compaction)`,
        path,
        { offset: damagedAt },
      );
    } else {
      records.push({ offset, value });
    }
    offset = end + 1;
  }
  const out: ParsedJournal = {
    changes: [],
    validBytes: damagedAt ?? buf.length,
    ...(damagedAt !== undefined ? { tornAt: damagedAt, tornBytes: buf.length - damagedAt } : {}),
  };
  for (const [i, r] of records.entries()) {
    const v = r.value as Record<string, unknown>;
    if (i === 0) {
      if (
        typeof v !== 'object' ||
        v === null ||
        v.h !== JOURNAL_FORMAT ||
        typeof v.generation !== 'number' ||
        typeof v.formatVersion !== 'number'
      ) {
        throw new EmulatorStateError(`state journal ${path} does not start with a journal header`, path, {
          offset: r.offset,
        });
      }
      if (v.formatVersion > STATE_FORMAT_VERSION) {
        throw new EmulatorStateError(
          `state journal ${path} has format version ${v.formatVersion}, written by a newer cvm-skr: upgrade cvm-skr, or start with another --state file`,
          path,
          { offset: r.offset },
        );
      }
      out.header = v as unknown as JournalHeader;
      continue;
    }
    if (
      typeof v !== 'object' ||
      v === null ||
      typeof v.k !== 'string' ||
      (v.v !== null && !(typeof v.v === 'object' && v.v !== null && !Array.isArray(v.v)))
    ) {
      throw new EmulatorStateError(`state journal ${path} has a record at byte offset ${r.offset} that is not a key change`, path, {
        offset: r.offset,
      });
    }
    if (v.v !== null) checkKey(v.v, i, path);
    out.changes.push(v as unknown as JournalChange);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// lock
// ---------------------------------------------------------------------------------------------------------

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes `<state>.lock` for this process; returns its release function. */
export async function acquireStateLock(statePath: string, warn: (message: string) => void): Promise<() => Promise<void>> {
  const lock = lockPath(statePath);
  const host = hostname();
  const body = JSON.stringify({ pid: process.pid, hostname: host, since: new Date().toISOString() });
  const tmp = join(dirname(lock), `.${basename(lock)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, body, { flag: 'wx', mode: 0o600 });
  } catch (cause) {
    throw new EmulatorStateError(
      `state file ${statePath}: its lock ${lock} could not be created: check that the directory exists and is writable`,
      statePath,
      { cause },
    );
  }
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        await link(tmp, lock);
        break;
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new EmulatorStateError(`state file ${statePath}: its lock ${lock} could not be created`, statePath, {
            cause,
          });
        }
      }
      let holder: { pid?: unknown; hostname?: unknown } = {};
      try {
        holder = JSON.parse(await readFile(lock, 'utf8')) as typeof holder;
      } catch {
        // Unreadable: handled below as a lock of unknown owner.
      }
      const pid = typeof holder.pid === 'number' && Number.isSafeInteger(holder.pid) ? holder.pid : undefined;
      const sameHost = holder.hostname === host;
      if (pid !== undefined && sameHost && pid !== process.pid && !processAlive(pid) && attempt < 3) {
        warn(`state file ${statePath}: taking over the lock of process ${pid}, which is no longer running`);
        await unlink(lock).catch(() => {});
        continue;
      }
      if (pid === undefined) {
        throw new EmulatorStateError(
          `state file ${statePath} is locked by ${lock}, which names no process: if no emulator uses this state file, remove the lock file`,
          statePath,
        );
      }
      throw new EmulatorStateLockedError(
        `state file ${statePath} is in use by process ${pid}${sameHost ? '' : ` on host ${String(holder.hostname)}`} (lock ${lock}): stop that emulator, or use another --state file`,
        statePath,
        lock,
        pid,
      );
    }
  } finally {
    await unlink(tmp).catch(() => {});
  }
  return async () => {
    try {
      const holder = JSON.parse(await readFile(lock, 'utf8')) as { pid?: unknown };
      if (holder.pid === process.pid) await unlink(lock);
    } catch {
      // Gone or replaced: nothing of ours to remove.
    }
  };
}

// ---------------------------------------------------------------------------------------------------------
// the durable store
// ---------------------------------------------------------------------------------------------------------

export interface DurableStateSource {
  /** The live stored form of a key by lower-case name (serialized at once, not kept). */
  key(name: string): StoredKey | undefined;
  /** Everything, for a snapshot. */
  full(): VaultState;
}

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Journal bytes that never trigger a compaction on their own. */
const MIN_COMPACT_BYTES = 8 * 1024 * 1024;

/**
 * Owns a state file: its lock, its snapshot and journal. `changed(name)` records a change; `commit()`
 * resolves once every change recorded before the call is fsynced (rejects if that write failed).
 */
export class DurableState {
  readonly path: string;
  /** What was on disk at start-up (snapshot with the journal applied), `undefined` for a new state file. */
  readonly loaded: VaultState | undefined;
  readonly #release: () => Promise<void>;
  readonly #onError: (error: unknown) => void;
  #source: DurableStateSource | undefined;
  #generation: number;
  #fh: Awaited<ReturnType<typeof open>> | undefined;
  #journalBytes = 0;
  #snapshotBytes = 0;
  #seq = 0;
  #durable = 0;
  #dirty = new Set<string>();
  #waiters: Waiter[] = [];
  #running: Promise<void> | undefined;
  #compactWanted = false;
  #lastError: unknown;
  #closed = false;

  private constructor(
    path: string,
    loaded: VaultState | undefined,
    release: () => Promise<void>,
    onError: (error: unknown) => void,
  ) {
    this.path = path;
    this.loaded = loaded;
    this.#generation = loaded?.generation ?? 0;
    this.#release = release;
    this.#onError = onError;
  }

  /**
   * Locks the state file and reads it (snapshot, then journal). Throws `EmulatorStateLockedError` when
   * another process owns it, `EmulatorStateError` when it cannot be read; nothing is written then.
   */
  static async open(
    path: string,
    options: { warn: (message: string) => void; onError?: (error: unknown) => void },
  ): Promise<DurableState> {
    const release = await acquireStateLock(path, options.warn);
    try {
      const snapshot = await loadVaultState(path);
      const jpath = journalPath(path);
      let buf: Buffer | undefined;
      try {
        buf = await readFile(jpath);
      } catch (cause) {
        if ((cause as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new EmulatorStateError(`state journal ${jpath} cannot be read: check its permissions`, jpath, {
            cause,
          });
        }
      }
      let loaded = snapshot;
      if (buf && buf.length > 0) {
        const journal = parseJournal(buf, jpath);
        if (journal.tornAt !== undefined) {
          options.warn(
            `state journal ${jpath}: dropped a torn last record at byte offset ${journal.tornAt} (${journal.tornBytes} bytes): a write interrupted by a crash, never acknowledged`,
          );
        }
        const generation = snapshot?.generation ?? 0;
        if (journal.header && !snapshot) {
          throw new EmulatorStateError(
            `state journal ${jpath} exists but its state file ${path} does not: restore the state file, or move the journal away to start empty`,
            jpath,
            { offset: 0 },
          );
        }
        if (journal.header && journal.header.generation > generation) {
          throw new EmulatorStateError(
            `state journal ${jpath} continues generation ${journal.header.generation} but ${path} is generation ${generation}: the state file is older than its journal (restored from a backup?); restore the matching pair`,
            jpath,
            { offset: 0 },
          );
        }
        if (snapshot && journal.header?.generation === generation) {
          const keys = new Map(snapshot.keys.map((k) => [k.name.toLowerCase(), k]));
          for (const c of journal.changes) {
            if (c.v) keys.set(c.k, c.v);
            else keys.delete(c.k);
          }
          loaded = { ...snapshot, keys: [...keys.values()] };
        }
        // An older generation is already inside the snapshot (crash between a compaction's two renames).
      }
      return new DurableState(path, loaded, release, options.onError ?? (() => {}));
    } catch (e) {
      await release();
      throw e;
    }
  }

  /** Connects the live vault and writes a fresh snapshot and journal (start-up compaction). */
  async attach(source: DurableStateSource): Promise<void> {
    this.#source = source;
    await this.#compact();
    this.#kick();
  }

  /** The last write failure, if the most recent write failed. */
  get lastError(): unknown {
    return this.#lastError;
  }

  changed(name: string): void {
    this.#dirty.add(name.toLowerCase());
    this.#seq++;
    this.#kick();
  }

  /** Resolves once every change recorded so far is on disk. */
  commit(): Promise<void> {
    if (this.#durable >= this.#seq) return Promise.resolve();
    const seq = this.#seq;
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ seq, resolve, reject });
      this.#kick();
    });
  }

  /** Commits and compacts: the snapshot file alone then holds everything. */
  async flush(): Promise<void> {
    this.#compactWanted = true;
    this.#kick();
    while (this.#running) await this.#running;
    if (this.#lastError) throw this.#lastError;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      await this.flush();
    } finally {
      this.#closed = true;
      await this.#fh?.close().catch(() => {});
      this.#fh = undefined;
      await this.#release();
    }
  }

  #kick(): void {
    const work = this.#dirty.size > 0 || this.#compactWanted;
    if (work && !this.#running && this.#source && !this.#closed) this.#running = this.#loop();
  }

  #settle(upTo: number, error?: unknown): void {
    const keep: Waiter[] = [];
    for (const w of this.#waiters) {
      if (w.seq > upTo) keep.push(w);
      else if (error) w.reject(error);
      else w.resolve();
    }
    this.#waiters = keep;
  }

  async #loop(): Promise<void> {
    // Yield first: the `finally` below must run after `#running` is assigned, never before.
    await Promise.resolve();
    try {
      while (this.#dirty.size > 0 || this.#compactWanted) {
        const names = [...this.#dirty];
        this.#dirty.clear();
        const target = this.#seq;
        try {
          if (names.length > 0) await this.#append(names);
          this.#durable = target;
          this.#lastError = undefined;
          this.#settle(target);
          if (this.#compactWanted || this.#journalBytes > Math.max(MIN_COMPACT_BYTES, this.#snapshotBytes)) {
            this.#compactWanted = false;
            await this.#compact();
          }
        } catch (e) {
          // The changes stay in memory and are written with the next batch; whoever waits hears of it now.
          for (const n of names) this.#dirty.add(n);
          this.#compactWanted = false;
          this.#lastError = e;
          this.#settle(this.#seq, e);
          try {
            this.#onError(e);
          } catch {
            // A failing listener must not stop later writes.
          }
          break;
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  async #append(names: string[]): Promise<void> {
    let text = '';
    for (const k of names) text += journalRecord({ k, v: this.#source!.key(k) ?? null });
    const buf = Buffer.from(text, 'utf8');
    const fh = this.#fh;
    if (!fh) {
      throw new EmulatorStateError(`state journal ${journalPath(this.path)} is not open (an earlier compaction failed)`, this.path);
    }
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await fh.write(buf, done, buf.length - done, this.#journalBytes + done);
        done += bytesWritten;
      }
      await fh.datasync();
    } catch (cause) {
      // Cut a partial batch off so the next append does not land after garbage.
      await fh.truncate(this.#journalBytes).catch(() => {});
      throw new EmulatorStateError(`state journal ${journalPath(this.path)} could not be written`, this.path, {
        cause,
      });
    }
    this.#journalBytes += buf.length;
  }

  /** Snapshot of everything as generation g+1, then an empty journal for g+1. */
  async #compact(): Promise<void> {
    const generation = this.#generation + 1;
    const state = { ...this.#source!.full(), generation };
    const body = JSON.stringify({
      format: STATE_FORMAT,
      formatVersion: STATE_FORMAT_VERSION,
      version: STATE_FORMAT_VERSION,
      ...state,
    });
    await replaceFile(this.path, body, this.path);
    this.#generation = generation;
    this.#snapshotBytes = Buffer.byteLength(body);
    const jpath = journalPath(this.path);
    const header = journalRecord({ h: JOURNAL_FORMAT, formatVersion: STATE_FORMAT_VERSION, generation });
    await replaceFile(jpath, header, this.path);
    await this.#fh?.close().catch(() => {});
    this.#fh = undefined;
    try {
      this.#fh = await open(jpath, 'r+');
    } catch (cause) {
      throw new EmulatorStateError(`state journal ${jpath} could not be opened`, this.path, { cause });
    }
    this.#journalBytes = Buffer.byteLength(header);
  }
}
