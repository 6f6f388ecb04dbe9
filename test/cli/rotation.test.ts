/**
 * `cvm-skr rotation get|set|rotate|plan|audit` as a separate process against the emulated vault, reached the
 * way a user would after `cvm-skr emulator`: its printed environment (CVM_SKR_VAULT_URL, CVM_SKR_CA_FILE,
 * IDENTITY_ENDPOINT, IDENTITY_HEADER) and `--emulator`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { vaultUrl } from '../../src/cli/rotation.js';
import type { Emulator } from '../../src/emulator/start.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { emulator } from '../helpers/e2e-emulator.js';

const run = promisify(execFile);

const documented = {
  lifetimeActions: [
    { trigger: { timeAfterCreate: 'P18M' }, action: { type: 'Rotate' } },
    { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } },
  ],
  attributes: { expiryTime: 'P2Y' },
};

interface Setup {
  e: Emulator;
  dir: string;
  env: NodeJS.ProcessEnv;
}

async function setup(t: ExecutionContext): Promise<Setup> {
  const e = await emulator(t, { vault: { tickIntervalMs: 0 } });
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-rotation-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, e.caPem);
  // Only what `cvm-skr emulator` prints, nothing that would reach a real Azure endpoint.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...e.environment(),
    CVM_SKR_CA_FILE: caFile,
  };
  return { e, dir, env };
}

async function cli(s: Setup, args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      env: s.env,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('vault argument forms: name, https URL; http and "emulator" only with --emulator', (t) => {
  t.is(vaultUrl('myvault'), 'https://myvault.vault.azure.net');
  t.is(vaultUrl('https://myvault.vault.azure.net/'), 'https://myvault.vault.azure.net');
  t.is(vaultUrl('https://127.0.0.1:8443'), 'https://127.0.0.1:8443');
  t.throws(() => vaultUrl('http://127.0.0.1:8080'), {
    instanceOf: InvalidArgumentError,
    message: /plain http/,
  });
  t.is(vaultUrl('http://127.0.0.1:8080', { emulator: true }), 'http://127.0.0.1:8080');
  t.throws(() => vaultUrl('https://myvault.vault.azure.net/keys/x'), { instanceOf: InvalidArgumentError });
  t.throws(() => vaultUrl('my_vault'), { instanceOf: InvalidArgumentError });
  t.throws(() => vaultUrl('-vault'), { instanceOf: InvalidArgumentError });
  // Without --emulator, "emulator" is just a vault name.
  t.is(vaultUrl('emulator'), 'https://emulator.vault.azure.net');
});

test('rotation set, get, rotate, plan and audit against the emulator', async (t) => {
  const s = await setup(t);
  const client = s.e.keyClient();
  const expiresOn = new Date(s.e.clock.nowMs() + 2 * 365 * 86_400_000);
  const v1 = (await client.createKey('app', 'EC', { curve: 'P-256', expiresOn })).properties.version!;
  await client.createKey('bare', 'EC', { curve: 'P-256' });
  const policyFile = join(s.dir, 'policy.json');
  await writeFile(policyFile, JSON.stringify(documented));

  const set = await cli(s, ['rotation', 'set', 'emulator', 'app', '--policy', policyFile, '--emulator']);
  t.is(set.code, 0, set.stderr);
  t.like(JSON.parse(set.stdout), documented);
  const stored = await client.getKeyRotationPolicy('app');
  t.is(stored.expiresIn, 'P2Y');
  t.deepEqual(
    (stored.lifetimeActions ?? []).map((a) => [a.action, a.timeAfterCreate ?? a.timeBeforeExpiry]),
    [
      ['Rotate', 'P18M'],
      ['Notify', 'P30D'],
    ],
  );

  // The vault by URL works the same; the output is the service/CLI JSON shape with its metadata.
  const get = await cli(s, ['rotation', 'get', s.e.vaultUrl, 'app', '--emulator']);
  t.is(get.code, 0, get.stderr);
  const shown = JSON.parse(get.stdout) as {
    id: string;
    attributes: { expiryTime: string; created: unknown };
  };
  t.is(shown.id, `${s.e.vaultUrl}/keys/app/rotationpolicy`);
  t.is(shown.attributes.expiryTime, 'P2Y');
  t.truthy(shown.attributes.created);

  const plan = await cli(s, ['rotation', 'plan', 'emulator', 'app', '--emulator', '--json']);
  t.is(plan.code, 0, plan.stderr);
  const planned = JSON.parse(plan.stdout) as { rotation: { at: string }; violations: unknown[] };
  const created = (await client.getKey('app')).properties.createdOn!;
  const expectedRotation = new Date(created);
  expectedRotation.setUTCMonth(expectedRotation.getUTCMonth() + 18);
  if (created.getUTCDate() !== expectedRotation.getUTCDate()) expectedRotation.setUTCDate(0);
  t.is(planned.rotation.at, expectedRotation.toISOString());
  t.deepEqual(planned.violations, []);

  const rotate = await cli(s, ['rotation', 'rotate', 'emulator', 'app', '--emulator']);
  t.is(rotate.code, 0, rotate.stderr);
  const rotated = JSON.parse(rotate.stdout) as { id: string; version: string; expiresOn: string };
  t.not(rotated.version, v1);
  t.is(rotated.id, `${s.e.vaultUrl}/keys/app/${rotated.version}`);
  t.notRegex(rotate.stdout, /"(d|x|y|k)":/, 'no key material printed');
  const versions: string[] = [];
  for await (const p of client.listPropertiesOfKeyVersions('app')) versions.push(p.version!);
  t.deepEqual(versions.sort(), [v1, rotated.version].sort());

  const audit = await cli(s, ['rotation', 'audit', 'emulator', '--max-days', '730', '--json', '--emulator']);
  t.is(audit.code, 0, audit.stderr);
  const report = JSON.parse(audit.stdout) as { keys: { name: string; status: string; reason?: string }[] };
  t.deepEqual(Object.fromEntries(report.keys.map((k) => [k.name, `${k.status} ${k.reason ?? ''}`.trim()])), {
    app: 'compliant',
    bare: 'non-compliant NO_POLICY',
  });
  const text = await cli(s, ['rotation', 'audit', 'emulator', '--max-days', '730', '--emulator', '--strict']);
  t.is(text.code, 1, 'strict: a non-compliant key fails the run');
  t.regex(text.stdout, /non-compliant +bare: the key has no rotation policy/);
  t.regex(text.stdout, /2 keys, max 730 days: 1 compliant, 1 non-compliant/);
});

test('rotation set: our validation first (nothing sent), then the service refusal in its own words', async (t) => {
  const s = await setup(t);
  const client = s.e.keyClient();
  await client.createKey('noexpiry', 'EC', { curve: 'P-256' });
  const policyFile = join(s.dir, 'policy.json');
  await writeFile(policyFile, JSON.stringify(documented));

  // A policy the service refuses (expiryTime under 28 days): refused before any change.
  const badFile = join(s.dir, 'bad.json');
  await writeFile(badFile, JSON.stringify({ ...documented, attributes: { expiryTime: 'P20D' } }));
  const refused = await cli(s, ['rotation', 'set', 'emulator', 'noexpiry', '--policy', badFile, '--emulator']);
  t.is(refused.code, 2, 'an invalid policy is a usage error');
  t.regex(refused.stderr, /rotation policy is invalid: .*expir.*\[ERR_ROTATION_POLICY_INVALID\]/);
  const unchanged = await client.getKeyRotationPolicy('noexpiry');
  t.is(unchanged.updatedOn, undefined);

  // A key that does not exist: nothing to validate against, so the service answers.
  const missing = await cli(s, [
    'rotation',
    'set',
    'emulator',
    'nokey',
    '--policy',
    policyFile,
    '--emulator',
  ]);
  t.is(missing.code, 3, 'a service error is a runtime error');
  t.regex(
    missing.stderr,
    /setting the rotation policy of nokey failed \(404 KeyNotFound\): .*nokey.*not found/,
  );
  const rotateMissing = await cli(s, ['rotation', 'rotate', 'emulator', 'nokey', '--emulator']);
  t.is(rotateMissing.code, 3);
  t.regex(rotateMissing.stderr, /rotating nokey failed \(404 KeyNotFound\)/);
});

test('rotation validate and rotation set agree: the README policy on a fresh key without expiry is stored, with a warning', async (t) => {
  // The service stores a before-expiry trigger on a key without exp (Azure/azure-sdk-for-js
  // sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_key_rotation/
  // recording_updatekeyrotationpolicy_supports_creating_a_new_rotation_policy_and_fetching_it.json).
  const s = await setup(t);
  const client = s.e.keyClient();
  await client.createKey('fresh', 'EC', { curve: 'P-256' });
  const policyFile = join(s.dir, 'policy.json');
  await writeFile(policyFile, JSON.stringify(documented));
  const validated = await cli(s, ['rotation', 'validate', '--policy', policyFile, '--key-no-expiry', '--json']);
  t.is(validated.code, 0, validated.stderr);
  const verdict = JSON.parse(validated.stdout) as { valid: boolean; warnings: { code: string }[] };
  t.true(verdict.valid);
  t.deepEqual(
    verdict.warnings.map((w) => w.code),
    ['KEY_EXPIRY_REQUIRED'],
  );
  const set = await cli(s, ['rotation', 'set', 'emulator', 'fresh', '--policy', policyFile, '--emulator']);
  t.is(set.code, 0, set.stderr);
  t.regex(set.stderr, /warning:[\s\S]*KEY_EXPIRY_REQUIRED/);
  const stored = await client.getKeyRotationPolicy('fresh');
  t.truthy(stored.updatedOn);
  t.is(stored.expiresIn, 'P2Y');
});

test('--emulator without the emulator environment says what to export', async (t) => {
  const s = await setup(t);
  s.env = { PATH: process.env.PATH, HOME: process.env.HOME };
  const out = await cli(s, ['rotation', 'get', 'emulator', 'app', '--emulator']);
  t.is(out.code, 2);
  t.regex(out.stderr, /CVM_SKR_VAULT_URL, which is not set/);
  const byUrl = await cli(s, ['rotation', 'get', s.e.vaultUrl, 'app', '--emulator']);
  t.is(byUrl.code, 2);
  t.regex(byUrl.stderr, /missing IDENTITY_ENDPOINT, IDENTITY_HEADER, CVM_SKR_CA_FILE/);
});
