import { createHash, createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import test from 'ava';
import { TPM_ALG, TPM_ST } from '../../src/tpm/constants.js';
import { TpmWriter } from '../../src/tpm/marshal.js';
import { parseAttest, writeAttest } from '../../src/tpm/structures.js';

const dir = new URL('../fixtures/azure-vtpm/milan/', import.meta.url);
const quoteJson = JSON.parse(readFileSync(new URL('tpm-quote.json', dir), 'utf8')) as {
  message: string;
  signature: string;
  pcrs: string[];
};
const hclReport = readFileSync(new URL('hcl-report.bin', dir));

/** Minimal reading of the HCL report for the test: runtime data at 0x4D4, its size in the IGVM request data. */
function runtimeData(report: Buffer): { keys: { kid: string; kty: string; n: string; e: string }[] } {
  const variableDataSize = report.readUInt32LE(0x4c0 + 16);
  return JSON.parse(report.subarray(0x4d4, 0x4d4 + variableDataSize).toString('utf8'));
}

test('golden quote: TPMS_ATTEST parses, extraData is "challenge", pcrDigest = sha256(24 PCRs)', (t) => {
  const message = Buffer.from(quoteJson.message, 'hex');
  const attest = parseAttest(message);
  t.is(attest.type, TPM_ST.ATTEST_QUOTE);
  t.is(Buffer.from(attest.extraData).toString('latin1'), 'challenge');
  if (!('quote' in attest)) return t.fail('not a quote');
  t.deepEqual(attest.quote.pcrSelect, [
    { hashAlg: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) },
  ]);
  t.is(quoteJson.pcrs.length, 24);
  const h = createHash('sha256');
  for (const p of quoteJson.pcrs) h.update(Buffer.from(p, 'hex'));
  t.deepEqual(Buffer.from(attest.quote.pcrDigest), h.digest());
  // The qualified signer is a SHA-256 name (nameAlg || digest).
  t.is(attest.qualifiedSigner.length, 34);
  // Re-marshalling gives back exactly the signed bytes.
  const w = new TpmWriter();
  writeAttest(w, attest);
  t.deepEqual(Buffer.from(w.finish()), message);
});

test('golden quote: signature verifies under HCLAkPub from the HCL report runtime data, and only on the exact bytes', (t) => {
  const rd = runtimeData(hclReport);
  const akJwk = rd.keys.find((k) => k.kid === 'HCLAkPub');
  if (!akJwk) return t.fail('no HCLAkPub in the runtime data');
  const ak = createPublicKey({ key: { kty: akJwk.kty, n: akJwk.n, e: akJwk.e }, format: 'jwk' });
  const message = Buffer.from(quoteJson.message, 'hex');
  const signature = Buffer.from(quoteJson.signature, 'hex');
  t.is(signature.length, 256);
  t.true(verify('sha256', message, ak, signature));
  const tampered = Buffer.from(message);
  tampered[tampered.length - 1]! ^= 1;
  t.false(verify('sha256', tampered, ak, signature));
  const ek = rd.keys.find((k) => k.kid === 'HCLEkPub');
  if (ek) {
    t.false(
      verify(
        'sha256',
        message,
        createPublicKey({ key: { kty: ek.kty, n: ek.n, e: ek.e }, format: 'jwk' }),
        signature,
      ),
    );
  }
});
