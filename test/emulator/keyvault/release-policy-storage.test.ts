/**
 * The emulated vault stores a release policy as the real service writes it back: the older spellings rewritten
 * (version "1.0", `condition`/`value`) and the flavour's property order. Real answers: a Managed HSM given the
 * older spelling answered with the sorted current form (Azure/azure-sdk-for-js @3357deb7,
 * sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_for_managed_hsm_releasekey/
 * recording_can_import_an_exportable_key_and_release_it.js); a regular vault answers version first
 * (test/fixtures/real-release/kv2022-create-release.jws).
 */
import test from 'ava';
import type { VaultFlavour } from '../../../src/emulator/keyvault/index.js';
import { startVaultWithIssuer } from '../../helpers/vault-setup.js';

const decoded = (data: Uint8Array | undefined) => Buffer.from(data ?? []).toString('utf8');

for (const [flavour, expected] of [
  [
    'managedhsm',
    (a: string) => `{"anyOf":[{"anyOf":[{"claim":"sdk-test","equals":"true"}],"authority":"${a}"}],"version":"1.0.0"}`,
  ],
  [
    'vault',
    (a: string) => `{"version":"1.0.0","anyOf":[{"authority":"${a}","anyOf":[{"claim":"sdk-test","equals":"true"}]}]}`,
  ],
] as [VaultFlavour, (authority: string) => string][]) {
  test(`${flavour}: a policy in the older spelling is accepted and written back in the current one, in the ${flavour}'s order; resending it in either spelling keeps an immutable policy`, async (t) => {
    const { emu, issuer } = await startVaultWithIssuer(t, { flavour });
    const authority = `${issuer.url}/`;
    const older = JSON.stringify({
      anyOf: [{ anyOf: [{ claim: 'sdk-test', condition: 'equals', value: 'true' }], authority }],
      version: '1.0',
    });
    const client = emu.keyClient();
    const created = await client.createRsaKey('older', {
      hsm: true,
      exportable: true,
      releasePolicy: { encodedPolicy: new TextEncoder().encode(older), immutable: true },
    });
    t.is(decoded(created.properties.releasePolicy?.encodedPolicy), expected(authority));
    const fetched = await client.getKey('older');
    t.is(decoded(fetched.properties.releasePolicy?.encodedPolicy), expected(authority));

    // The same policy sent again, in the older spelling or as written back, is the same immutable policy.
    for (const spelling of [older, expected(authority)]) {
      await client.updateKeyProperties('older', created.properties.version!, {
        releasePolicy: { encodedPolicy: new TextEncoder().encode(spelling), immutable: true },
      });
    }
    // A different one is still refused (AKV.SKR.1020).
    const changed = older.replace('"true"', '"false"');
    const error = await t.throwsAsync(
      client.updateKeyProperties('older', created.properties.version!, {
        releasePolicy: { encodedPolicy: new TextEncoder().encode(changed), immutable: true },
      }),
    );
    t.regex(error!.message, /AKV\.SKR\.1020/);
    const released = await client.releaseKey('older', await issuer.token({ 'sdk-test': 'true' }));
    t.truthy(released.value);
  });
}
