/**
 * The hardware abstraction layer's contracts. Backends (real devices, swtpm, emulators) implement these;
 * everything above the HAL depends only on them.
 */

/** Moves one TPM command to a TPM and returns its whole response. One method, like go-tpm's transport. */
export interface TpmTransport {
  /** Sends a complete TPM command (header included) and resolves with the complete response. */
  transmit(command: Uint8Array): Promise<Uint8Array>;
  /** Releases the device or socket. Idempotent; queued commands are rejected with `TransportClosedError`. */
  close(): Promise<void>;
}

export type PlatformKind = 'azure-vtpm' | 'sev-guest' | 'emulated-azure-vtpm' | 'emulated-sev-guest';

/** How a transfer key decrypts: PKCS#1 v1.5 (MAA's inner key) or OAEP with the hash of the release `enc`. */
export type DecryptScheme = 'rsaes' | 'oaep-sha1' | 'oaep-sha256' | 'oaep-sha384';

/** A key whose private half stays in the hardware (vTPM) or in guest memory (SNP guest). */
export interface TransferKey {
  /** Public RSA key as a JWK (`kty`, `n`, `e`, `kid`, `key_ops`). */
  readonly jwk: { kty: 'RSA'; n: string; e: string; kid: string; key_ops?: string[] };
  decrypt(ciphertext: Uint8Array, scheme: DecryptScheme): Promise<Buffer>;
}

export interface PcrValue {
  index: number;
  digest: Uint8Array;
}

/** What the attestation service needs from an Azure confidential VM with a vTPM (AzureGuest protocol). */
export interface AzureVtpmEvidence {
  kind: 'azure-vtpm';
  /** The whole NV blob of index 0x01400001 (HCL header, SNP report, runtime data). */
  hclReport: Uint8Array;
  /**
   * VCEK, ASK, ARK as PEM (THIM's vcekCert followed by its certificateChain), sent as Proof.VcekCertChain. The
   * attestation service refuses evidence without it.
   */
  vcekCertChain?: string;
  /** AK certificate (DER) from NV 0x01C101D0. */
  akCert: Uint8Array;
  /** AK public area as TPM2B_PUBLIC. */
  akPub: Uint8Array;
  /** TPMS_ATTEST of the quote, and its raw RSA signature. */
  quote: Uint8Array;
  quoteSignature: Uint8Array;
  pcrs: PcrValue[];
  /** Transfer key public area (TPM2B_PUBLIC), its certify info (TPMS_ATTEST) and the AK signature over it. */
  encKeyPub: Uint8Array;
  encKeyCertifyInfo: Uint8Array;
  encKeyCertifyInfoSignature: Uint8Array;
  /** TCG event log, empty when the OS does not expose one. */
  tcgLog: Uint8Array;
  /**
   * What the platform noticed while collecting, in words: an unreadable TCG log, an AK certificate that was
   * renewed or is due for renewal. Nothing here stopped the collection.
   */
  diagnostics?: string[];
}

/** What the attestation service needs from a guest with the SEV-SNP device (SevSnpVm protocol). */
export interface SevGuestEvidence {
  kind: 'sev-guest';
  /** The 1184-byte SNP report whose report_data is sha256(runtimeData) || zeros. */
  report: Uint8Array;
  /** Runtime data JSON bytes, carrying the transfer key. */
  runtimeData: Uint8Array;
  /** VCEK (or VLEK), ASK (or ASVK), ARK as one PEM bundle. */
  vcekCertChain: string;
  /**
   * Confidential containers: the UVM reference information (a COSE_Sign1 document signed for the utility VM
   * image) the container's security context provides, sent to the service as UVM endorsements.
   */
  uvmReferenceInfo?: Uint8Array;
}

export type Evidence = AzureVtpmEvidence | SevGuestEvidence;

export interface CollectEvidenceOptions {
  /** Caller nonce; bound into the quote (vTPM) or the runtime data (SNP guest). */
  nonce?: Uint8Array;
  signal?: AbortSignal;
  /**
   * vTPM: the time the AK certificate's lifetime is judged at (renewal through IMDS from 90 days before its
   * notAfter). Default: the system clock. The attestation client passes its injected clock.
   */
  now?: Date;
}

export interface AttestationPlatform {
  readonly kind: PlatformKind;
  collectEvidence(options?: CollectEvidenceOptions): Promise<Evidence>;
  transferKey(): Promise<TransferKey>;
  close(): Promise<void>;
}

/** Options for an SNP report request. */
export interface SnpReportRequest {
  /** Exactly 64 bytes, placed in the report's report_data. */
  reportData: Uint8Array;
  /** VMPL to request the report at (0-3). Default 0. */
  vmpl?: number;
  /** Also return the host-provided certificate table (extended report). */
  extended?: boolean;
  signal?: AbortSignal;
}

export interface SnpReportResult {
  /** The 1184-byte attestation report. */
  report: Uint8Array;
  /** The extended-report certificate table (GUID/offset/length entries and the certificates), if asked and present. */
  certificateTable?: Uint8Array;
}

/** Something that obtains SNP reports: the `/dev/sev-guest` ioctl or configfs-tsm. */
export interface SnpReportProvider {
  readonly name: 'sev-guest-ioctl' | 'configfs-tsm';
  getReport(request: SnpReportRequest): Promise<SnpReportResult>;
}
