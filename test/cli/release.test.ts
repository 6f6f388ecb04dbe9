import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { KeyClient } from '@azure/keyvault-keys';
import test from 'ava';
import { EmulatorCredential } from '../../src/emulator/identity/credential.js';
import { serveEmulator } from '../helpers/emulator-process.js';

const run = promisify(execFile);
const cli = ['--import', 'tsx', 'src/cli/main.ts'];

async function tempDir(t: import('ava').ExecutionContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('policy check explains every clause and exits 1 when the claims fall short', async (t) => {
  const dir = await tempDir(t);
  const policy = {
    version: '1.0.0',
    anyOf: [
      {
        authority: 'https://maa.example',
        allOf: [
          { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
          { claim: 'x-ms-isolation-tee.x-ms-sevsnpvm-is-debuggable', equals: 'false' },
        ],
      },
    ],
  };
  const claims = {
    iss: 'https://maa.example/',
    'x-ms-isolation-tee': { 'x-ms-attestation-type': 'sevsnpvm', 'x-ms-sevsnpvm-is-debuggable': true },
  };
  await writeFile(path.join(dir, 'policy.json'), JSON.stringify(policy));
  await writeFile(path.join(dir, 'claims.json'), JSON.stringify(claims));
  const error = await t.throwsAsync(
    run(process.execPath, [
      ...cli,
      'policy',
      'check',
      '--policy',
      path.join(dir, 'policy.json'),
      '--claims',
      path.join(dir, 'claims.json'),
    ]),
  );
  const out = (error as unknown as { stdout: string; code: number }).stdout;
  t.is((error as unknown as { code: number }).code, 1);
  t.regex(out, /PASS .*\$\.anyOf\[0\]\.allOf\[0\]/);
  t.regex(out, /FAIL .*\$\.anyOf\[0\]\.allOf\[1\].*x-ms-sevsnpvm-is-debuggable/);
  t.regex(out, /DENIED/);

  claims['x-ms-isolation-tee']['x-ms-sevsnpvm-is-debuggable'] = false;
  await writeFile(path.join(dir, 'claims.json'), JSON.stringify(claims));
  const ok = await run(process.execPath, [
    ...cli,
    'policy',
    'check',
    '--policy',
    path.join(dir, 'policy.json'),
    '--claims',
    path.join(dir, 'claims.json'),
    '--json',
  ]);
  t.true(JSON.parse(ok.stdout).allowed);
});

test('cvm-skr emulator serves a vault the SDK uses; release --emulator writes the key 0600 and never prints it', async (t) => {
  const dir = await tempDir(t);
  const { child, exited, info } = await serveEmulator(t, [], { ...process.env, CVM_SKR_EMULATOR_CACHE: path.join(dir, 'cache') });
  const env = info.environment;
  // The emulated IMDS (THIM) is printed for vTPM clients: AzureVtpmPlatform reads CVM_SKR_IMDS_URL.
  t.regex(env.CVM_SKR_IMDS_URL ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
  const ca = await readFile(env.CVM_SKR_CA_FILE!, 'utf8');
  const client = new KeyClient(
    info.vaultUrl,
    new EmulatorCredential({ tokenUrl: env.IDENTITY_ENDPOINT!, identityHeader: env.IDENTITY_HEADER! }),
    { disableChallengeResourceVerification: true, tlsOptions: { ca } },
  );
  const policy = {
    version: '1.0.0',
    anyOf: [
      {
        authority: info.attestationUrl,
        allOf: [{ claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' }],
      },
    ],
  };
  const created = await client.createKey('cli-key', 'EC-HSM', {
    curve: 'P-256',
    exportable: true,
    releasePolicy: { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(policy))) },
  });
  const out = path.join(dir, 'released.pem');
  const result = await run(
    process.execPath,
    [...cli, 'release', `${info.vaultUrl}/keys/cli-key`, '--emulator', '--out', out, '--json'],
    {
      env: { ...process.env, ...env, CVM_SKR_EMULATOR_CACHE: path.join(dir, 'cache') },
    },
  );
  const summary = JSON.parse(result.stdout);
  t.is(summary.kid, created.id);
  t.is(summary.keyType, 'EC-HSM');
  t.notRegex(result.stdout + result.stderr, /PRIVATE KEY/);
  t.is((await stat(out)).mode & 0o777, 0o600);
  const released = createPrivateKey(await readFile(out, 'utf8'));
  const vaultJwk = created.key!;
  t.is(createPublicKey(released).export({ format: 'jwk' }).x, Buffer.from(vaultJwk.x!).toString('base64url'));

  // --out never overwrites key material, and is checked before the release (no key released for nothing).
  await t.throwsAsync(
    run(process.execPath, [...cli, 'release', `${info.vaultUrl}/keys/cli-key`, '--emulator', '--out', out], {
      env: { ...process.env, ...env, CVM_SKR_EMULATOR_CACHE: path.join(dir, 'cache') },
    }),
    { message: /--out .* already exists/ },
  );

  child.kill('SIGINT');
  t.is(await exited, 0, 'stops cleanly on Ctrl-C');
});

test('cvm-skr demo --json completes every step on the embedded emulator', async (t) => {
  const dir = await tempDir(t);
  const { stdout } = await run(process.execPath, [...cli, 'demo', '--json'], {
    env: { ...process.env, CVM_SKR_EMULATOR_CACHE: path.join(dir, 'cache') },
  });
  const summary = JSON.parse(stdout) as {
    ok: boolean;
    steps: { name: string; ok: boolean; skipped?: boolean; detail: string }[];
  };
  t.true(summary.ok, JSON.stringify(summary.steps.filter((s) => !s.ok)));
  t.is(summary.steps.length, 9);
  const agentStep = summary.steps.find((s) => s.name.includes('key agent'));
  t.truthy(agentStep);
  if (!agentStep?.skipped) t.regex(agentStep!.detail, /1 attestation, 1 release/);
  t.regex(summary.steps.at(-1)!.detail, /ERR_RELEASE_DENIED/);
  t.regex(summary.steps.at(-1)!.detail, /launchmeasurement/);
  if (process.env.CI === 'true')
    t.false(
      summary.steps.some((s) => s.skipped),
      'the swtpm step runs in CI',
    );
});
