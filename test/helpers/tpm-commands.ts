// Hand-marshalled TPM commands for transport tests, independent of src/tpm so a bug there cannot hide a
// transport bug.

/** TPM2_GetRandom(count). */
export function getRandomCommand(count = 16): Uint8Array {
  return Uint8Array.from([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, count >> 8, count & 0xff]);
}

/** TPM2_CreatePrimary of an RSA key under the NULL hierarchy with an empty password session. */
export function createPrimaryRsaCommand(bits: 2048 | 3072 = 2048): Uint8Array {
  const publicArea = [
    0x00,
    0x01, // TPM_ALG_RSA
    0x00,
    0x0b, // nameAlg SHA-256
    0x00,
    0x06,
    0x00,
    0x72, // sign|decrypt|fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth
    0x00,
    0x00, // authPolicy
    0x00,
    0x10,
    0x00,
    0x10, // symmetric NULL, scheme NULL
    bits >> 8,
    bits & 0xff,
    0,
    0,
    0,
    0, // exponent default
    0x00,
    0x00, // unique
  ];
  const body = [
    0x40,
    0x00,
    0x00,
    0x07, // TPM_RH_NULL
    0,
    0,
    0,
    9,
    0x40,
    0,
    0,
    9,
    0,
    0,
    0,
    0,
    0, // password session, empty
    0,
    4,
    0,
    0,
    0,
    0, // inSensitive
    0,
    publicArea.length,
    ...publicArea,
    0,
    0, // outsideInfo
    0,
    0,
    0,
    0, // creationPCR
  ];
  const size = 10 + body.length;
  return Uint8Array.from([0x80, 0x02, 0, 0, size >> 8, size & 0xff, 0, 0, 0x01, 0x31, ...body]);
}

/** TPM2_FlushContext(handle). */
export function flushContextCommand(handle: number): Uint8Array {
  return Uint8Array.from([
    0x80,
    0x01,
    0,
    0,
    0,
    14,
    0,
    0,
    0x01,
    0x65,
    handle >>> 24,
    (handle >> 16) & 0xff,
    (handle >> 8) & 0xff,
    handle & 0xff,
  ]);
}

export function responseCode(response: Uint8Array): number {
  return Buffer.from(response.buffer, response.byteOffset, response.byteLength).readUInt32BE(6);
}
