/**
 * A platform that hands out fixed dummy evidence and counts how often it was asked: enough to drive
 * `SecureKeyRelease` up to the attestation request without hardware or emulator keys. Its evidence would
 * never verify; the tests using it stop before any verification.
 */
import { generateKeyPairSync } from 'node:crypto';
import type { AttestationPlatform, Evidence, TransferKey } from '../../src/hal/types.js';

export class CountingPlatform implements AttestationPlatform {
  readonly kind = 'emulated-sev-guest' as const;
  evidenceCalls = 0;
  readonly #jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });

  collectEvidence(): Promise<Evidence> {
    this.evidenceCalls++;
    return Promise.resolve({
      kind: 'sev-guest',
      report: new Uint8Array(1184),
      runtimeData: new Uint8Array(Buffer.from('{}')),
      vcekCertChain: '',
    });
  }

  transferKey(): Promise<TransferKey> {
    const jwk = { kty: 'RSA' as const, n: this.#jwk.n!, e: this.#jwk.e!, kid: 'TpmEphemeralEncryptionKey' };
    return Promise.resolve({ jwk, decrypt: () => Promise.reject(new Error('not used')) });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
