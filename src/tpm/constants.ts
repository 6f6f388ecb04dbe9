/** TPM 2.0 constants (TPM 2.0 Library, Part 2: Structures), only those this library uses. */

export const TPM_ST = {
  NO_SESSIONS: 0x8001,
  SESSIONS: 0x8002,
  ATTEST_CERTIFY: 0x8017,
  ATTEST_QUOTE: 0x8018,
  CREATION: 0x8021,
  HASHCHECK: 0x8024,
} as const;

export const TPM_GENERATED_VALUE = 0xff544347;

export const TPM_CC = {
  NV_UndefineSpace: 0x122,
  EvictControl: 0x120,
  NV_DefineSpace: 0x12a,
  CreatePrimary: 0x131,
  NV_Write: 0x137,
  Certify: 0x148,
  NV_Read: 0x14e,
  PolicyPCR: 0x17f,
  FlushContext: 0x165,
  NV_ReadPublic: 0x169,
  RSA_Encrypt: 0x174,
  ReadPublic: 0x173,
  StartAuthSession: 0x176,
  GetCapability: 0x17a,
  GetRandom: 0x17b,
  RSA_Decrypt: 0x159,
  PCR_Read: 0x17e,
  PCR_Extend: 0x182,
  PolicyGetDigest: 0x189,
  Quote: 0x158,
} as const;

export const TPM_ALG = {
  ERROR: 0x0000,
  RSA: 0x0001,
  SHA1: 0x0004,
  HMAC: 0x0005,
  AES: 0x0006,
  KEYEDHASH: 0x0008,
  XOR: 0x000a,
  SHA256: 0x000b,
  SHA384: 0x000c,
  SHA512: 0x000d,
  NULL: 0x0010,
  SM3_256: 0x0012,
  SM4: 0x0013,
  RSASSA: 0x0014,
  RSAES: 0x0015,
  RSAPSS: 0x0016,
  OAEP: 0x0017,
  ECDSA: 0x0018,
  ECDH: 0x0019,
  ECDAA: 0x001a,
  SM2: 0x001b,
  ECSCHNORR: 0x001c,
  ECMQV: 0x001d,
  KDF1_SP800_56A: 0x0020,
  KDF2: 0x0021,
  KDF1_SP800_108: 0x0022,
  ECC: 0x0023,
  SYMCIPHER: 0x0025,
  CAMELLIA: 0x0026,
  CTR: 0x0040,
  OFB: 0x0041,
  CBC: 0x0042,
  CFB: 0x0043,
  ECB: 0x0044,
} as const;

export const TPM_ECC_CURVE = {
  NIST_P256: 0x0003,
  NIST_P384: 0x0004,
  NIST_P521: 0x0005,
} as const;

/** Hierarchies and permanent handles. */
export const TPM_RH = {
  OWNER: 0x40000001,
  NULL: 0x40000007,
  PW: 0x40000009,
  LOCKOUT: 0x4000000a,
  ENDORSEMENT: 0x4000000b,
  PLATFORM: 0x4000000c,
} as const;

/** Handle ranges (most significant octet), as used by GetCapability(TPM_CAP_HANDLES). */
export const TPM_HT = {
  PCR: 0x00,
  NV_INDEX: 0x01,
  HMAC_SESSION: 0x02,
  LOADED_SESSION: 0x02,
  POLICY_SESSION: 0x03,
  SAVED_SESSION: 0x03,
  PERMANENT: 0x40,
  TRANSIENT: 0x80,
  PERSISTENT: 0x81,
} as const;

export const TPM_CAP = {
  ALGS: 0,
  HANDLES: 1,
  COMMANDS: 2,
  PP_COMMANDS: 3,
  AUDIT_COMMANDS: 4,
  PCRS: 5,
  TPM_PROPERTIES: 6,
  PCR_PROPERTIES: 7,
  ECC_CURVES: 8,
} as const;

/** TPM_PT values: fixed properties start at 0x100, variable ones at 0x200. */
export const TPM_PT = {
  FAMILY_INDICATOR: 0x100,
  REVISION: 0x102,
  MANUFACTURER: 0x105,
  INPUT_BUFFER: 0x10d,
  HR_TRANSIENT_MIN: 0x10e,
  HR_PERSISTENT_MIN: 0x10f,
  HR_LOADED_MIN: 0x110,
  ACTIVE_SESSIONS_MAX: 0x111,
  PCR_COUNT: 0x112,
  NV_INDEX_MAX: 0x117,
  MAX_DIGEST: 0x120,
  NV_BUFFER_MAX: 0x12c,
  HR_TRANSIENT_AVAIL: 0x207,
  HR_LOADED: 0x208,
  HR_LOADED_AVAIL: 0x209,
  HR_ACTIVE: 0x20a,
  HR_ACTIVE_AVAIL: 0x20b,
} as const;

export const TPM_SE = {
  HMAC: 0x00,
  POLICY: 0x01,
  TRIAL: 0x03,
} as const;

/** TPMA_SESSION bits. */
export const TPMA_SESSION = {
  continueSession: 0x01,
  auditExclusive: 0x02,
  auditReset: 0x04,
  decrypt: 0x20,
  encrypt: 0x40,
  audit: 0x80,
} as const;

/** TPMA_OBJECT bits. */
export const TPMA_OBJECT = {
  fixedTPM: 0x00000002,
  stClear: 0x00000004,
  fixedParent: 0x00000010,
  sensitiveDataOrigin: 0x00000020,
  userWithAuth: 0x00000040,
  adminWithPolicy: 0x00000080,
  noDA: 0x00000400,
  encryptedDuplication: 0x00000800,
  restricted: 0x00010000,
  decrypt: 0x00020000,
  sign: 0x00040000,
} as const;

/** TPMA_NV bits (TPM_NT is in bits 4..7; 0 = ordinary). */
export const TPMA_NV = {
  PPWRITE: 0x00000001,
  OWNERWRITE: 0x00000002,
  AUTHWRITE: 0x00000004,
  POLICYWRITE: 0x00000008,
  POLICY_DELETE: 0x00000400,
  WRITELOCKED: 0x00000800,
  WRITEALL: 0x00001000,
  WRITEDEFINE: 0x00002000,
  WRITE_STCLEAR: 0x00004000,
  GLOBALLOCK: 0x00008000,
  PPREAD: 0x00010000,
  OWNERREAD: 0x00020000,
  AUTHREAD: 0x00040000,
  POLICYREAD: 0x00080000,
  NO_DA: 0x02000000,
  ORDERLY: 0x04000000,
  CLEAR_STCLEAR: 0x08000000,
  READLOCKED: 0x10000000,
  WRITTEN: 0x20000000,
  PLATFORMCREATE: 0x40000000,
  READ_STCLEAR: 0x80000000,
} as const;

/** Digest sizes of the hash algorithms this library can name objects with. */
export const HASH_SIZES: Readonly<Record<number, number>> = {
  [TPM_ALG.SHA1]: 20,
  [TPM_ALG.SHA256]: 32,
  [TPM_ALG.SHA384]: 48,
  [TPM_ALG.SHA512]: 64,
  [TPM_ALG.SM3_256]: 32,
};

/** node:crypto names of the same algorithms (SM3 is not in every OpenSSL build, so it is left out). */
export const HASH_NAMES: Readonly<Record<number, string>> = {
  [TPM_ALG.SHA1]: 'sha1',
  [TPM_ALG.SHA256]: 'sha256',
  [TPM_ALG.SHA384]: 'sha384',
  [TPM_ALG.SHA512]: 'sha512',
};

const ccNames = new Map<number, string>(Object.entries(TPM_CC).map(([name, cc]) => [cc, `TPM2_${name}`]));

export function commandName(cc: number): string {
  return ccNames.get(cc) ?? `TPM2_CC_0x${cc.toString(16)}`;
}

export function hex32(value: number): string {
  return `0x${value.toString(16).padStart(8, '0').toUpperCase()}`;
}
