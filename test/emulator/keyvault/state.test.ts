import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { startKeyVaultEmulator } from '../../../src/emulator/keyvault/index.js';
import { EmulatorStateError } from '../../../src/emulator/errors.js';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { startVault } from '../../helpers/vault-setup.js';

async function tempDir(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-kv-state-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a state file keeps keys, versions, policies and the CA across a restart', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  const first = await startKeyVaultEmulator({ statePath, clock: { frozen: true } });
  t.teardown(() => first.close());
  const client = first.keyClient();
  const v1 = await client.createRsaKey('kept', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes('https://a.attest.azure.net') },
    expiresOn: new Date(first.clock.nowMs() + 400 * 86400_000),
  });
  await client.updateKeyRotationPolicy('kept', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }],
    expiresIn: 'P1Y',
  });
  const v2 = await client.rotateKey('kept');
  await client.createEcKey('gone');
  await (await client.beginDeleteKey('gone', { intervalInMs: 10 })).pollUntilDone();
  const caPem = first.caPem;
  await first.close();
  t.is((await stat(statePath)).mode & 0o777, 0o600);
  t.deepEqual(
    (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left behind',
  );

  const second = await startKeyVaultEmulator({ statePath });
  t.teardown(() => second.close());
  t.is(second.caPem, caPem, 'the CA survives, so clients keep trusting the vault');
  const c2 = second.keyClient();
  const latest = await c2.getKey('kept');
  t.is(latest.properties.version, v2.properties.version);
  t.deepEqual(latest.key?.n, v2.key?.n);
  const old = await c2.getKey('kept', { version: v1.properties.version! });
  t.deepEqual(old.key?.n, v1.key?.n);
  t.true(old.properties.exportable);
  const policy = await c2.getKeyRotationPolicy('kept');
  t.deepEqual(
    policy.lifetimeActions?.map((a) => a.action),
    ['Rotate', 'Notify'],
  );
  t.is((await c2.getDeletedKey('gone')).name, 'gone');
  // The restored vault keeps working and persisting.
  await c2.createEcKey('after-restart');
  await second.flush();
  const saved = JSON.parse(await readFile(statePath, 'utf8')) as { keys: { name: string }[] };
  t.true(saved.keys.some((k) => k.name === 'after-restart'));
});

test('a corrupt state file is reported and left untouched', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  const junk = '{"format":"cvm-skr-keyvault-emulator","version":1,"keys":[{"name":';
  await writeFile(statePath, junk);
  const err = await t.throwsAsync(startKeyVaultEmulator({ statePath }), { instanceOf: EmulatorStateError });
  t.is(err?.code, 'ERR_EMULATOR_STATE');
  t.regex(err?.message ?? '', /not valid JSON/);
  t.is(await readFile(statePath, 'utf8'), junk);

  const wrongShape = JSON.stringify({
    format: 'cvm-skr-keyvault-emulator',
    version: 1,
    keys: [{ name: 'x', versions: [{}] }],
  });
  await writeFile(statePath, wrongShape);
  await t.throwsAsync(startKeyVaultEmulator({ statePath }), {
    instanceOf: EmulatorStateError,
    message: /keys\[0\]/,
  });
  t.is(await readFile(statePath, 'utf8'), wrongShape);

  await writeFile(statePath, '{"something":"else"}');
  await t.throwsAsync(startKeyVaultEmulator({ statePath }), {
    instanceOf: EmulatorStateError,
    message: /not a cvm-skr/,
  });
});

test('100 parallel creates and rotates lose nothing, in memory and on disk', async (t) => {
  const dir = await tempDir(t);
  const statePath = join(dir, 'vault.json');
  const emu = await startVault(t, { statePath });
  const client = emu.keyClient();
  await client.createEcKey('shared');
  const results = await Promise.all(
    Array.from({ length: 100 }, (_, i) =>
      i % 2 === 0 ? client.createEcKey(`p-${i}`) : client.rotateKey('shared'),
    ),
  );
  t.is(new Set(results.map((r) => r.id)).size, 100);
  const names = new Set<string>();
  for await (const p of client.listPropertiesOfKeys()) names.add(p.name);
  t.is(names.size, 51);
  const versions: string[] = [];
  for await (const v of client.listPropertiesOfKeyVersions('shared')) versions.push(v.version!);
  t.is(versions.length, 51);
  await emu.flush();
  const saved = JSON.parse(await readFile(statePath, 'utf8')) as {
    keys: { name: string; versions: unknown[] }[];
  };
  t.is(saved.keys.length, 51);
  t.is(saved.keys.find((k) => k.name === 'shared')?.versions.length, 51);
});

test('a state write that fails is reported at once through onStateError, and flush rejects', async (t) => {
  const dir = await tempDir(t);
  const stateDir = join(dir, 'gone');
  const statePath = join(stateDir, 'vault.json');
  await mkdir(stateDir);
  const reported: EmulatorStateError[] = [];
  const emu = await startKeyVaultEmulator({
    statePath,
    clock: { frozen: true },
    onStateError: (e) => reported.push(e),
  });
  t.teardown(() => emu.close().catch(() => {}));
  await emu.flush();
  // The state directory disappears under the running emulator: every later write fails.
  await rm(stateDir, { recursive: true, force: true });
  await emu.keyClient().createEcKey('unsaved');
  const error = await t.throwsAsync(emu.flush(), { instanceOf: EmulatorStateError });
  t.regex(error?.message ?? '', /could not be written/);
  t.true(reported.length >= 1);
  t.true(reported.every((e) => e instanceof EmulatorStateError && e.message.includes(statePath)));
});
