/**
 * A tiny attestation issuer for tests: OpenID metadata and a JWKS on loopback https (emulator CA), and
 * RS256 tokens shaped like MAA SEV-SNP tokens, with a transfer key in top-level `x-ms-runtime.keys`.
 */
import { generateKeyPairSync, type KeyObject, randomUUID } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, SignJWT } from 'jose';
import type { EmulatorCa } from '../../src/emulator/ca.js';

export interface TestIssuer {
  url: string;
  /** Signs a token; `claims` override the defaults, `null` removes a claim. */
  token(
    claims?: Record<string, unknown>,
    options?: { iat?: number; lifetimeSeconds?: number; key?: KeyObject },
  ): Promise<string>;
  transferKey: { privateKey: KeyObject; publicKey: KeyObject; kid: string };
  close(): Promise<void>;
  /** How many JWKS fetches the issuer served. */
  jwksFetches(): number;
  /** Replaces the signing key (new kid); the JWKS then lists only the new key. */
  rotateSigningKey(): Promise<void>;
}

export const SNP_CLAIMS = {
  'x-ms-attestation-type': 'sevsnpvm',
  'x-ms-compliance-status': 'azure-compliant-cvm',
  'x-ms-sevsnpvm-is-debuggable': false,
  'x-ms-sevsnpvm-guestsvn': 7,
  'x-ms-sevsnpvm-vmpl': 0,
  'x-ms-sevsnpvm-launchmeasurement': 'a'.repeat(96),
  'x-ms-isolation-tee': {
    'x-ms-attestation-type': 'sevsnpvm',
    'x-ms-compliance-status': 'azure-compliant-cvm',
  },
  'x-ms-ver': '1.0',
};

export interface TestIssuerOptions {
  /**
   * Serve keys like MAA: no OpenID metadata, JWKS at `/certs` whose keys carry only `kid`, `kty` and an
   * `x5c` certificate (issued by the emulator CA), no `n`/`e`.
   */
  maaShape?: boolean;
}

interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  jwk: Record<string, unknown>;
}

async function newSigningKey(ca: EmulatorCa, maaShape: boolean): Promise<SigningKey> {
  const kid = randomUUID();
  if (maaShape) {
    const cert = await ca.issueSigningCertificate({ commonName: 'test attestation signing', keyType: 'rsa' });
    return { kid, privateKey: cert.privateKey, jwk: { kid, kty: 'RSA', x5c: [cert.x5c[0]] } };
  }
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    kid,
    privateKey: pair.privateKey,
    jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'RS256', use: 'sig' },
  };
}

export async function startTestIssuer(
  ca: EmulatorCa,
  now: () => Date,
  options: TestIssuerOptions = {},
): Promise<TestIssuer> {
  const maaShape = options.maaShape ?? false;
  let signing = await newSigningKey(ca, maaShape);
  const transfer = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const transferJwk = {
    ...(await exportJWK(transfer.publicKey)),
    kid: 'TpmEphemeralEncryptionKey',
    key_ops: ['encrypt'],
  };
  const tls = await ca.issueServerCertificate();
  let fetches = 0;
  let url = '';
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    res.setHeader('content-type', 'application/json');
    if (req.url === '/.well-known/openid-configuration' && !maaShape) {
      res.end(JSON.stringify({ issuer: url, jwks_uri: `${url}/certs` }));
    } else if (req.url === '/certs') {
      fetches++;
      res.end(JSON.stringify({ keys: [signing.jwk] }));
    } else {
      res.statusCode = 404;
      res.end('{}');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    transferKey: { ...transfer, kid: 'TpmEphemeralEncryptionKey' },
    jwksFetches: () => fetches,
    async rotateSigningKey() {
      signing = await newSigningKey(ca, maaShape);
    },
    async token(claims = {}, tokenOptions = {}) {
      const iat = tokenOptions.iat ?? Math.floor(now().getTime() / 1000);
      const body: Record<string, unknown> = {
        ...SNP_CLAIMS,
        'x-ms-runtime': { keys: [transferJwk] },
        ...claims,
      };
      for (const [k, v] of Object.entries(body)) if (v === null) delete body[k];
      return new SignJWT(body)
        .setProtectedHeader({ alg: 'RS256', kid: signing.kid, jku: `${url}/certs`, typ: 'JWT' })
        .setIssuer(url)
        .setIssuedAt(iat)
        .setNotBefore(iat)
        .setExpirationTime(iat + (tokenOptions.lifetimeSeconds ?? 8 * 3600))
        .sign(tokenOptions.key ?? signing.privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A release policy for the issuer, base64url-free (the SDK encodes `encodedPolicy` bytes itself). */
export function policyBytes(authority: string, allOf: unknown[] = defaultConditions()): Uint8Array {
  return Buffer.from(JSON.stringify({ version: '1.0.0', anyOf: [{ authority, allOf }] }), 'utf8');
}

export function defaultConditions(): unknown[] {
  return [
    { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
    { claim: 'x-ms-compliance-status', equals: 'azure-compliant-cvm' },
  ];
}
