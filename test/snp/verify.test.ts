import { createHash } from 'node:crypto';
import test from 'ava';
import { EvidenceVerificationError, MalformedDataError, SnpCertificateError } from '../../src/errors.js';
import { buildCertTable } from '../../src/snp/cert-table.js';
import { parsePemCertificates } from '../../src/snp/certificate.js';
import { loadSnpCertificates } from '../../src/snp/certificates.js';
import { checkSnpReport, verifySnpReport } from '../../src/snp/verify.js';
import {
  aciReport,
  aciThim,
  azureChain,
  azureSnpReport,
  debugReport,
  debugVcek,
  fixture,
  fixtureText,
  flipBit,
  NOW,
} from './_fixtures.js';

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

test('ACI Milan report verifies with its THIM answer, every check named and passed', (t) => {
  const result = verifySnpReport(aciReport(), { certificates: aciThim(), now: NOW });
  t.true(result.ok);
  t.is(result.product, 'Milan');
  t.is(result.signer, 'vcek');
  t.deepEqual(
    result.checks.map((c) => [c.name, c.ok]),
    [
      ['certificate-chain', true],
      ['signing-key', true],
      ['vcek-extensions', true],
      ['certificate-validity', true],
      ['report-signature', true],
      ['debug', true],
    ],
  );
  t.regex(result.checks[0]?.detail ?? '', /ARK-Milan \(embedded Milan root\)/);
  t.is(result.chain.length, 3);
});

test('ACI report_data and host_data bindings verify through the public API', (t) => {
  const runtime = fixture('snp/aci-milan/runtime-data.json');
  const policy = Buffer.from(fixtureText('snp/aci-milan/security-policy.b64').trim(), 'base64');
  const result = verifySnpReport(aciReport(), {
    certificates: JSON.parse(aciThim()),
    now: NOW,
    reportData: sha256(runtime),
    hostData: sha256(policy).toString('hex'),
    vmpl: 0,
    minimumTcb: { bootloader: 3, snp: 8, microcode: 0x73 },
  });
  t.deepEqual(
    result.checks.slice(6).map((c) => [c.name, c.ok]),
    [
      ['vmpl', true],
      ['host-data', true],
      ['report-data', true],
      ['minimum-tcb', true],
    ],
  );
  const wrong = Buffer.from(runtime);
  wrong[0] = 0x20;
  t.throws(
    () => verifySnpReport(aciReport(), { certificates: aciThim(), now: NOW, reportData: sha256(wrong) }),
    {
      code: 'ERR_SNP_REPORT_DATA',
    },
  );
  t.throws(
    () => verifySnpReport(aciReport(), { certificates: aciThim(), now: NOW, hostData: sha256(runtime) }),
    {
      code: 'ERR_SNP_HOST_DATA',
    },
  );
});

test('Azure vTPM SNP report verifies with its PEM chain and as a certificate table', (t) => {
  t.true(verifySnpReport(azureSnpReport(), { certificates: azureChain(), now: NOW }).ok);
  const [vcek, ask, ark] = parsePemCertificates(azureChain());
  if (!vcek || !ask || !ark) return t.fail();
  const table = buildCertTable([
    { kind: 'ark', der: ark.der },
    { kind: 'ask', der: ask.der },
    { kind: 'vcek', der: vcek.der },
  ]);
  t.true(verifySnpReport(azureSnpReport(), { certificates: table, now: NOW }).ok);
  // The VCEK alone is enough: ASK and ARK are embedded.
  t.true(verifySnpReport(azureSnpReport(), { certificates: vcek.der, now: NOW }).ok);
});

test('milan-debug is rejected by default and accepted with allowDebug', (t) => {
  const error = t.throws(() => verifySnpReport(debugReport(), { certificates: debugVcek(), now: NOW }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_SNP_DEBUG',
  });
  t.is(error?.code, 'ERR_SNP_DEBUG');
  t.is(error?.check, 'debug');
  t.deepEqual(
    error?.checks.map((c) => c.ok),
    [true, true, true, true, true, false],
  );
  const ok = verifySnpReport(debugReport(), { certificates: debugVcek(), now: NOW, allowDebug: true });
  t.true(ok.ok);
  t.true(ok.report.policy.debug);
});

const expectCode = (
  t: import('ava').ExecutionContext,
  fn: () => unknown,
  type: new (...args: never[]) => Error,
  code: string,
  check?: string,
): void => {
  const error = t.throws(fn, { instanceOf: type });
  t.is((error as unknown as { code: string }).code, code);
  if (check !== undefined) t.is((error as unknown as EvidenceVerificationError).check, check);
};

test('a flipped bit in the signed region, in R, in S: ERR_SNP_SIGNATURE', (t) => {
  const opts = { certificates: aciThim(), now: NOW };
  for (const offset of [0x90, 0x50, 0x2a0, 0x2a0 + 47, 0x2e8, 0x2e8 + 20]) {
    expectCode(
      t,
      () => verifySnpReport(flipBit(aciReport(), offset), opts),
      EvidenceVerificationError,
      'ERR_SNP_SIGNATURE',
      'report-signature',
    );
  }
});

test('signature_algo other than 1 is refused', (t) => {
  const bad = aciReport();
  bad[0x34] = 2;
  expectCode(
    t,
    () => verifySnpReport(bad, { certificates: aciThim(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_SIGNATURE',
  );
});

test('a VCEK of another chip: ERR_SNP_CHIP_ID_MISMATCH', (t) => {
  // The Azure VCEK has the same TCB as the ACI report but another hwID.
  expectCode(
    t,
    () => verifySnpReport(aciReport(), { certificates: azureChain(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_CHIP_ID_MISMATCH',
    'vcek-extensions',
  );
});

test('a TCB component off by one: ERR_SNP_TCB_MISMATCH', (t) => {
  const report = aciReport();
  report[0x186] = 9; // reported_tcb snp SPL 8 -> 9
  expectCode(
    t,
    () => verifySnpReport(report, { certificates: aciThim(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_TCB_MISMATCH',
    'vcek-extensions',
  );
  const ucode = aciReport();
  ucode[0x187] = 0x72;
  expectCode(
    t,
    () => verifySnpReport(ucode, { certificates: aciThim(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_TCB_MISMATCH',
  );
});

test('a certificate outside its validity at now: ERR_SNP_CERTIFICATE_VALIDITY', (t) => {
  for (const now of [new Date('2020-01-01T00:00:00Z'), new Date('2060-01-01T00:00:00Z')]) {
    expectCode(
      t,
      () => verifySnpReport(aciReport(), { certificates: aciThim(), now }),
      EvidenceVerificationError,
      'ERR_SNP_CERTIFICATE_VALIDITY',
      'certificate-validity',
    );
  }
});

test('a VLEK report checked against the VCEK chain: ERR_SNP_SIGNER_MISMATCH', (t) => {
  const vlek = aciReport();
  vlek[0x48] = 1 << 2;
  expectCode(
    t,
    () => verifySnpReport(vlek, { certificates: aciThim(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_SIGNER_MISMATCH',
    'signing-key',
  );
  const unsigned = aciReport();
  unsigned[0x48] = 7 << 2;
  expectCode(
    t,
    () => verifySnpReport(unsigned, { certificates: aciThim(), now: NOW }),
    EvidenceVerificationError,
    'ERR_SNP_SIGNER_MISMATCH',
  );
});

test('a truncated report: ERR_SNP_REPORT_MALFORMED', (t) => {
  expectCode(
    t,
    () => verifySnpReport(aciReport().subarray(0, 1000), { certificates: aciThim(), now: NOW }),
    MalformedDataError,
    'ERR_SNP_REPORT_MALFORMED',
  );
  const outcome = checkSnpReport(aciReport().subarray(0, 1000), { certificates: aciThim(), now: NOW });
  t.false(outcome.ok);
  t.is(outcome.error?.code, 'ERR_SNP_REPORT_MALFORMED');
  t.deepEqual(
    outcome.checks.map((c) => c.name),
    ['parse'],
  );
});

test('a product the caller does not expect: ERR_SNP_PRODUCT_MISMATCH', (t) => {
  expectCode(
    t,
    () => verifySnpReport(aciReport(), { certificates: aciThim(), now: NOW, product: 'Genoa' }),
    EvidenceVerificationError,
    'ERR_SNP_PRODUCT_MISMATCH',
  );
});

test('policy options fail with their own codes', (t) => {
  const base = { certificates: aciThim(), now: NOW };
  const cases: [Record<string, unknown>, EvidenceVerificationError['code']][] = [
    [{ vmpl: 1 }, 'ERR_SNP_VMPL'],
    [{ measurement: new Uint8Array(48) }, 'ERR_SNP_MEASUREMENT'],
    [{ hostData: new Uint8Array(32) }, 'ERR_SNP_HOST_DATA'],
    [{ reportData: new Uint8Array(64) }, 'ERR_SNP_REPORT_DATA'],
    [{ minimumTcb: { snp: 9 } }, 'ERR_SNP_TCB_TOO_LOW'],
    [{ minimumTcb: 0x7408000000000003n }, 'ERR_SNP_TCB_TOO_LOW'],
    [{ idKeyDigest: new Uint8Array(48).fill(1) }, 'ERR_SNP_ID_KEY_DIGEST'],
    [{ minimumGuestSvn: 3 }, 'ERR_SNP_GUEST_SVN'],
    [{ familyId: new Uint8Array(16).fill(1) }, 'ERR_SNP_FAMILY_ID'],
    [{ imageId: 'ff'.repeat(16) }, 'ERR_SNP_IMAGE_ID'],
    [{ minimumLaunchTcb: { microcode: 0x74 } }, 'ERR_SNP_TCB_TOO_LOW'],
  ];
  for (const [extra, code] of cases) {
    const error = t.throws(() => verifySnpReport(aciReport(), { ...base, ...extra }), {
      instanceOf: EvidenceVerificationError,
    });
    t.is(error?.code, code);
  }
  const r = verifySnpReport(aciReport(), base);
  t.true(
    verifySnpReport(aciReport(), {
      ...base,
      measurement: Buffer.from(r.report.measurement).toString('hex'),
      idKeyDigest: r.report.idKeyDigest,
      minimumGuestSvn: 2,
    }).ok,
  );
  t.throws(() => verifySnpReport(aciReport(), { ...base, measurement: 'abc' }), {
    code: 'ERR_INVALID_ARGUMENT',
  });
  t.throws(() => verifySnpReport(aciReport(), { ...base, measurement: new Uint8Array(47) }), {
    code: 'ERR_INVALID_ARGUMENT',
  });
});

test('certificates that are not certificates: ERR_SNP_CERTIFICATE', (t) => {
  t.throws(() => verifySnpReport(aciReport(), { certificates: 'nothing here', now: NOW }), {
    instanceOf: SnpCertificateError,
  });
  t.throws(() => loadSnpCertificates('{"x":1}'), { instanceOf: SnpCertificateError });
  t.throws(() => loadSnpCertificates(new Uint8Array(30)), { instanceOf: SnpCertificateError });
  // Only the ASK/ARK: no leaf.
  t.throws(() => loadSnpCertificates(fixtureText('amd/ask-ark-milan.pem')), {
    instanceOf: SnpCertificateError,
  });
});

test('the embedded chain of another product does not stand in for the right one', (t) => {
  // A Milan VCEK offered with Genoa's chain still chains to the embedded Milan ARK (by its issuer name).
  const r = verifySnpReport(aciReport(), {
    certificates: [JSON.parse(aciThim()).vcekCert, fixtureText('amd/ask-ark-genoa.pem')],
    now: NOW,
  });
  t.is(r.chain.at(-1)?.subject.includes('ARK-Milan'), true);
});

test('provisional firmware is refused only when the caller asks', (t) => {
  const base = { certificates: aciThim(), now: NOW };
  const ok = verifySnpReport(aciReport(), {
    ...base,
    rejectProvisionalFirmware: true,
    minimumLaunchTcb: { snp: 8 },
  });
  t.deepEqual(
    ok.checks.slice(-2).map((c) => c.name),
    ['minimum-launch-tcb', 'committed-firmware'],
  );
  // Changing the committed version breaks the signature first, so check the rule on a parsed report.
  const report = ok.report;
  const provisional = {
    ...report,
    committedVersion: { ...report.committedVersion, build: report.committedVersion.build + 1 },
  };
  const error = t.throws(() => verifySnpReport(provisional, { ...base, rejectProvisionalFirmware: true }), {
    code: 'ERR_SNP_PROVISIONAL_FIRMWARE',
  });
  t.is((error as unknown as { check: string }).check, 'committed-firmware');
  t.true(verifySnpReport(provisional, base).ok);
});
