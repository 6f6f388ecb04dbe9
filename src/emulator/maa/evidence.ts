/**
 * What the emulated attestation service checks, with the project's own verifiers (src/snp, src/hcl, src/tpm):
 * nothing is rubber-stamped. Each failure is an `EvidenceVerificationError` naming its check, which the server
 * returns as a 400.
 *
 * AzureGuest: SNP report (chain to a trusted root, VCEK extensions, validity, signature, debug, minimum TCB),
 * HCL binding of the runtime data, `ak-match` (the TPM AK is HCLAkPub), quote signature / nonce / PCR digest,
 * `ak-certificate` (certifies that AK, issued by a trusted vTPM CA), `transfer-key-certify` (the AK certified
 * the transfer key, which is a TPM-bound decryption key usable only under PolicyPCR over the quoted PCRs),
 * `tcg-log` (a non-empty TcgLogs replays to the quoted PCRs; boot-log.ts), then the service policy. SHA-1
 * quote and certify signatures and SHA-1 PCR banks are refused.
 * SevSnpVm: SNP report checks, `runtime-data-binding` (report_data = sha256(runtime data) || zeros), policy.
 */
import { createHash, createPublicKey, type KeyObject, X509Certificate } from 'node:crypto';
import type { Jwk } from '../../util/jwk.js';
import { CvmSkrError, type EvidenceCheck, EvidenceVerificationError } from '../../errors.js';
import {
  type AzureVtpmVerificationResult,
  verifyAzureVtpmEvidence,
  verifyTransferKeyCertification,
} from '../../hcl/verify.js';
import { bytesEqual, isAllZero, toHex } from '../../snp/bytes.js';
import { parseSnpReport, type SnpReport } from '../../snp/report.js';
import type { TrustedRootInput } from '../../snp/roots.js';
import { decodeTcb, type SnpProduct, type TcbVersion, tcbComponents } from '../../snp/tcb.js';
import { runCheck, type SnpVerificationResult, type TcbMinimum, verifySnpReport } from '../../snp/verify.js';
import { publicToKeyObject } from '../../tpm/keys.js';
import { TpmReader } from '../../tpm/marshal.js';
import { parseAttest, readTpm2bPublic, type TpmtPublic } from '../../tpm/structures.js';
import type { SecureBootState } from '../../tpm/event-log.js';
import { encodeHclReport, type HclHash } from '../hardware/hcl-report.js';
import { checkTcgLog } from './boot-log.js';

export interface AttestationPolicy {
  /** Accept reports whose guest policy allows debugging. Default false (400 `debug`). */
  allowDebug?: boolean;
  /**
   * Minimum reported TCB per product; `false` for none. Default: the emulated chip's default TCB
   * (`EMULATED_DEFAULT_TCB`), so the "old TCB" knob is refused (400 `minimum-tcb`).
   */
  minimumTcb?: Partial<Record<SnpProduct, TcbMinimum>> | false;
  /** Allowed launch measurements (hex or bytes); unset allows any (400 `measurement` otherwise). */
  measurements?: readonly (string | Uint8Array)[];
}

export interface EvidenceContext {
  trustedRoots: readonly TrustedRootInput[];
  /** PEM certificates of the vTPM CAs whose AK certificates are accepted; empty accepts any issuer. */
  trustedAkIssuers: readonly string[];
  policy: AttestationPolicy;
  defaultMinimumTcb: Record<SnpProduct, TcbMinimum>;
  now: Date;
}

/**
 * x-ms-compliance-status, an explicit rule set. A verified report is compliant when: debugging is disabled;
 * it was made at VMPL 0; it is signed by a VCEK; its reported TCB is at least the policy minimum for its
 * product (when one is set); and, for AzureGuest, the HCL VM configuration says secure boot and TPM are on.
 * Compliant evidence of either protocol is `azure-compliant-cvm` (as in Microsoft's sample tokens); otherwise
 * the claim is absent.
 */
export const COMPLIANCE_RULES = [
  'debug disabled (policy bit 19 clear)',
  'VMPL 0',
  'signed by a VCEK',
  'reported TCB >= the policy minimum for the product',
  'AzureGuest only: vm-configuration secure-boot and tpm-enabled are true',
] as const;

export interface VerifiedSnp {
  report: SnpReport;
  product: SnpProduct;
  tcb: TcbVersion;
  signer: 'vcek' | 'vlek';
  checks: EvidenceCheck[];
}

export interface VerifiedAzureGuest {
  snp: VerifiedSnp;
  runtimeJson: Record<string, unknown>;
  transferKey: KeyObject;
  transferKeyJwk: { kty: 'RSA'; n: string; e: string };
  pcrs: number[];
  /** The secure-boot state of the request's TCG log, absent when it sent an empty log. */
  boot?: SecureBootState;
  compliant: boolean;
  checks: EvidenceCheck[];
}

export interface VerifiedSevSnpVm {
  snp: VerifiedSnp;
  runtimeJson: Record<string, unknown>;
  compliant: boolean;
  checks: EvidenceCheck[];
}

function fail(check: string, message: string): never {
  throw new EvidenceVerificationError('ERR_EVIDENCE_VERIFICATION', message, check);
}

const B64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Standard or URL-safe base64, padded or not. */
export function decodeBase64(value: unknown, what: string, check = 'request'): Buffer {
  if (typeof value !== 'string' || !B64.test(value)) fail(check, `${what} is not base64`);
  return Buffer.from(value, 'base64');
}

function parseJson(bytes: Uint8Array, what: string, check = 'request'): Record<string, unknown> {
  let end = bytes.length;
  while (end > 0 && bytes[end - 1] === 0) end--;
  try {
    const v: unknown = JSON.parse(Buffer.from(bytes.subarray(0, end)).toString('utf8'));
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  return fail(check, `${what} is not a JSON object`);
}

function field(obj: Record<string, unknown>, name: string, what: string): unknown {
  const v = obj[name];
  if (v === undefined || v === null) fail('request', `${what} has no ${name}`);
  return v;
}

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('request', `${what} is not an object`);
  return v as Record<string, unknown>;
}

function minimumFor(ctx: EvidenceContext, product: SnpProduct): TcbMinimum | undefined {
  if (ctx.policy.minimumTcb === false) return undefined;
  return ctx.policy.minimumTcb?.[product] ?? ctx.defaultMinimumTcb[product];
}

function meetsMinimum(tcb: TcbVersion, minimum: TcbMinimum | undefined, product: SnpProduct): boolean {
  if (minimum === undefined) return true;
  const min = typeof minimum === 'bigint' ? decodeTcb(minimum, product) : minimum;
  return tcbComponents(product).every((c) => (tcb[c] ?? 0) >= (min[c] ?? 0));
}

function checkMeasurement(checks: EvidenceCheck[], ctx: EvidenceContext, report: SnpReport): void {
  const allowed = ctx.policy.measurements;
  if (allowed === undefined) return;
  runCheck(checks, 'measurement', () => {
    const wanted = allowed.map((m) => (typeof m === 'string' ? m.toLowerCase() : toHex(m)));
    const actual = toHex(report.measurement);
    if (!wanted.includes(actual)) {
      throw new EvidenceVerificationError(
        'ERR_ATTESTATION_POLICY',
        `launch measurement ${actual} is not one the attestation policy allows`,
        'measurement',
      );
    }
    return { detail: `measurement ${actual.slice(0, 16)}... allowed`, value: undefined };
  });
}

function snpCompliant(snp: VerifiedSnp, ctx: EvidenceContext): boolean {
  const r = snp.report;
  return (
    !r.policy.debug &&
    r.vmpl === 0 &&
    snp.signer === 'vcek' &&
    meetsMinimum(snp.tcb, minimumFor(ctx, snp.product), snp.product)
  );
}

/**
 * The VCEK chain the client sent. Every Microsoft client sends one (the guest library will not attest without:
 * IsolationInfo::Validate in Azure/confidential-computing-cvm-guest-attestation client-library/.../lib/
 * IsolationInfo.cpp), and the service is not known to look one up itself, so evidence without it is refused.
 */
function certificatesFor(chainText: string | undefined, where: string): string {
  if (chainText?.includes('-----BEGIN CERTIFICATE-----')) return chainText;
  throw new EvidenceVerificationError(
    'ERR_VCEK_CHAIN_MISSING',
    `the evidence has no ${where} (VCEK, ASK, ARK as PEM): a client fetches it from THIM ` +
      '(http://169.254.169.254/metadata/THIM/amd/certification) inside the VM, or from AMD KDS, and sends it',
    'certificate-chain',
  );
}

function snpResult(result: SnpVerificationResult): VerifiedSnp {
  return {
    report: result.report,
    product: result.product,
    tcb: result.reportedTcb,
    signer: result.signer,
    checks: result.checks,
  };
}

// ---------------------------------------------------------------------------------------------------------
// SevSnpVm
// ---------------------------------------------------------------------------------------------------------

export async function verifySevSnpVmRequest(
  body: Record<string, unknown>,
  ctx: EvidenceContext,
): Promise<VerifiedSevSnpVm> {
  const reportDoc = parseJson(decodeBase64(field(body, 'report', 'the request'), 'report'), 'report');
  const reportBytes = decodeBase64(field(reportDoc, 'SnpReport', 'report'), 'report.SnpReport');
  const chainField = reportDoc.VcekCertChain;
  const chainText =
    chainField === undefined
      ? undefined
      : decodeBase64(chainField, 'report.VcekCertChain').toString('latin1');
  const runtime = asObject(field(body, 'runtimeData', 'the request'), 'runtimeData');
  const runtimeBytes = decodeBase64(field(runtime, 'data', 'runtimeData'), 'runtimeData.data');
  const dataType = runtime.dataType ?? 'JSON';
  if (dataType !== 'JSON' && dataType !== 'Binary')
    fail('request', `runtimeData.dataType ${String(dataType)} is not JSON or Binary`);

  const report = parseReport(reportBytes);
  const minimumTcb = minimumForReport(ctx, report);
  const result = verifySnpReport(report, {
    certificates: certificatesFor(chainText, 'report.VcekCertChain'),
    trustedRoots: ctx.trustedRoots,
    allowDebug: ctx.policy.allowDebug === true,
    now: ctx.now,
    ...(minimumTcb === undefined ? {} : { minimumTcb }),
  });
  const snp = snpResult(result);
  const checks = snp.checks;
  checkMinimumFromVcek(checks, ctx, report, snp);
  runCheck(checks, 'runtime-data-binding', () => {
    const digest = createHash('sha256').update(runtimeBytes).digest();
    if (!bytesEqual(digest, report.reportData.subarray(0, 32)) || !isAllZero(report.reportData, 32)) {
      throw new EvidenceVerificationError(
        'ERR_RUNTIME_DATA_BINDING',
        `report_data is not sha256(runtime data) || zeros (${toHex(digest)}); the runtime data is not the one the report was made for`,
        'runtime-data-binding',
      );
    }
    return { detail: 'report_data = sha256(runtime data) || zeros', value: undefined };
  });
  const runtimeJson =
    dataType === 'JSON' ? parseJson(runtimeBytes, 'runtime data', 'runtime-data-binding') : {};
  checkMeasurement(checks, ctx, report);
  return { snp, runtimeJson, compliant: snpCompliant(snp, ctx), checks };
}

function parseReport(bytes: Uint8Array): SnpReport {
  try {
    return parseSnpReport(bytes);
  } catch (error) {
    if (error instanceof CvmSkrError) fail('parse', `SNP report: ${error.message}`);
    throw error;
  }
}

function minimumForReport(ctx: EvidenceContext, report: SnpReport): TcbMinimum | undefined {
  // Version-2 reports do not name their product; the verifier then takes it from the VCEK, and
  // checkMinimumFromVcek applies the minimum once the product is known.
  return report.product === undefined ? undefined : minimumFor(ctx, report.product);
}

/**
 * The minimum TCB for a report that does not name its product (version 2): the product is the one the
 * verifier took from the VCEK (its productName extension), so old-TCB version-2 evidence is refused like
 * version-3 evidence (400 `minimum-tcb`).
 */
function checkMinimumFromVcek(
  checks: EvidenceCheck[],
  ctx: EvidenceContext,
  report: SnpReport,
  snp: VerifiedSnp,
): void {
  if (report.product !== undefined) return;
  const minimum = minimumFor(ctx, snp.product);
  if (minimum === undefined) return;
  runCheck(checks, 'minimum-tcb', () => {
    if (!meetsMinimum(snp.tcb, minimum, snp.product)) {
      throw new EvidenceVerificationError(
        'ERR_SNP_TCB_TOO_LOW',
        `reported_tcb is below the minimum for ${snp.product} (product taken from the VCEK: the version-2 report does not name it)`,
        'minimum-tcb',
      );
    }
    return {
      detail: `reported_tcb meets the ${snp.product} minimum (product from the VCEK)`,
      value: undefined,
    };
  });
}

// ---------------------------------------------------------------------------------------------------------
// AzureGuest
// ---------------------------------------------------------------------------------------------------------

function tpmPublic(bytes: Uint8Array, what: string, check: string): TpmtPublic {
  try {
    const r = new TpmReader(bytes, what);
    const pub = readTpm2bPublic(r);
    r.expectEnd();
    return pub;
  } catch (error) {
    if (error instanceof CvmSkrError) fail(check, `${what}: ${error.message}`);
    throw error;
  }
}

function sameKey(a: KeyObject, b: KeyObject): boolean {
  return a.export({ format: 'der', type: 'spki' }).equals(b.export({ format: 'der', type: 'spki' }));
}

const HASH_LENGTHS: [HclHash, number][] = [
  ['sha256', 32],
  ['sha384', 48],
  ['sha512', 64],
];

/** The hash the HCL bound its runtime data with: the one whose digest is in report_data (default sha256). */
function bindingHash(report: SnpReport, runtime: Uint8Array): HclHash {
  for (const [name, length] of HASH_LENGTHS) {
    const digest = createHash(name).update(runtime).digest();
    if (bytesEqual(digest, report.reportData.subarray(0, length))) return name;
  }
  return 'sha256';
}

export async function verifyAzureGuestRequest(
  info: Record<string, unknown>,
  ctx: EvidenceContext,
): Promise<VerifiedAzureGuest> {
  const version = info.AttestationProtocolVersion;
  if (version !== '2.0' && version !== '1.0') {
    fail('request', `AttestationProtocolVersion ${String(version)} is not supported (2.0)`);
  }
  const tpm = asObject(field(info, 'TpmInfo', 'AttestationInfo'), 'TpmInfo');
  const isolation = asObject(field(info, 'IsolationInfo', 'AttestationInfo'), 'IsolationInfo');
  if (isolation.Type !== 'SevSnp')
    fail('request', `IsolationInfo.Type ${String(isolation.Type)} is not SevSnp`);
  const evidence = asObject(field(isolation, 'Evidence', 'IsolationInfo'), 'IsolationInfo.Evidence');
  const proof = parseJson(
    decodeBase64(field(evidence, 'Proof', 'Evidence'), 'Evidence.Proof'),
    'Evidence.Proof',
  );
  const reportBytes = decodeBase64(field(proof, 'SnpReport', 'Evidence.Proof'), 'Proof.SnpReport');
  const chainText =
    proof.VcekCertChain === undefined
      ? undefined
      : decodeBase64(proof.VcekCertChain, 'Proof.VcekCertChain').toString('latin1');
  const runtimeBytes = decodeBase64(field(evidence, 'RunTimeData', 'Evidence'), 'Evidence.RunTimeData');

  const bytes = (name: string) => decodeBase64(field(tpm, name, 'TpmInfo'), `TpmInfo.${name}`);
  const akCertDer = bytes('AikCert');
  const akPubBytes = bytes('AikPub');
  const quote = bytes('PcrQuote');
  const quoteSignature = bytes('PcrSignature');
  const encKeyPub = bytes('EncKeyPub');
  const certifyInfo = bytes('EncKeyCertifyInfo');
  const certifySignature = bytes('EncKeyCertifyInfoSignature');
  const tcgLog =
    info.TcgLogs === undefined || info.TcgLogs === null ? new Uint8Array(0) : decodeBase64(info.TcgLogs, 'TcgLogs');
  const pcrList = field(tpm, 'PCRs', 'TpmInfo');
  if (!Array.isArray(pcrList)) fail('request', 'TpmInfo.PCRs is not a list');
  const pcrs = pcrList.map((p, i) => {
    const o = asObject(p, `TpmInfo.PCRs[${i}]`);
    if (!Number.isInteger(o.Index)) fail('request', `TpmInfo.PCRs[${i}].Index is not an integer`);
    return { index: o.Index as number, digest: decodeBase64(o.Digest, `TpmInfo.PCRs[${i}].Digest`) };
  });
  const payload = info.ClientPayload;
  if (
    payload !== undefined &&
    (typeof payload !== 'object' ||
      payload === null ||
      Array.isArray(payload) ||
      Object.values(payload).some((v) => typeof v !== 'string'))
  ) {
    fail('request', 'ClientPayload is not an object of base64 strings');
  }
  const payloadNonce =
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as { nonce?: unknown }).nonce === 'string'
      ? decodeBase64((payload as { nonce: string }).nonce, 'ClientPayload.nonce')
      : undefined;

  const report = parseReport(reportBytes);
  const hclReport = encodeHclReport({
    snpReport: reportBytes,
    runtimeData: runtimeBytes,
    hash: bindingHash(report, runtimeBytes),
    padTo: 0x4d4 + runtimeBytes.length,
  });
  const akPub = tpmPublic(akPubBytes, 'TpmInfo.AikPub', 'ak-match');
  const akKey = publicToKeyObject(akPub);

  // The quote may carry the client's nonce, or (like the reference client) nothing.
  const quoteNonce = quoteExtraData(quote);
  if (quoteNonce.length > 0 && (payloadNonce === undefined || !bytesEqual(quoteNonce, payloadNonce))) {
    throw new EvidenceVerificationError(
      'ERR_QUOTE_NONCE',
      'the quote carries qualifying data that is not the ClientPayload nonce',
      'quote-nonce',
    );
  }
  const minimumTcb = minimumForReport(ctx, report);
  let verified: AzureVtpmVerificationResult;
  try {
    verified = verifyAzureVtpmEvidence({
      hclReport,
      certificates: certificatesFor(chainText, 'Proof.VcekCertChain'),
      trustedRoots: ctx.trustedRoots,
      allowDebug: ctx.policy.allowDebug === true,
      now: ctx.now,
      quote,
      signature: quoteSignature,
      pcrs,
      nonce: quoteNonce,
      ...(minimumTcb === undefined ? {} : { minimumTcb }),
    });
  } catch (error) {
    // A quote that HCLAkPub did not sign, from an AK that is not HCLAkPub: name the real cause.
    if (error instanceof EvidenceVerificationError && error.code === 'ERR_QUOTE_SIGNATURE') {
      const hclAk = hclAkPub(runtimeBytes);
      if (hclAk !== undefined && !sameKey(hclAk, akKey)) {
        const mismatch = new EvidenceVerificationError(
          'ERR_AK_MISMATCH',
          'the TPM AK (TpmInfo.AikPub) is not HCLAkPub of the HCL report: the report belongs to another vTPM',
          'ak-match',
        );
        mismatch.checks = [
          ...error.checks.slice(0, -1),
          { name: 'ak-match', ok: false, detail: mismatch.message },
        ];
        throw mismatch;
      }
    }
    throw error;
  }
  const checks = verified.checks;
  const snp: VerifiedSnp = snpResult(verified.snp);
  checkMinimumFromVcek(checks, ctx, report, snp);

  runCheck(checks, 'ak-match', () => {
    if (!sameKey(verified.akPub, akKey)) {
      throw new EvidenceVerificationError(
        'ERR_AK_MISMATCH',
        'TpmInfo.AikPub is not HCLAkPub of the HCL report',
        'ak-match',
      );
    }
    return { detail: 'TpmInfo.AikPub = HCLAkPub', value: undefined };
  });

  runCheck(checks, 'ak-certificate', () => {
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(akCertDer);
    } catch (error) {
      throw new EvidenceVerificationError(
        'ERR_AK_CERTIFICATE',
        'TpmInfo.AikCert is not a DER certificate',
        'ak-certificate',
        { cause: error },
      );
    }
    if (!sameKey(cert.publicKey, akKey)) {
      throw new EvidenceVerificationError(
        'ERR_AK_CERTIFICATE',
        'the AK certificate certifies another key than TpmInfo.AikPub',
        'ak-certificate',
      );
    }
    const t = ctx.now.getTime();
    if (t < new Date(cert.validFrom).getTime() || t > new Date(cert.validTo).getTime()) {
      throw new EvidenceVerificationError(
        'ERR_AK_CERTIFICATE',
        `the AK certificate is not valid at ${ctx.now.toISOString()}`,
        'ak-certificate',
      );
    }
    if (ctx.trustedAkIssuers.length === 0)
      return { detail: 'AK certificate matches (issuer not pinned)', value: undefined };
    const issuer = ctx.trustedAkIssuers
      .map((pem) => new X509Certificate(pem))
      .find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
    if (issuer === undefined) {
      throw new EvidenceVerificationError(
        'ERR_AK_CERTIFICATE',
        `the AK certificate (issuer ${cert.issuer.replace(/\n/g, ', ')}) is not issued by a trusted vTPM CA`,
        'ak-certificate',
      );
    }
    return { detail: `AK certificate issued by ${issuer.subject.replace(/\n/g, ', ')}`, value: undefined };
  });

  // The library's certify check: AK signature (SHA-256 or stronger), name, attributes, and an authPolicy that is
  // PolicyPCR over the quoted PCRs (src/hcl/verify.ts verifyTransferKeyCertification).
  const transfer = runCheck(checks, 'transfer-key-certify', () => ({
    detail: 'the AK certified an RSA decryption key bound to PolicyPCR over the quoted PCRs',
    value: verifyTransferKeyCertification(
      akKey,
      { public: encKeyPub, certifyInfo, signature: certifySignature },
      verified.quote,
      pcrs,
    ),
  }));

  // After the quote checks, so the PCRs the log is replayed against are the ones the AK signed.
  const boot = checkTcgLog(checks, tcgLog, pcrs);
  checkMeasurement(checks, ctx, snp.report);
  const config = verified.hcl.runtimeData.vmConfiguration;
  const compliant = snpCompliant(snp, ctx) && config?.secureBoot === true && config?.tpmEnabled === true;
  const jwk = transfer.export({ format: 'jwk' });
  return {
    snp,
    runtimeJson: verified.hcl.runtimeData.json,
    transferKey: transfer,
    transferKeyJwk: { kty: 'RSA', n: String(jwk.n), e: String(jwk.e) },
    pcrs: pcrs.map((p) => p.index),
    ...(boot === undefined ? {} : { boot }),
    compliant,
    checks,
  };
}

function quoteExtraData(quote: Uint8Array): Uint8Array {
  try {
    return parseAttest(quote).extraData;
  } catch (error) {
    if (error instanceof CvmSkrError) fail('quote-signature', `PcrQuote: ${error.message}`);
    throw error;
  }
}

function hclAkPub(runtime: Uint8Array): KeyObject | undefined {
  try {
    const json = JSON.parse(Buffer.from(runtime).toString('utf8').replace(/\0+$/, '')) as { keys?: unknown };
    const keys = Array.isArray(json.keys) ? (json.keys as Record<string, unknown>[]) : [];
    const ak = keys.find((k) => k.kid === 'HCLAkPub');
    return ak ? createPublicKey({ key: ak as Jwk, format: 'jwk' }) : undefined;
  } catch {
    return undefined;
  }
}
