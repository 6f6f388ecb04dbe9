/**
 * The AzureGuest request against what Microsoft's C++ guest attestation client builds, field by field
 * (Azure/confidential-computing-cvm-guest-attestation, client-library/src/Attestation/AttestationClient/lib/):
 * - AttestationClientImpl.cpp (commit 012f7356a5d3) `CreatePayload`: `{"AttestationInfo": binary_to_base64url(JSON)}`;
 *   `binary_to_base64url` adds no padding (AttestationHelper, "We do not need to add padding characters");
 *   `GetOSInfo`: Linux distro = os-release NAME, version = VERSION_ID major.minor, build = "NotApplication".
 * - AttestationParameters.cpp / .h (commit 6878a832e5f4): AttestationProtocolVersion "2.0"; OSType, OSDistro and
 *   OSBuild are `binary_to_base64` (standard, padded) of the strings; OSVersionMajor/Minor are numbers; TcgLogs is
 *   base64; ClientPayload is an object whose values are base64 of the caller's values.
 * - TpmInfo.cpp (commit b1979a80cbbc): AikCert, AikPub, PcrQuote, PcrSignature, EncKeyPub, EncKeyCertifyInfo,
 *   EncKeyCertifyInfoSignature in base64; PcrSet = [indices]; PCRs = [{Index, Digest (base64)}].
 * - IsolationInfo.cpp (commit 7e06df77c8af) `CreateSevSnpEvidence`: Type "SevSnp"; Evidence.Proof = base64(JSON
 *   {SnpReport: binary_to_base64url(report), VcekCertChain}); Evidence.RunTimeData = base64(runtime data).
 * - ImdsOperations.cpp (commit 012f7356a5d3) `GetVCekCert`: VcekCertChain = base64(THIM vcekCert + certificateChain).
 * - AttestationLibConst.h (commit 6878a832e5f4): the field names.
 */
import test from 'ava';
import { EmulatedAzureVtpmPlatform } from '../../src/emulator/hardware/emulated-vtpm.js';
import type { AzureVtpmEvidence } from '../../src/hal/types.js';
import { buildAzureGuestRequest } from '../../src/maa/requests.js';
import { hardware } from '../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();

/** Bytes whose standard base64 has `+`, `/` and padding, so the two alphabets and padding are told apart. */
const tricky = (tag: number) => Uint8Array.of(0xfb, 0xff, tag);
const STD = /^[A-Za-z0-9+/]*={0,2}$/;
const URL_NO_PAD = /^[A-Za-z0-9_-]*$/;
const std = (s: unknown) => {
  if (typeof s !== 'string' || !STD.test(s) || s.length % 4 !== 0) throw new Error(`${String(s)} is not padded base64`);
  return Buffer.from(s, 'base64');
};

async function request() {
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  let evidence: AzureVtpmEvidence;
  try {
    evidence = await platform.collectEvidence();
  } finally {
    await platform.close();
  }
  const e: AzureVtpmEvidence = {
    ...evidence,
    akCert: tricky(1),
    akPub: tricky(2),
    quote: tricky(3),
    quoteSignature: tricky(4),
    encKeyPub: tricky(5),
    encKeyCertifyInfo: tricky(6),
    encKeyCertifyInfoSignature: tricky(7),
    tcgLog: tricky(8),
    pcrs: [
      { index: 0, digest: new Uint8Array(32).fill(0xfb) },
      { index: 7, digest: new Uint8Array(32).fill(0xff) },
    ],
  };
  const body = buildAzureGuestRequest(e, {
    nonce: Uint8Array.of(0xfb, 0xff),
    os: { type: 'Linux', distro: 'Ubuntu', versionMajor: 22, versionMinor: 4, build: 'NotApplication' },
  });
  return { evidence: e, body };
}

test('the body is {AttestationInfo: base64url without padding of the JSON} (AttestationClientImpl.cpp CreatePayload)', async (t) => {
  const { body } = await request();
  t.deepEqual(Object.keys(body), ['AttestationInfo']);
  t.regex(body.AttestationInfo, URL_NO_PAD);
  t.notThrows(() => JSON.parse(Buffer.from(body.AttestationInfo, 'base64url').toString('utf8')));
});

test('AttestationInfo has exactly the C++ client fields, with its encodings (AttestationParameters.cpp)', async (t) => {
  const { body } = await request();
  const info = JSON.parse(Buffer.from(body.AttestationInfo, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  t.deepEqual(Object.keys(info).sort(), [
    'AttestationProtocolVersion',
    'ClientPayload',
    'IsolationInfo',
    'OSBuild',
    'OSDistro',
    'OSType',
    'OSVersionMajor',
    'OSVersionMinor',
    'TcgLogs',
    'TpmInfo',
  ]);
  t.is(info.AttestationProtocolVersion, '2.0');
  t.is(std(info.OSType).toString(), 'Linux');
  t.is(std(info.OSDistro).toString(), 'Ubuntu');
  t.is(std(info.OSBuild).toString(), 'NotApplication');
  t.is(info.OSVersionMajor, 22);
  t.is(info.OSVersionMinor, 4);
  t.deepEqual(std(info.TcgLogs), Buffer.from(tricky(8)));
  // ClientPayload: {key: base64(value)}; the token echoes it as x-ms-runtime.client-payload.
  t.deepEqual(info.ClientPayload, { nonce: '+/8=' });
});

test('TpmInfo: the C++ client names, standard base64, PcrSet and PCRs [{Index, Digest}] (TpmInfo.cpp)', async (t) => {
  const { body } = await request();
  const info = JSON.parse(Buffer.from(body.AttestationInfo, 'base64url').toString('utf8')) as {
    TpmInfo: Record<string, unknown>;
  };
  const tpm = info.TpmInfo;
  t.deepEqual(Object.keys(tpm).sort(), [
    'AikCert',
    'AikPub',
    'EncKeyCertifyInfo',
    'EncKeyCertifyInfoSignature',
    'EncKeyPub',
    'PCRs',
    'PcrQuote',
    'PcrSet',
    'PcrSignature',
  ]);
  const order = [
    'AikCert',
    'AikPub',
    'PcrQuote',
    'PcrSignature',
    'EncKeyPub',
    'EncKeyCertifyInfo',
    'EncKeyCertifyInfoSignature',
  ];
  order.forEach((name, i) => t.deepEqual(std(tpm[name]), Buffer.from(tricky(i + 1)), name));
  t.deepEqual(tpm.PcrSet, [0, 7]);
  t.deepEqual(tpm.PCRs, [
    { Index: 0, Digest: Buffer.alloc(32, 0xfb).toString('base64') },
    { Index: 7, Digest: Buffer.alloc(32, 0xff).toString('base64') },
  ]);
});

test('IsolationInfo: SevSnp, Proof = base64(JSON{SnpReport base64url, VcekCertChain base64(PEM)}), RunTimeData base64 (IsolationInfo.cpp)', async (t) => {
  const { body, evidence } = await request();
  const info = JSON.parse(Buffer.from(body.AttestationInfo, 'base64url').toString('utf8')) as {
    IsolationInfo: { Type: string; Evidence: Record<string, unknown> };
  };
  const iso = info.IsolationInfo;
  t.deepEqual(Object.keys(iso).sort(), ['Evidence', 'Type']);
  t.is(iso.Type, 'SevSnp');
  t.deepEqual(Object.keys(iso.Evidence).sort(), ['Proof', 'RunTimeData']);
  const proof = JSON.parse(std(iso.Evidence.Proof).toString('utf8')) as Record<string, string>;
  t.deepEqual(Object.keys(proof).sort(), ['SnpReport', 'VcekCertChain']);
  t.regex(proof.SnpReport!, URL_NO_PAD);
  t.deepEqual(Buffer.from(proof.SnpReport!, 'base64url'), Buffer.from(evidence.hclReport.subarray(0x20, 0x20 + 1184)));
  // THIM's vcekCert + certificateChain, PEM text, standard base64 (ImdsOperations.cpp GetVCekCert).
  const chain = std(proof.VcekCertChain).toString('latin1');
  t.is(chain, evidence.vcekCertChain ?? 'no chain in the evidence');
  t.true(chain.startsWith('-----BEGIN CERTIFICATE-----'));
  const size = Buffer.from(evidence.hclReport).readUInt32LE(0x4c0 + 16);
  t.deepEqual(
    std(iso.Evidence.RunTimeData),
    Buffer.from(evidence.hclReport.subarray(0x4d4, 0x4d4 + size)),
  );
});
