import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Jwk } from '../../src/util/jwk.js';
import type { KeyClient } from '@azure/keyvault-keys';
import type { ExecutionContext } from 'ava';
import type { AttestationPlatform } from '../../src/hal/types.js';
import { SecureKeyRelease, type SecureKeyReleaseOptions } from '../../src/keyvault/secure-key-release.js';
import { EmulatorCa } from '../../src/emulator/ca.js';
import { type Emulator, type EmulatorOptions, startEmulator } from '../../src/emulator/start.js';
import { type FaultProxy, startFaultProxy } from './fault-proxy.js';

/** An emulator with emulator-only 2048-bit roots in memory: fast, and nothing written to the user's cache. */
export async function emulator(t: ExecutionContext, options: EmulatorOptions = {}): Promise<Emulator> {
  const e = await startEmulator({
    rootKeyBits: 2048,
    cache: false,
    ...options,
  });
  t.teardown(() => e.close());
  return e;
}

export type ReleasableType = 'RSA-HSM' | 'EC-HSM' | 'oct-HSM';

/** Creates an exportable key whose release policy the emulator's tokens satisfy. */
export async function exportableKey(
  e: Emulator,
  name: string,
  type: ReleasableType,
  policy: unknown = e.releasePolicy(),
): Promise<void> {
  const client = e.keyClient();
  const releasePolicy = {
    encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(policy))),
  };
  if (type === 'RSA-HSM')
    await client.createKey(name, 'RSA-HSM', {
      keySize: 2048,
      exportable: true,
      releasePolicy,
    });
  else if (type === 'EC-HSM')
    await client.createKey(name, 'EC-HSM', {
      curve: 'P-256',
      exportable: true,
      releasePolicy,
    });
  else
    await client.createKey(name, 'oct-HSM', {
      keySize: 256,
      exportable: true,
      releasePolicy,
    });
}

/** The public key the vault publishes for `name` (undefined for oct keys). */
export async function vaultPublicKey(
  client: KeyClient,
  name: string,
  version?: string,
): Promise<KeyObject | undefined> {
  const key = await client.getKey(name, version ? { version } : {});
  const jwk = key.key;
  if (!jwk?.kty || jwk.kty.startsWith('oct')) return undefined;
  const b64 = (v?: Uint8Array) => (v ? Buffer.from(v).toString('base64url') : undefined);
  const out: Jwk = jwk.kty.startsWith('RSA')
    ? { kty: 'RSA', n: b64(jwk.n), e: b64(jwk.e) }
    : { kty: 'EC', crv: jwk.crv, x: b64(jwk.x), y: b64(jwk.y) };
  return createPublicKey({ key: out, format: 'jwk' });
}

/**
 * A SecureKeyRelease wired to the emulator as a service would be: its attestation service (trusting the
 * emulator CA), its vault credential, the CA as the only release-signing root. Closed in teardown.
 */
export function releaseClient(
  t: ExecutionContext,
  e: Emulator,
  platform: AttestationPlatform,
  overrides: Partial<SecureKeyReleaseOptions> = {},
): SecureKeyRelease {
  const skr = new SecureKeyRelease({
    attestationEndpoint: e.attestationUrl,
    attestationCa: e.caPem,
    credential: e.credential,
    platform,
    releaseSigningRoots: [e.caPem],
    vaultOptions: {
      disableChallengeResourceVerification: true,
      tlsOptions: { ca: e.caPem },
    },
    retry: { maxRetries: 2, baseDelayMs: 10, maxDelayMs: 50 },
    ...overrides,
  });
  t.teardown(() => skr.close());
  return skr;
}

/**
 * An emulator reached through two HTTPS fault proxies (one per service), sharing the emulator CA. Tokens name
 * the attestation proxy as their issuer, so clients pointed at the proxies verify them as usual.
 */
export async function proxiedEmulator(
  t: ExecutionContext,
  options: Omit<EmulatorOptions, 'ca' | 'attestation'> = {},
): Promise<{ e: Emulator; vault: FaultProxy; maa: FaultProxy }> {
  const ca = await EmulatorCa.create();
  const vault = await startFaultProxy(ca);
  const maa = await startFaultProxy(ca);
  t.teardown(() => vault.close());
  t.teardown(() => maa.close());
  const e = await emulator(t, { ...options, ca, attestation: { issuer: maa.url } });
  vault.target = e.vaultUrl;
  maa.target = e.attestationUrl;
  return { e, vault, maa };
}
