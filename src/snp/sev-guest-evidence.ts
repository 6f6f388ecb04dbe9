import { createHash } from 'node:crypto';
import { CvmSkrError, EvidenceVerificationError } from '../errors.js';
import { type HclRuntimeData, parseHclRuntimeData } from '../hcl/runtime-data.js';
import { bytesEqual, isAllZero, toHex } from './bytes.js';
import {
  runCheck,
  type SnpVerificationResult,
  type VerifySnpReportOptions,
  verifySnpReportInto,
} from './verify.js';

export interface SevGuestEvidenceInput {
  /** The 1184-byte SNP report. */
  report: Uint8Array;
  /** The runtime data JSON whose SHA-256 the report's report_data must carry. */
  runtimeData: Uint8Array;
  /** VCEK (or VLEK) chain as PEM; used unless `options.certificates` is given. */
  vcekCertChain?: string;
}

export interface SevGuestEvidenceResult extends SnpVerificationResult {
  /** The runtime data with its keys imported (the transfer key is the RSA key with key_ops "encrypt"). */
  runtime: HclRuntimeData;
}

/**
 * Verifies SevSnpVm evidence (what `SevGuestPlatform.collectEvidence` produces): every check of
 * `verifySnpReport`, then the binding report_data = sha256(runtime data) || 32 zero bytes, then that the runtime
 * data parses with its keys.
 */
export function verifySevGuestEvidence(
  evidence: SevGuestEvidenceInput,
  options: Omit<VerifySnpReportOptions, 'certificates' | 'reportData'> & {
    certificates?: VerifySnpReportOptions['certificates'];
  } = {},
): SevGuestEvidenceResult {
  const certificates = options.certificates ?? evidence.vcekCertChain;
  const checks: SnpVerificationResult['checks'] = [];
  const result = verifySnpReportInto(
    evidence.report,
    { ...options, certificates: certificates ?? [] },
    checks,
  );
  runCheck(checks, 'runtime-data-binding', () => {
    const digest = createHash('sha256').update(evidence.runtimeData).digest();
    const reportData = result.report.reportData;
    if (!bytesEqual(digest, reportData.subarray(0, 32)) || !isAllZero(reportData, 32)) {
      throw new EvidenceVerificationError(
        'ERR_SNP_REPORT_DATA',
        `report_data is not sha256(runtime data) || zeros (${toHex(digest)}); the runtime data was changed`,
        'runtime-data-binding',
      );
    }
    return { detail: 'report_data = sha256(runtime data) || zeros', value: undefined };
  });
  const runtime = runCheck(checks, 'runtime-data', () => {
    try {
      const parsed = parseHclRuntimeData(evidence.runtimeData);
      return { detail: `${parsed.keys.length} key(s)`, value: parsed };
    } catch (error) {
      if (error instanceof CvmSkrError)
        throw new EvidenceVerificationError('ERR_HCL_RUNTIME_DATA', error.message, 'runtime-data', { cause: error });
      throw error;
    }
  });
  return { ...result, checks, runtime };
}
