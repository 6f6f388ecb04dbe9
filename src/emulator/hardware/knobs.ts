import type { SnpReportFields } from '../../snp/build.js';
import { type EmulatedAmd, olderTcb, type TcbParts } from './amd.js';

/**
 * Ways to make emulated evidence bad, for negative tests. Each one is caught by a named check of the
 * (emulated or real) attestation service.
 */
export interface EvidenceKnobs {
  /** The guest policy allows debugging (policy bit 19): check `debug`. */
  debug?: boolean;
  /** Another launch measurement: check `measurement` when the service pins measurements. */
  measurement?: Uint8Array;
  /** An older reported TCB, with the VCEK for that TCB: check `minimum-tcb`. */
  oldTcb?: boolean;
  /** A corrupted report signature: check `report-signature`. */
  wrongSignature?: boolean;
  /**
   * The runtime data changed after the hardware report was made (new user data on the vTPM, another nonce on
   * the SNP guest): check `hcl-binding` / `runtime-data-binding`.
   */
  staleUserData?: boolean;
  /** vTPM only: the HCL report names another AK than the one signing quotes: check `ak-match`. */
  akMismatch?: boolean;
  /**
   * vTPM only: a SHA-1 quote, signed with SHA-1 (sent as a TPMT_SIGNATURE, check `quote-signature`) or over
   * the SHA-1 PCR bank (check `quote-pcr-digest`).
   */
  weakQuote?: 'sha1-signature' | 'sha1-bank';
  /**
   * vTPM only: the transfer key's authPolicy is empty, or PolicyPCR over other PCRs than the quote covers:
   * check `transfer-key-certify`.
   */
  transferKeyPolicy?: 'empty' | 'other-pcrs';
  /**
   * vTPM only: the VM booted with secure boot off. The TCG log measures SecureBoot = 0 in PCR 7 (and no db
   * authority), so PCR 7 differs, and the HCL vm-configuration says `secure-boot: false`: the service's
   * `x-ms-azurevm-*validated` and `secureboot` claims are false and the report is not compliant.
   */
  secureBootOff?: boolean;
}

const DEBUG_BIT = 1n << 19n;

/** Report fields and TCB for a report under `knobs`. */
export function reportFieldsFor(
  amd: EmulatedAmd,
  knobs: EvidenceKnobs,
  reportData: Uint8Array,
): SnpReportFields & { tcb?: Partial<TcbParts> } {
  const fields: SnpReportFields & { tcb?: Partial<TcbParts> } = {
    reportData,
    policy: 0x30000n | (knobs.debug ? DEBUG_BIT : 0n),
  };
  if (knobs.measurement) fields.measurement = knobs.measurement;
  if (knobs.oldTcb) fields.tcb = olderTcb(amd.product, amd.tcb);
  return fields;
}

/** Applies the signature knob to a signed report. */
export function finishReport(report: Uint8Array, knobs: EvidenceKnobs): Uint8Array {
  if (!knobs.wrongSignature) return report;
  const out = new Uint8Array(report);
  out[0x2a0] = (out[0x2a0] ?? 0) ^ 0x01;
  return out;
}
