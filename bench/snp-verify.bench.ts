/**
 * `verifySnpReport` with a warm chain cache vs raw `crypto.verify` ECDSA P-384/SHA-384 over the same report
 * bytes and key: how much of the verification cost is the signature itself. Throughput ratio target >= 0.8.
 */
import { verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseSnpReport } from '../src/snp/report.js';
import { verifySnpReport } from '../src/snp/verify.js';
import { median, pairedRatio, sideBySide } from './stats.js';

const fixture = (path: string) => readFileSync(new URL(`../test/fixtures/${path}`, import.meta.url));

export interface SnpVerifyBench {
  iterations: number;
  verifyPerSec: number;
  rawPerSec: number;
  /** verifySnpReport throughput / raw crypto.verify throughput, median of the per-trial ratios. */
  ratio: number;
  verifyTrialsPerSec: number[];
  rawTrialsPerSec: number[];
}

export async function benchSnpVerify(trials = 7, iterations = 1500): Promise<SnpVerifyBench> {
  const report = fixture('snp/aci-milan/report.bin');
  // The same string every call: the chain cache is keyed on it.
  const certificates = fixture('snp/aci-milan/thim.json').toString('utf8');
  const now = new Date('2025-01-01T00:00:00Z');
  const first = verifySnpReport(report, { certificates, now });
  const key = first.chain[0]!.publicKey;
  const parsed = parseSnpReport(report);
  const signature = Buffer.concat([parsed.signature.r, parsed.signature.s]);
  const signed = report.subarray(0, 0x2a0);
  if (!verify('sha384', signed, { key, dsaEncoding: 'ieee-p1363' }, signature))
    throw new Error('raw verify of the fixture failed');

  const timed = (fn: () => void) => async () => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    return iterations / (Number(process.hrtime.bigint() - start) / 1e9);
  };
  const ours = timed(() => {
    verifySnpReport(report, { certificates, now });
  });
  const raw = timed(() => {
    if (!verify('sha384', signed, { key, dsaEncoding: 'ieee-p1363' }, signature))
      throw new Error('raw verify');
  });
  await ours();
  await raw();
  const { a, b } = await sideBySide(trials, ours, raw);
  const verifyPerSec = median(a);
  const rawPerSec = median(b);
  return {
    iterations,
    verifyPerSec,
    rawPerSec,
    ratio: pairedRatio(a, b),
    verifyTrialsPerSec: a,
    rawTrialsPerSec: b,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await benchSnpVerify());
}
