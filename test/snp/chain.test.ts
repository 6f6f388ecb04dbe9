import { randomBytes } from 'node:crypto';
import test from 'ava';
import { EvidenceVerificationError } from '../../src/errors.js';
import { encodeSnpReport, type SnpReportFields, signSnpReport } from '../../src/snp/build.js';
import { encodeTcb } from '../../src/snp/tcb.js';
import { createSnpTestChain, createSnpTestRoot } from '../helpers/snp-test-chain.js';
import { verifySnpReport } from '../../src/snp/verify.js';

const chipId = randomBytes(64);
const tcb = { bootloader: 3, tee: 0, snp: 8, microcode: 115 };

const milanReport = (fields: SnpReportFields = {}): Uint8Array =>
  encodeSnpReport({
    version: 3,
    cpuid: { family: 0x19, model: 0x01, stepping: 1 },
    chipId,
    reportedTcb: encodeTcb(tcb, 'Milan'),
    ...fields,
  });

test('a chain that ends in a root that is not embedded: ERR_SNP_UNTRUSTED_ROOT; trusted once the caller adds it', async (t) => {
  const chain = await createSnpTestChain({ chipId, tcb });
  const report = signSnpReport(milanReport(), chain.leafKey);
  const error = t.throws(() => verifySnpReport(report, { certificates: chain.bundlePem }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_SNP_UNTRUSTED_ROOT',
  });
  t.is(error?.code, 'ERR_SNP_UNTRUSTED_ROOT');
  t.is(error?.check, 'certificate-chain');
  // Without the root in the bundle the chain also stops at an unknown issuer.
  t.throws(() => verifySnpReport(report, { certificates: [chain.leafPem, chain.askPem] }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_SNP_UNTRUSTED_ROOT',
  });

  const trustedRoots = [{ certificates: chain.arkPem, product: 'Milan' as const }];
  const ok = verifySnpReport(report, { certificates: [chain.leafPem, chain.askPem], trustedRoots });
  t.regex(ok.checks[0]?.detail ?? '', /caller-trusted root/);
  // The added root's product must match the report's.
  const genoaRoots = [{ certificates: chain.arkPem, product: 'Genoa' as const }];
  t.throws(() => verifySnpReport(report, { certificates: chain.bundlePem, trustedRoots: genoaRoots }), {
    instanceOf: EvidenceVerificationError,
    code: 'ERR_SNP_PRODUCT_MISMATCH',
  });
});

test('a leaf not signed by the intermediate of its issuer name: ERR_SNP_CHAIN', async (t) => {
  const root = await createSnpTestRoot('Shared');
  const a = await createSnpTestChain({ chipId, tcb, name: 'Shared', root });
  const b = await createSnpTestChain({ chipId, tcb, name: 'Shared', root });
  const report = signSnpReport(milanReport(), a.leafKey);
  const trustedRoots = [root.certPem];
  t.true(verifySnpReport(report, { certificates: [a.leafPem, a.askPem], trustedRoots }).ok);
  const error = t.throws(
    () => verifySnpReport(report, { certificates: [a.leafPem, b.askPem], trustedRoots }),
    {
      instanceOf: EvidenceVerificationError,
      code: 'ERR_SNP_CHAIN',
    },
  );
  t.is(error?.code, 'ERR_SNP_CHAIN');
});

test('Turin: 8-byte hwID, fmc in the TCB, product from cpuid', async (t) => {
  const turinTcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x48 };
  const chip = Buffer.concat([randomBytes(8), Buffer.alloc(56)]);
  const chain = await createSnpTestChain({ product: 'Turin', chipId: chip, tcb: turinTcb });
  const fields: SnpReportFields = {
    version: 4,
    cpuid: { family: 0x1a, model: 0x02, stepping: 0 },
    chipId: chip,
    reportedTcb: encodeTcb(turinTcb, 'Turin'),
  };
  const trustedRoots = [{ certificates: chain.arkPem, product: 'Turin' as const }];
  const ok = verifySnpReport(signSnpReport(encodeSnpReport(fields), chain.leafKey), {
    certificates: chain.bundlePem,
    trustedRoots,
  });
  t.is(ok.product, 'Turin');
  t.is(ok.reportedTcb.fmc, 1);
  const offFmc = encodeSnpReport({ ...fields, reportedTcb: encodeTcb({ ...turinTcb, fmc: 2 }, 'Turin') });
  t.throws(
    () =>
      verifySnpReport(signSnpReport(offFmc, chain.leafKey), { certificates: chain.bundlePem, trustedRoots }),
    {
      code: 'ERR_SNP_TCB_MISMATCH',
    },
  );
  // Bytes after the first 8 of a Turin chip_id must be zero.
  const longChip = Buffer.from(chip);
  longChip[20] = 1;
  t.throws(
    () =>
      verifySnpReport(signSnpReport(encodeSnpReport({ ...fields, chipId: longChip }), chain.leafKey), {
        certificates: chain.bundlePem,
        trustedRoots,
      }),
    { instanceOf: EvidenceVerificationError, code: 'ERR_SNP_CHIP_ID_MISMATCH' },
  );
});

test('VLEK-signed report verifies against a VLEK chain (no hwID) and not against a VCEK', async (t) => {
  const root = await createSnpTestRoot('V');
  const vlek = await createSnpTestChain({ signer: 'vlek', tcb, name: 'V', root });
  const vcek = await createSnpTestChain({ signer: 'vcek', tcb, chipId, name: 'V', root });
  const report = signSnpReport(milanReport({ signer: 'vlek', chipId: new Uint8Array(64) }), vlek.leafKey);
  const trustedRoots = [root.certPem];
  const ok = verifySnpReport(report, { certificates: vlek.bundlePem, trustedRoots });
  t.is(ok.signer, 'vlek');
  t.throws(() => verifySnpReport(report, { certificates: vcek.bundlePem, trustedRoots }), {
    code: 'ERR_SNP_SIGNER_MISMATCH',
  });
  // Both leaves offered: the one matching the report's signer is used.
  t.true(
    verifySnpReport(report, { certificates: [vcek.bundlePem, vlek.leafPem, vlek.askPem], trustedRoots }).ok,
  );
});

test('hwID wrapped in an OCTET STRING is accepted; a masked chip_id is not matched', async (t) => {
  const chain = await createSnpTestChain({ chipId, tcb, wrapHwid: true });
  const trustedRoots = [chain.arkPem];
  t.true(
    verifySnpReport(signSnpReport(milanReport(), chain.leafKey), {
      certificates: chain.bundlePem,
      trustedRoots,
    }).ok,
  );
  const masked = signSnpReport(milanReport({ maskChipKey: true, chipId: new Uint8Array(64) }), chain.leafKey);
  t.throws(() => verifySnpReport(masked, { certificates: chain.bundlePem, trustedRoots }), {
    code: 'ERR_SNP_CHIP_ID_MISMATCH',
  });
});

test('version 2 without product information needs options.product when the certificate does not say', async (t) => {
  const chain = await createSnpTestChain({ chipId, tcb });
  const report = signSnpReport(
    encodeSnpReport({ version: 2, chipId, reportedTcb: encodeTcb(tcb, 'Milan') }),
    chain.leafKey,
  );
  // The test VCEK names its product (Milan-B0), so the product is known.
  t.is(
    verifySnpReport(report, { certificates: chain.bundlePem, trustedRoots: [chain.arkPem] }).product,
    'Milan',
  );
});
