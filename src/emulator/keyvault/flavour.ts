/**
 * The two kinds of Key Vault the emulator can be: a regular vault (`https://<name>.vault.azure.net`) or a
 * Managed HSM (`https://<name>.managedhsm.azure.net`). Everything that differs between them is here, so the
 * rest of the emulator asks this module instead of testing the flavour name.
 *
 * Sources: the key types per flavour are the service's "Supported key types" table
 * (https://learn.microsoft.com/azure/key-vault/keys/about-keys: vaults hold RSA/EC, premium vaults also
 * RSA-HSM/EC-HSM; oct-HSM only in Managed HSM). The challenge resources are recorded in
 * Azure/azure-sdk-for-js `sdk/keyvault/keyvault-keys/recordings/node/` (vault: `resource="https://vault.azure.net"`
 * in keys_client__restore_keys_and_recover_backups/recording_fails_to_restore_a_key_with_a_malformed_backup.js;
 * Managed HSM: `resource="https://managedhsm.azure.net"` in
 * cryptographyclient_for_managed_hsm_all_decrypts_happen_remotely_with_aes_crypto_algorithms/recording_encrypts_and_decrypts_using_aesgcm.js),
 * and `POST /rng` exists only on Managed HSM (keys_client__create_read_update_and_delete_operations_for_managed_hsm_getrandombytes/).
 */
import type { VaultKeyType } from './key-material.js';

export const VAULT_FLAVOURS = ['vault', 'managedhsm'] as const;
export type VaultFlavour = (typeof VAULT_FLAVOURS)[number];

export interface FlavourFacts {
  readonly flavour: VaultFlavour;
  /** Resource the 401 challenge names and tokens must be issued for. */
  readonly resource: string;
  /** DNS suffix of the real service's hosts, for messages and docs. */
  readonly dnsSuffix: string;
  /** Key types `create` and `import` accept. */
  readonly keyTypes: readonly VaultKeyType[];
  /** Imported RSA/EC keys are stored HSM-protected whatever the request says (Managed HSM has only HSM keys). */
  readonly importsAsHsm: boolean;
  /** `POST /rng` is served. */
  readonly rng: boolean;
  /** Name in messages: "key vault" or "managed HSM". */
  readonly label: string;
  /**
   * The 401 challenge to a request without a token carries an error body. Managed HSM answers with an empty
   * body (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings, the Managed HSM getRandomBytes
   * recording in test/fixtures/kv-recordings/random-bytes-out-of-range.json); a vault sends AKV10000.
   */
  readonly challengeBody: boolean;
  /**
   * How a stored release policy is written back (`releasePolicyJson`): a vault in its own property order, a
   * Managed HSM with the properties sorted (test/fixtures/real-release/kv2022-create-release.jws against
   * mhsm-create-release.jws).
   */
  readonly releasePolicyOrder: 'service' | 'sorted';
}

const FACTS: Record<VaultFlavour, FlavourFacts> = {
  vault: {
    flavour: 'vault',
    resource: 'https://vault.azure.net',
    dnsSuffix: 'vault.azure.net',
    keyTypes: ['RSA', 'RSA-HSM', 'EC', 'EC-HSM'],
    importsAsHsm: false,
    rng: false,
    label: 'key vault',
    challengeBody: true,
    releasePolicyOrder: 'service',
  },
  managedhsm: {
    flavour: 'managedhsm',
    resource: 'https://managedhsm.azure.net',
    dnsSuffix: 'managedhsm.azure.net',
    keyTypes: ['RSA-HSM', 'EC-HSM', 'oct-HSM'],
    importsAsHsm: true,
    rng: true,
    label: 'managed HSM',
    challengeBody: false,
    releasePolicyOrder: 'sorted',
  },
};

/**
 * What an emulator started without a flavour is: vault-shaped (vault resource, no `/rng`) but accepting every
 * key type including oct-HSM, as the emulator did before it had flavours, so existing setups that keep AES keys
 * in "the vault" keep working. Pick `'vault'` or `'managedhsm'` to get the service's rules.
 */
const UNSPECIFIED: FlavourFacts = {
  ...FACTS.vault,
  keyTypes: ['RSA', 'RSA-HSM', 'EC', 'EC-HSM', 'oct-HSM'],
};

export function isVaultFlavour(v: unknown): v is VaultFlavour {
  return typeof v === 'string' && (VAULT_FLAVOURS as readonly string[]).includes(v);
}

export function flavourFacts(flavour: VaultFlavour | undefined): FlavourFacts {
  return flavour === undefined ? UNSPECIFIED : FACTS[flavour];
}
