/**
 * Confidential containers: UVM endorsements in SevSnpVm requests and the container claims of the emulated MAA.
 *
 * Artifacts:
 * - test/fixtures/uvm/reference-info-base64: real UVM reference information, microsoft/confidential-sidecar-containers
 *   pkg/common/security-context-test/reference-info-base64 (commit fa8df58aa090);
 * - test/fixtures/maa-samples/sevsnpvm-aci-docs-sample.json: the sample ACI token of MicrosoftDocs/azure-docs
 *   articles/container-instances/confidential-containers-attestation-concepts.md (commit 22ee31b48162);
 * - azure-signed-katacc-uvm for AKS: microsoft/confidential-container-demos kafka/setup-key.sh (commit 17bbb79b4a60).
 * No artifact shows the real service's answer to a bad endorsement: the emulator then leaves the claims out.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import cbor from 'cbor';
import { EMULATED_MEASUREMENT } from '../../../src/emulator/hardware/amd.js';
import { EmulatedSevGuestPlatform } from '../../../src/emulator/hardware/emulated-sev-guest.js';
import { EmulatedUvmSigner } from '../../../src/emulator/hardware/uvm-signer.js';
import * as verifier from '../../../src/emulator/maa/uvm-endorsement.js';
import { verifyUvmReferenceInfo } from '../../../src/emulator/maa/uvm-endorsement.js';
import { attest } from '../../../src/maa/client.js';
import { httpsRequest, jsonAnswer } from '../../../src/maa/http.js';
import { buildSevSnpVmRequest } from '../../../src/maa/requests.js';
import { decodeJwt } from 'jose';
import { hardware, maa } from '../../helpers/emulated-hardware.js';

const REAL = new Uint8Array(
  Buffer.from(readFileSync(new URL('../../fixtures/uvm/reference-info-base64', import.meta.url), 'utf8'), 'base64'),
);
const REAL_ISSUER = 'did:x509:0:sha256:I__iuL25oXEVFdTP_aBLx_eT1RPHbCQ_ECBQfYZpt9s::eku:1.3.6.1.4.1.311.76.59.1.2';
const REAL_SIGNING_TIME = new Date('2023-04-20T23:48:38Z');
const ACI_SAMPLE = JSON.parse(
  readFileSync(new URL('../../fixtures/maa-samples/sevsnpvm-aci-docs-sample.json', import.meta.url), 'utf8'),
) as Record<string, unknown>;

const { amd, akCa } = await hardware();
const signer = await EmulatedUvmSigner.load({ cache: false });

function coseParts(bytes: Uint8Array): { header: Map<unknown, unknown>; payload: Record<string, unknown> } {
  const tagged = cbor.decodeFirstSync(Buffer.from(bytes), { preferMap: true }) as cbor.Tagged;
  const [protectedBytes, , payload] = tagged.value as Buffer[];
  return {
    header: cbor.decodeFirstSync(protectedBytes!, { preferMap: true }) as Map<unknown, unknown>,
    payload: JSON.parse(payload!.toString('utf8')) as Record<string, unknown>,
  };
}

/** Flips one bit inside the COSE signature (the last bytes of the document). */
function tamperSignature(bytes: Uint8Array): Uint8Array {
  const copy = new Uint8Array(bytes);
  copy[copy.length - 10]! ^= 0x01;
  return copy;
}

test('the verifier accepts the real UVM reference information of confidential-sidecar-containers at its signing time', (t) => {
  const verified = verifyUvmReferenceInfo(REAL, [REAL_ISSUER], REAL_SIGNING_TIME);
  t.is(verified.issuer, REAL_ISSUER);
  t.is(verified.feed, 'ContainerPlat-AMD-UVM');
  t.deepEqual(Object.keys(verified.payload).sort(), [
    'x-ms-sevsnpvm-guestsvn',
    'x-ms-sevsnpvm-launchmeasurement',
  ]);
  t.is(verified.payload['x-ms-sevsnpvm-guestsvn'], '100');
  t.is(verified.launchMeasurement.length, 96);
});

test('the verifier refuses the real document with one signature bit flipped, an untrusted issuer, or an expired chain', (t) => {
  t.throws(() => verifyUvmReferenceInfo(tamperSignature(REAL), [REAL_ISSUER], REAL_SIGNING_TIME), {
    message: /signature does not verify/,
  });
  t.throws(() => verifyUvmReferenceInfo(REAL, [signer.issuer], REAL_SIGNING_TIME), {
    message: /not a trusted UVM signer/,
  });
  // the ContainerPlat leaf expired in January 2024
  t.throws(() => verifyUvmReferenceInfo(REAL, [REAL_ISSUER], new Date('2025-01-01T00:00:00Z')), {
    message: /not valid now/,
  });
});

test('emulated reference information has the real document header labels, did:x509 issuer form and payload keys', (t) => {
  const real = coseParts(REAL);
  const emulated = coseParts(signer.sign());
  t.deepEqual([...emulated.header.keys()], [...real.header.keys()]);
  t.is(emulated.header.get(1), real.header.get(1)); // -38, PS384
  t.is(emulated.header.get(3), 'application/json');
  t.is(emulated.header.get('feed'), real.header.get('feed'));
  t.regex(String(emulated.header.get('iss')), /^did:x509:0:sha256:[A-Za-z0-9_-]{43}::eku:1\.3\.6\.1\.4\.1\.311\.76\.59\.1\.2$/);
  t.deepEqual(Object.keys(emulated.payload), Object.keys(real.payload));
  t.is(emulated.payload['x-ms-sevsnpvm-launchmeasurement'], EMULATED_MEASUREMENT.toString('hex'));
  t.true(emulated.header.get('signingtime') instanceof Date);
  t.true(real.header.get('signingtime') instanceof Date);
});

async function containerToken(
  t: ExecutionContext,
  uvmReferenceInfo?: Uint8Array | 'aci' | 'aks',
  knobs = {},
): Promise<Record<string, unknown>> {
  const server = await maa(t, { amd, akCa, cache: false });
  const platform = await EmulatedSevGuestPlatform.create({
    amd,
    cache: false,
    knobs,
    ...(uvmReferenceInfo === undefined ? {} : { uvmReferenceInfo }),
  });
  t.teardown(() => platform.close());
  const result = await attest(platform, { endpoint: server.url, ca: server.caPem });
  return result.claims as Record<string, unknown>;
}

test('a valid emulated ACI endorsement gives azure-compliant-uvm and x-ms-sevsnpvm-uvm-endorsement as in the ACI sample token', async (t) => {
  const claims = await containerToken(t, 'aci');
  t.is(claims['x-ms-compliance-status'], ACI_SAMPLE['x-ms-compliance-status']);
  t.is(claims['x-ms-compliance-status'], 'azure-compliant-uvm');
  const endorsement = claims['x-ms-sevsnpvm-uvm-endorsement'] as Record<string, unknown>;
  const sampleEndorsement = ACI_SAMPLE['x-ms-sevsnpvm-uvm-endorsement'] as Record<string, unknown>;
  t.deepEqual(Object.keys(endorsement).sort(), Object.keys(sampleEndorsement).sort());
  t.is(typeof endorsement['x-ms-sevsnpvm-guestsvn'], typeof sampleEndorsement['x-ms-sevsnpvm-guestsvn']);
  // as in the sample, the endorsed measurement is the report's
  t.is(endorsement['x-ms-sevsnpvm-launchmeasurement'], claims['x-ms-sevsnpvm-launchmeasurement']);
});

test('a valid emulated AKS (Kata) endorsement gives azure-signed-katacc-uvm', async (t) => {
  const claims = await containerToken(t, 'aks');
  t.is(claims['x-ms-compliance-status'], 'azure-signed-katacc-uvm');
  t.truthy(claims['x-ms-sevsnpvm-uvm-endorsement']);
});

test('a tampered endorsement signature gives no compliance claim and no endorsement claim', async (t) => {
  const claims = await containerToken(t, tamperSignature(signer.sign()));
  t.false('x-ms-compliance-status' in claims);
  t.false('x-ms-sevsnpvm-uvm-endorsement' in claims);
});

test('an endorsement from another signer gives no compliance claim', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-uvm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const foreign = await EmulatedUvmSigner.load({ cache: dir });
  t.not(foreign.issuer, signer.issuer);
  const claims = await containerToken(t, foreign.sign());
  t.false('x-ms-compliance-status' in claims);
  t.false('x-ms-sevsnpvm-uvm-endorsement' in claims);
});

test('the real Microsoft-signed document gives no compliance claim to an emulated guest (untrusted issuer, other measurement)', async (t) => {
  const claims = await containerToken(t, REAL);
  t.false('x-ms-compliance-status' in claims);
});

test('an endorsement of another launch measurement gives no compliance claim', async (t) => {
  const other = Buffer.alloc(48, 0x5a);
  const claims = await containerToken(t, signer.sign({ launchMeasurement: other }));
  t.false('x-ms-compliance-status' in claims);
  t.false('x-ms-sevsnpvm-uvm-endorsement' in claims);
});

test('the endorsement follows the report: a guest launched with another measurement and its endorsement is compliant', async (t) => {
  const other = Buffer.alloc(48, 0x5a);
  const claims = await containerToken(t, signer.sign({ launchMeasurement: other }), { measurement: other });
  t.is(claims['x-ms-compliance-status'], 'azure-compliant-uvm');
  t.is(claims['x-ms-sevsnpvm-launchmeasurement'], other.toString('hex'));
});

test('a valid endorsement of a debuggable guest gives no compliance claim', async (t) => {
  const server = await maa(t, { amd, akCa, cache: false, policy: { allowDebug: true } });
  const platform = await EmulatedSevGuestPlatform.create({ amd, cache: false, knobs: { debug: true }, uvmReferenceInfo: 'aci' });
  t.teardown(() => platform.close());
  const claims = (await attest(platform, { endpoint: server.url, ca: server.caPem })).claims as Record<string, unknown>;
  t.false('x-ms-compliance-status' in claims);
});

test('without endorsements a SevSnpVm token keeps azure-compliant-cvm and has no UVM claim', async (t) => {
  const claims = await containerToken(t);
  t.is(claims['x-ms-compliance-status'], 'azure-compliant-cvm');
  t.false('x-ms-sevsnpvm-uvm-endorsement' in claims);
});

test('a release policy on x-ms-compliance-status azure-compliant-uvm releases to the container and refuses a plain SNP guest (emulated vault)', async (t) => {
  const { emulator, exportableKey, releaseClient } = await import('../../helpers/e2e-emulator.js');
  const { ReleaseDeniedError } = await import('../../../src/errors.js');
  const e = await emulator(t);
  // The shape of the ACI key release policies (microsoft/confidential-sidecar-containers examples/skr/aci/importkeyconfig.json)
  const policy = {
    version: '1.0.0',
    anyOf: [
      {
        authority: e.attestationUrl,
        allOf: [
          { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
          { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
          { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false },
        ],
      },
    ],
  };
  await exportableKey(e, 'container-key', 'RSA-HSM', policy);
  const container = await e.platform('emulated-sev-guest', { uvmReferenceInfo: 'aci' });
  const released = await releaseClient(t, e, container).releaseKey(`${e.vaultUrl}/keys/container-key`);
  t.truthy(released);
  const vm = await e.platform('emulated-sev-guest');
  await t.throwsAsync(releaseClient(t, e, vm).releaseKey(`${e.vaultUrl}/keys/container-key`), { instanceOf: ReleaseDeniedError });
});

test('malformed Endorsements never fail the request: each is an unverified endorsement with its reason', (t) => {
  const { evaluateUvmEndorsements } = verifier;
  const measurement = EMULATED_MEASUREMENT;
  const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const cases: [unknown, RegExp][] = [
    ['***', /not base64url/],
    [b64('not json'), /not JSON/],
    [b64({ Uvm: [] }), /list of 1 to 4/],
    [b64({ Uvm: ['AAAA'] }), /CBOR item|COSE_Sign1/],
    [b64({ Uvm: [b64('plain text')] }), /not CBOR|COSE_Sign1/],
    [b64({ Uvm: [Buffer.from(cbor.encode(new cbor.Tagged(18, [1, 2, 3, 4]))).toString('base64url')] }), /byte string/],
    [b64({ Uvm: [Buffer.from(signer.sign()).toString('base64url').slice(0, 200)] }), /CBOR/],
  ];
  for (const [value, reason] of cases) {
    const outcome = evaluateUvmEndorsements(value, measurement, [signer.issuer], new Date());
    t.false(outcome?.ok, String(value).slice(0, 40));
    t.regex(outcome?.ok === false ? outcome.reason : '', reason);
  }
  t.is(evaluateUvmEndorsements(undefined, measurement, [signer.issuer], new Date()), undefined);
  const valid = b64({ Uvm: [Buffer.from(signer.sign()).toString('base64url')] });
  t.true(evaluateUvmEndorsements(valid, measurement, [signer.issuer], new Date())?.ok);
});

test('a JSON-number nonce, as the sidecar sends it (pkg/common/maa.go, uint64), comes back as its exact decimal digits, as in the ACI sample token', async (t) => {
  const server = await maa(t, { amd, akCa, cache: false });
  const platform = await EmulatedSevGuestPlatform.create({ amd, cache: false, uvmReferenceInfo: 'aci' });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence();
  // The sample's own nonce is above 2^53: JSON.parse alone would round it.
  const sampleNonce = ACI_SAMPLE.nonce as string;
  t.is(sampleNonce, '3413764049005270139');
  const body = JSON.stringify(buildSevSnpVmRequest(evidence)).replace(/}$/, `,"nonce":${sampleNonce}}`);
  const response = jsonAnswer(
    await httpsRequest(new URL(`${server.url}/attest/SevSnpVm?api-version=2022-08-01`), {
      method: 'POST',
      body,
      ca: server.caPem,
    }),
    'attestation',
  );
  const claims = decodeJwt(response.token as string);
  t.is(claims.nonce, sampleNonce);
  t.is(typeof claims.nonce, typeof ACI_SAMPLE.nonce);
});
