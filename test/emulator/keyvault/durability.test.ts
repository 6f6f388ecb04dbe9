/**
 * Crash safety of the emulator's state file: every acknowledged write survives a SIGKILL, nothing
 * unacknowledged is half-applied, a torn journal tail is dropped, damage in the middle is refused with its
 * offset, and one process owns a state file at a time.
 *
 * No Azure artifact applies: the state file is the emulator's own (Key Vault keeps its state server-side).
 * The requests are the service's REST shape (`POST /keys/{name}/create`, `PATCH /keys/{name}`, `GET /keys`),
 * as in Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/node.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFile, copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { startKeyVaultEmulator } from '../../../src/emulator/keyvault/index.js';
import { journalPath, journalRecord, lockPath } from '../../../src/emulator/keyvault/state.js';
import { EmulatorStateError, EmulatorStateLockedError } from '../../../src/emulator/errors.js';
import { type VaultEndpoint, vaultHttp } from '../../helpers/vault-http.js';

const CHILD = fileURLToPath(new URL('../../helpers/vault-durable-child.ts', import.meta.url));

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-kv-durable-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Child {
  proc: ChildProcess;
  first: Record<string, unknown>;
  stderr: () => string;
  exited: Promise<void>;
}

/** Starts the emulator in a child process on `statePath`; killed at teardown whatever happens. */
async function startChild(t: ExecutionContext, statePath: string): Promise<Child> {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, statePath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  t.teardown(async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await exited;
  });
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c));
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const nl = out.indexOf('\n');
      if (nl !== -1) resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
    });
    proc.once('exit', (code) => reject(new Error(`emulator child exited (${code}) before answering: ${err}`)));
  });
  return { proc, first, stderr: () => err, exited };
}

async function listNames(http: Awaited<ReturnType<typeof vaultHttp>>): Promise<Map<string, Record<string, string>>> {
  const out = new Map<string, Record<string, string>>();
  let path: string | null = '/keys?maxresults=25';
  while (path) {
    const r = await http.call('GET', path);
    if (r.status !== 200) throw new Error(`list answered ${r.status}`);
    for (const item of r.body.value as { kid: string; tags?: Record<string, string> }[]) {
      out.set(item.kid.split('/')[4]!, item.tags ?? {});
    }
    const next = r.body.nextLink as string | null;
    path = next ? new URL(next).pathname + new URL(next).search : null;
  }
  return out;
}

test('every acknowledged create and update survives SIGKILL at random moments, and nothing unacknowledged is half-applied', async (t) => {
  t.timeout(180_000);
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  /** name -> the tag value its acknowledged update set ('' when only the create was acknowledged). */
  const acked = new Map<string, string>();
  /** Sent, with no answer before the crash: may or may not be there, but whole if there. */
  const unsure = new Set<string>();
  const rounds = 4;
  for (let round = 0; round < rounds; round++) {
    const child = await startChild(t, statePath);
    t.falsy(child.first.error, JSON.stringify(child.first.error));
    const http = await vaultHttp(child.first as unknown as VaultEndpoint);
    // Everything acknowledged in earlier rounds is there, with its acknowledged update.
    const present = await listNames(http);
    for (const [name, tag] of acked) {
      t.true(present.has(name), `acknowledged key ${name} lost after a crash`);
      if (tag) t.is(present.get(name)!.round, tag, `acknowledged update of ${name} lost`);
    }
    for (const name of present.keys()) {
      t.true(acked.has(name) || unsure.has(name), `key ${name} appeared without being asked for`);
      // Whole: the key answers with its public part.
      const got = await http.call('GET', `/keys/${name}`);
      t.is(got.status, 200);
      t.is((got.body.key as { kty: string }).kty, 'EC');
      if (unsure.has(name)) acked.set(name, present.get(name)!.round ?? '');
    }
    unsure.clear();
    let stop = false;
    let n = 0;
    // A random moment in the load, counted in acknowledgements (not wall time, which depends on the machine).
    const killAfter = 50 + Math.floor(Math.random() * 400);
    let ackedThisRound = 0;
    let reached!: () => void;
    const enough = new Promise<void>((r) => (reached = r));
    const worker = async (w: number) => {
      while (!stop) {
        const name = `r${round}-w${w}-k${n++}`;
        unsure.add(name);
        try {
          const created = await http.call('POST', `/keys/${name}/create`, { kty: 'EC', crv: 'P-256' });
          if (created.status !== 200) throw new Error(`create answered ${created.status}`);
          acked.set(name, '');
          unsure.delete(name);
          if (++ackedThisRound === killAfter) reached();
          const updated = await http.call('PATCH', `/keys/${name}`, { tags: { round: String(round) } });
          if (updated.status === 200) acked.set(name, String(round));
        } catch {
          return; // the crash: this request's fate is unknown, it stays in `unsure`
        }
      }
    };
    const workers = Array.from({ length: 64 }, (_, w) => worker(w));
    await enough;
    await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 20)));
    child.proc.kill('SIGKILL');
    await child.exited;
    stop = true;
    await Promise.all(workers);
    http.close();
  }
  // After the last crash: one more start proves the final round too.
  const child = await startChild(t, statePath);
  const http = await vaultHttp(child.first as unknown as VaultEndpoint);
  const present = await listNames(http);
  http.close();
  for (const [name, tag] of acked) {
    t.true(present.has(name), `acknowledged key ${name} lost after the last crash`);
    if (tag) t.is(present.get(name)!.round, tag);
  }
  for (const name of present.keys()) t.true(acked.has(name) || unsure.has(name));
  t.true(acked.size >= rounds * 50, `only ${acked.size} keys were acknowledged: the load did not run`);
  child.proc.kill('SIGTERM');
  await child.exited;
});

test('a second emulator on the same state file is refused and names the process holding it', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  const first = await startChild(t, statePath);
  t.falsy(first.first.error);
  const second = await startChild(t, statePath);
  const error = second.first.error as { code: string; message: string; pid: number };
  t.is(error.code, EmulatorStateLockedError.code);
  t.is(error.pid, first.proc.pid!);
  t.true(error.message.includes(`process ${first.proc.pid}`));
  t.true(error.message.includes(lockPath(statePath)));
  // In this process too.
  await t.throwsAsync(startKeyVaultEmulator({ statePath }), { instanceOf: EmulatorStateLockedError });
  first.proc.kill('SIGTERM');
  await first.exited;
  await t.throwsAsync(readFile(lockPath(statePath)), { code: 'ENOENT' });
});

test('a lock left by a process that no longer runs is taken over with a warning', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  const dead = spawn(process.execPath, ['-e', '']);
  await new Promise((r) => dead.once('exit', r));
  await writeFile(lockPath(statePath), JSON.stringify({ pid: dead.pid, hostname: hostname() }));
  const warnings: string[] = [];
  const emu = await startKeyVaultEmulator({ statePath, onStateWarning: (m) => warnings.push(m) });
  t.teardown(() => emu.close());
  t.true(warnings.some((w) => w.includes(`process ${dead.pid}`)));
  t.is((JSON.parse(await readFile(lockPath(statePath), 'utf8')) as { pid: number }).pid, process.pid);
  await emu.close();
  // A lock naming a live process (this one, standing in for another emulator) is not taken over.
  await writeFile(lockPath(statePath), JSON.stringify({ pid: process.pid, hostname: hostname() }));
  const e = await t.throwsAsync(startKeyVaultEmulator({ statePath }), { instanceOf: EmulatorStateLockedError });
  t.is(e?.pid, process.pid);
});

/** A state file whose journal holds `n` key records (written by a running emulator, copied before compaction). */
async function journalWithKeys(t: ExecutionContext, names: string[]): Promise<{ statePath: string; journal: Buffer }> {
  const dir = await tempDir(t);
  const live = join(dir, 'live.json');
  const emu = await startKeyVaultEmulator({ statePath: live, clock: { frozen: true } });
  t.teardown(() => emu.close());
  const client = emu.keyClient();
  for (const name of names) await client.createEcKey(name);
  // Acknowledged means journaled: copy the files as a crash would leave them.
  const statePath = join(dir, 'crashed.json');
  await copyFile(live, statePath);
  await copyFile(journalPath(live), journalPath(statePath));
  await emu.close();
  return { statePath, journal: await readFile(journalPath(statePath)) };
}

test('a torn last journal record is dropped with a warning and the acknowledged keys before it are kept', async (t) => {
  const { statePath, journal } = await journalWithKeys(t, ['one', 'two']);
  // The crash cut a record short: a prefix of a valid record, no newline.
  const record = journalRecord({ k: 'three', v: null });
  await appendFile(journalPath(statePath), record.slice(0, 17));
  const warnings: string[] = [];
  const emu = await startKeyVaultEmulator({ statePath, onStateWarning: (m) => warnings.push(m) });
  t.teardown(() => emu.close());
  const names: string[] = [];
  for await (const p of emu.keyClient().listPropertiesOfKeys()) names.push(p.name);
  t.deepEqual(names.sort(), ['one', 'two']);
  t.is(warnings.length, 1);
  t.true(warnings[0]!.includes(`byte offset ${journal.length}`));
  t.true(warnings[0]!.includes(journalPath(statePath)));
});

test('an unreadable journal record followed by intact ones stops start-up naming the file and offset, files untouched', async (t) => {
  const { statePath, journal } = await journalWithKeys(t, ['one', 'two']);
  // Flip a byte inside the first key record (after the header line): its CRC no longer matches.
  const headerEnd = journal.indexOf(0x0a) + 1;
  const damaged = Buffer.from(journal);
  damaged[headerEnd + 40] = damaged[headerEnd + 40]! ^ 0x01;
  await writeFile(journalPath(statePath), damaged);
  const snapshot = await readFile(statePath);
  const e = await t.throwsAsync(startKeyVaultEmulator({ statePath }), { instanceOf: EmulatorStateError });
  t.is(e?.code, EmulatorStateError.code);
  t.is(e?.offset, headerEnd);
  t.is(e?.path, journalPath(statePath));
  t.true(e?.message.includes(`byte offset ${headerEnd}`));
  t.deepEqual(await readFile(journalPath(statePath)), damaged);
  t.deepEqual(await readFile(statePath), snapshot);
  // And the lock was released: after a repair, start-up works.
  await writeFile(journalPath(statePath), journal);
  const emu = await startKeyVaultEmulator({ statePath });
  t.teardown(() => emu.close());
  t.is((await emu.keyClient().getKey('two')).name, 'two');
});

test('a version 1 state file is read and rewritten in format version 2; a newer format is refused with advice', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  await writeFile(statePath, JSON.stringify({ format: 'cvm-skr-keyvault-emulator', version: 1, keys: [] }));
  const emu = await startKeyVaultEmulator({ statePath });
  await emu.keyClient().createEcKey('migrated');
  await emu.close();
  const doc = JSON.parse(await readFile(statePath, 'utf8')) as { formatVersion: number; keys: { name: string }[] };
  t.is(doc.formatVersion, 2);
  t.deepEqual(doc.keys.map((k) => k.name), ['migrated']);
  const newer = JSON.stringify({ ...doc, formatVersion: 3, version: 3 });
  await writeFile(statePath, newer);
  const e = await t.throwsAsync(startKeyVaultEmulator({ statePath }), { instanceOf: EmulatorStateError });
  t.regex(e?.message ?? '', /newer cvm-skr.*upgrade cvm-skr, or start with another --state file/);
  t.is(await readFile(statePath, 'utf8'), newer);
});
