// `cvm-skr/emulator`: the software backend (emulated hardware, attestation service and Key Vault). Kept out of
// the main entry point: production code never imports the emulator.
export { EMULATOR_ORGANIZATION, EmulatorCa, type IssuedCertificate, type SavedEmulatorCa } from './ca.js';
export { EmulatorCredential, type EmulatorCredentialOptions } from './credential.js';
export {
  DEFAULT_PRINCIPAL_ID,
  DEFAULT_TENANT_ID,
  KEY_PERMISSIONS,
  KEY_VAULT_EVENT_TYPES,
  type KeyPermission,
  type KeyVaultEmulator,
  type KeyVaultEmulatorOptions,
  type PrincipalConfig,
  type ReleaseDecision,
  startKeyVaultEmulator,
  type TrustedIssuer,
  VirtualClock,
} from './keyvault/index.js';
