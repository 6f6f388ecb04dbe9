// Public API of cvm-skr. Keep it small: everything exported here is documented in the README.
export * from './errors.js';
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
