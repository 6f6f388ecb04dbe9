/** `cvm-skr verify-report`'s work, loaded only when the command runs (start-up stays small). */
import { CvmSkrError, type EvidenceCheck, InvalidArgumentError } from '../errors.js';
import { checkHclBinding } from '../hcl/binding.js';
import { isHclReport, parseHclReport } from '../hcl/report.js';
import { toHex } from '../snp/bytes.js';
import type { SnpCertificateSource } from '../snp/certificates.js';
import { parseSnpReport, SNP_REPORT_SIZE, type SnpReport } from '../snp/report.js';
import { productFromName, type SnpProduct, type TcbVersion } from '../snp/tcb.js';
import { runCheck, verifySnpReportInto } from '../snp/verify.js';
import { EXIT } from './exit.js';
import { parseTimeout, progress, readInput } from './io.js';

export interface VerifyReportOptions {
  certs?: string;
  fetch?: boolean;
  thimUrl?: string;
  kdsUrl?: string;
  product?: string;
  now?: string;
  allowDebug?: boolean;
  json?: boolean;
  timeout?: string;
}

/** The machine-readable result of `verify-report --json`. */
export interface VerifyReportResult {
  ok: boolean;
  kind: 'snp' | 'hcl';
  product: SnpProduct | null;
  signer: 'vcek' | 'vlek' | 'none' | null;
  reportedTcb: (Omit<TcbVersion, 'raw'> & { raw: string }) | null;
  reportData: string | null;
  measurement: string | null;
  chipId: string | null;
  checks: EvidenceCheck[];
}

function tcbJson(tcb: TcbVersion): Omit<TcbVersion, 'raw'> & { raw: string } {
  const { raw, ...parts } = tcb;
  return { ...parts, raw: raw.toString(16).padStart(16, '0') };
}

/** Verifies a raw SNP report or an HCL report; never throws for bad evidence, only for unusable input. */
export function verifyReportBytes(
  bytes: Uint8Array,
  options: { certificates?: SnpCertificateSource; now?: Date; allowDebug?: boolean },
): VerifyReportResult {
  const hcl = isHclReport(bytes);
  const checks: EvidenceCheck[] = [];
  const result: VerifyReportResult = {
    ok: false,
    kind: hcl ? 'hcl' : 'snp',
    product: null,
    signer: null,
    reportedTcb: null,
    reportData: null,
    measurement: null,
    chipId: null,
    checks,
  };
  let report: SnpReport | undefined;
  try {
    const parsedHcl = runCheck(checks, 'parse', () => {
      if (hcl) {
        const parsed = parseHclReport(bytes);
        return {
          detail: `HCL report v${parsed.version}, ${parsed.reportType.toUpperCase()} hardware report`,
          value: parsed,
        };
      }
      if (bytes.length !== SNP_REPORT_SIZE) {
        throw new InvalidArgumentError(
          `${bytes.length} bytes is neither a ${SNP_REPORT_SIZE}-byte SNP report nor an HCL report ("HCLA")`,
        );
      }
      return { detail: `SNP report`, value: undefined };
    });
    report = runCheck(checks, 'hardware-report', () => {
      const snp = parsedHcl === undefined ? parseSnpReport(bytes) : parsedHcl.snpReport;
      if (snp === undefined) {
        throw new InvalidArgumentError(
          `the HCL report carries a ${parsedHcl?.reportType.toUpperCase()} report; TDX quote verification is not supported`,
        );
      }
      return {
        detail: `SEV-SNP report version ${snp.version}, signed by ${snp.signer.toUpperCase()}`,
        value: snp,
      };
    });
    result.signer = report.signer;
    result.product = report.product ?? null;
    result.reportedTcb = tcbJson(report.reportedTcb);
    result.reportData = toHex(report.reportData);
    result.measurement = toHex(report.measurement);
    result.chipId = toHex(report.chipId);
    if (options.certificates === undefined) {
      checks.push({
        name: 'certificate-chain',
        ok: false,
        detail:
          'no certificates: pass --certs with the VCEK (THIM JSON, PEM bundle, DER or certificate table)',
      });
      return result;
    }
    const verified = verifySnpReportInto(
      report,
      {
        certificates: options.certificates,
        ...(options.now === undefined ? {} : { now: options.now }),
        allowDebug: options.allowDebug === true,
      },
      checks,
    );
    result.product = verified.product;
    result.reportedTcb = tcbJson(verified.reportedTcb);
    if (parsedHcl !== undefined)
      runCheck(checks, 'hcl-binding', () => ({ detail: checkHclBinding(parsedHcl), value: undefined }));
    result.ok = checks.every((c) => c.ok);
  } catch (error) {
    if (!(error instanceof CvmSkrError)) throw error;
  }
  return result;
}

/** Runs `cvm-skr verify-report <file>`: prints the checks and sets the exit code. */
export async function runVerifyReport(file: string, options: VerifyReportOptions): Promise<void> {
// Flags first: a wrong value is refused before any file is read or any request goes out.
  if (options.product !== undefined && productFromName(options.product) === undefined)
    throw new InvalidArgumentError(`--product must be Milan, Genoa or Turin, not ${options.product}`);
  const timeoutMs = parseTimeout(options.timeout);
  let now: Date | undefined;
  if (options.now !== undefined) {
    now = new Date(options.now);
    if (Number.isNaN(now.getTime()))
      throw new InvalidArgumentError(`--now ${options.now} is not an ISO time`);
  }
  const bytes = await readInput(file, 'report file');
  let certificates: SnpCertificateSource | undefined =
    options.certs === undefined ? undefined : await readInput(options.certs, '--certs');
  if (certificates === undefined && options.fetch) {
    progress('fetching the VCEK and its chain (--fetch)');
    certificates = await fetchCertificates(bytes, options, timeoutMs);
  }
  const result = verifyReportBytes(bytes, {
    ...(certificates === undefined ? {} : { certificates }),
    ...(now === undefined ? {} : { now }),
    ...(options.allowDebug ? { allowDebug: true } : {}),
  });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    for (const check of result.checks) {
      // The library's wording names its option (allowDebug); here the flag that accepts it is named.
      const detail = check.detail.replace('pass allowDebug', 'pass --allow-debug');
      process.stdout.write(`${check.ok ? 'PASS' : 'FAIL'}  ${check.name}: ${detail}\n`);
    }
    const what = [result.product, result.signer?.toUpperCase()].filter(Boolean).join(', ');
    process.stdout.write(
      `${result.ok ? 'OK' : 'REJECTED'}: ${result.kind.toUpperCase()} report${what ? ` (${what})` : ''}\n`,
    );
  }
  if (!result.ok) process.exitCode = EXIT.negative;
}

/** Finds the VCEK for the report in `bytes`; undefined when the report does not parse (verification says why). */
async function fetchCertificates(
  bytes: Uint8Array,
  options: VerifyReportOptions,
  timeoutMs: number | undefined,
): Promise<SnpCertificateSource | undefined> {
  let report: SnpReport | undefined;
  try {
    report = isHclReport(bytes) ? parseHclReport(bytes).snpReport : parseSnpReport(bytes);
  } catch (error) {
    if (error instanceof CvmSkrError) return undefined;
    throw error;
  }
  if (report === undefined) return undefined;
  let product: SnpProduct | undefined;
  if (options.product !== undefined) {
    product = productFromName(options.product);
    if (product === undefined)
      throw new InvalidArgumentError(`--product ${options.product} is not Milan, Genoa or Turin`);
  }
  const { VcekFetcher } = await import('../snp/vcek-sources.js');
  const fetcher = new VcekFetcher({
    ...(options.thimUrl === undefined ? {} : { thimUrl: options.thimUrl }),
    ...(options.kdsUrl === undefined ? {} : { kdsBaseUrl: options.kdsUrl }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  const fetched = await fetcher.certificatesFor(report, product === undefined ? {} : { product });
  return fetched.certificates;
}
