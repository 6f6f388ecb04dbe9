import { createHash } from 'node:crypto';
import { EvidenceVerificationError } from '../errors.js';
import { bytesEqual, isAllZero, toHex } from '../snp/bytes.js';
import type { HclReport } from './report.js';

const HASH_LENGTH = { sha256: 32, sha384: 48, sha512: 64 } as const;

/**
 * The binding of runtime data to hardware: report_data[0:hashlen] == hash(runtime data) with the declared hash,
 * and the rest of report_data zero. Throws an `EvidenceVerificationError` with code `ERR_HCL_BINDING`; returns a
 * description on success.
 */
export function checkHclBinding(report: HclReport): string {
  const reportData = report.reportData;
  if (reportData === undefined) {
    throw new EvidenceVerificationError(
      'ERR_HCL_BINDING',
      `an HCL report of type ${report.reportType} has no report_data to bind to`,
      'hcl-binding',
    );
  }
  const length = HASH_LENGTH[report.hashType];
  const digest = createHash(report.hashType).update(report.runtimeDataBytes).digest();
  if (!bytesEqual(digest, reportData.subarray(0, length)) || !isAllZero(reportData, length)) {
    throw new EvidenceVerificationError(
      'ERR_HCL_BINDING',
      `report_data does not hold ${report.hashType}(runtime data) = ${toHex(digest)}; the runtime data was changed or belongs to another report`,
      'hcl-binding',
    );
  }
  return `report_data = ${report.hashType}(runtime data) || zeros`;
}
