/**
 * SHA-1 quotes and signatures are refused, and the transfer key must be bound by PolicyPCR to exactly the PCRs
 * the quote covers, in the library's verifier (verifyAzureVtpmEvidence) and in the emulated attestation
 * service alike. The Microsoft client quotes the SHA-256 bank and creates the ephemeral key over the quoted
 * PCR values (Azure/confidential-computing-cvm-guest-attestation client-library/src/Attestation/
 * AttestationClient/lib/AttestationClientImpl.cpp, `GetTpmInfo`: `GetPCRQuote(pcrs, attestation_hash_alg)`,
 * `GetPCRValues(pcrs, attestation_hash_alg)` "from the SHA256 bank", `GetEphemeralKey(pcr_values)`).
 */
import test from 'ava';
import { EmulatedAzureVtpmPlatform } from '../../src/emulator/hardware/emulated-vtpm.js';
import type { EvidenceKnobs } from '../../src/emulator/hardware/knobs.js';
import { EvidenceVerificationError } from '../../src/errors.js';
import type { AzureVtpmEvidence } from '../../src/hal/types.js';
import { verifyAzureVtpmEvidence } from '../../src/hcl/verify.js';
import { httpsRequest } from '../../src/maa/http.js';
import { buildAzureGuestRequest } from '../../src/maa/requests.js';
import { hardware, maa } from '../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();
const os = { type: 'Linux', distro: 'Test', versionMajor: 1, versionMinor: 0, build: 'NotApplication' };

async function evidenceWith(knobs: EvidenceKnobs): Promise<AzureVtpmEvidence> {
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa, knobs });
  try {
    return await platform.collectEvidence();
  } finally {
    await platform.close();
  }
}

function verifyLocally(e: AzureVtpmEvidence) {
  return verifyAzureVtpmEvidence({
    hclReport: e.hclReport,
    certificates: e.vcekCertChain!,
    trustedRoots: [amd.trustedRoot],
    quote: e.quote,
    signature: e.quoteSignature,
    pcrs: e.pcrs,
    akPub: e.akPub,
    transferKey: {
      public: e.encKeyPub,
      certifyInfo: e.encKeyCertifyInfo,
      signature: e.encKeyCertifyInfoSignature,
    },
  });
}

async function postToEmulator(t: Parameters<typeof maa>[0], e: AzureVtpmEvidence) {
  const server = await maa(t, { amd, akCa });
  const res = await httpsRequest(new URL(`${server.url}/attest/AzureGuest?api-version=2020-10-01`), {
    method: 'POST',
    body: JSON.stringify(buildAzureGuestRequest(e, { os })),
    ca: server.caPem,
  });
  return {
    status: res.status,
    error: (JSON.parse(res.body.toString()) as { error?: { check?: string; message: string } }).error,
  };
}

test('sound evidence passes both, and the library returns the certified transfer key', async (t) => {
  const e = await evidenceWith({});
  const result = verifyLocally(e);
  t.truthy(result.transferKey);
  t.true(result.checks.some((c) => c.name === 'transfer-key-certify' && c.ok));
  t.is((await postToEmulator(t, e)).status, 200);
});

const cases: [string, EvidenceKnobs, string, EvidenceVerificationError['code'], RegExp][] = [
  [
    'a quote signed with SHA-1',
    { weakQuote: 'sha1-signature' },
    'quote-signature',
    'ERR_QUOTE_SIGNATURE',
    /uses sha1; SHA-256 or stronger is required/,
  ],
  [
    'a quote over the SHA-1 PCR bank',
    { weakQuote: 'sha1-bank' },
    'quote-pcr-digest',
    'ERR_QUOTE_PCR_DIGEST',
    /selects the sha1 PCR bank/,
  ],
  [
    'a transfer key with an empty authPolicy',
    { transferKeyPolicy: 'empty' },
    'transfer-key-certify',
    'ERR_TRANSFER_KEY_CERTIFY',
    /empty authPolicy/,
  ],
  [
    'a transfer key whose authPolicy is PolicyPCR over other PCRs than the quote covers',
    { transferKeyPolicy: 'other-pcrs' },
    'transfer-key-certify',
    'ERR_TRANSFER_KEY_CERTIFY',
    /authPolicy is not PolicyPCR over the quoted PCRs/,
  ],
];

for (const [what, knobs, check, code, message] of cases) {
  test(`${what} is refused by the library verifier and the emulated service (${check})`, async (t) => {
    const e = await evidenceWith(knobs);
    const error = t.throws(() => verifyLocally(e), { instanceOf: EvidenceVerificationError, code });
    t.regex(error!.message, message);
    t.is(error!.check, check);
    const answer = await postToEmulator(t, e);
    t.is(answer.status, 400);
    t.is(answer.error?.check, check);
    t.regex(answer.error?.message ?? '', message);
  });
}
