import { MalformedDataError } from '../errors.js';
import { isAllZero } from './bytes.js';
import { decodeTcb, productFromCpuid, type SnpProduct, type TcbVersion } from './tcb.js';

export const SNP_REPORT_SIZE = 1184;
/** The signature covers bytes [0, 0x2A0). */
export const SNP_SIGNED_SIZE = 0x2a0;

export type SnpSigner = 'vcek' | 'vlek' | 'none';

/** Guest policy bits (SEV-SNP ABI, GUEST_POLICY). */
export interface SnpGuestPolicy {
  abiMinor: number;
  abiMajor: number;
  smt: boolean;
  migrateMa: boolean;
  debug: boolean;
  singleSocket: boolean;
  cxlAllow: boolean;
  memAes256Xts: boolean;
  raplDis: boolean;
  ciphertextHiding: boolean;
  pageSwapDisable: boolean;
  raw: bigint;
}

/** Platform info bits: what the host had enabled when the report was made. */
export interface SnpPlatformInfo {
  smtEnabled: boolean;
  tsmeEnabled: boolean;
  eccEnabled: boolean;
  raplDisabled: boolean;
  ciphertextHidingEnabled: boolean;
  aliasCheckComplete: boolean;
  tioEnabled: boolean;
  raw: bigint;
}

export interface SnpFirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

export interface SnpReport {
  version: number;
  guestSvn: number;
  policy: SnpGuestPolicy;
  familyId: Uint8Array;
  imageId: Uint8Array;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: TcbVersion;
  platformInfo: SnpPlatformInfo;
  authorKeyEnabled: boolean;
  maskChipKey: boolean;
  signer: SnpSigner;
  reportData: Uint8Array;
  measurement: Uint8Array;
  hostData: Uint8Array;
  idKeyDigest: Uint8Array;
  authorKeyDigest: Uint8Array;
  reportId: Uint8Array;
  reportIdMa: Uint8Array;
  reportedTcb: TcbVersion;
  /** Present from version 3 on. */
  cpuid?: { family: number; model: number; stepping: number };
  /** From cpuid (version >= 3); undefined for version 2 (take it from the VCEK or the caller). */
  product?: SnpProduct;
  /** 64 bytes; Turin fills only the first 8. Zero when masked or VLEK-signed. */
  chipId: Uint8Array;
  committedTcb: TcbVersion;
  currentVersion: SnpFirmwareVersion;
  committedVersion: SnpFirmwareVersion;
  launchTcb: TcbVersion;
  /** Version 5 only. */
  launchMitigationVector?: bigint;
  currentMitigationVector?: bigint;
  /** ECDSA R and S, big-endian, 48 bytes each. */
  signature: { r: Uint8Array; s: Uint8Array };
  /** The bytes the signature covers. */
  signedBytes: Uint8Array;
  /** The whole 1184-byte report (a copy, so later changes by the caller do not matter). */
  raw: Uint8Array;
}

const SIGNING_KEYS: Record<number, SnpSigner> = { 0: 'vcek', 1: 'vlek', 7: 'none' };

// Bits the ABI defines in GUEST_POLICY (0-25); bit 17 is reserved and must be one.
const POLICY_DEFINED = (1n << 26n) - 1n;
const POLICY_RESERVED_ONE = 1n << 17n;

function fail(message: string): never {
  throw new MalformedDataError('ERR_SNP_REPORT_MALFORMED', `SNP report: ${message}`);
}

function reserved(b: Uint8Array, start: number, end: number, what: string): void {
  if (!isAllZero(b, start, end)) {
    fail(`reserved bytes 0x${start.toString(16)}..0x${end.toString(16)} (${what}) must be zero`);
  }
}

/** Little-endian 72-byte ECDSA component to a 48-byte big-endian integer (the upper 24 bytes must be zero). */
function component(b: Uint8Array, offset: number, what: string): Uint8Array {
  reserved(b, offset + 48, offset + 72, `${what} above 384 bits`);
  const out = new Uint8Array(48);
  for (let i = 0; i < 48; i++) out[i] = b[offset + 47 - i] as number;
  return out;
}

function parsePolicy(raw: bigint): SnpGuestPolicy {
  if ((raw & ~POLICY_DEFINED) !== 0n) fail(`guest policy 0x${raw.toString(16)} sets reserved bits 26-63`);
  if ((raw & POLICY_RESERVED_ONE) === 0n) fail('guest policy bit 17 is reserved and must be one');
  const lo = Number(raw & 0xffffffffn);
  return {
    abiMinor: lo & 0xff,
    abiMajor: (lo >>> 8) & 0xff,
    smt: ((lo >>> 16) & 1) === 1,
    migrateMa: ((lo >>> 18) & 1) === 1,
    debug: ((lo >>> 19) & 1) === 1,
    singleSocket: ((lo >>> 20) & 1) === 1,
    cxlAllow: ((lo >>> 21) & 1) === 1,
    memAes256Xts: ((lo >>> 22) & 1) === 1,
    raplDis: ((lo >>> 23) & 1) === 1,
    ciphertextHiding: ((lo >>> 24) & 1) === 1,
    pageSwapDisable: ((lo >>> 25) & 1) === 1,
    raw,
  };
}

function parsePlatformInfo(raw: bigint): SnpPlatformInfo {
  const lo = Number(raw & 0xffn);
  return {
    smtEnabled: (lo & 1) === 1,
    tsmeEnabled: ((lo >>> 1) & 1) === 1,
    eccEnabled: ((lo >>> 2) & 1) === 1,
    raplDisabled: ((lo >>> 3) & 1) === 1,
    ciphertextHidingEnabled: ((lo >>> 4) & 1) === 1,
    aliasCheckComplete: ((lo >>> 5) & 1) === 1,
    tioEnabled: ((lo >>> 7) & 1) === 1,
    raw,
  };
}

function firmwareVersion(b: Uint8Array, o: number): SnpFirmwareVersion {
  return { build: b[o] as number, minor: b[o + 1] as number, major: b[o + 2] as number };
}

/**
 * Parses a 1184-byte SEV-SNP ATTESTATION_REPORT (versions 2 to 5). Every reserved field the ABI says must be
 * zero is checked, so a report that parses has no hidden bytes in its signed region. Throws a
 * `MalformedDataError` (`ERR_SNP_REPORT_MALFORMED`); never reads outside `bytes`.
 */
export function parseSnpReport(bytes: Uint8Array): SnpReport {
  if (!(bytes instanceof Uint8Array)) fail('expected bytes');
  if (bytes.length !== SNP_REPORT_SIZE) fail(`expected ${SNP_REPORT_SIZE} bytes, got ${bytes.length}`);
  const b = new Uint8Array(bytes);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);

  const version = view.getUint32(0x00, true);
  if (version < 2 || version > 5) fail(`version ${version} is not supported (2 to 5)`);

  const keyInfo = view.getUint32(0x48, true);
  if (keyInfo >>> 5 !== 0)
    fail(`reserved bits 5-31 of the key info word 0x${keyInfo.toString(16)} must be zero`);
  const signer = SIGNING_KEYS[(keyInfo >>> 2) & 7];
  if (signer === undefined) fail(`signing key selector ${(keyInfo >>> 2) & 7} is reserved`);
  reserved(b, 0x4c, 0x50, 'after key info');

  let cpuid: SnpReport['cpuid'];
  let product: SnpProduct | undefined;
  if (version >= 3) {
    cpuid = { family: b[0x188] as number, model: b[0x189] as number, stepping: b[0x18a] as number };
    product = productFromCpuid(cpuid.family, cpuid.model);
    reserved(b, 0x18b, 0x1a0, 'after cpuid');
  } else {
    reserved(b, 0x188, 0x1a0, 'cpuid, absent before version 3');
  }
  reserved(b, 0x1eb, 0x1ec, 'after current version');
  reserved(b, 0x1ef, 0x1f0, 'after committed version');
  if (version >= 5) {
    reserved(b, 0x208, SNP_SIGNED_SIZE, 'end of the signed region');
  } else {
    reserved(b, 0x1f8, SNP_SIGNED_SIZE, 'end of the signed region (mitigation vectors need version 5)');
  }
  const r = component(b, 0x2a0, 'signature R');
  const s = component(b, 0x2e8, 'signature S');
  reserved(b, 0x330, SNP_REPORT_SIZE, 'after the signature');

  const report: SnpReport = {
    version,
    guestSvn: view.getUint32(0x04, true),
    policy: parsePolicy(view.getBigUint64(0x08, true)),
    familyId: b.subarray(0x10, 0x10 + 16),
    imageId: b.subarray(0x20, 0x20 + 16),
    vmpl: view.getUint32(0x30, true),
    signatureAlgo: view.getUint32(0x34, true),
    currentTcb: decodeTcb(view.getBigUint64(0x38, true), product),
    platformInfo: parsePlatformInfo(view.getBigUint64(0x40, true)),
    authorKeyEnabled: (keyInfo & 1) === 1,
    maskChipKey: (keyInfo & 2) === 2,
    signer,
    reportData: b.subarray(0x50, 0x50 + 64),
    measurement: b.subarray(0x90, 0x90 + 48),
    hostData: b.subarray(0xc0, 0xc0 + 32),
    idKeyDigest: b.subarray(0xe0, 0xe0 + 48),
    authorKeyDigest: b.subarray(0x110, 0x110 + 48),
    reportId: b.subarray(0x140, 0x140 + 32),
    reportIdMa: b.subarray(0x160, 0x160 + 32),
    reportedTcb: decodeTcb(view.getBigUint64(0x180, true), product),
    chipId: b.subarray(0x1a0, 0x1a0 + 64),
    committedTcb: decodeTcb(view.getBigUint64(0x1e0, true), product),
    currentVersion: firmwareVersion(b, 0x1e8),
    committedVersion: firmwareVersion(b, 0x1ec),
    launchTcb: decodeTcb(view.getBigUint64(0x1f0, true), product),
    signature: { r, s },
    signedBytes: b.subarray(0, SNP_SIGNED_SIZE),
    raw: b,
  };
  if (cpuid !== undefined) report.cpuid = cpuid;
  if (product !== undefined) report.product = product;
  if (version >= 5) {
    report.launchMitigationVector = view.getBigUint64(0x1f8, true);
    report.currentMitigationVector = view.getBigUint64(0x200, true);
  }
  return report;
}
