/** Test-side checks of a release response: JWS signature and chain, and unwrapping of `key_hsm`. */
import { constants, type KeyObject, privateDecrypt, X509Certificate } from 'node:crypto';
import { compactVerify, decodeProtectedHeader } from 'jose';
import { aesKwpUnwrap, type KeyHsmEnvelope, RELEASE_OAEP_HASH } from '../../src/keyvault/key-wrap.js';

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

/**
 * Verifies the JWS with x5c[0], and that x5c is leaf, intermediate, root with each certificate issued by the
 * next and the root the emulator CA; returns header and payload.
 */
export async function verifyReleaseJws(jws: string, caPem: string): Promise<VerifiedRelease> {
  const header = decodeProtectedHeader(jws) as Record<string, unknown>;
  const x5c = (header.x5c as string[]).map((b64) => new X509Certificate(Buffer.from(b64, 'base64')));
  const ca = new X509Certificate(caPem);
  const leaf = x5c[0]!;
  if (x5c.length !== 3 || !x5c[2]!.raw.equals(ca.raw)) throw new Error('x5c is not leaf, intermediate, emulator CA');
  for (let i = 0; i < 2; i++) {
    if (!x5c[i]!.checkIssued(x5c[i + 1]!) || !x5c[i]!.verify(x5c[i + 1]!.publicKey))
      throw new Error(`x5c[${i}] is not issued by x5c[${i + 1}]`);
  }
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
