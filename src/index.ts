// Public API of cvm-skr. Kept small on purpose: what a service on a confidential VM, an engineer testing on a
// laptop and an operator auditing keys use; every name here is documented in the README. Lower layers stay
// importable by path inside the package but are not part of the supported API. The emulator has its own entry
// point, `cvm-skr/emulator`, with its own errors (src/emulator/errors.ts); test/index.test.ts checks that none
// of them is exported here.

export * from './errors.js';
export { AgentClient, type AgentClientOptions } from './agent/client.js';

// --- secure key release (the main job) ---
export {
  DEFAULT_RELEASE_ENCRYPTION,
  type ReleasedKey,
  type ReleasedKeyAttributes,
  type ReleaseKeyCallOptions,
  type PrewarmResult,
  type RetryOptions,
  SecureKeyRelease,
  type SecureKeyReleaseAgentOptions,
  type SecureKeyReleaseOptions,
} from './keyvault/secure-key-release.js';
export { RELEASE_ENCRYPTIONS, type ReleaseEncryption } from './keyvault/key-wrap.js';
export type { ReleaseSignerPin } from './keyvault/release-response.js';
export type { ReleaseEvent, ReleaseStats, ReleaseStep } from './keyvault/diagnostics.js';
export {
  type ClauseResult,
  evaluateReleasePolicy,
  parseReleasePolicy,
  type ReleasePolicy,
  type ReleasePolicyEvaluation,
} from './keyvault/release-policy.js';

// --- attestation ---
export {
  AttestationClient,
  type AttestationClientOptions,
  type AttestationResult,
  type AttestCallOptions,
  type AttestPhase,
  attest,
} from './maa/index.js';

// --- platforms and hardware ---
export {
  type BackendStatus,
  type DetectOptions,
  detectPlatform,
  type PathStatus,
  type PlatformDetection,
} from './hal/detect.js';
export { NativeTpmTransport } from './hal/native-transport.js';
export { DEFAULT_TPM_PATH, type OpenTpmOptions, openTpm } from './hal/open-tpm.js';
export {
  AzureVtpmPlatform,
  type AzureVtpmPlatformOptions,
  type QuoteOptions,
  type WriteUserDataOptions,
} from './hal/platforms/azure-vtpm.js';
export { SevGuestPlatform, type SevGuestPlatformOptions } from './hal/platforms/sev-guest.js';
export {
  readUvmReferenceInfo,
  UVM_REFERENCE_INFO_ENV,
  UVM_REFERENCE_INFO_FILE,
  UVM_SECURITY_CONTEXT_DIR_ENV,
} from './hal/platforms/uvm-security-context.js';
export {
  ConfigfsTsmProvider,
  DEFAULT_CONFIGFS_TSM_PATH,
  DEFAULT_SEV_GUEST_PATH,
  SevGuestIoctlProvider,
  type TsmFileSystem,
} from './hal/snp-providers.js';
export { SocketTpmTransport, type SocketTransportOptions } from './hal/socket-transport.js';
export type {
  AttestationPlatform,
  AzureVtpmEvidence,
  CollectEvidenceOptions,
  DecryptScheme,
  Evidence,
  PcrValue,
  PlatformKind,
  SevGuestEvidence,
  SnpReportProvider,
  SnpReportRequest,
  SnpReportResult,
  TpmTransport,
  TransferKey,
} from './hal/types.js';

// --- evidence: parse and verify like the attestation service ---
export { type HclReport, isHclReport, parseHclReport } from './hcl/report.js';
export {
  type AzureVtpmVerificationResult,
  type PcrInput,
  type TransferKeyEvidence,
  type VerifyAzureVtpmEvidenceOptions,
  verifyAzureVtpmEvidence,
  verifyTransferKeyCertification,
} from './hcl/verify.js';
export { loadSnpCertificates, type SnpCertificateSource, type SnpCertificates } from './snp/certificates.js';
export { parseSnpReport, SNP_REPORT_SIZE, type SnpReport, type SnpSigner } from './snp/report.js';
export { embeddedAmdRoots, type TrustedRootInput } from './snp/roots.js';
export type { SnpProduct, TcbVersion } from './snp/tcb.js';
export type { Jwk } from './util/jwk.js';
export { VcekFetcher, type VcekFetcherOptions } from './snp/vcek-sources.js';
export {
  checkSnpReport,
  type SnpCheckOutcome,
  type SnpVerificationResult,
  type TcbMinimum,
  type VerifySnpReportOptions,
  verifySnpReport,
} from './snp/verify.js';

// --- rotation ---
export {
  type AuditRotationOptions,
  auditRotation,
  type RotationAuditEntry,
  type RotationAuditReason,
  type RotationAuditReport,
} from './rotation/audit.js';
export { addDuration, type Duration, formatDuration, parseDuration } from './rotation/duration.js';
export {
  EnvelopeCipher,
  type EnvelopeCipherOptions,
  type EnvelopeHeader,
  type EnvelopeOptions,
  envelopeKeyId,
  MAX_ENVELOPE_HEADER_BYTES,
  parseEnvelopeHeader,
  type RewrapResult,
} from './rotation/envelope.js';
export {
  createEventGridHandler,
  type EventGridHandler,
  type EventGridHandlerOptions,
  type KeyVersionNotice,
  type KeyVersionWatcher,
  type WatchKeyVersionsOptions,
  watchKeyVersions,
} from './rotation/events.js';
export { planRotation, type RotationPlan } from './rotation/plan.js';
export {
  fromSdk,
  parseRotationPolicy,
  type RotationPolicy,
  type ServiceRotationPolicyJson,
  toSdk,
  toServiceJson,
} from './rotation/policy.js';
export {
  normalizeRotationPolicyForService,
  type RotationPolicySeverity,
  type RotationPolicyViolation,
  rotationPolicyErrors,
  rotationPolicyWarnings,
  validateRotationPolicy,
} from './rotation/validate.js';
