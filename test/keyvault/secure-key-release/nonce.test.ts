/**
 * SecureKeyRelease binds each attestation to a fresh nonce, so an older token for the same platform (replayed
 * by whoever sits between the VM and the attestation service) is not used for a release. Where the service
 * echoes the nonce: see test/maa/client.test.ts (Azure/confidential-computing-cvm-guest-attestation
 * aks-linux-sample/README.md; MicrosoftDocs/azure-security-docs articles/attestation/claim-sets.md).
 */
import test from 'ava';
import { AttestationResponseError } from '../../../src/errors.js';
import { exportableKey, proxiedEmulator, releaseClient } from '../../helpers/e2e-emulator.js';

for (const kind of ['emulated-azure-vtpm', 'emulated-sev-guest'] as const) {
  test(`${kind}: an attestation answer replayed to a later SecureKeyRelease is refused and no key is released`, async (t) => {
    const { e, vault, maa } = await proxiedEmulator(t);
    await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy(kind));
    let recorded: Buffer | undefined;
    maa.plan = (r) =>
      r.path.startsWith('/attest/')
        ? { rewrite: (body) => (recorded ??= body) }
        : 'pass';
    const platform = await e.platform(kind);
    t.teardown(() => platform.close());
    const first = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
    t.is((await first.releaseKey(`${vault.url}/keys/k`)).name, 'k');
    const releasesBefore = e.vault.releaseDecisions().length;
    const later = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
    const error = await t.throwsAsync(later.releaseKey(`${vault.url}/keys/k`), {
      instanceOf: AttestationResponseError,
    });
    t.regex(error!.message, /nonce/);
    t.is(e.vault.releaseDecisions().length, releasesBefore, 'no release was asked for with the old token');
  });
}
