import test from 'ava';
import { MalformedDataError } from '../../src/errors.js';
import { encodeSnpReport } from '../../src/snp/build.js';
import { parseSnpReport } from '../../src/snp/report.js';
import { decodeTcb, encodeTcb, productFromCpuid } from '../../src/snp/tcb.js';
import { aciReport, debugReport, flipBit } from './_fixtures.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('parses the ACI Milan report (version 2)', (t) => {
  const r = parseSnpReport(aciReport());
  t.is(r.version, 2);
  t.is(r.vmpl, 0);
  t.is(r.signatureAlgo, 1);
  t.is(r.signer, 'vcek');
  t.false(r.policy.debug);
  t.true(r.policy.smt);
  t.is(r.product, undefined);
  t.is(r.cpuid, undefined);
  t.is(r.reportedTcb.raw, 0x7308000000000003n);
  t.deepEqual(
    {
      bl: r.reportedTcb.bootloader,
      tee: r.reportedTcb.tee,
      snp: r.reportedTcb.snp,
      ucode: r.reportedTcb.microcode,
    },
    { bl: 3, tee: 0, snp: 8, ucode: 0x73 },
  );
  t.true(hex(r.reportData).startsWith('ee986ff2'));
  t.true(hex(r.hostData).startsWith('cadd74f7'));
  t.is(r.chipId.length, 64);
  t.is(r.signature.r.length, 48);
  t.is(r.signedBytes.length, 0x2a0);
});

test('parses the debug report: policy 0xB0000 has DEBUG', (t) => {
  const r = parseSnpReport(debugReport());
  t.is(r.policy.raw, 0xb0000n);
  t.true(r.policy.debug);
  t.is(hex(r.reportData.subarray(0, 5)), '0102030405');
});

test('the parsed report is a copy', (t) => {
  const bytes = aciReport();
  const r = parseSnpReport(bytes);
  bytes[0x90] = (bytes[0x90] as number) ^ 1;
  t.not(r.measurement[0], bytes[0x90]);
});

test('version 3+ reports carry cpuid and the product', (t) => {
  const genoa = parseSnpReport(
    encodeSnpReport({ version: 3, cpuid: { family: 0x19, model: 0x11, stepping: 1 } }),
  );
  t.is(genoa.product, 'Genoa');
  const turin = parseSnpReport(
    encodeSnpReport({
      version: 4,
      cpuid: { family: 0x1a, model: 0x02, stepping: 0 },
      reportedTcb: 0x4800000004030201n,
    }),
  );
  t.is(turin.product, 'Turin');
  t.deepEqual(turin.reportedTcb, {
    fmc: 1,
    bootloader: 2,
    tee: 3,
    snp: 4,
    microcode: 0x48,
    raw: 0x4800000004030201n,
  });
  t.is(productFromCpuid(0x19, 0x01), 'Milan');
  t.is(productFromCpuid(0x19, 0xa1), 'Genoa');
  t.is(productFromCpuid(0x17, 0x01), undefined);
});

test('version 5 mitigation vectors', (t) => {
  const r = parseSnpReport(
    encodeSnpReport({ version: 5, launchMitigationVector: 5n, currentMitigationVector: 7n }),
  );
  t.is(r.launchMitigationVector, 5n);
  t.is(r.currentMitigationVector, 7n);
  const v4 = encodeSnpReport({ version: 4 });
  v4[0x1f8] = 1;
  t.throws(() => parseSnpReport(v4), {
    instanceOf: MalformedDataError,
    code: 'ERR_SNP_REPORT_MALFORMED',
    message: /reserved/,
  });
});

test('TCB layouts round-trip per product', (t) => {
  const parts = { bootloader: 1, tee: 2, snp: 3, microcode: 4, fmc: 5 };
  const turin = encodeTcb(parts, 'Turin');
  t.deepEqual(decodeTcb(turin, 'Turin'), { ...parts, raw: turin });
  const milan = encodeTcb(parts, 'Milan');
  t.is(milan, 0x0403000000000201n);
  t.deepEqual(decodeTcb(milan, 'Genoa'), { bootloader: 1, tee: 2, snp: 3, microcode: 4, raw: milan });
});

test('signer VLEK and none', (t) => {
  t.is(parseSnpReport(encodeSnpReport({ signer: 'vlek' })).signer, 'vlek');
  t.is(parseSnpReport(encodeSnpReport({ signer: 'none' })).signer, 'none');
});

const malformed = (t: import('ava').ExecutionContext, bytes: Uint8Array, message: RegExp): void => {
  const error = t.throws(() => parseSnpReport(bytes), {
    instanceOf: MalformedDataError,
    code: 'ERR_SNP_REPORT_MALFORMED',
    message,
  });
  t.is(error?.code, 'ERR_SNP_REPORT_MALFORMED');
};

test('truncated and oversized reports are refused', (t) => {
  malformed(t, aciReport().subarray(0, 1183), /1184 bytes/);
  malformed(t, new Uint8Array(0), /1184 bytes/);
  malformed(t, Buffer.concat([aciReport(), Buffer.alloc(1)]), /1184 bytes/);
});

test('unknown versions, reserved signing keys and nonzero reserved bytes are refused', (t) => {
  const v6 = aciReport();
  v6[0] = 6;
  malformed(t, v6, /version 6/);
  const v1 = aciReport();
  v1[0] = 1;
  malformed(t, v1, /version 1/);
  const key = aciReport();
  key[0x48] = 3 << 2;
  malformed(t, key, /signing key/);
  for (const offset of [
    0x4c,
    0x18b,
    0x188,
    0x1eb,
    0x1ef,
    0x1f8,
    0x29f,
    0x2a0 + 50,
    0x2e8 + 71,
    0x330,
    0x49f,
  ]) {
    malformed(t, flipBit(aciReport(), offset), /reserved|above 384/);
  }
});

test('guest policy: reserved bit 17 must be one, bits 26-63 zero', (t) => {
  malformed(t, encodeSnpReport({ policy: 0x10000n }), /bit 17/);
  malformed(t, encodeSnpReport({ policy: 0x30000n | (1n << 40n) }), /reserved bits/);
});
