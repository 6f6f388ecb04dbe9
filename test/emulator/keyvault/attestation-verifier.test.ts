/**
 * The emulated vault's check of a release request's attestation token fetches the issuer's signing keys (the
 * MAA shape: OpenID metadata, then `{issuer}/certs`; the emulator's own MAA serves both). Behaviour of the
 * emulator only; no service artifact says how Key Vault caches issuer keys.
 */
import test from 'ava';
import { AttestationVerifier } from '../../../src/emulator/keyvault/attestation-verifier.js';
import { ReleaseDeniedError } from '../../../src/errors.js';
import { emulator } from '../../helpers/e2e-emulator.js';

test('releases arriving together share one fetch of the issuer keys', async (t) => {
  const e = await emulator(t);
  const verifier = new AttestationVerifier([{ issuer: e.attestationUrl, ca: e.caPem }], () => new Date());
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  // Signed by nobody: the keys are fetched before the signature is checked, and then it is refused.
  const token = `${part({ alg: 'RS256', typ: 'JWT' })}.${part({ iss: e.attestationUrl, exp: 4e9 })}.${part({})}`;
  const before = e.attestation.counters.keyRequests;
  const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => verifier.verify(token)));
  t.true(outcomes.every((o) => o.status === 'rejected' && o.reason instanceof ReleaseDeniedError));
  t.is(e.attestation.counters.keyRequests - before, 2, 'one metadata and one keys request, not one pair per release');
});
