// `cvm-skr/emulator`: the software backend (emulated hardware, attestation service and Key Vault). Kept out of
// the main entry point: production code never imports the emulator.

// emulated hardware and attestation service (nothing trusts the emulated roots unless told to)
export { EMULATED_PLACEHOLDER_AK_ISSUER, EmulatedAkCa, issuePlaceholderAkCertificate } from './hardware/ak-ca.js';
export {
  EMULATED_DEFAULT_TCB,
  EMULATED_MEASUREMENT,
  EmulatedAmd,
  type EmulatedAmdOptions,
  type EmulatedVcek,
  olderTcb,
} from './hardware/amd.js';
export { EMULATOR_ORGANIZATION, EmulatorCa, type IssuedCertificate, type SavedEmulatorCa } from './ca.js';
export { EMULATOR_CACHE_ENV, emulatorCacheDir } from './cache.js';
export {
  EmulatedVaultRequestError,
  EmulatorCredentialError,
  EmulatorError,
  EmulatorStateError,
  EmulatorStateLockedError,
} from './errors.js';
export { EmulatorCredential, type EmulatorCredentialOptions } from './identity/credential.js';
export { EmulatedSevGuestPlatform } from './hardware/emulated-sev-guest.js';
export { EmulatedSnpReportProvider } from './hardware/emulated-snp-provider.js';
export {
  EMULATED_UVM_FEEDS,
  EmulatedUvmSigner,
  type UvmFlavour,
  type UvmReferenceInfoOptions,
} from './hardware/uvm-signer.js';
export {
  type EmulatedAzureVtpmOptions,
  EmulatedAzureVtpmPlatform,
  type EmulatedPlatformOptions,
} from './hardware/emulated-vtpm.js';
export {
  DEFAULT_PRINCIPAL_ID,
  DEFAULT_TENANT_ID,
  type FlavourFacts,
  KEY_PERMISSIONS,
  KEY_VAULT_EVENT_TYPES,
  type KeyPermission,
  type KeyVaultEmulator,
  type KeyVaultEmulatorOptions,
  type PrincipalConfig,
  type ReleaseDecision,
  startKeyVaultEmulator,
  type TrustedIssuer,
  VAULT_FLAVOURS,
  type VaultFlavour,
  VirtualClock,
} from './keyvault/index.js';
export {
  type ImdsEmulator,
  type ImdsEmulatorCounters,
  type ImdsEmulatorOptions,
  startImdsEmulator,
} from './imds/index.js';
export type { EvidenceKnobs } from './hardware/knobs.js';
export {
  type AttestationEmulator,
  type AttestationEmulatorCounters,
  type AttestationEmulatorOptions,
  type AttestationPolicy,
  COMPLIANCE_RULES,
  startAttestationEmulator,
} from './maa/index.js';
export { type EmulatedParavisorOptions, EmulatedParavisorTransport } from './hardware/paravisor.js';
export {
  buildEmulatedHclReport,
  type EmulatedHclReportOptions,
  type ProvisionedSwtpm,
  type ProvisionSwtpmOptions,
  provisionSwtpmAsAzureVtpm,
} from './hardware/provision-swtpm.js';
export {
  type EmulatedPlatformKind,
  type Emulator,
  type EmulatorOptions,
  type ReleasePolicyDocument,
  startEmulator,
} from './start.js';
export { haveSwtpm, type Swtpm, startSwtpm } from './hardware/swtpm-process.js';
