/**
 * "Any language, any setup": `emulator serve --no-cache` / `--cache <dir>` with `release --emulator` in another
 * process, `attest --emulator` against a running emulator, and the emulator-only `POST /emulator/vm-token` for
 * clients in other languages.
 *
 * The raw release request (`POST {vault}/keys/{name}/release?api-version=7.4` with `{ target, enc }`, answered
 * `{ value: <JWS> }`) is the one the real service answered in Azure/azure-sdk-for-js
 * sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_releasekey/
 * recording_can_create_an_exportable_key_and_release_it.json (copied in test/fixtures/real-release/). The
 * `/emulator/*` routes are emulator-only: no real service has them, so no artifact backs their format beyond
 * the emulator's own cache files.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { decodeProtectedHeader } from 'jose';
import { startEmulator } from '../../src/emulator/start.js';
import { InMemoryTransferKey } from '../../src/hal/memory-transfer-key.js';
import { parseReleasePayload } from '../../src/keyvault/release-response.js';
import { unwrapReleasedKey } from '../../src/keyvault/unwrap.js';
import { serveEmulator } from '../helpers/emulator-process.js';

const run = promisify(execFile);
const cli = ['--import', 'tsx', 'src/cli/main.ts'];

async function tempDir(t: import('ava').ExecutionContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-anylang-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function raw(
  url: string,
  ca: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? 'GET',
        ca,
        headers: {
          ...(options.body ? { 'content-type': 'application/json' } : {}),
          ...options.headers,
        },
      },
      (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const policyFor = (authority: string) =>
  new Uint8Array(
    Buffer.from(
      JSON.stringify({
        version: '1.0.0',
        anyOf: [{ authority, allOf: [{ claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' }] }],
      }),
    ),
  );

test('release --emulator with the environment of serve --no-cache releases a key, with the emulated chip from GET /emulator/hardware (no cache used)', async (t) => {
  const dir = await tempDir(t);
  const emptyCache = path.join(dir, 'never-used-cache');
  const { child, exited, info } = await serveEmulator(t, ['--no-cache'], {
    ...process.env,
    CVM_SKR_EMULATOR_CACHE: emptyCache,
  });
  const env = info.environment;
  t.is(env.CVM_SKR_EMULATOR_HARDWARE_URL, `${info.attestationUrl}/emulator/hardware`);
  t.false('CVM_SKR_EMULATOR_CACHE' in env, 'no cache folder is named for an in-memory emulator');
  const ca = await readFile(env.CVM_SKR_CA_FILE!, 'utf8');
  // The printed AMD root is the in-memory ARK the route serves.
  const hardware = await raw(env.CVM_SKR_EMULATOR_HARDWARE_URL!, ca, {
    headers: { 'x-identity-header': env.IDENTITY_HEADER! },
  });
  t.is(hardware.status, 200);
  const doc = JSON.parse(hardware.body) as { amd: { arkPem: string; bits: number }; akCa: { certPem: string } };
  t.is(doc.amd.bits, 2048);
  t.true((await readFile(env.CVM_SKR_AMD_ROOT_FILE!, 'utf8')).includes(doc.amd.arkPem.trim()));

  const { EmulatorCredential } = await import('../../src/emulator/identity/credential.js');
  const { KeyClient } = await import('@azure/keyvault-keys');
  const client = new KeyClient(
    info.vaultUrl,
    new EmulatorCredential({ tokenUrl: env.IDENTITY_ENDPOINT!, identityHeader: env.IDENTITY_HEADER! }),
    { disableChallengeResourceVerification: true, tlsOptions: { ca } },
  );
  const created = await client.createKey('nocache-key', 'EC-HSM', {
    curve: 'P-256',
    exportable: true,
    releasePolicy: { encodedPolicy: policyFor(info.attestationUrl) },
  });
  // Only the printed environment, plus an empty cache folder the client must not need.
  const clientEnv = { ...process.env, ...env, CVM_SKR_EMULATOR_CACHE: emptyCache };
  const result = await run(
    process.execPath,
    [...cli, 'release', `${info.vaultUrl}/keys/nocache-key`, '--emulator', '--json'],
    { env: clientEnv },
  );
  t.is(JSON.parse(result.stdout).kid, created.id);
  t.deepEqual(await readdir(emptyCache).catch(() => []), [], 'nothing generated into a cache');
  child.kill('SIGINT');
  t.is(await exited, 0);
});

test('serve --cache <dir> prints CVM_SKR_EMULATOR_CACHE and keeps its emulated hierarchy there', async (t) => {
  const dir = await tempDir(t);
  const cacheDir = path.join(dir, 'custom-cache');
  const { child, exited, info } = await serveEmulator(t, ['--cache', cacheDir], { ...process.env });
  t.is(info.environment.CVM_SKR_EMULATOR_CACHE, cacheDir);
  t.true((await readdir(cacheDir)).some((f) => f.startsWith('emulated-amd-')));
  child.kill('SIGINT');
  t.is(await exited, 0);
});

test('attest --emulator uses a running emulator named by its environment instead of starting its own service', async (t) => {
  const dir = await tempDir(t);
  const e = await startEmulator({ cache: false, rootKeyBits: 2048 });
  t.teardown(() => e.close());
  const caFile = path.join(dir, 'ca.pem');
  await writeFile(caFile, e.caPem);
  const before = e.attestation.counters.attestations;
  const { stdout } = await run(process.execPath, [...cli, 'attest', '--emulator', '--json'], {
    env: { ...process.env, ...e.environment(), CVM_SKR_CA_FILE: caFile, CVM_SKR_EMULATOR_CACHE: path.join(dir, 'c') },
  });
  const result = JSON.parse(stdout) as { endpoint: string; claims: { iss: string } };
  t.is(result.endpoint, e.attestationUrl);
  t.is(result.claims.iss, e.attestationUrl);
  t.is(e.attestation.counters.attestations, before + 1, 'the running service answered the attestation');
});

test('POST /emulator/vm-token refuses requests without the IDENTITY_HEADER secret and unknown knobs', async (t) => {
  const e = await startEmulator({ cache: false, rootKeyBits: 2048 });
  t.teardown(() => e.close());
  const url = `${e.attestationUrl}/emulator/vm-token`;
  const body = JSON.stringify({ kind: 'azure-vtpm' });
  t.is((await raw(url, e.caPem, { method: 'POST', body })).status, 401);
  t.is((await raw(url, e.caPem, { method: 'POST', body, headers: { 'x-identity-header': 'wrong' } })).status, 401);
  t.is((await raw(`${e.attestationUrl}/emulator/hardware`, e.caPem)).status, 401);
  const secret = e.environment().IDENTITY_HEADER!;
  const bad = await raw(url, e.caPem, {
    method: 'POST',
    body: JSON.stringify({ kind: 'azure-vtpm', knobs: { noSuchKnob: true } }),
    headers: { 'x-identity-header': secret },
  });
  t.is(bad.status, 400);
  t.regex(bad.body, /unknown knob/);
  t.is(e.attestation.counters.attestations, 0, 'refused requests attest nothing');
});

for (const kind of ['azure-vtpm', 'sev-guest'] as const) {
  test(`a ${kind} token from POST /emulator/vm-token releases a key over raw HTTPS, unwrapped with the returned transfer key`, async (t) => {
    const e = await startEmulator({ cache: false, rootKeyBits: 2048 });
    t.teardown(() => e.close());
    const policy = e.releasePolicy(kind === 'azure-vtpm' ? 'emulated-azure-vtpm' : 'emulated-sev-guest');
    const created = await e.keyClient().createKey('any-language', 'EC-HSM', {
      curve: 'P-256',
      exportable: true,
      releasePolicy: { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(policy))) },
    });
    const secret = e.environment().IDENTITY_HEADER!;
    const vm = await raw(`${e.attestationUrl}/emulator/vm-token`, e.caPem, {
      method: 'POST',
      body: JSON.stringify({ kind }),
      headers: { 'x-identity-header': secret },
    });
    t.is(vm.status, 200, vm.body);
    const answer = JSON.parse(vm.body) as {
      token: string;
      protocol: string;
      transferKey: { jwk: { kid: string; n: string }; privateKeyPem: string };
    };
    t.is(answer.protocol, kind === 'azure-vtpm' ? 'AzureGuest' : 'SevSnpVm');
    t.is(e.attestation.counters.attestations, 1);
    const { token: bearer } = await e.credential.getToken('https://vault.azure.net/.default');
    const released = await raw(`${e.vaultUrl}/keys/any-language/release?api-version=7.4`, e.caPem, {
      method: 'POST',
      body: JSON.stringify({ target: answer.token, enc: 'RSA_AES_KEY_WRAP_256' }),
      headers: { authorization: `Bearer ${bearer}` },
    });
    t.is(released.status, 200, released.body);
    const jws = (JSON.parse(released.body) as { value: string }).value;
    t.truthy(decodeProtectedHeader(jws).x5c);
    const payload = parseReleasePayload(Buffer.from(jws.split('.')[1]!, 'base64url'));
    const privateKey = createPrivateKey(answer.transferKey.privateKeyPem);
    const transferKey = new InMemoryTransferKey(privateKey, answer.transferKey.jwk.kid, createPublicKey(privateKey));
    t.is(transferKey.jwk.n, answer.transferKey.jwk.n);
    const key = await unwrapReleasedKey(payload.response.key.key, { transferKey, enc: 'RSA_AES_KEY_WRAP_256' });
    t.is(createPublicKey(key).export({ format: 'jwk' }).x, Buffer.from(created.key!.x!).toString('base64url'));
  });
}

test('a vm-token request whose knobs spoil the evidence is answered 422 and counted as a refused attestation', async (t) => {
  const e = await startEmulator({ cache: false, rootKeyBits: 2048 });
  t.teardown(() => e.close());
  const vm = await raw(`${e.attestationUrl}/emulator/vm-token`, e.caPem, {
    method: 'POST',
    body: JSON.stringify({ kind: 'sev-guest', knobs: { wrongSignature: true } }),
    headers: { 'x-identity-header': e.environment().IDENTITY_HEADER! },
  });
  t.is(vm.status, 422);
  t.regex(vm.body, /report-signature|signature/);
  t.notRegex(vm.body, /PRIVATE KEY/);
  t.is(e.attestation.counters.rejected, 1);
});

test('the emulator routes are not mounted when the attestation service listens on a non-loopback address', async (t) => {
  const { isLoopbackHost } = await import('../../src/emulator/maa/emulator-routes.js');
  t.true(isLoopbackHost('127.0.0.1'));
  t.true(isLoopbackHost('[::1]'));
  t.true(isLoopbackHost('::ffff:127.0.0.1'));
  t.false(isLoopbackHost('0.0.0.0'));
  t.false(isLoopbackHost('10.0.0.4'));
  t.false(isLoopbackHost('::'));
  t.false(isLoopbackHost('example.com'));
});
