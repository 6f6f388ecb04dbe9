/**
 * Builds Azure HCL reports (the NV blob of vTPM index 0x01400001) for the emulator: header, the signed SNP
 * report, IGVM request data and the runtime-data JSON, laid out as Microsoft's header describes them
 * (Azure/confidential-computing-cvm-guest-attestation @990f662,
 * azure-protected-vm-secrets/external/attestation/HwVmReport.h) and as `parseHclReport` reads them.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import { SNP_REPORT_SIZE } from '../../snp/report.js';

const HCL_SIGNATURE = 0x414c4348;
const IGVM_OFFSET = 0x4c0;
const IGVM_HEADER_SIZE = 20;
const RUNTIME_OFFSET = IGVM_OFFSET + IGVM_HEADER_SIZE;
/** What Azure SNP VMs define 0x01400001 with, and swtpm's largest NV index. */
export const HCL_NV_SIZE = 2048;

const HASH_CODES = { sha256: 1, sha384: 2, sha512: 3 } as const;
export type HclHash = keyof typeof HASH_CODES;

export interface HclVmConfigurationJson {
  'console-enabled': boolean;
  'root-cert-thumbprint'?: string;
  'secure-boot': boolean;
  'tpm-enabled': boolean;
  'tpm-persisted'?: boolean;
  vmUniqueId: string;
}

export interface HclRuntimeDataOptions {
  akPub: KeyObject;
  ekPub?: KeyObject;
  vmConfiguration?: Partial<HclVmConfigurationJson>;
  /** 64 bytes written to 0x01400002 (hex in the report); absent when never written. */
  userData?: Uint8Array;
  /** `sign` (newer reports) or `encrypt` (older captures). Default `sign`. */
  keyOps?: 'sign' | 'encrypt';
}

export const EMULATED_VM_ID = '00000000-0000-4000-8000-00000000c0de';

function jwkOf(kid: string, key: KeyObject, keyOps: string): Record<string, unknown> {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA') throw new InvalidArgumentError(`${kid} must be an RSA key`);
  return { kid, key_ops: [keyOps], kty: 'RSA', e: jwk.e, n: jwk.n };
}

/** The runtime-data JSON bytes of an HCL report. */
export function encodeHclRuntimeData(options: HclRuntimeDataOptions): Uint8Array {
  const ops = options.keyOps ?? 'sign';
  const keys = [jwkOf('HCLAkPub', options.akPub, ops)];
  if (options.ekPub) keys.push(jwkOf('HCLEkPub', options.ekPub, ops));
  const json: Record<string, unknown> = {
    keys,
    'vm-configuration': {
      'console-enabled': true,
      'secure-boot': true,
      'tpm-enabled': true,
      'tpm-persisted': true,
      vmUniqueId: EMULATED_VM_ID,
      ...options.vmConfiguration,
    },
  };
  if (options.userData !== undefined) {
    if (options.userData.length !== 64) throw new InvalidArgumentError('HCL user data is 64 bytes');
    json['user-data'] = Buffer.from(options.userData).toString('hex');
  }
  return new Uint8Array(Buffer.from(JSON.stringify(json), 'utf8'));
}

/** report_data for runtime data: hash || zeros (64 bytes). */
export function hclReportData(runtimeData: Uint8Array, hash: HclHash = 'sha256'): Uint8Array {
  const out = new Uint8Array(64);
  out.set(createHash(hash).update(runtimeData).digest());
  return out;
}

export interface EncodeHclReportOptions {
  /** The signed 1184-byte SNP report. */
  snpReport: Uint8Array;
  runtimeData: Uint8Array;
  hash?: HclHash;
  /** Header version; default 2. */
  version?: 1 | 2;
  /** 1 key release (default), 2 AK certificate. */
  requestType?: number;
  /** Pad with zeros to this many bytes, as the vTPM's NV index is. Default `HCL_NV_SIZE` when it fits. */
  padTo?: number;
}

export function encodeHclReport(options: EncodeHclReportOptions): Uint8Array {
  if (options.snpReport.length !== SNP_REPORT_SIZE) {
    throw new InvalidArgumentError(`the SNP report must be ${SNP_REPORT_SIZE} bytes`);
  }
  const used = RUNTIME_OFFSET + options.runtimeData.length;
  const padTo = options.padTo ?? Math.max(used, HCL_NV_SIZE);
  if (padTo < used) throw new InvalidArgumentError(`the HCL report needs ${used} bytes, more than ${padTo}`);
  const out = new Uint8Array(padTo);
  const view = new DataView(out.buffer);
  view.setUint32(0x00, HCL_SIGNATURE, true);
  view.setUint32(0x04, options.version ?? 2, true);
  view.setUint32(0x08, used, true);
  view.setUint32(0x0c, options.requestType ?? 1, true);
  out.set(options.snpReport, 0x20);
  view.setUint32(IGVM_OFFSET, IGVM_HEADER_SIZE + options.runtimeData.length, true);
  view.setUint32(IGVM_OFFSET + 4, 1, true);
  view.setUint32(IGVM_OFFSET + 8, 2, true);
  view.setUint32(IGVM_OFFSET + 12, HASH_CODES[options.hash ?? 'sha256'], true);
  view.setUint32(IGVM_OFFSET + 16, options.runtimeData.length, true);
  out.set(options.runtimeData, RUNTIME_OFFSET);
  return out;
}
