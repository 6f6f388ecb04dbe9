export {
  AttestationClient,
  type AttestationClientOptions,
  type AttestationResult,
  type AttestCallOptions,
  type AttestPhase,
  AZURE_GUEST_API_VERSION,
  attest,
  SEV_SNP_VM_API_VERSION,
} from './client.js';
export type { MaaHttpOptions } from './http.js';
export { buildAzureGuestRequest, buildSevSnpVmRequest, type OsIdentity } from './requests.js';
export { openAzureGuestToken } from './response.js';
export { AttestationTokenVerifier, TOKEN_CLOCK_SKEW_SECONDS, type TokenVerifierOptions } from './token.js';
