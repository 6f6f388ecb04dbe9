import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { decodeProtectedHeader } from 'jose';
import { EmulatedAkCa } from '../../../src/emulator/hardware/ak-ca.js';
import { EMULATED_MEASUREMENT } from '../../../src/emulator/hardware/amd.js';
import { EmulatedSevGuestPlatform } from '../../../src/emulator/hardware/emulated-sev-guest.js';
import { EmulatedAzureVtpmPlatform } from '../../../src/emulator/hardware/emulated-vtpm.js';
import type { EvidenceKnobs } from '../../../src/emulator/hardware/knobs.js';
import { AttestationRequestError } from '../../../src/errors.js';
import type { AttestationPlatform } from '../../../src/hal/types.js';
import { attest } from '../../../src/maa/client.js';
import { httpsRequest, jsonAnswer } from '../../../src/maa/http.js';
import { hardware, maa } from '../../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();

test('emulated azure vTPM -> emulated MAA AzureGuest -> encrypted, verified token with the real claim layout', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  t.teardown(() => platform.close());
  const nonce = Uint8Array.of(1, 2, 3, 4);
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem, nonce });
  const c = result.claims as Record<string, unknown>;
  t.is(result.protocol, 'AzureGuest');
  t.is(c.iss, server.url);
  t.is(c['x-ms-attestation-type'], 'azurevm');
  t.deepEqual(c['x-ms-azurevm-attested-pcrs'], [0, 1, 2, 3, 4, 5, 6, 7]);
  const tee = c['x-ms-isolation-tee'] as Record<string, unknown>;
  t.is(tee['x-ms-attestation-type'], 'sevsnpvm');
  t.is(tee['x-ms-compliance-status'], 'azure-compliant-cvm');
  t.is(tee['x-ms-sevsnpvm-is-debuggable'], false);
  t.is(tee['x-ms-sevsnpvm-launchmeasurement'], EMULATED_MEASUREMENT.toString('hex'));
  t.is(tee['x-ms-sevsnpvm-snpfw-svn'], amd.tcb.snp);
  const teeKeys = (tee['x-ms-runtime'] as { keys: { kid: string }[] }).keys;
  t.is(teeKeys[0]?.kid, 'HCLAkPub');
  const runtime = c['x-ms-runtime'] as {
    keys: Record<string, unknown>[];
    'client-payload': { nonce: string };
  };
  t.is(runtime.keys[0]?.kid, 'TpmEphemeralEncryptionKey');
  t.deepEqual(runtime.keys[0]?.key_ops, ['encrypt']);
  t.is(runtime.keys[0]?.n, result.transferKey.jwk.n);
  t.is(runtime['client-payload'].nonce, Buffer.from(nonce).toString('base64'));
  t.is(result.expiresAt.getTime(), (c.exp as number) * 1000);
  const header = decodeProtectedHeader(result.token);
  t.is(header.alg, 'RS256');
  t.is(header.jku, `${server.url}/certs`);
  t.is(typeof header.kid, 'string');
  t.is(server.counters.azureGuest, 1);
  t.is(server.counters.attestations, 1);
});

test('emulated sev-guest -> emulated MAA SevSnpVm -> verified token with top-level SNP claims', async (t) => {
  const server = await maa(t, { amd, akCa, tokenLifetimeSeconds: 600 });
  const platform = await EmulatedSevGuestPlatform.create({ amd });
  t.teardown(() => platform.close());
  const nonce = Uint8Array.of(9, 9);
  const result = await attest(platform, { endpoint: `${server.url}/`, ca: server.caPem, nonce });
  const c = result.claims as Record<string, unknown>;
  t.is(result.protocol, 'SevSnpVm');
  t.is(c['x-ms-attestation-type'], 'sevsnpvm');
  t.is(c['x-ms-compliance-status'], 'azure-compliant-cvm');
  t.is(c['x-ms-sevsnpvm-vmpl'], 0);
  t.is(c['x-ms-sevsnpvm-microcode-svn'], amd.tcb.microcode);
  t.is(c.nonce, Buffer.from(nonce).toString('base64url'));
  t.is((c.exp as number) - (c.iat as number), 600);
  const runtime = c['x-ms-runtime'] as { keys: Record<string, unknown>[]; nonce: string };
  t.is(runtime.keys[0]?.n, result.transferKey.jwk.n);
  t.is(runtime.nonce, Buffer.from(nonce).toString('base64url'));
  t.is(server.counters.sevSnpVm, 1);
});

// Every Microsoft client sends the chain (IsolationInfo::Validate refuses SEV-SNP evidence without vcek_cert_:
// Azure/confidential-computing-cvm-guest-attestation client-library/src/Attestation/AttestationClient/lib/
// IsolationInfo.cpp); the service is not known to look one up, so the emulated one refuses.
test('AzureGuest evidence without the VCEK chain is refused naming certificate-chain (IsolationInfo.cpp sends it always)', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa, includeVcekChain: false });
  const evidence = await platform.collectEvidence();
  t.is(evidence.vcekCertChain, undefined);
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.check, 'certificate-chain');
  t.is(error?.statusCode, 400);
  t.regex(error?.message ?? '', /Proof\.VcekCertChain/);
  t.is(server.counters.rejected, 1);
});

test('SevSnpVm evidence without the VCEK chain is refused naming certificate-chain', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedSevGuestPlatform.create({ amd, includeVcekChain: false });
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.check, 'certificate-chain');
});

test('user data written to the emulated vTPM shows up in the HCL runtime claims', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  const data = new Uint8Array(64).fill(0xab);
  await platform.writeUserData(data);
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  const tee = result.claims['x-ms-isolation-tee'] as { 'x-ms-runtime': Record<string, unknown> };
  t.is(tee['x-ms-runtime']['user-data'], Buffer.from(data).toString('hex'));
});

const policy = { measurements: [EMULATED_MEASUREMENT.toString('hex')] };
const cases: [string, EvidenceKnobs, string, string][] = [
  ['debug allowed', { debug: true }, 'debug', 'debug'],
  ['another measurement', { measurement: new Uint8Array(48).fill(1) }, 'measurement', 'measurement'],
  ['old TCB', { oldTcb: true }, 'minimum-tcb', 'minimum-tcb'],
  ['wrong signature', { wrongSignature: true }, 'report-signature', 'report-signature'],
  ['stale user data', { staleUserData: true }, 'hcl-binding', 'runtime-data-binding'],
  ['AK mismatch', { akMismatch: true }, 'ak-match', ''],
];

for (const [name, knobs, vtpmCheck, guestCheck] of cases) {
  test(`knob "${name}": 400 naming check ${vtpmCheck} (AzureGuest)${guestCheck ? ` and ${guestCheck} (SevSnpVm)` : ''}`, async (t) => {
    const server = await maa(t, { amd, akCa, policy });
    const platforms: AttestationPlatform[] = [await EmulatedAzureVtpmPlatform.create({ amd, akCa, knobs })];
    if (guestCheck) platforms.push(await EmulatedSevGuestPlatform.create({ amd, knobs }));
    for (const [i, platform] of platforms.entries()) {
      const check = i === 0 ? vtpmCheck : guestCheck;
      const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
        instanceOf: AttestationRequestError,
      });
      t.is(error?.statusCode, 400);
      t.is(error?.check, check);
      t.regex(error?.message ?? '', new RegExp(`check '${check}'`));
    }
    t.is(server.counters.rejected, platforms.length);
    t.is(server.counters.attestations, 0);
  });
}

test('allowDebug lets a debuggable guest through, but not as compliant', async (t) => {
  const server = await maa(t, { amd, akCa, policy: { allowDebug: true } });
  const platform = await EmulatedSevGuestPlatform.create({ amd, knobs: { debug: true } });
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(result.claims['x-ms-sevsnpvm-is-debuggable'], true);
  t.is(result.claims['x-ms-compliance-status'], undefined);
});

test('a service that does not trust the emulated ARK refuses emulated evidence (certificate-chain)', async (t) => {
  const other = await hardware('Genoa');
  const server = await maa(t, { amd: other.amd, akCa });
  const platform = await EmulatedSevGuestPlatform.create({ amd });
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.check, 'certificate-chain');
});

test('an AK certificate from an untrusted vTPM CA is refused (ak-certificate)', async (t) => {
  // A CA kept in another cache folder is a different CA than the in-memory one the service trusts.
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-akca-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const foreign = await EmulatedAkCa.load({ cache: dir });
  t.not(foreign.certPem, akCa.certPem);
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa: foreign });
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.check, 'ak-certificate');
});

test('unsupported api-version and malformed bodies are 400s with the service error shape', async (t) => {
  const server = await maa(t, { amd, akCa });
  const post = async (path: string, body: string) =>
    httpsRequest(new URL(`${server.url}${path}`), { method: 'POST', body, ca: server.caPem });
  const badVersion = await post('/attest/SevSnpVm?api-version=1999-01-01', '{}');
  t.is(badVersion.status, 400);
  t.regex(JSON.parse(badVersion.body.toString()).error.message, /api-version 1999-01-01/);
  const notJson = await post('/attest/AzureGuest?api-version=2020-10-01', 'nope');
  t.is(notJson.status, 400);
  const empty = await post('/attest/SevSnpVm?api-version=2022-08-01', '{}');
  t.is(empty.status, 400);
  t.is(JSON.parse(empty.body.toString()).error.check, 'request');
  const jwks = jsonAnswer(
    await httpsRequest(new URL(`${server.url}/certs`), { method: 'GET', ca: server.caPem }),
    'certs',
  );
  const key = (jwks.keys as Record<string, unknown>[])[0]!;
  t.is(key.kty, 'RSA');
  t.true(Array.isArray(key.x5c) && (key.x5c as unknown[]).length === 2);
  const meta = jsonAnswer(
    await httpsRequest(new URL(`${server.url}/.well-known/openid-configuration`), {
      method: 'GET',
      ca: server.caPem,
    }),
    'meta',
  );
  t.is(meta.issuer, server.url);
  t.is(meta.jwks_uri, `${server.url}/certs`);
});
