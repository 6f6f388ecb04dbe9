/**
 * `cvm-skr doctor --deep`: what the attestation path will meet on this VM, for the first run on a real
 * DCasv5/ECasv5 and for bug reports. Strictly read-only: it reads THIM, the vTPM's NV indices, its PCR banks and
 * the TCG log, and only reports that an AK certificate renewal is due (the next attestation renews it).
 */
import { X509Certificate } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { CvmSkrError } from '../errors.js';
import { type AkCertificateStatus, akCertificateStatus } from '../hal/platforms/ak-certificate.js';
import { AzureVtpmPlatform, KERNEL_EVENT_LOG } from '../hal/platforms/azure-vtpm.js';
import { parseHclReport } from '../hcl/report.js';
import { fetchThimCertificates, IMDS_BASE_URL, thimUrlFor } from '../snp/vcek-sources.js';
import { getPcrBanks } from '../tpm/commands/capability.js';
import { TPM_ALG } from '../tpm/constants.js';
import { openTpmTarget } from './emulator.js';

export interface DeepOptions {
  /** TPM device, swtpm socket or host:port. Default /dev/tpmrm0. */
  tpm?: string;
  /** IMDS base URL. Default CVM_SKR_IMDS_URL, else http://169.254.169.254. */
  imdsUrl?: string;
  /** TCG event log. Default the kernel's. */
  eventLog?: string;
  now?: Date;
}

export interface DeepReport {
  thim: {
    url: string;
    ok: boolean;
    tcbm?: string;
    cacheControl?: string | number;
    vcek?: { subject: string; notAfter: string };
    chainCertificates?: number;
    error?: string;
  };
  tpm: { target: string; opened: boolean; resourceManager: boolean; note: string; error?: string };
  akCertificate?: AkCertificateStatus & { advice: string };
  akCertificateError?: string;
  hclReport?: { version: number; reportType: string; requestType: number; reportedTcb?: string };
  hclReportError?: string;
  pcrBanks?: { algorithm: string; pcrs: number[] }[];
  pcrBanksError?: string;
  tcgLog: { path: string; readable: boolean; bytes?: number; error?: string };
  /** One line per thing that will stop or weaken attestation. */
  problems: string[];
}

const ALG_NAMES = new Map<number, string>(Object.entries(TPM_ALG).map(([k, v]) => [v, k.toLowerCase()]));

function message(error: unknown): string {
  if (error instanceof CvmSkrError) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return String(error);
}

function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

async function thimCheck(imdsUrl: string): Promise<DeepReport['thim']> {
  const url = thimUrlFor(imdsUrl);
  try {
    const thim = await fetchThimCertificates({ url, timeoutMs: 5000 });
    const vcek = new X509Certificate(thim.vcekCert);
    return {
      url,
      ok: true,
      ...(thim.tcbm === undefined ? {} : { tcbm: thim.tcbm }),
      ...(thim.cacheControl === undefined ? {} : { cacheControl: thim.cacheControl }),
      vcek: { subject: oneLine(vcek.subject), notAfter: new Date(vcek.validTo).toISOString() },
      chainCertificates: (thim.certificateChain.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length,
    };
  } catch (error) {
    return { url, ok: false, error: message(error) };
  }
}

async function tcgLogCheck(file: string): Promise<DeepReport['tcgLog']> {
  try {
    const bytes = await readFile(file);
    return { path: file, readable: true, bytes: bytes.length };
  } catch (error) {
    return { path: file, readable: false, error: message(error) };
  }
}

async function resourceManager(target: string): Promise<{ resourceManager: boolean; note: string }> {
  if (path.basename(target).startsWith('tpmrm')) {
    // Only a device that is there is "in use"; on a machine without one the TPM line already says why.
    const exists = await stat(target).then(
      () => true,
      () => false,
    );
    return exists
      ? { resourceManager: true, note: 'the kernel resource manager (tpmrm) is in use' }
      : { resourceManager: false, note: `${target} does not exist` };
  }
  if (/^\/dev\/tpm\d+$/.test(target)) {
    const rm = target.replace('/dev/tpm', '/dev/tpmrm');
    const exists = await stat(rm).then(
      () => true,
      () => false,
    );
    return {
      resourceManager: false,
      note: exists
        ? `raw TPM device without resource manager; ${rm} exists, use it`
        : 'raw TPM device and no resource manager device',
    };
  }
  return { resourceManager: false, note: 'not a kernel device (swtpm or TCP): no resource manager' };
}

/** Runs every read-only check; never throws for what it finds. */
export async function deepReport(options: DeepOptions = {}): Promise<DeepReport> {
  const now = options.now ?? new Date();
  const imdsUrl = options.imdsUrl ?? (process.env.CVM_SKR_IMDS_URL || IMDS_BASE_URL);
  const target = options.tpm ?? '/dev/tpmrm0';
  const problems: string[] = [];
  const [thim, tcgLog, rm] = await Promise.all([
    thimCheck(imdsUrl),
    tcgLogCheck(options.eventLog ?? KERNEL_EVENT_LOG),
    resourceManager(target),
  ]);
  if (!thim.ok) problems.push(`THIM is not reachable or answered wrongly (${thim.error}): no VCEK chain, no attestation`);
  if (!tcgLog.readable)
    problems.push(`the TCG log cannot be read (${tcgLog.error}): tokens will lack the x-ms-azurevm-* claims`);
  const report: DeepReport = { thim, tpm: { target, opened: false, ...rm }, tcgLog, problems };

  let platform: AzureVtpmPlatform | undefined;
  let transport: Awaited<ReturnType<typeof openTpmTarget>> | undefined;
  try {
    transport = await openTpmTarget(target);
    // No VCEK fetch, no renewal: this platform only reads.
    platform = await AzureVtpmPlatform.open({
      transport,
      vcekFetcher: false,
      renewAkCertificate: false,
      eventLogPath: false,
    });
    report.tpm.opened = true;
  } catch (error) {
    report.tpm.error = message(error);
    problems.push(`the TPM at ${target} cannot be opened (${report.tpm.error})`);
  }
  if (platform) {
    try {
      const status = akCertificateStatus(await platform.readAkCertificate(), now);
      const advice = status.placeholder
        ? 'not provisioned yet (placeholder issuer): attestation waits; try again in a few minutes'
        : status.renewalDue
          ? 'renewal is due (expires within 90 days or expired): the next attestation renews it through IMDS'
          : 'ok';
      report.akCertificate = { ...status, advice };
      if (advice !== 'ok') problems.push(`AK certificate: ${advice}`);
    } catch (error) {
      report.akCertificateError = message(error);
      problems.push(`AK certificate: ${report.akCertificateError}`);
    }
    try {
      const hcl = parseHclReport(await platform.readHclReport());
      report.hclReport = {
        version: hcl.version,
        reportType: hcl.reportType,
        requestType: hcl.requestType,
        ...(hcl.snpReport
          ? { reportedTcb: hcl.snpReport.reportedTcb.raw.toString(16).padStart(16, '0').toUpperCase() }
          : {}),
      };
      if (thim.ok && thim.tcbm && report.hclReport.reportedTcb && BigInt(`0x${thim.tcbm}`) !== BigInt(`0x${report.hclReport.reportedTcb}`)) {
        problems.push(
          `THIM's tcbm ${thim.tcbm} is not the HCL report's reported TCB ${report.hclReport.reportedTcb}: the VCEK does not match`,
        );
      }
    } catch (error) {
      report.hclReportError = message(error);
      problems.push(`HCL report: ${report.hclReportError}`);
    }
    try {
      report.pcrBanks = (await getPcrBanks(platform.tpm))
        .filter((b) => b.pcrs.length > 0)
        .map((b) => ({ algorithm: ALG_NAMES.get(b.hashAlg) ?? `0x${b.hashAlg.toString(16)}`, pcrs: [...b.pcrs] }));
      if (!report.pcrBanks.some((b) => b.algorithm === 'sha256'))
        problems.push('no SHA-256 PCR bank is allocated: quotes and the transfer key policy need one');
    } catch (error) {
      report.pcrBanksError = message(error);
    }
  }
  await platform?.close().catch(() => {});
  await transport?.close().catch(() => {});
  return report;
}

export function formatDeep(report: DeepReport): string {
  const l: string[] = ['', 'deep checks (read-only):'];
  const t = report.thim;
  l.push(
    t.ok
      ? `  THIM            ${t.url}: tcbm ${t.tcbm ?? '-'}, cacheControl ${t.cacheControl ?? '-'}, VCEK ${t.vcek?.subject} until ${t.vcek?.notAfter}, ${t.chainCertificates} chain certificates`
      : `  THIM            ${t.url}: FAILED (${t.error})`,
  );
  l.push(
    `  TPM             ${report.tpm.target}: ${report.tpm.opened ? 'opened' : `not opened (${report.tpm.error})`}; ${report.tpm.note}`,
  );
  const ak = report.akCertificate;
  if (ak) {
    l.push(`  AK certificate  issuer ${ak.issuer}; expires ${ak.notAfter} (${ak.daysLeft} days); ${ak.advice}`);
  } else if (report.akCertificateError) l.push(`  AK certificate  FAILED (${report.akCertificateError})`);
  const hcl = report.hclReport;
  if (hcl) {
    l.push(
      `  HCL report      version ${hcl.version}, type ${hcl.reportType}, request type ${hcl.requestType}${hcl.reportedTcb ? `, reported TCB ${hcl.reportedTcb}` : ''}`,
    );
  } else if (report.hclReportError) l.push(`  HCL report      FAILED (${report.hclReportError})`);
  if (report.pcrBanks) {
    l.push(`  PCR banks       ${report.pcrBanks.map((b) => `${b.algorithm} [${b.pcrs.length} PCRs]`).join(', ') || 'none'}`);
  } else if (report.pcrBanksError) l.push(`  PCR banks       FAILED (${report.pcrBanksError})`);
  const log = report.tcgLog;
  l.push(
    `  TCG log         ${log.path}: ${log.readable ? `readable, ${log.bytes} bytes` : `NOT readable (${log.error})`}`,
  );
  l.push('');
  l.push(report.problems.length === 0 ? 'no problems found' : `problems:\n${report.problems.map((p) => `  - ${p}`).join('\n')}`);
  return `${l.join('\n')}\n`;
}
