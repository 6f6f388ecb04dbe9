import { createHash } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { EvidenceVerificationError, MalformedDataError } from '../../src/errors.js';
import { checkHclBinding } from '../../src/hcl/binding.js';
import { isHclReport, parseHclReport } from '../../src/hcl/report.js';
import { verifyAzureVtpmEvidence } from '../../src/hcl/verify.js';
import { TpmWriter } from '../../src/tpm/marshal.js';
import { rsaTemplate, writeTpm2bPublic } from '../../src/tpm/structures.js';
import { azureChain, fixtureText, flipBit, hclBlob, NOW } from '../snp/_fixtures.js';

const quoteJson = (): { message: string; signature: string; pcrs: string[] } =>
  JSON.parse(fixtureText('azure-vtpm/milan/tpm-quote.json'));

const evidence = () => {
  const q = quoteJson();
  return {
    hclReport: hclBlob(),
    certificates: azureChain(),
    quote: q.message,
    signature: q.signature,
    pcrs: q.pcrs,
    nonce: Buffer.from('challenge'),
    now: NOW,
  };
};

/** Replaces one ASCII string inside the runtime data, keeping its length. */
function editRuntime(blob: Buffer, from: string, to: string): Buffer {
  const out = Buffer.from(blob);
  const at = out.indexOf(from, 0x4d4, 'latin1');
  if (at < 0 || from.length !== to.length) throw new Error('test edit not found');
  out.write(to, at, 'latin1');
  return out;
}

test('parses the Azure HCL report: header, SNP report, runtime data with keys', (t) => {
  const hcl = parseHclReport(hclBlob());
  t.true(isHclReport(hclBlob()));
  t.is(hcl.version, 1);
  t.is(hcl.requestType, 2);
  t.is(hcl.reportType, 'snp');
  t.is(hcl.hashType, 'sha256');
  t.is(hcl.runtimeDataBytes.length, 1110);
  t.is(hcl.reportSize, 0x4d4 + 1110);
  t.is(hcl.snpReport?.version, 2);
  t.is(hcl.runtimeData.keys.length, 2);
  t.is(hcl.runtimeData.akPub?.asymmetricKeyType, 'rsa');
  t.is(hcl.runtimeData.akPub?.asymmetricKeyDetails?.modulusLength, 2048);
  t.is(hcl.runtimeData.ekPub?.asymmetricKeyType, 'rsa');
  t.deepEqual(hcl.runtimeData.keys[0]?.keyOps, ['sign']);
  t.is(hcl.runtimeData.vmConfiguration?.vmUniqueId, '911B0EF8-9DBA-48B0-B275-4E4DF2D39252');
  t.true(hcl.runtimeData.vmConfiguration?.secureBoot);
  t.deepEqual(hcl.runtimeData.userData, new Uint8Array(64));
  t.is(checkHclBinding(hcl), 'report_data = sha256(runtime data) || zeros');
});

test('Azure HCL binding and quote verify through the public API', (t) => {
  const result = verifyAzureVtpmEvidence(evidence());
  t.true(result.ok);
  t.deepEqual(
    result.checks.map((c) => c.name),
    [
      'hardware-report',
      'certificate-chain',
      'signing-key',
      'vcek-extensions',
      'certificate-validity',
      'report-signature',
      'debug',
      'hcl-binding',
      'ak-public-key',
      'quote-signature',
      'quote-nonce',
      'quote-pcr-digest',
    ],
  );
  t.true(result.checks.every((c) => c.ok));
  t.is(result.quote.extraData.toString(), Buffer.from('challenge').toString());
  // PCRs as { index, digest } work the same.
  const pcrs = quoteJson().pcrs.map((digest, index) => ({ index, digest: Buffer.from(digest, 'hex') }));
  t.true(verifyAzureVtpmEvidence({ ...evidence(), pcrs }).ok);
});

test('an HCL report whose runtime data was edited: ERR_HCL_BINDING', (t) => {
  const edited = editRuntime(hclBlob(), '911B0EF8', '911B0EF9');
  const error = t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), hclReport: edited }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_HCL_BINDING',
  });
  t.is(error?.code, 'ERR_HCL_BINDING');
  t.is(error?.check, 'hcl-binding');
  // Swapping the AK in the runtime data is caught by the binding before the quote is checked.
  const hcl = parseHclReport(editRuntime(hclBlob(), '"AQAB"', '"AQAC"'));
  t.throws(() => checkHclBinding(hcl), { code: 'ERR_HCL_BINDING' });
});

test('a quote with the wrong nonce: ERR_QUOTE_NONCE', (t) => {
  const error = t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), nonce: Buffer.from('challengf') }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_QUOTE_NONCE',
  });
  t.is(error?.code, 'ERR_QUOTE_NONCE');
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), nonce: undefined }), { code: 'ERR_QUOTE_NONCE' });
});

test('a quote or signature that was changed: ERR_QUOTE_SIGNATURE', (t) => {
  const q = quoteJson();
  const quote = flipBit(Buffer.from(q.message, 'hex'), 40);
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), quote }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_QUOTE_SIGNATURE',
  });
  const signature = flipBit(Buffer.from(q.signature, 'hex'), 100);
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), signature }), { code: 'ERR_QUOTE_SIGNATURE' });
  // As a TPMT_SIGNATURE (RSASSA, SHA-256) it verifies too.
  const raw = Buffer.from(q.signature, 'hex');
  const tpmt = Buffer.concat([
    Buffer.from([0x00, 0x14, 0x00, 0x0b, raw.length >> 8, raw.length & 0xff]),
    raw,
  ]);
  t.true(verifyAzureVtpmEvidence({ ...evidence(), signature: tpmt }).ok);
});

test('PCR values that do not match the quote: ERR_QUOTE_PCR_DIGEST', (t) => {
  const pcrs = [...quoteJson().pcrs];
  pcrs[7] = createHash('sha256').update('other').digest('hex');
  const error = t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), pcrs }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_QUOTE_PCR_DIGEST',
  });
  t.is(error?.code, 'ERR_QUOTE_PCR_DIGEST');
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), pcrs: quoteJson().pcrs.slice(0, 23) }), {
    code: 'ERR_QUOTE_PCR_DIGEST',
  });
  const extra = [
    ...quoteJson().pcrs.map((digest, index) => ({ index, digest })),
    { index: 24, digest: '00'.repeat(32) },
  ];
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), pcrs: extra }), { code: 'ERR_QUOTE_PCR_DIGEST' });
});

test('the embedded SNP report is verified as strictly as a raw one', (t) => {
  const blob = flipBit(hclBlob(), 0x20 + 0x90);
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), hclReport: blob }), { code: 'ERR_SNP_SIGNATURE' });
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), now: new Date('2031-01-01T00:00:00Z') }), {
    code: 'ERR_SNP_CERTIFICATE_VALIDITY',
  });
});

test('TDX HCL reports parse, and verification says TDX is not supported', (t) => {
  const blob = Buffer.from(hclBlob());
  blob.writeUInt32LE(4, 0x4c0 + 8);
  blob.fill(0xaa, 0x20, 0x20 + 1184);
  const hcl = parseHclReport(blob);
  t.is(hcl.reportType, 'tdx');
  t.is(hcl.snpReport, undefined);
  t.is(hcl.reportData?.length, 64);
  const error = t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), hclReport: blob }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_HCL_UNSUPPORTED_REPORT',
  });
  t.regex(error?.message ?? '', /TDX quote verification is not supported/);
  const v2 = Buffer.from(hclBlob());
  v2.writeUInt32LE(2, 4);
  t.is(parseHclReport(v2).version, 2);
});

test('malformed HCL reports give typed errors', (t) => {
  const bad = (bytes: Uint8Array, message: RegExp): void => {
    t.throws(() => parseHclReport(bytes), {
      instanceOf: MalformedDataError,
      code: 'ERR_HCL_REPORT_MALFORMED',
      message,
    });
  };
  bad(hclBlob().subarray(0, 100), /shorter/);
  bad(flipBit(hclBlob(), 0), /HCLA/);
  const v3 = Buffer.from(hclBlob());
  v3.writeUInt32LE(3, 4);
  bad(v3, /version 3/);
  const long = Buffer.from(hclBlob());
  long.writeUInt32LE(5000, 0x4d0);
  bad(long, /past the end/);
  const hash = Buffer.from(hclBlob());
  hash.writeUInt32LE(9, 0x4cc);
  bad(hash, /hash type 9/);
  bad(editRuntime(hclBlob(), '{"keys"', '["keys"'), /JSON/);
  bad(editRuntime(hclBlob(), '"user-data":"0', '"user-data":"x'), /user-data/);
  // A report size that does not cover the runtime data.
  const size = Buffer.from(hclBlob());
  size.writeUInt32LE(0x4d4, 8);
  bad(size, /report size/);
});

test('random and mutated HCL reports give only typed errors', (t) => {
  const typed = (bytes: Uint8Array): boolean => {
    try {
      parseHclReport(bytes);
      return true;
    } catch (error) {
      return error instanceof MalformedDataError;
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), typed), { numRuns: 300 });
  const seed = hclBlob();
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 6,
      }),
      fc.option(fc.nat(seed.length), { nil: undefined }),
      (edits, cut) => {
        const bytes = Buffer.from(seed);
        for (const [at, value] of edits) bytes[at] = value;
        return typed(cut === undefined ? bytes : bytes.subarray(0, cut));
      },
    ),
    { numRuns: 1000 },
  );
  // Mutations aimed at the header and IGVM fields, where the bounds checks live.
  fc.assert(
    fc.property(fc.constantFrom(4, 8, 0x4c0, 0x4c8, 0x4cc, 0x4d0), fc.nat(0xffffffff), (at, value) => {
      const bytes = Buffer.from(seed);
      bytes.writeUInt32LE(value, at);
      return typed(bytes);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

/** TPM2B_PUBLIC of an RSA key with the given modulus, like the AK at 0x81000003. */
function akPublicArea(modulusB64url: string): Uint8Array {
  const w = new TpmWriter();
  writeTpm2bPublic(w, {
    ...rsaTemplate({ objectAttributes: 0x00050072 }),
    unique: Buffer.from(modulusB64url, 'base64url'),
  });
  return w.finish();
}

test('the TPM AK, when given, must be HCLAkPub', (t) => {
  const hcl = parseHclReport(hclBlob());
  const ak = hcl.runtimeData.keys.find((k) => k.kid === 'HCLAkPub');
  const ek = hcl.runtimeData.keys.find((k) => k.kid === 'HCLEkPub');
  const akN = ak?.jwk.n;
  const ekN = ek?.jwk.n;
  if (!akN || !ekN) return t.fail();
  const ok = verifyAzureVtpmEvidence({ ...evidence(), akPub: akPublicArea(akN) });
  t.regex(ok.checks.find((c) => c.name === 'ak-public-key')?.detail ?? '', /equal to the TPM AK/);
  const error = t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), akPub: akPublicArea(ekN) }), {
    code: 'ERR_HCL_RUNTIME_DATA',
  });
  t.is(error?.message, 'the TPM AK is not the HCLAkPub of the runtime data');
  t.throws(() => verifyAzureVtpmEvidence({ ...evidence(), akPub: new Uint8Array(3) }), {
    code: 'ERR_HCL_RUNTIME_DATA',
  });
});
