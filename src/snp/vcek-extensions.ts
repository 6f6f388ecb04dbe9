import type { SnpCertificate } from './certificate.js';

const BASE = '1.3.6.1.4.1.3704.1';

/** The AMD-specific extensions of a VCEK or VLEK. Missing or malformed values are undefined. */
export interface VcekExtensions {
  structVersion?: number;
  productName?: string;
  bootloader?: number;
  tee?: number;
  snp?: number;
  microcode?: number;
  fmc?: number;
  /** 64 bytes (8 on Turin); absent on VLEKs. */
  hwid?: Uint8Array;
  cspId?: string;
}

/** A DER INTEGER that fits a non-negative 32-bit value, or undefined. */
function derUint(v: Uint8Array): number | undefined {
  if (v.length < 3 || v[0] !== 0x02 || v[1] !== v.length - 2 || (v[1] ?? 0) > 5) return undefined;
  if (((v[2] ?? 0) & 0x80) !== 0) return undefined;
  let n = 0;
  for (let i = 2; i < v.length; i++) n = n * 256 + (v[i] as number);
  return n <= 0xffffffff ? n : undefined;
}

/** A short-form DER string (IA5String or UTF8String), or undefined. */
function derString(v: Uint8Array): string | undefined {
  if (v.length < 2 || (v[0] !== 0x16 && v[0] !== 0x0c) || v[1] !== v.length - 2) return undefined;
  return Buffer.from(v.subarray(2)).toString('latin1');
}

/** hwID is raw bytes in AMD's certificates; some issuers wrap it in an OCTET STRING. */
function hwidBytes(v: Uint8Array): Uint8Array {
  if (v.length === 66 && v[0] === 0x04 && v[1] === 64) return v.subarray(2);
  if (v.length === 10 && v[0] === 0x04 && v[1] === 8) return v.subarray(2);
  return v;
}

export function readVcekExtensions(cert: SnpCertificate): VcekExtensions {
  const value = (oid: string): Uint8Array | undefined => cert.extension(`${BASE}.${oid}`);
  const out: VcekExtensions = {};
  const num = (
    oid: string,
    key: 'structVersion' | 'bootloader' | 'tee' | 'snp' | 'microcode' | 'fmc',
  ): void => {
    const v = value(oid);
    const n = v === undefined ? undefined : derUint(v);
    if (n !== undefined) out[key] = n;
  };
  num('1', 'structVersion');
  num('3.1', 'bootloader');
  num('3.2', 'tee');
  num('3.3', 'snp');
  num('3.8', 'microcode');
  num('3.9', 'fmc');
  const name = value('2');
  const productName = name === undefined ? undefined : derString(name);
  if (productName !== undefined) out.productName = productName;
  const hwid = value('4');
  if (hwid !== undefined) out.hwid = hwidBytes(hwid);
  const csp = value('5');
  const cspId = csp === undefined ? undefined : derString(csp);
  if (cspId !== undefined) out.cspId = cspId;
  return out;
}
