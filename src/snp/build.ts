import { sign as cryptoSign, type KeyObject } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { SNP_REPORT_SIZE, SNP_SIGNED_SIZE, type SnpSigner } from './report.js';

/** Fields for building a report (emulators and tests). Everything left out is zero, except the defaults noted. */
export interface SnpReportFields {
  /** Default 2; 3+ writes cpuid. */
  version?: number;
  guestSvn?: number;
  /** Default 0x30000 (SMT allowed, reserved bit 17 set). */
  policy?: bigint;
  familyId?: Uint8Array;
  imageId?: Uint8Array;
  vmpl?: number;
  /** Default 1 (ECDSA P-384 SHA-384). */
  signatureAlgo?: number;
  currentTcb?: bigint;
  platformInfo?: bigint;
  authorKeyEnabled?: boolean;
  maskChipKey?: boolean;
  /** Default 'vcek'. */
  signer?: SnpSigner;
  reportData?: Uint8Array;
  measurement?: Uint8Array;
  hostData?: Uint8Array;
  idKeyDigest?: Uint8Array;
  authorKeyDigest?: Uint8Array;
  reportId?: Uint8Array;
  reportIdMa?: Uint8Array;
  reportedTcb?: bigint;
  cpuid?: { family: number; model: number; stepping: number };
  chipId?: Uint8Array;
  committedTcb?: bigint;
  currentVersion?: { major: number; minor: number; build: number };
  committedVersion?: { major: number; minor: number; build: number };
  launchTcb?: bigint;
  launchMitigationVector?: bigint;
  currentMitigationVector?: bigint;
}

const SIGNER_CODE: Record<SnpSigner, number> = { vcek: 0, vlek: 1, none: 7 };

/** Lays out an unsigned 1184-byte report. */
export function encodeSnpReport(fields: SnpReportFields): Uint8Array {
  const b = new Uint8Array(SNP_REPORT_SIZE);
  const view = new DataView(b.buffer);
  const put = (offset: number, value: Uint8Array | undefined, max: number, what: string): void => {
    if (value === undefined) return;
    if (value.length > max) throw new InvalidArgumentError(`${what} is at most ${max} bytes`);
    b.set(value, offset);
  };
  const version = fields.version ?? 2;
  view.setUint32(0x00, version, true);
  view.setUint32(0x04, fields.guestSvn ?? 0, true);
  view.setBigUint64(0x08, fields.policy ?? 0x30000n, true);
  put(0x10, fields.familyId, 16, 'familyId');
  put(0x20, fields.imageId, 16, 'imageId');
  view.setUint32(0x30, fields.vmpl ?? 0, true);
  view.setUint32(0x34, fields.signatureAlgo ?? 1, true);
  view.setBigUint64(0x38, fields.currentTcb ?? fields.reportedTcb ?? 0n, true);
  view.setBigUint64(0x40, fields.platformInfo ?? 0n, true);
  const keyInfo =
    (fields.authorKeyEnabled ? 1 : 0) |
    (fields.maskChipKey ? 2 : 0) |
    (SIGNER_CODE[fields.signer ?? 'vcek'] << 2);
  view.setUint32(0x48, keyInfo, true);
  put(0x50, fields.reportData, 64, 'reportData');
  put(0x90, fields.measurement, 48, 'measurement');
  put(0xc0, fields.hostData, 32, 'hostData');
  put(0xe0, fields.idKeyDigest, 48, 'idKeyDigest');
  put(0x110, fields.authorKeyDigest, 48, 'authorKeyDigest');
  put(0x140, fields.reportId, 32, 'reportId');
  put(0x160, fields.reportIdMa, 32, 'reportIdMa');
  view.setBigUint64(0x180, fields.reportedTcb ?? 0n, true);
  if (version >= 3 && fields.cpuid !== undefined) {
    b[0x188] = fields.cpuid.family;
    b[0x189] = fields.cpuid.model;
    b[0x18a] = fields.cpuid.stepping;
  }
  put(0x1a0, fields.chipId, 64, 'chipId');
  view.setBigUint64(0x1e0, fields.committedTcb ?? fields.reportedTcb ?? 0n, true);
  const fw = (o: number, v: { major: number; minor: number; build: number } | undefined): void => {
    if (v === undefined) return;
    b[o] = v.build;
    b[o + 1] = v.minor;
    b[o + 2] = v.major;
  };
  fw(0x1e8, fields.currentVersion);
  fw(0x1ec, fields.committedVersion);
  view.setBigUint64(0x1f0, fields.launchTcb ?? fields.reportedTcb ?? 0n, true);
  if (version >= 5) {
    view.setBigUint64(0x1f8, fields.launchMitigationVector ?? 0n, true);
    view.setBigUint64(0x200, fields.currentMitigationVector ?? 0n, true);
  }
  return b;
}

/** Signs bytes [0, 0x2A0) of a report with an ECDSA P-384 key, writing R and S little-endian as the firmware does. */
export function signSnpReport(report: Uint8Array, privateKey: KeyObject): Uint8Array {
  if (report.length !== SNP_REPORT_SIZE)
    throw new InvalidArgumentError(`a report is ${SNP_REPORT_SIZE} bytes`);
  const out = new Uint8Array(report);
  const sig = cryptoSign('sha384', out.subarray(0, SNP_SIGNED_SIZE), {
    key: privateKey,
    dsaEncoding: 'ieee-p1363',
  });
  out.fill(0, SNP_SIGNED_SIZE);
  for (let i = 0; i < 48; i++) {
    out[0x2a0 + i] = sig[47 - i] as number;
    out[0x2e8 + i] = sig[95 - i] as number;
  }
  return out;
}
