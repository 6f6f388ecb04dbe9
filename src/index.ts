// Public API of cvm-skr. Keep it small: everything exported here is documented in the README.

export * from './errors.js';
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
  AzureVtpmTransferKey,
  type QuoteOptions,
  type WriteUserDataOptions,
} from './hal/platforms/azure-vtpm.js';
export { SevGuestPlatform, type SevGuestPlatformOptions } from './hal/platforms/sev-guest.js';
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
export { checkHclBinding } from './hcl/binding.js';
export {
  type HclHashType,
  type HclReport,
  type HclReportType,
  isHclReport,
  parseHclReport,
} from './hcl/report.js';
export {
  type HclRuntimeData,
  type HclRuntimeKey,
  type HclVmConfiguration,
  parseHclRuntimeData,
} from './hcl/runtime-data.js';
export {
  type AzureVtpmVerificationResult,
  type PcrInput,
  type VerifyAzureVtpmEvidenceOptions,
  verifyAzureVtpmEvidence,
} from './hcl/verify.js';
export {
  AES_KWP_CIPHER,
  AES_KWP_IV,
  AES_KWP_KEY_BYTES,
  aesKwpUnwrap,
  aesKwpWrap,
  DEFAULT_SERVICE_RELEASE_ENCRYPTION,
  isReleaseEncryption,
  KEY_HSM_SCHEMA_VERSION,
  type KeyHsmEnvelope,
  MIN_TRANSFER_KEY_BITS,
  RELEASE_ENCRYPTIONS,
  RELEASE_OAEP_HASH,
  type ReleaseEncryption,
} from './keyvault/key-wrap.js';
export {
  type AuthorityClause,
  CLAIM_OPERATORS,
  type ClaimCondition,
  type ClaimOperator,
  type ClaimValue,
  type ClauseResult,
  type Condition,
  evaluateReleasePolicy,
  type GroupCondition,
  lookupClaim,
  normalizeAuthority,
  parseReleasePolicy,
  parseReleasePolicyData,
  RELEASE_POLICY_CONTENT_TYPE,
  RELEASE_POLICY_VERSION,
  type ReleasePolicy,
  type ReleasePolicyEvaluation,
} from './keyvault/release-policy.js';
// maa: the attestation client
export {
  AttestationClient,
  type AttestationClientOptions,
  type AttestationResult,
  AttestationTokenVerifier,
  type AttestCallOptions,
  AZURE_GUEST_API_VERSION,
  attest,
  buildAzureGuestRequest,
  buildSevSnpVmRequest,
  type MaaHttpOptions,
  type OsIdentity,
  openAzureGuestToken,
  SEV_SNP_VM_API_VERSION,
  TOKEN_CLOCK_SKEW_SECONDS,
  type TokenVerifierOptions,
} from './maa/index.js';
export {
  type AuditRotationOptions,
  auditKey,
  auditRotation,
  type RotationAuditClient,
  type RotationAuditEntry,
  type RotationAuditProgress,
  type RotationAuditReason,
  type RotationAuditReport,
  type RotationAuditStatus,
} from './rotation/audit.js';
export {
  addDuration,
  compareDurations,
  type Duration,
  duration,
  durationBoundsMs,
  durationGapBoundsMs,
  durationMaxDays,
  durationMinDays,
  durationRemainderBoundsMs,
  durationsEqual,
  formatDuration,
  isAtLeastDays,
  isAtMostDays,
  parseDuration,
  type SpanBounds,
  subtractDuration,
  tryParseDuration,
} from './rotation/duration.js';
export {
  type KeyVersionDates,
  type PlannedNotification,
  type PlannedRotation,
  type PlanRotationOptions,
  planRotation,
  type RotationPlan,
} from './rotation/plan.js';
export {
  findAction,
  fromSdk,
  fromServiceJson,
  parseActionType,
  parseRotationPolicy,
  type RotationActionType,
  type RotationLifetimeAction,
  type RotationPolicy,
  type ServiceLifetimeActionJson,
  type ServiceRotationPolicyJson,
  type ToServiceJsonOptions,
  toSdk,
  toServiceJson,
} from './rotation/policy.js';
export {
  assertValidRotationPolicy,
  DEFAULT_NOTIFY_BEFORE_EXPIRY,
  MIN_EXPIRY_DAYS,
  MIN_ROTATION_MARGIN_DAYS,
  normalizeRotationPolicyForService,
  type RotationPolicyViolation,
  type RotationPolicyViolationCode,
  type ValidateRotationPolicyOptions,
  validateRotationPolicy,
} from './rotation/validate.js';
export { certificateBundlePem, certificateToPem } from './snp/bundle.js';
export {
  buildCertTable,
  CERT_TABLE_GUIDS,
  type CertTableEntry,
  type CertTableKind,
  parseCertTable,
} from './snp/cert-table.js';
export type { SnpCertificate } from './snp/certificate.js';
export {
  loadSnpCertificates,
  type SnpCertificateSource,
  type SnpCertificates,
  type ThimCertificates,
} from './snp/certificates.js';
export { clearChainCache } from './snp/chain.js';
export {
  parseSnpReport,
  SNP_REPORT_SIZE,
  type SnpFirmwareVersion,
  type SnpGuestPolicy,
  type SnpPlatformInfo,
  type SnpReport,
  type SnpSigner,
} from './snp/report.js';
export { embeddedAmdRoots, type TrustedRoot, type TrustedRootInput } from './snp/roots.js';
export {
  type SevGuestEvidenceInput,
  type SevGuestEvidenceResult,
  verifySevGuestEvidence,
} from './snp/sev-guest-evidence.js';
export {
  decodeTcb,
  encodeTcb,
  productFromCpuid,
  type SnpProduct,
  type TcbComponent,
  type TcbVersion,
} from './snp/tcb.js';
export { VcekCache } from './snp/vcek-cache.js';
export {
  type ContainerCertificateOptions,
  type FetchedCertificates,
  fetchKdsChain,
  fetchKdsVcek,
  fetchThimCertificates,
  type HttpOptions,
  KDS_BASE_URL,
  type KdsVcekRequest,
  kdsVcekUrl,
  readContainerCertificates,
  THIM_URL,
  VcekFetcher,
  type VcekFetcherOptions,
  type VcekSourceName,
} from './snp/vcek-sources.js';
export {
  checkSnpReport,
  type SnpCheckOutcome,
  type SnpVerificationResult,
  type TcbMinimum,
  type VerifySnpReportOptions,
  verifySnpReport,
} from './snp/verify.js';
export { AZURE_VTPM } from './tpm/azure-layout.js';
export {
  type AzureVtpmLayout,
  type AzureVtpmLayoutOptions,
  type ProvisionedAk,
  provisionAzureVtpmLayout,
} from './tpm/provision.js';
export {
  ENVELOPE_FORMAT_VERSION,
  EnvelopeCipher,
  type EnvelopeCipherOptions,
  type EnvelopeKeyInspector,
  type EnvelopeKeyReleaser,
  type EnvelopeKeyWrapping,
  type EnvelopeOptions,
  envelopeKeyId,
  type ParsedEnvelope,
  parseEnvelope,
  type RewrapResult,
} from './rotation/envelope.js';
export {
  DEFAULT_RELEASE_ENCRYPTION,
  openDetectedPlatform,
  type ReleasedKey,
  type ReleasedKeyAttributes,
  type ReleaseKeyCallOptions,
  type RetryOptions,
  SecureKeyRelease,
  type SecureKeyReleaseOptions,
} from './keyvault/secure-key-release.js';
export {
  createEventGridHandler,
  type CurrentVersionCache,
  EVENT_GRID_VALIDATION_EVENT,
  type EventGridHandler,
  type EventGridHandlerOptions,
  type EventGridRequest,
  type EventGridResponse,
  type KeyVersionLister,
  type KeyVersionNotice,
  type KeyVersionNoticeType,
  type KeyVersionWatcher,
  type WatchKeyVersionsOptions,
  watchKeyVersions,
} from './rotation/events.js';
