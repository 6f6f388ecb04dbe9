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
