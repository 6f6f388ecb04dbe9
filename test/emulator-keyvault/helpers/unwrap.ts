/** Test-side checks of a release response: JWS signature and chain, and unwrapping of `key_hsm`. */
import { constants, type KeyObject, privateDecrypt, X509Certificate } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { aesKwpUnwrap, type KeyHsmEnvelope, RELEASE_OAEP_HASH } from '../../../src/keyvault/key-wrap.js';

export interface VerifiedRelease {
  header: Record<string, unknown>;
  payload: {
    request: Record<string, unknown>;
    response: {
      key: {
        key: Record<string, unknown>;
        attributes: Record<string, unknown>;
        release_policy: Record<string, unknown>;
      };
    };
  };
  envelope: KeyHsmEnvelope;
}

/** Verifies the JWS with x5c[0] and that x5c[0] was issued by the CA; returns header and payload. */
export async function verifyReleaseJws(jws: string, caPem: string): Promise<VerifiedRelease> {
  const header = decodeProtectedHeader(jws) as Record<string, unknown>;
  const x5c = header.x5c as string[];
  const leaf = new X509Certificate(Buffer.from(x5c[0]!, 'base64'));
  const ca = new X509Certificate(caPem);
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey))
    throw new Error('x5c leaf is not issued by the emulator CA');
  const { payload } = await compactVerify(jws, leaf.publicKey, { algorithms: ['RS256'] });
  const parsed = JSON.parse(Buffer.from(payload).toString('utf8')) as VerifiedRelease['payload'];
  const keyHsm = parsed.response.key.key.key_hsm as string;
  const envelope = JSON.parse(Buffer.from(keyHsm, 'base64url').toString('utf8')) as KeyHsmEnvelope;
  return { header, payload: parsed, envelope };
}

/** RSA-OAEP then AES-KWP, as a client unwraps a released key. */
export function unwrapKeyHsm(envelope: KeyHsmEnvelope, transferKey: KeyObject): Buffer {
  const ct = Buffer.from(envelope.ciphertext, 'base64url');
  const modulusBytes = (transferKey.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
  const aesKey = privateDecrypt(
    {
      key: transferKey,
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: RELEASE_OAEP_HASH[envelope.header.enc],
    },
    ct.subarray(0, modulusBytes),
  );
  try {
    return aesKwpUnwrap(aesKey, ct.subarray(modulusBytes));
  } finally {
    aesKey.fill(0);
  }
}
