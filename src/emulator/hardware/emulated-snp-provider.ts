/**
 * An SNP report provider backed by the emulated chip, so the real `SevGuestPlatform` runs unchanged on any
 * machine. It answers like the sev-guest ioctl's extended report (report plus the host's certificate table
 * with VCEK, ASK and ARK), and names itself after that provider because that is the ABI it stands in for.
 */
import { X509Certificate } from 'node:crypto';
import { AbortError, InvalidArgumentError } from '../../errors.js';
import type { SnpReportProvider, SnpReportRequest, SnpReportResult } from '../../hal/types.js';
import { buildCertTable } from '../../snp/cert-table.js';
import type { EmulatedAmd } from './amd.js';
import { type EvidenceKnobs, finishReport, reportFieldsFor } from './knobs.js';

const der = (pem: string): Uint8Array => new Uint8Array(new X509Certificate(pem).raw);

export class EmulatedSnpReportProvider implements SnpReportProvider {
  readonly name = 'sev-guest-ioctl' as const;
  readonly amd: EmulatedAmd;
  readonly knobs: EvidenceKnobs;
  /** Reports served, e.g. to check a cache. */
  served = 0;

  constructor(amd: EmulatedAmd, knobs: EvidenceKnobs = {}) {
    this.amd = amd;
    this.knobs = { ...knobs };
  }

  async getReport(request: SnpReportRequest): Promise<SnpReportResult> {
    if (request.signal?.aborted)
      throw new AbortError('the report request was aborted', { cause: request.signal.reason });
    if (request.reportData.length !== 64)
      throw new InvalidArgumentError('report_data must be exactly 64 bytes');
    const vmpl = request.vmpl ?? 0;
    if (!Number.isInteger(vmpl) || vmpl < 0 || vmpl > 3) throw new InvalidArgumentError('VMPL must be 0-3');
    const fields = { ...reportFieldsFor(this.amd, this.knobs, request.reportData), vmpl };
    const report = finishReport(await this.amd.signReport(fields), this.knobs);
    this.served++;
    if (!request.extended) return { report };
    const vcek = await this.amd.vcek(fields.tcb ?? {});
    const certificateTable = buildCertTable([
      { kind: 'vcek', der: der(vcek.certPem) },
      { kind: 'ask', der: der(this.amd.askPem) },
      { kind: 'ark', der: der(this.amd.arkPem) },
    ]);
    return { report, certificateTable };
  }
}
