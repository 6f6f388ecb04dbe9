import { TpmError, type TpmErrorDetails, TpmPolicyError } from '../errors.js';

/** Response code decoding (TPM 2.0 Library Part 2, 6.6: TPM_RC). */

export const RC_VER1 = 0x100;
export const RC_FMT1 = 0x080;
export const RC_WARN = 0x900;

const VER1: Record<number, string> = {
  0: 'INITIALIZE',
  1: 'FAILURE',
  3: 'SEQUENCE',
  11: 'PRIVATE',
  25: 'HMAC',
  32: 'DISABLED',
  33: 'EXCLUSIVE',
  36: 'AUTH_TYPE',
  37: 'AUTH_MISSING',
  38: 'POLICY',
  39: 'PCR',
  40: 'PCR_CHANGED',
  45: 'UPGRADE',
  46: 'TOO_MANY_CONTEXTS',
  47: 'AUTH_UNAVAILABLE',
  48: 'REBOOT',
  49: 'UNBALANCED',
  66: 'COMMAND_SIZE',
  67: 'COMMAND_CODE',
  68: 'AUTHSIZE',
  69: 'AUTH_CONTEXT',
  70: 'NV_RANGE',
  71: 'NV_SIZE',
  72: 'NV_LOCKED',
  73: 'NV_AUTHORIZATION',
  74: 'NV_UNINITIALIZED',
  75: 'NV_SPACE',
  76: 'NV_DEFINED',
  80: 'BAD_CONTEXT',
  81: 'CPHASH',
  82: 'PARENT',
  83: 'NEEDS_TEST',
  84: 'NO_RESULT',
  85: 'SENSITIVE',
};

const FMT1: Record<number, string> = {
  1: 'ASYMMETRIC',
  2: 'ATTRIBUTES',
  3: 'HASH',
  4: 'VALUE',
  5: 'HIERARCHY',
  7: 'KEY_SIZE',
  8: 'MGF',
  9: 'MODE',
  10: 'TYPE',
  11: 'HANDLE',
  12: 'KDF',
  13: 'RANGE',
  14: 'AUTH_FAIL',
  15: 'NONCE',
  16: 'PP',
  18: 'SCHEME',
  21: 'SIZE',
  22: 'SYMMETRIC',
  23: 'TAG',
  24: 'SELECTOR',
  26: 'INSUFFICIENT',
  27: 'SIGNATURE',
  28: 'KEY',
  29: 'POLICY_FAIL',
  31: 'INTEGRITY',
  32: 'TICKET',
  33: 'RESERVED_BITS',
  34: 'BAD_AUTH',
  35: 'EXPIRED',
  36: 'POLICY_CC',
  37: 'BINDING',
  38: 'CURVE',
  39: 'ECC_POINT',
};

const WARN: Record<number, string> = {
  1: 'CONTEXT_GAP',
  2: 'OBJECT_MEMORY',
  3: 'SESSION_MEMORY',
  4: 'MEMORY',
  5: 'SESSION_HANDLES',
  6: 'OBJECT_HANDLES',
  7: 'LOCALITY',
  8: 'YIELDED',
  9: 'CANCELED',
  10: 'TESTING',
  16: 'REFERENCE_H0',
  17: 'REFERENCE_H1',
  18: 'REFERENCE_H2',
  19: 'REFERENCE_H3',
  20: 'REFERENCE_H4',
  21: 'REFERENCE_H5',
  22: 'REFERENCE_H6',
  24: 'REFERENCE_S0',
  25: 'REFERENCE_S1',
  26: 'REFERENCE_S2',
  27: 'REFERENCE_S3',
  28: 'REFERENCE_S4',
  29: 'REFERENCE_S5',
  30: 'REFERENCE_S6',
  32: 'NV_RATE',
  33: 'LOCKOUT',
  34: 'RETRY',
  35: 'NV_UNAVAILABLE',
};

export const TPM_RC = {
  SUCCESS: 0x000,
  BAD_TAG: 0x01e,
  INITIALIZE: RC_VER1 + 0x000,
  FAILURE: RC_VER1 + 0x001,
  POLICY: RC_VER1 + 0x026,
  PCR_CHANGED: RC_VER1 + 0x028,
  NV_RANGE: RC_VER1 + 0x046,
  NV_LOCKED: RC_VER1 + 0x048,
  NV_AUTHORIZATION: RC_VER1 + 0x049,
  NV_UNINITIALIZED: RC_VER1 + 0x04a,
  NV_SPACE: RC_VER1 + 0x04b,
  NV_DEFINED: RC_VER1 + 0x04c,
  VALUE: RC_FMT1 + 0x004,
  HANDLE: RC_FMT1 + 0x00b,
  AUTH_FAIL: RC_FMT1 + 0x00e,
  POLICY_FAIL: RC_FMT1 + 0x01d,
  BAD_AUTH: RC_FMT1 + 0x022,
  OBJECT_MEMORY: RC_WARN + 0x002,
  SESSION_MEMORY: RC_WARN + 0x003,
  YIELDED: RC_WARN + 0x008,
  TESTING: RC_WARN + 0x00a,
  LOCKOUT: RC_WARN + 0x021,
  RETRY: RC_WARN + 0x022,
} as const;

/** Warnings after which the same command may simply be sent again. */
export const RETRYABLE_RCS: ReadonlySet<number> = new Set([TPM_RC.RETRY, TPM_RC.YIELDED, TPM_RC.TESTING]);

const HINTS: Record<number, string> = {
  [TPM_RC.HANDLE]: 'the handle does not exist or is not loaded',
  [TPM_RC.AUTH_FAIL]: 'wrong authorization value',
  [TPM_RC.BAD_AUTH]: 'wrong authorization value',
  [TPM_RC.LOCKOUT]: 'the TPM is in dictionary-attack lockout; wait or reset it with lockout auth',
  [TPM_RC.OBJECT_MEMORY]: 'no free transient object slot; something did not flush its objects',
  [TPM_RC.SESSION_MEMORY]: 'no free session slot; something did not flush its sessions',
  [TPM_RC.POLICY_FAIL]: 'the policy session does not satisfy the object authPolicy',
  [TPM_RC.PCR_CHANGED]: 'PCRs changed between the policy command and its use',
  [TPM_RC.NV_SPACE]: 'no NV space left',
  [TPM_RC.NV_DEFINED]: 'the NV index is already defined',
  [TPM_RC.NV_UNINITIALIZED]: 'the NV index was defined but never written',
  [TPM_RC.NV_AUTHORIZATION]: 'the NV index attributes do not allow this authorization',
  [TPM_RC.INITIALIZE]: 'the TPM was not started (TPM2_Startup)',
  [TPM_RC.FAILURE]: 'the TPM is in failure mode',
};

export interface DecodedRc {
  rc: number;
  baseRc: number;
  rcName: string;
  warning: boolean;
  handleIndex?: number;
  parameterIndex?: number;
  sessionIndex?: number;
}

/** Splits a response code into its spec name and the handle, parameter or session it blames. */
export function decodeRc(rc: number): DecodedRc {
  const layer = rc >>> 16;
  const code = rc & 0xffff;
  const prefix = layer === 0 ? 'TPM_RC_' : `TPM_RC_LAYER${layer}_`;
  if (code & RC_FMT1) {
    const base = RC_FMT1 | (code & 0x3f);
    const name = FMT1[code & 0x3f];
    const decoded: DecodedRc = {
      rc,
      baseRc: base,
      rcName: name ? `${prefix}${name}` : `${prefix}0x${base.toString(16)}`,
      warning: false,
    };
    const n = (code >> 8) & 0xf;
    if (code & 0x40) decoded.parameterIndex = n;
    else if (n & 0x8) decoded.sessionIndex = n & 0x7;
    else if (n !== 0) decoded.handleIndex = n;
    return decoded;
  }
  if (code & RC_VER1) {
    const warning = (code & 0x800) !== 0;
    const vendor = (code & 0x400) !== 0;
    const base = code & 0xf7f;
    const number = code & 0x7f;
    const name = vendor ? undefined : warning ? WARN[number] : VER1[number];
    return {
      rc,
      baseRc: base,
      rcName: name ? `${prefix}${name}` : `${prefix}${vendor ? 'VENDOR_' : ''}0x${base.toString(16)}`,
      warning,
    };
  }
  // TPM 1.2-style codes: a TPM 2.0 answers TPM_RC_BAD_TAG to a 1.2 command.
  const name = code === TPM_RC.BAD_TAG ? 'BAD_TAG' : code === 0 ? 'SUCCESS' : `0x${code.toString(16)}`;
  return { rc, baseRc: code, rcName: `${prefix}${name}`, warning: false };
}

function describeIndex(d: DecodedRc): string {
  if (d.handleIndex !== undefined) return ` (handle ${d.handleIndex})`;
  if (d.parameterIndex !== undefined) return ` (parameter ${d.parameterIndex})`;
  if (d.sessionIndex !== undefined) return ` (session ${d.sessionIndex})`;
  return '';
}

export function rcDetails(rc: number, command: string): TpmErrorDetails {
  return { ...decodeRc(rc), command };
}

/** The error for a failed command; policy failures get their own class so callers can tell "PCRs moved". */
export function tpmErrorFor(rc: number, command: string): TpmError {
  const details = rcDetails(rc, command);
  const hint = HINTS[details.baseRc];
  const message = `${command} failed with ${details.rcName} (0x${rc.toString(16)})${describeIndex(details)}${hint ? `: ${hint}` : ''}`;
  if (details.baseRc === TPM_RC.POLICY_FAIL || details.baseRc === TPM_RC.PCR_CHANGED) {
    return new TpmPolicyError(message, details);
  }
  return new TpmError(message, details);
}
