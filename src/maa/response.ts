/**
 * Opens an AzureGuest answer: `token` is base64url(JSON) whose `Jwt` is sealed to the transfer key
 * (inner AES key wrapped with RSAES-PKCS1-v1_5, decrypted by the platform; AES-GCM with AAD "Transport Key").
 */
import { createDecipheriv } from 'node:crypto';
import { AttestationResponseError, CvmSkrError } from '../errors.js';
import type { TransferKey } from '../hal/types.js';

const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const B64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

function b64(value: unknown, what: string): Buffer {
  if (typeof value !== 'string' || !B64.test(value)) {
    throw new AttestationResponseError(`the encrypted answer's ${what} is not base64`);
  }
  return Buffer.from(value, 'base64');
}

export async function openAzureGuestToken(token: string, transferKey: TransferKey): Promise<string> {
  // A plain JWT (a service that does not encrypt) is verified like any other.
  if (COMPACT_JWS.test(token)) return token;
  let envelope: Record<string, unknown>;
  try {
    envelope = JSON.parse(b64(token, 'token').toString('utf8')) as Record<string, unknown>;
    if (typeof envelope !== 'object' || envelope === null) throw new TypeError('not an object');
  } catch (error) {
    if (error instanceof AttestationResponseError) throw error;
    throw new AttestationResponseError(
      'the AzureGuest answer is neither a JWT nor an encrypted token envelope',
      {
        cause: error,
      },
    );
  }
  const params = envelope.EncryptionParams as Record<string, unknown> | undefined;
  const wrapped = b64(envelope.EncryptedInnerKey, 'EncryptedInnerKey');
  const iv = b64(params?.Iv, 'EncryptionParams.Iv');
  const tag = b64(envelope.AuthenticationData, 'AuthenticationData');
  const ciphertext = b64(envelope.Jwt, 'Jwt');
  let key: Buffer;
  try {
    key = await transferKey.decrypt(wrapped, 'rsaes');
  } catch (error) {
    if (error instanceof CvmSkrError && !(error instanceof AttestationResponseError)) {
      throw new AttestationResponseError(
        `the transfer key could not unwrap the answer's inner key (${error.code}): the answer is for another key`,
        { cause: error },
      );
    }
    throw error;
  }
  try {
    if (![16, 24, 32].includes(key.length)) {
      throw new AttestationResponseError(`the inner key is ${key.length} bytes, not an AES key`);
    }
    if (tag.length !== 16 || iv.length === 0) {
      throw new AttestationResponseError('the encrypted answer has a malformed IV or authentication tag');
    }
    const decipher = createDecipheriv(`aes-${key.length * 8}-gcm` as 'aes-256-gcm', key, iv);
    decipher.setAAD(Buffer.from('Transport Key', 'ascii'));
    decipher.setAuthTag(tag);
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    } catch (error) {
      throw new AttestationResponseError('the encrypted token does not authenticate (AES-GCM)', {
        cause: error,
      });
    }
    const jwt = plain.toString('utf8');
    if (!COMPACT_JWS.test(jwt)) throw new AttestationResponseError('the decrypted answer is not a JWT');
    return jwt;
  } finally {
    key.fill(0);
  }
}
