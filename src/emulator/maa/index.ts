export {
  type AzureGuestOsInfo,
  azureGuestClaims,
  EMULATED_POLICY_TEXT,
  policyHash,
  sevSnpVmClaims,
} from './claims.js';
export { type AttestationPolicy, COMPLIANCE_RULES } from './evidence.js';
export {
  type AttestationEmulator,
  type AttestationEmulatorCounters,
  type AttestationEmulatorOptions,
  AZURE_GUEST_API_VERSIONS,
  encryptForTransferKey,
  SEV_SNP_VM_API_VERSIONS,
  startAttestationEmulator,
} from './server.js';
