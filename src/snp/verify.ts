import { verify as cryptoVerify } from 'node:crypto';
import {
  CvmSkrError,
  type EvidenceCheck,
  type EvidenceFailureCode,
  EvidenceVerificationError,
  InvalidArgumentError,
} from '../errors.js';
import { bytesEqual, bytesFrom, isAllZero, toHex } from './bytes.js';
import type { SnpCertificate } from './certificate.js';
import { loadSnpCertificatesCached, type SnpCertificateSource } from './certificates.js';
import { trustStoreFor, type VerifiedChain, verifiedChain } from './chain.js';
import { parseSnpReport, type SnpReport } from './report.js';
import type { TrustedRootInput } from './roots.js';
import { decodeTcb, productFromName, type SnpProduct, type TcbVersion, tcbComponents } from './tcb.js';

export type TcbMinimum = Partial<Omit<TcbVersion, 'raw'>> | bigint;

export interface VerifySnpReportOptions {
  /** VCEK/VLEK and optionally its chain: THIM JSON, PEM bundle, DER, certificate table, or a list of these. */
  certificates: SnpCertificateSource | readonly SnpCertificateSource[];
  /** Roots trusted besides the embedded AMD ones (e.g. the emulator's). */
  trustedRoots?: readonly TrustedRootInput[];
  /** The product when neither the report (version 2) nor the certificate says it. */
  product?: SnpProduct;
  /** Time at which certificates must be valid. Default: now. */
  now?: Date;
  /** Accept a guest policy that allows debugging. Default false. */
  allowDebug?: boolean;
  vmpl?: number;
  measurement?: Uint8Array | string;
  hostData?: Uint8Array | string;
  /** Expected report_data; shorter values are compared as value || zeros (e.g. a SHA-256 binding). */
  reportData?: Uint8Array | string;
  /** Each given component of reported_tcb must be at least this; a bigint is a TCB u64 of the product. */
  minimumTcb?: TcbMinimum;
  idKeyDigest?: Uint8Array | string;
  minimumGuestSvn?: number;
  familyId?: Uint8Array | string;
  imageId?: Uint8Array | string;
  /** Like `minimumTcb`, for launch_tcb (the TCB the guest was launched with). */
  minimumLaunchTcb?: TcbMinimum;
  /** Refuse provisional firmware: committed TCB and version must equal the current ones. */
  rejectProvisionalFirmware?: boolean;
}

export interface SnpVerificationResult {
  ok: true;
  report: SnpReport;
  product: SnpProduct;
  signer: 'vcek' | 'vlek';
  /** reported_tcb decoded with the product's layout. */
  reportedTcb: TcbVersion;
  /** Leaf first, trusted root last. */
  chain: readonly SnpCertificate[];
  checks: EvidenceCheck[];
}

export interface SnpCheckOutcome {
  ok: boolean;
  checks: EvidenceCheck[];
  report?: SnpReport;
  product?: SnpProduct;
  signer?: 'vcek' | 'vlek' | 'none';
  reportedTcb?: TcbVersion;
  error?: CvmSkrError;
}

/** Runs a named check, records it, and attaches the record to the error when it fails. */
export function runCheck<T>(
  checks: EvidenceCheck[],
  name: string,
  fn: () => { detail: string; value: T },
): T {
  try {
    const { detail, value } = fn();
    checks.push({ name, ok: true, detail });
    return value;
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    checks.push({ name, ok: false, detail });
    if (error instanceof EvidenceVerificationError) error.checks = checks;
    throw error;
  }
}

function expectBytes(value: Uint8Array | string, what: string, length: number, pad = false): Uint8Array {
  const bytes = bytesFrom(value, what);
  if (bytes.length === length) return bytes;
  if (pad && bytes.length < length) {
    const out = new Uint8Array(length);
    out.set(bytes);
    return out;
  }
  throw new InvalidArgumentError(
    `${what} must be ${pad ? 'at most ' : ''}${length} bytes, got ${bytes.length}`,
  );
}

function decideProduct(report: SnpReport, chain: VerifiedChain, wanted: SnpProduct | undefined): SnpProduct {
  const fromCert =
    chain.extensions.productName === undefined ? undefined : productFromName(chain.extensions.productName);
  const product = report.product ?? wanted ?? fromCert ?? chain.root.product;
  const fail = (why: string): never => {
    throw new EvidenceVerificationError('ERR_SNP_PRODUCT_MISMATCH', why, 'vcek-extensions');
  };
  if (product === undefined) {
    return fail(
      'cannot tell the product (Milan, Genoa, Turin): the report has no cpuid; pass options.product',
    );
  }
  if (wanted !== undefined && wanted !== product)
    fail(`the report is from ${product}, the caller expects ${wanted}`);
  if (chain.extensions.productName !== undefined && fromCert !== product) {
    fail(`the certificate is for ${chain.extensions.productName}, the report is from ${product}`);
  }
  if (chain.root.product !== undefined && chain.root.product !== product) {
    fail(`the chain ends in the ${chain.root.product} root, the report is from ${product}`);
  }
  return product;
}

function checkExtensions(
  report: SnpReport,
  chain: VerifiedChain,
  product: SnpProduct,
  tcb: TcbVersion,
): string {
  const ext = chain.extensions;
  for (const component of tcbComponents(product)) {
    const certified = ext[component];
    if (certified === undefined) {
      throw new EvidenceVerificationError(
        'ERR_SNP_TCB_MISMATCH',
        `the certificate has no ${component} TCB extension`,
        'vcek-extensions',
      );
    }
    if (certified !== tcb[component]) {
      throw new EvidenceVerificationError(
        'ERR_SNP_TCB_MISMATCH',
        `${component} SPL is ${tcb[component]} in reported_tcb but ${certified} in the certificate; fetch the VCEK for reported_tcb`,
        'vcek-extensions',
      );
    }
  }
  if (report.signer === 'vlek') return `product ${product}, TCB ${toHex(bigU64(tcb.raw))} (VLEK: no hwID)`;
  if (ext.hwid === undefined)
    throw new EvidenceVerificationError(
      'ERR_SNP_CHIP_ID_MISMATCH',
      'the VCEK has no hwID extension',
      'vcek-extensions',
    );
  if (report.maskChipKey || isAllZero(report.chipId)) {
    throw new EvidenceVerificationError(
      'ERR_SNP_CHIP_ID_MISMATCH',
      'chip_id is masked (MASK_CHIP_KEY), so the VCEK cannot be matched',
      'vcek-extensions',
    );
  }
  const idLength = product === 'Turin' ? 8 : 64;
  const matches =
    ext.hwid.length === idLength &&
    bytesEqual(ext.hwid, report.chipId.subarray(0, idLength)) &&
    isAllZero(report.chipId, idLength);
  if (!matches) {
    throw new EvidenceVerificationError(
      'ERR_SNP_CHIP_ID_MISMATCH',
      `the VCEK is for chip ${toHex(ext.hwid).slice(0, 16)}..., the report is from chip ${toHex(report.chipId).slice(0, 16)}...`,
      'vcek-extensions',
    );
  }
  return `product ${product}, hwID = chip_id, TCB components = reported_tcb`;
}

function bigU64(raw: bigint): Uint8Array {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(raw);
  return out;
}

function tcbAtLeast(tcb: TcbVersion, minimum: TcbMinimum, product: SnpProduct, check = 'minimum-tcb'): void {
  const min = typeof minimum === 'bigint' ? decodeTcb(minimum, product) : minimum;
  for (const component of tcbComponents(product)) {
    const want = min[component];
    if (want === undefined) continue;
    const have = tcb[component] ?? 0;
    if (have < want) {
      const field = check === 'minimum-tcb' ? 'reported_tcb' : 'launch_tcb';
      throw new EvidenceVerificationError(
        'ERR_SNP_TCB_TOO_LOW',
        `${field} ${component} SPL ${have} is below the minimum ${want}`,
        check,
      );
    }
  }
}

function leafFor(
  report: SnpReport,
  options: VerifySnpReportOptions,
): { leaf: SnpCertificate; others: SnpCertificate[]; kind: 'vcek' | 'vlek' } {
  const certs = loadSnpCertificatesCached(options.certificates);
  const match = certs.leaves.find((l) => l.kind === report.signer) ?? certs.leaves[0];
  if (match === undefined) throw new EvidenceVerificationError(
    'ERR_SNP_SIGNER_MISMATCH',
    'no VCEK or VLEK given',
    'certificate-chain',
  );
  const others = [...certs.others, ...certs.leaves.filter((l) => l !== match).map((l) => l.cert)];
  return { leaf: match.cert, others, kind: match.kind };
}

/**
 * Verifies an SNP report, check by check, into `checks`. Internal entry shared with the HCL verifier.
 */
export function verifySnpReportInto(
  input: Uint8Array | SnpReport,
  options: VerifySnpReportOptions,
  checks: EvidenceCheck[],
): SnpVerificationResult {
  const report = input instanceof Uint8Array ? parseSnpReport(input) : input;
  const now = options.now ?? new Date();
  if (Number.isNaN(now.getTime())) throw new InvalidArgumentError('options.now is not a valid date');

  const { chain, kind } = runCheck(checks, 'certificate-chain', () => {
    const { leaf, others, kind } = leafFor(report, options);
    const chain = verifiedChain(leaf, others, trustStoreFor(options.trustedRoots));
    const names = chain.path.map((c) => /CN=([^,]+)/.exec(c.subject)?.[1] ?? c.subject).join(' <- ');
    const where = chain.root.embedded ? `embedded ${chain.root.product} root` : 'caller-trusted root';
    return { detail: `${names} (${where})`, value: { chain, kind } };
  });

  runCheck(checks, 'signing-key', () => {
    if (report.signer === 'none')
      throw new EvidenceVerificationError(
        'ERR_SNP_SIGNER_MISMATCH',
        'the report is unsigned (signing key: none)',
        'signing-key',
      );
    if (report.signer !== kind) {
      throw new EvidenceVerificationError(
        'ERR_SNP_SIGNER_MISMATCH',
        `the report is signed by its ${report.signer.toUpperCase()}, the certificate given is a ${kind.toUpperCase()}`,
        'signing-key',
      );
    }
    // AMD issues VCEKs under the ASK and VLEKs under the ASVK; a leaf under the other one is not what it claims.
    const issuer = chain.path[1];
    if (chain.root.embedded && issuer !== undefined && issuer !== chain.root.root) {
      const viaAsvk = /VLEK/i.test(issuer.subject);
      if (viaAsvk !== (kind === 'vlek')) {
        throw new EvidenceVerificationError(
          'ERR_SNP_SIGNER_MISMATCH',
          `the ${kind.toUpperCase()} is issued by ${issuer.subject}, not by the ${kind === 'vlek' ? 'ASVK' : 'ASK'}`,
          'signing-key',
        );
      }
    }
    return { detail: `${kind.toUpperCase()}`, value: undefined };
  });

  const { product, tcb } = runCheck(checks, 'vcek-extensions', () => {
    const product = decideProduct(report, chain, options.product);
    const tcb = product === report.product ? report.reportedTcb : decodeTcb(report.reportedTcb.raw, product);
    return { detail: checkExtensions(report, chain, product, tcb), value: { product, tcb } };
  });

  runCheck(checks, 'certificate-validity', () => {
    const t = now.getTime();
    for (const cert of chain.path) {
      if (t < cert.notBefore.getTime() || t > cert.notAfter.getTime()) {
        throw new EvidenceVerificationError(
          'ERR_SNP_CERTIFICATE_VALIDITY',
          `${cert.subject} is valid from ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}, not at ${now.toISOString()}`,
          'certificate-validity',
        );
      }
    }
    return {
      detail: `all ${chain.path.length} certificates valid at ${now.toISOString()}`,
      value: undefined,
    };
  });

  runCheck(checks, 'report-signature', () => {
    if (report.signatureAlgo !== 1) {
      throw new EvidenceVerificationError(
        'ERR_SNP_SIGNATURE',
        `signature_algo ${report.signatureAlgo} is not 1 (ECDSA P-384 with SHA-384)`,
        'report-signature',
      );
    }
    const key = chain.leaf.publicKey;
    if (key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
      throw new EvidenceVerificationError(
        'ERR_SNP_SIGNATURE',
        'the signing certificate does not hold a P-384 key',
        'report-signature',
      );
    }
    const signature = Buffer.concat([report.signature.r, report.signature.s]);
    if (!cryptoVerify('sha384', report.signedBytes, { key, dsaEncoding: 'ieee-p1363' }, signature)) {
      throw new EvidenceVerificationError(
        'ERR_SNP_SIGNATURE',
        `the report signature does not verify under the ${kind.toUpperCase()}`,
        'report-signature',
      );
    }
    return { detail: 'ECDSA P-384 SHA-384 over bytes 0x000-0x29F', value: undefined };
  });

  runCheck(checks, 'debug', () => {
    if (report.policy.debug && options.allowDebug !== true) {
      throw new EvidenceVerificationError(
        'ERR_SNP_DEBUG',
        'the guest policy allows debugging (policy bit 19); pass allowDebug to accept it',
        'debug',
      );
    }
    return {
      detail: report.policy.debug ? 'debug allowed by the guest policy and by the caller' : 'debug disabled',
      value: undefined,
    };
  });

  if (options.vmpl !== undefined) {
    const want = options.vmpl;
    runCheck(checks, 'vmpl', () => {
      if (report.vmpl !== want)
        throw new EvidenceVerificationError('ERR_SNP_VMPL', `VMPL is ${report.vmpl}, expected ${want}`, 'vmpl');
      return { detail: `VMPL ${want}`, value: undefined };
    });
  }
  const compare = (
    name: string,
    value: Uint8Array | string | undefined,
    actual: Uint8Array,
    code: EvidenceFailureCode,
    pad = false,
  ): void => {
    if (value === undefined) return;
    runCheck(checks, name, () => {
      const want = expectBytes(value, name, actual.length, pad);
      if (!bytesEqual(want, actual))
        throw new EvidenceVerificationError(code, `${name} is ${toHex(actual)}, expected ${toHex(want)}`, name);
      return { detail: `${name} = ${toHex(actual)}`, value: undefined };
    });
  };
  compare('measurement', options.measurement, report.measurement, 'ERR_SNP_MEASUREMENT');
  compare('host-data', options.hostData, report.hostData, 'ERR_SNP_HOST_DATA');
  compare('report-data', options.reportData, report.reportData, 'ERR_SNP_REPORT_DATA', true);
  if (options.minimumTcb !== undefined) {
    const minimum = options.minimumTcb;
    runCheck(checks, 'minimum-tcb', () => {
      tcbAtLeast(tcb, minimum, product);
      return { detail: 'reported_tcb meets the minimum', value: undefined };
    });
  }
  compare('id-key-digest', options.idKeyDigest, report.idKeyDigest, 'ERR_SNP_ID_KEY_DIGEST');
  if (options.minimumGuestSvn !== undefined) {
    const minimum = options.minimumGuestSvn;
    runCheck(checks, 'minimum-guest-svn', () => {
      if (report.guestSvn < minimum) {
        throw new EvidenceVerificationError(
          'ERR_SNP_GUEST_SVN',
          `guest_svn ${report.guestSvn} is below the minimum ${minimum}`,
          'minimum-guest-svn',
        );
      }
      return { detail: `guest_svn ${report.guestSvn} >= ${minimum}`, value: undefined };
    });
  }
  compare('family-id', options.familyId, report.familyId, 'ERR_SNP_FAMILY_ID');
  compare('image-id', options.imageId, report.imageId, 'ERR_SNP_IMAGE_ID');
  if (options.minimumLaunchTcb !== undefined) {
    const minimum = options.minimumLaunchTcb;
    runCheck(checks, 'minimum-launch-tcb', () => {
      const launch = decodeTcb(report.launchTcb.raw, product);
      tcbAtLeast(launch, minimum, product, 'minimum-launch-tcb');
      return { detail: 'launch_tcb meets the minimum', value: undefined };
    });
  }
  if (options.rejectProvisionalFirmware === true) {
    runCheck(checks, 'committed-firmware', () => {
      const cur = report.currentVersion;
      const com = report.committedVersion;
      const sameVersion = cur.major === com.major && cur.minor === com.minor && cur.build === com.build;
      if (report.currentTcb.raw !== report.committedTcb.raw || !sameVersion) {
        throw new EvidenceVerificationError(
          'ERR_SNP_PROVISIONAL_FIRMWARE',
          `the firmware is provisional: current ${cur.major}.${cur.minor}.${cur.build} / TCB ${report.currentTcb.raw.toString(16)}, committed ${com.major}.${com.minor}.${com.build} / TCB ${report.committedTcb.raw.toString(16)}`,
          'committed-firmware',
        );
      }
      return { detail: `firmware ${cur.major}.${cur.minor}.${cur.build} committed`, value: undefined };
    });
  }
  return { ok: true, report, product, signer: kind, reportedTcb: tcb, chain: chain.path, checks };
}

/**
 * Verifies an SNP attestation report: certificate chain to an embedded AMD root (or a caller-added root),
 * signing key kind, VCEK extensions (product, hwID, TCB), certificate validity at `now`, the report signature,
 * debug policy, then each policy option the caller set. Throws the failing check's own error (with `.checks`).
 */
export function verifySnpReport(
  report: Uint8Array | SnpReport,
  options: VerifySnpReportOptions,
): SnpVerificationResult {
  return verifySnpReportInto(report, options, []);
}

/** Like `verifySnpReport` but never throws for bad evidence: returns every check run and the error, if any. */
export function checkSnpReport(
  input: Uint8Array | SnpReport,
  options: VerifySnpReportOptions,
): SnpCheckOutcome {
  const checks: EvidenceCheck[] = [];
  let report: SnpReport | undefined;
  try {
    report = input instanceof Uint8Array ? parseSnpReport(input) : input;
    const result = verifySnpReportInto(report, options, checks);
    return {
      ok: true,
      checks,
      report,
      product: result.product,
      signer: result.signer,
      reportedTcb: result.reportedTcb,
    };
  } catch (error) {
    if (!(error instanceof CvmSkrError)) throw error;
    if (checks.length === 0) checks.push({ name: 'parse', ok: false, detail: error.message });
    const outcome: SnpCheckOutcome = { ok: false, checks, error };
    if (report !== undefined) {
      outcome.report = report;
      outcome.signer = report.signer;
      outcome.reportedTcb = report.reportedTcb;
      if (report.product !== undefined) outcome.product = report.product;
    }
    return outcome;
  }
}
