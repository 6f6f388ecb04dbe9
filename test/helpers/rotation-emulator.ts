import type { KeyClient } from '@azure/keyvault-keys';
import type { ExecutionContext } from 'ava';
import type { Emulator } from '../../src/emulator/start.js';
import type { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';
import { EnvelopeCipher } from '../../src/rotation/envelope.js';
import { emulator, releaseClient } from './e2e-emulator.js';

/**
 * Attestation tokens outlive the virtual years these tests skip, so that the attestations the tests count are
 * the ones rotation causes, not token expiry (test/keyvault/secure-key-release/one-clock.test.ts covers expiry).
 */
export const LONG_TOKEN_SECONDS = 10 * 366 * 86_400;

export async function rotationEmulator(t: ExecutionContext): Promise<Emulator> {
  // No real-time ticks: lifetime actions run only when a test moves the virtual clock.
  return emulator(t, { tokenLifetimeSeconds: LONG_TOKEN_SECONDS, vault: { tickIntervalMs: 0 } });
}

export async function skrFor(t: ExecutionContext, e: Emulator): Promise<SecureKeyRelease> {
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  // One clock: the client judges tokens, the AK certificate and key dates by the emulator's virtual clock.
  return releaseClient(t, e, platform, {
    clock: () => e.clock.now(),
    retry: { maxRetries: 1, baseDelayMs: 10, maxDelayMs: 50 },
  });
}

/**
 * Attests now, by releasing an unrelated key, so that `skr` holds a cached token when a test moves the virtual
 * clock (a refusal with a cached token is retried once with a fresh attestation).
 */
export async function attestNow(e: Emulator, skr: SecureKeyRelease): Promise<void> {
  const client = e.keyClient();
  const name = 'warm-up';
  try {
    await client.getKey(name);
  } catch {
    await releasableKey(e, client, name);
  }
  await skr.releaseKey(`${e.vaultUrl}/keys/${name}`);
}

/** An exportable key the emulator's tokens may release, expiring in two years (so Notify policies are valid). */
export async function releasableKey(
  e: Emulator,
  client: KeyClient,
  name: string,
  type: 'oct-HSM' | 'RSA-HSM' | 'EC-HSM' = 'oct-HSM',
) {
  const releasePolicy = { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(e.releasePolicy()))) };
  const expiresOn = new Date(e.clock.nowMs() + 2 * 365 * 86_400_000);
  const common = { exportable: true, releasePolicy, expiresOn };
  if (type === 'RSA-HSM') return client.createKey(name, type, { ...common, keySize: 2048 });
  if (type === 'EC-HSM') return client.createKey(name, type, { ...common, curve: 'P-256' });
  return client.createKey(name, type, { ...common, keySize: 256 });
}

export function cipherFor(e: Emulator, skr: SecureKeyRelease, name: string, client?: KeyClient) {
  return new EnvelopeCipher({
    skr,
    keyId: `${e.vaultUrl}/keys/${name}`,
    ...(client ? { keyClient: client } : {}),
  });
}

/** Allowed releases of `name` so far, by version. */
export function releasesOf(e: Emulator, name: string): string[] {
  return e.vault
    .releaseDecisions()
    .filter((d) => d.allowed && d.key === name)
    .map((d) => d.version ?? '');
}

export const attestations = (e: Emulator) => e.attestation.counters.attestations;
