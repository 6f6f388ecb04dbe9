import type { KeyClient } from '@azure/keyvault-keys';
import type { ExecutionContext } from 'ava';
import type { Emulator } from '../../src/emulator/start.js';
import type { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';
import { EnvelopeCipher } from '../../src/rotation/envelope.js';
import { emulator, releaseClient } from './_emulator.js';

/**
 * Attestation tokens outlive the virtual years these tests skip: `SecureKeyRelease` judges token freshness by
 * the real clock, the vault by the virtual one, and a needless re-attestation is what the tests count.
 */
export const LONG_TOKEN_SECONDS = 10 * 366 * 86_400;

export async function rotationEmulator(t: ExecutionContext): Promise<Emulator> {
  // No real-time ticks: lifetime actions run only when a test moves the virtual clock.
  return emulator(t, { tokenLifetimeSeconds: LONG_TOKEN_SECONDS, vault: { tickIntervalMs: 0 } });
}

export async function skrFor(t: ExecutionContext, e: Emulator): Promise<SecureKeyRelease> {
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  return releaseClient(t, e, platform, { retry: { maxRetries: 1, baseDelayMs: 10, maxDelayMs: 50 } });
}

/**
 * Attests now, by releasing an unrelated key, so that `skr` holds a token before a test moves the virtual
 * clock: a token issued in the virtual future is not valid yet for the client, whose clock is real.
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
