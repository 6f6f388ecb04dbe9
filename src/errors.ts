/**
 * The one error hierarchy of cvm-skr.
 *
 * Every error the library throws is a `CvmSkrError` with a stable `code` (typed `CvmSkrErrorCode`, also the
 * static `code` of its class, so callers can compare without an instance). A class exists only where callers
 * act differently; finer detail is a field, or for `EvidenceVerificationError`, `AttestationTokenError` and
 * `MalformedDataError` a finer code from their `...FailureCodes`. Messages say what to check; they never contain
 * key material, tokens or private keys. Where a lower-level error caused ours, it is kept as `cause`. The
 * emulator's errors are in src/emulator/errors.ts.
 */

export interface CvmSkrErrorOptions {
  cause?: unknown;
}

/**
 * Every `code` a `CvmSkrError` can carry, as the keys of this interface (the values mean nothing). Each class's
 * static `code` must be one of them, which the compiler checks. `cvm-skr/emulator` adds the codes of its own
 * errors by declaration merging, so the main entry point's types name no emulator error.
 */
export interface CvmSkrErrorCodes
  extends EvidenceFailureCodes,
    AttestationTokenFailureCodes,
    MalformedDataFailureCodes {
  ERR_CVM_SKR: true;
  ERR_INVALID_ARGUMENT: true;
  ERR_UNSUPPORTED_PLATFORM: true;
  ERR_ABORTED: true;
  ERR_TIMEOUT: true;
  ERR_CLOSED: true;
  ERR_SERVICE_ANSWER: true;
  ERR_MALFORMED_DATA: true;
  ERR_ADDON_LOAD: true;
  ERR_DEVICE: true;
  ERR_DEVICE_NOT_FOUND: true;
  ERR_DEVICE_PERMISSION: true;
  ERR_NOT_A_TPM: true;
  ERR_TRANSPORT_CLOSED: true;
  ERR_TRANSPORT_TIMEOUT: true;
  ERR_TRANSPORT: true;
  ERR_TPM_COMMAND_REJECTED: true;
  ERR_SNP_FIRMWARE: true;
  ERR_CONFIGFS_TSM: true;
  ERR_NOT_CONFIDENTIAL: true;
  ERR_TPM_RC: true;
  ERR_TPM_POLICY: true;
  ERR_TPM_NV_NOT_DEFINED: true;
  ERR_TPM_KEY_NOT_FOUND: true;
  ERR_HCL_USER_DATA_TIMEOUT: true;
  ERR_TPM_PCRS_UNSTABLE: true;
  ERR_PLATFORM_CLOSED: true;
  ERR_SNP_CERTIFICATE: true;
  ERR_VCEK_FETCH: true;
  ERR_AK_CERT_NOT_PROVISIONED: true;
  ERR_AK_CERT_RENEWAL: true;
  ERR_TCG_LOG_UNREADABLE: true;
  ERR_EVIDENCE_VERIFICATION: true;
  ERR_TRANSFER_KEY_DECRYPT: true;
  ERR_ATTESTATION_REQUEST: true;
  ERR_ATTESTATION_RESPONSE: true;
  ERR_ATTESTATION_TOKEN: true;
  ERR_ENVELOPE_AUTHENTICATION: true;
  ERR_ENVELOPE_KEY: true;
  ERR_KEY_VERSION_UNAVAILABLE: true;
  ERR_EVENT_DELIVERY: true;
  ERR_INVALID_DURATION: true;
  ERR_ROTATION_POLICY_FORMAT: true;
  ERR_ROTATION_POLICY_INVALID: true;
  ERR_ROTATION_REQUEST: true;
  ERR_RELEASE_POLICY_PARSE: true;
  ERR_KEY_WRAP: true;
  ERR_RELEASE_DENIED: true;
  ERR_KEYVAULT_REQUEST: true;
  ERR_ATTESTATION_REJECTED: true;
  ERR_RELEASE_RESPONSE_INVALID: true;
  ERR_UNWRAP_FAILED: true;
  ERR_UVM_REFERENCE_INFO: true;
  ERR_AGENT_UNAVAILABLE: true;
  ERR_AGENT_BUSY: true;
  ERR_AGENT_FORBIDDEN: true;
  ERR_AGENT_SOCKET: true;
}

/** The union of every error code: compare `error.code` against it, e.g. `error.code === 'ERR_RELEASE_DENIED'`. */
export type CvmSkrErrorCode = keyof CvmSkrErrorCodes;

export class CvmSkrError extends Error {
  static readonly code: CvmSkrErrorCode = 'ERR_CVM_SKR';
  readonly code: CvmSkrErrorCode;

  constructor(message: string, options?: CvmSkrErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = (new.target as typeof CvmSkrError).code;
  }
}

// ---------------------------------------------------------------------------------------------------------
// general
// ---------------------------------------------------------------------------------------------------------

/** A caller passed a value the API cannot use. */
export class InvalidArgumentError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_INVALID_ARGUMENT';
}

/** The running OS or architecture has no support for the requested hardware backend. */
export class UnsupportedPlatformError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_UNSUPPORTED_PLATFORM';
}

/** The operation was cancelled through an AbortSignal. */
export class AbortError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ABORTED';
}

/** A call ran out of its time (`timeoutMs`, the CLI's `--timeout`). `timeoutMs` says which limit. */
export class TimeoutError extends AbortError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TIMEOUT';
  readonly timeoutMs: number;

  constructor(message: string, details: { timeoutMs: number }, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.timeoutMs = details.timeoutMs;
  }
}

/** A `SecureKeyRelease` (or another client) was used after its `close()`. */
export class ClosedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_CLOSED';
}

/** A remote service answered with an error: its HTTP status and its own error code, when it gave one. */
export class ServiceAnswerError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_SERVICE_ANSWER';
  readonly statusCode?: number;
  readonly serviceCode?: string;

  constructor(message: string, details: { statusCode?: number; serviceCode?: string } = {}, options?: CvmSkrErrorOptions) {
    super(message, options);
    if (details.statusCode !== undefined) this.statusCode = details.statusCode;
    if (details.serviceCode !== undefined) this.serviceCode = details.serviceCode;
  }
}

/** The codes of a `MalformedDataError`: which format did not parse (the keys; the values mean nothing). */
export interface MalformedDataFailureCodes {
  /** A TPM response or TPM structure is truncated, inconsistent or uses values this library does not know. */
  ERR_TPM_MALFORMED: true;
  /** An SNP attestation report did not parse: wrong size, unknown version, or nonzero reserved bytes. */
  ERR_SNP_REPORT_MALFORMED: true;
  /** An Azure HCL report (vTPM NV blob) did not parse. */
  ERR_HCL_REPORT_MALFORMED: true;
  /** A TPM quote (TPMS_ATTEST) did not parse. */
  ERR_QUOTE_MALFORMED: true;
  /** A TCG event log (the firmware measurement log) did not parse: truncated, not crypto-agile, or inconsistent. */
  ERR_TCG_LOG_MALFORMED: true;
  /** An envelope (`EnvelopeCipher`) does not parse: wrong magic, unknown format version, bad lengths, truncated. */
  ERR_ENVELOPE_FORMAT: true;
  /** The key agent's answer did not parse: the socket is not a cvm-skr agent, or one of another version. */
  ERR_AGENT_ANSWER_MALFORMED: true;
}

/** The code a `MalformedDataError` carries. */
export type MalformedDataFailureCode = keyof MalformedDataFailureCodes;

/**
 * Untrusted bytes did not parse: truncated, inconsistent, or out of range. `code` names the format (a TPM
 * structure, an SNP or HCL report, a quote, a TCG log, an envelope).
 */
export class MalformedDataError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_MALFORMED_DATA';
  declare readonly code: MalformedDataFailureCode;

  constructor(code: MalformedDataFailureCode, message: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------
// hal: native addon, devices, transports
// ---------------------------------------------------------------------------------------------------------

/** The native addon could not be loaded; the message lists what was tried and how to build it. */
export class AddonLoadError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ADDON_LOAD';
}

export interface SystemErrorDetails {
  /** Node-style system error code, e.g. `ENOENT`. */
  systemCode: string;
  /** errno as Node reports it (negative, libuv style, e.g. -2 for ENOENT). */
  errno: number;
  syscall: string;
  path?: string;
}

/** A system call on a device or socket failed. `cause` is a Node-style system error. */
export class DeviceError extends CvmSkrError implements SystemErrorDetails {
  static override readonly code: CvmSkrErrorCode = 'ERR_DEVICE';
  readonly systemCode: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path?: string;

  constructor(message: string, details: SystemErrorDetails, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.systemCode = details.systemCode;
    this.errno = details.errno;
    this.syscall = details.syscall;
    if (details.path !== undefined) this.path = details.path;
  }
}

/** The device or socket does not exist (ENOENT, ENXIO, ECONNREFUSED on a socket path). */
export class DeviceNotFoundError extends DeviceError {
  static override readonly code: CvmSkrErrorCode = 'ERR_DEVICE_NOT_FOUND';
}

/** The process may not open the device (EACCES, EPERM). */
export class DevicePermissionError extends DeviceError {
  static override readonly code: CvmSkrErrorCode = 'ERR_DEVICE_PERMISSION';
}

/**
 * A TPM path names something that is neither a character device nor a Unix socket (a regular file, a
 * directory, a FIFO): refused before anything is written to it. `fileType` says what it is.
 */
export class NotATpmError extends InvalidArgumentError {
  static override readonly code: CvmSkrErrorCode = 'ERR_NOT_A_TPM';
  readonly path: string;
  readonly fileType: string;

  constructor(message: string, details: { path: string; fileType: string }, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.path = details.path;
    this.fileType = details.fileType;
  }
}

/** A transport was used after `close()`, or closed while a command was queued or in flight. */
export class TransportClosedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TRANSPORT_CLOSED';
}

/** The device did not answer within the transport's timeout. */
export class TransportTimeoutError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TRANSPORT_TIMEOUT';
}

/** The connection broke (peer closed, reset) or the device returned an unusable frame. */
export class TransportError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TRANSPORT';
}

/** A TPM command was refused before it reached the device (too large, or its header size is wrong). */
export class TpmCommandRejectedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_COMMAND_REJECTED';
}

/** The SEV-SNP firmware or the hypervisor refused a guest request. */
export class SnpFirmwareError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_SNP_FIRMWARE';
  readonly firmwareError: number;
  readonly vmmError: number;

  constructor(message: string, firmwareError: number, vmmError: number, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.firmwareError = firmwareError;
    this.vmmError = vmmError;
  }
}

/** A configfs-tsm report entry gave an unusable answer, or another process raced us on it. */
export class ConfigfsTsmError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_CONFIGFS_TSM';
}

/** No confidential-computing backend is available on this machine. */
export class NotConfidentialError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_NOT_CONFIDENTIAL';
}

// ---------------------------------------------------------------------------------------------------------
// tpm
// ---------------------------------------------------------------------------------------------------------

/** Where a format-1 response code points: the handle, parameter or session it blames (1-based). */
export interface TpmErrorDetails {
  /** The response code as the TPM returned it. */
  rc: number;
  /** The code without the handle/parameter/session index bits, e.g. 0x18b for any `TPM_RC_HANDLE`. */
  baseRc: number;
  /** Spec name, e.g. `TPM_RC_HANDLE`, or `TPM_RC_0x...` for codes outside the tables. */
  rcName: string;
  /** The command that failed, e.g. `TPM2_NV_Read`. */
  command: string;
  /** True for format-0 warnings (TPM_RC_WARN: retry, memory, lockout, ...). */
  warning: boolean;
  handleIndex?: number;
  parameterIndex?: number;
  sessionIndex?: number;
}

/** The TPM refused a command. `rc`, `rcName` and the format-1 index say exactly what it blamed. */
export class TpmError extends CvmSkrError implements TpmErrorDetails {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_RC';
  readonly rc: number;
  readonly baseRc: number;
  readonly rcName: string;
  readonly command: string;
  readonly warning: boolean;
  readonly handleIndex?: number;
  readonly parameterIndex?: number;
  readonly sessionIndex?: number;

  constructor(message: string, details: TpmErrorDetails, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.rc = details.rc;
    this.baseRc = details.baseRc;
    this.rcName = details.rcName;
    this.command = details.command;
    this.warning = details.warning;
    if (details.handleIndex !== undefined) this.handleIndex = details.handleIndex;
    if (details.parameterIndex !== undefined) this.parameterIndex = details.parameterIndex;
    if (details.sessionIndex !== undefined) this.sessionIndex = details.sessionIndex;
  }
}

/**
 * A policy session did not satisfy a key's authPolicy (TPM_RC_POLICY_FAIL, TPM_RC_PCR_CHANGED): for a
 * PCR-bound key this means the PCRs changed since the key was made.
 */
export class TpmPolicyError extends TpmError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_POLICY';
}

/** An NV index the operation needs is not defined on this TPM. */
export class NvIndexNotDefinedError extends TpmError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_NV_NOT_DEFINED';
  readonly nvIndex: number;

  constructor(message: string, nvIndex: number, details: TpmErrorDetails, options?: CvmSkrErrorOptions) {
    super(message, details, options);
    this.nvIndex = nvIndex;
  }
}

/** A persistent key the operation needs (e.g. the AK at 0x81000003) is not present in the TPM. */
export class TpmKeyNotFoundError extends TpmError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_KEY_NOT_FOUND';
  readonly handle: number;

  constructor(message: string, handle: number, details: TpmErrorDetails, options?: CvmSkrErrorOptions) {
    super(message, details, options);
    this.handle = handle;
  }
}

/** After writing user data, the HCL report did not carry it before the deadline. */
export class HclUserDataTimeoutError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_HCL_USER_DATA_TIMEOUT';
}

/** PCRs changed between reading them and quoting them, again and again. */
export class PcrsUnstableError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TPM_PCRS_UNSTABLE';
}

/** A platform (and its TPM handles) was used after `close()`. */
export class PlatformClosedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_PLATFORM_CLOSED';
}

// ---------------------------------------------------------------------------------------------------------
// snp / hcl evidence
// ---------------------------------------------------------------------------------------------------------

/** Certificates for an SNP report are missing or unusable (not X.509, no VCEK/VLEK among them). */
export class SnpCertificateError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_SNP_CERTIFICATE';
}

/**
 * Fetching a VCEK or its chain (THIM, AMD KDS, container file) failed. `statusCode` is the HTTP status if any;
 * `tried` lists every source asked and why each failed, when several were tried.
 */
export class VcekFetchError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_VCEK_FETCH';
  readonly statusCode?: number;
  tried: readonly string[] = [];

  constructor(message: string, statusCode?: number, options?: CvmSkrErrorOptions) {
    super(message, options);
    if (statusCode !== undefined) this.statusCode = statusCode;
  }
}

/**
 * The vTPM's AK certificate is still the placeholder Azure writes before the confidential VM's own certificate
 * is provisioned (issuer "Microsoft Azure Trusted VM RSA ..."): try again in a few minutes.
 */
export class AkCertificateNotProvisionedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AK_CERT_NOT_PROVISIONED';
}

/** Renewing the AK certificate through IMDS failed (no VM id, IMDS refused, or its answer had no certificate). */
export class AkCertificateRenewalError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AK_CERT_RENEWAL';
}

/**
 * The container's UVM security context (microsoft/confidential-sidecar-containers pkg/common/info.go:
 * `reference-info-base64` in its folder, or `UVM_REFERENCE_INFO`) holds something that is not a base64
 * COSE_Sign1 document, or is too large; `source` names the file or variable to check.
 */
export class UvmReferenceInfoError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_UVM_REFERENCE_INFO';
  readonly source: string;

  constructor(message: string, source: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.source = source;
  }
}

/** The TCG event log could not be read (usually: not root) and the caller asked for it to be required. */
export class TcgLogUnreadableError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TCG_LOG_UNREADABLE';
}

/** The outcome of one named evidence check. */
export interface EvidenceCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/**
 * The codes of an `EvidenceVerificationError`, one per rule the evidence can break (the keys; the values mean
 * nothing). Callers that tell failures apart compare `error.code`; none needs a class of its own.
 */
export interface EvidenceFailureCodes {
  /** A certificate in the chain is not signed by its issuer, or the chain cannot be built. */
  ERR_SNP_CHAIN: true;
  /** The certificate chain ends in a root that is neither an embedded AMD root nor one the caller added. */
  ERR_SNP_UNTRUSTED_ROOT: true;
  /** The report's signing key (VCEK, VLEK, none) does not match the certificate that is meant to sign it. */
  ERR_SNP_SIGNER_MISMATCH: true;
  /** The VCEK's hwID is not the report's chip_id: a VCEK of another chip. */
  ERR_SNP_CHIP_ID_MISMATCH: true;
  /** A TCB extension of the VCEK differs from the report's reported_tcb. */
  ERR_SNP_TCB_MISMATCH: true;
  /** The product (Milan, Genoa, Turin) of the report, the VCEK and the root disagree, or is unknown. */
  ERR_SNP_PRODUCT_MISMATCH: true;
  /** A certificate of the chain is not valid at the verification time. */
  ERR_SNP_CERTIFICATE_VALIDITY: true;
  /** The report's ECDSA P-384 signature does not verify under the VCEK/VLEK. */
  ERR_SNP_SIGNATURE: true;
  /** The guest policy allows debugging and the caller did not allow it. */
  ERR_SNP_DEBUG: true;
  /** The report's VMPL is not the expected one. */
  ERR_SNP_VMPL: true;
  /** The launch measurement is not the expected one. */
  ERR_SNP_MEASUREMENT: true;
  /** host_data is not the expected value. */
  ERR_SNP_HOST_DATA: true;
  /** report_data is not the expected value. */
  ERR_SNP_REPORT_DATA: true;
  /** A component of reported_tcb is below the caller's minimum. */
  ERR_SNP_TCB_TOO_LOW: true;
  /** id_key_digest is not the expected value. */
  ERR_SNP_ID_KEY_DIGEST: true;
  /** guest_svn is below the caller's minimum. */
  ERR_SNP_GUEST_SVN: true;
  /** family_id is not the expected value. */
  ERR_SNP_FAMILY_ID: true;
  /** image_id is not the expected value. */
  ERR_SNP_IMAGE_ID: true;
  /**
   * The firmware is provisional: committed TCB or version differs from the current one, and the caller refuses
   * that.
   */
  ERR_SNP_PROVISIONAL_FIRMWARE: true;
  /** The HCL report's runtime data does not hash to the SNP report's report_data. */
  ERR_HCL_BINDING: true;
  /** The HCL report carries a hardware report this library cannot verify (TDX, TVM). */
  ERR_HCL_UNSUPPORTED_REPORT: true;
  /** The runtime data lacks a usable key or field (HCLAkPub, malformed JSON). */
  ERR_HCL_RUNTIME_DATA: true;
  /** The TPM quote is not signed by the AK from the runtime data. */
  ERR_QUOTE_SIGNATURE: true;
  /** The TPM quote does not carry the expected nonce in extraData. */
  ERR_QUOTE_NONCE: true;
  /** The TPM quote's PCR digest does not match the PCR values, or its selection differs from them. */
  ERR_QUOTE_PCR_DIGEST: true;
  /** The transfer key's certification by the AK does not verify, or the key is not a TPM-bound decryption key. */
  ERR_TRANSFER_KEY_CERTIFY: true;
}

/** The code an `EvidenceVerificationError` carries: the rule the evidence broke. */
export type EvidenceFailureCode = keyof EvidenceFailureCodes;

/**
 * Evidence failed a check. `code` names the rule it broke (`ERR_SNP_SIGNATURE`, `ERR_QUOTE_NONCE`, ...; the
 * table below), `check` the step of the verification that ran it (`report-signature`), and `checks` lists
 * every check run so far (the last one failed). `ERR_EVIDENCE_VERIFICATION` is the code of a failure no
 * finer code names.
 */
export class EvidenceVerificationError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EVIDENCE_VERIFICATION';
  declare readonly code: 'ERR_EVIDENCE_VERIFICATION' | EvidenceFailureCode;
  readonly check: string;
  checks: EvidenceCheck[] = [];

  constructor(
    code: 'ERR_EVIDENCE_VERIFICATION' | EvidenceFailureCode,
    message: string,
    check: string,
    options?: CvmSkrErrorOptions,
  ) {
    super(message, options);
    this.code = code;
    this.check = check;
  }
}

/** An in-memory (sev-guest) transfer key could not decrypt: wrong key, wrong scheme, or corrupted ciphertext. */
export class TransferKeyDecryptError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_TRANSFER_KEY_DECRYPT';
}

// ---------------------------------------------------------------------------------------------------------
// maa: the attestation service and its tokens
// ---------------------------------------------------------------------------------------------------------

/**
 * The attestation service answered with an error (HTTP status other than 200). `statusCode` is the HTTP status;
 * `serviceCode` the service's error code when its body had one. The message quotes the service's reason.
 */
export class AttestationRequestError extends ServiceAnswerError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ATTESTATION_REQUEST';
  /** The evidence check the (emulated) service names as failed, when it names one. */
  readonly check?: string;
  /** The wait the service asked for with `Retry-After` (e.g. on 429), in ms. */
  readonly retryAfterMs?: number;

  constructor(
    message: string,
    details: { statusCode?: number; serviceCode?: string; check?: string; retryAfterMs?: number } = {},
    options?: CvmSkrErrorOptions,
  ) {
    super(message, details, options);
    if (details.check !== undefined) this.check = details.check;
    if (details.retryAfterMs !== undefined) this.retryAfterMs = details.retryAfterMs;
  }
}

/** The attestation service's answer is not shaped as expected, or its encrypted token could not be opened. */
export class AttestationResponseError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ATTESTATION_RESPONSE';
}

/** The codes of an `AttestationTokenError`: why the token was rejected (the keys; the values mean nothing). */
export interface AttestationTokenFailureCodes {
  /** The token is not a compact JWS with a JSON header and payload. */
  ERR_ATTESTATION_TOKEN_MALFORMED: true;
  /** The token's `alg` is not RS256 (e.g. `none` or HS256). */
  ERR_ATTESTATION_TOKEN_ALGORITHM: true;
  /** The token's signature does not verify under the attestation service's key. */
  ERR_ATTESTATION_TOKEN_SIGNATURE: true;
  /** The token's `iss` is not the configured attestation endpoint. */
  ERR_ATTESTATION_TOKEN_ISSUER: true;
  /** The token is expired or not yet valid (`exp`/`nbf`, with the allowed clock skew). */
  ERR_ATTESTATION_TOKEN_EXPIRED: true;
  /** No signing key for the token: unknown `kid` (after one refetch), or a `jku` outside the configured host. */
  ERR_ATTESTATION_TOKEN_KEY: true;
}

/** The code an `AttestationTokenError` carries. */
export type AttestationTokenFailureCode = keyof AttestationTokenFailureCodes;

/**
 * An attestation token was rejected. `code` says why (format, algorithm, signature, issuer, validity, key);
 * the token itself is never part of the message.
 */
export class AttestationTokenError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ATTESTATION_TOKEN';
  declare readonly code: AttestationTokenFailureCode;

  constructor(code: AttestationTokenFailureCode, message: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------
// rotation
// ---------------------------------------------------------------------------------------------------------

/**
 * An envelope failed authentication: its data key did not unwrap under the version it names, or AES-GCM
 * rejected the tag. The envelope was altered or damaged, or the `aad` differs from the one used to encrypt.
 */
export class EnvelopeAuthenticationError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ENVELOPE_AUTHENTICATION';
}

/** The key cannot protect envelopes (EC keys sign; they do not encrypt), or an envelope names another key. */
export class EnvelopeKeyError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ENVELOPE_KEY';
  readonly reason: 'unsupported-key-type' | 'foreign-key';

  constructor(message: string, reason: EnvelopeKeyError['reason'], options?: CvmSkrErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/** The key version an envelope names cannot be released: disabled, expired, not yet valid, or gone. */
export class KeyVersionUnavailableError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_KEY_VERSION_UNAVAILABLE';
  readonly kid: string;
  readonly version: string;
  readonly reason: 'disabled' | 'expired' | 'not-yet-valid' | 'not-found';

  constructor(
    message: string,
    details: { kid: string; version: string; reason: KeyVersionUnavailableError['reason'] },
    options?: CvmSkrErrorOptions,
  ) {
    super(message, options);
    this.kid = details.kid;
    this.version = details.version;
    this.reason = details.reason;
  }
}

/** An Event Grid delivery to `createEventGridHandler` is unusable (not JSON, too large, wrong shape, bad secret). */
export class EventDeliveryError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EVENT_DELIVERY';
  readonly statusCode: number;

  constructor(message: string, statusCode: number, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.statusCode = statusCode;
  }
}

/** An ISO-8601 duration (e.g. `P18M`, `PT48H`) did not parse; `field` names where it came from. */
export class InvalidDurationError extends InvalidArgumentError {
  static override readonly code: CvmSkrErrorCode = 'ERR_INVALID_DURATION';
  readonly field: string;

  constructor(message: string, field: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

/** A rotation policy document is not shaped like one (wrong types, unknown action); `field` is its path. */
export class RotationPolicyFormatError extends InvalidArgumentError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ROTATION_POLICY_FORMAT';
  readonly field: string;

  constructor(message: string, field: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

/** One broken rule of a rotation policy, as reported by `validateRotationPolicy`. */
export interface RotationPolicyViolationDetail {
  field: string;
  message: string;
  code: string;
}

/** A rotation policy breaks the service's rules; `violations` lists every one of them. */
export class RotationPolicyInvalidError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ROTATION_POLICY_INVALID';
  readonly violations: readonly RotationPolicyViolationDetail[];

  constructor(violations: readonly RotationPolicyViolationDetail[], options?: CvmSkrErrorOptions) {
    super(
      `rotation policy is invalid: ${violations.map((v) => `${v.field}: ${v.message}`).join('; ')}`,
      options,
    );
    this.violations = violations;
  }
}

/** Key Vault refused a rotation request (get/set policy, rotate, list); carries the service's own answer. */
export class RotationRequestError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ROTATION_REQUEST';
  readonly statusCode?: number;
  readonly serviceCode?: string;

  constructor(
    message: string,
    details: { statusCode?: number; serviceCode?: string },
    options?: CvmSkrErrorOptions,
  ) {
    super(message, options);
    if (details.statusCode !== undefined) this.statusCode = details.statusCode;
    if (details.serviceCode !== undefined) this.serviceCode = details.serviceCode;
  }
}

// ---------------------------------------------------------------------------------------------------------
// keyvault: release
// ---------------------------------------------------------------------------------------------------------

/** A release policy (JSON) does not follow the grammar; `path` names the offending node (e.g. `anyOf[0].allOf[2]`). */
export class ReleasePolicyParseError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_RELEASE_POLICY_PARSE';
  readonly path: string;

  constructor(message: string, path: string, options?: CvmSkrErrorOptions) {
    super(`${message} (at ${path})`, options);
    this.path = path;
  }
}

/** Key material could not be wrapped or unwrapped for release (unusable transfer key, bad length, bad integrity). */
export class KeyWrapError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_KEY_WRAP';
}

/** A key release was refused: attestation token not acceptable, or the release policy not satisfied. */
export interface ReleaseDeniedDetails {
  /** HTTP status and service error code of the refusal, when it came from a vault. */
  statusCode?: number;
  serviceCode?: string;
  /** Why: the release policy was not met, or the caller lacks the `release` permission. */
  reason?: 'policy' | 'permission';
  /** The key's release policy, when it could be read. */
  releasePolicy?: unknown;
  /** The local verdict of `evaluateReleasePolicy` on the token's claims, naming every clause. */
  evaluation?: { allowed: boolean; clauses: ReadonlyArray<{ path: string; passed: boolean; reason: string }> };
}

/** Key Vault (or the emulator) refused to release a key. */
export class ReleaseDeniedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_RELEASE_DENIED';
  readonly statusCode?: number;
  readonly serviceCode?: string;
  readonly reason?: 'policy' | 'permission';
  readonly releasePolicy?: unknown;
  readonly evaluation?: ReleaseDeniedDetails['evaluation'];

  constructor(message: string, details: ReleaseDeniedDetails = {}, options?: CvmSkrErrorOptions) {
    super(message, options);
    if (details.statusCode !== undefined) this.statusCode = details.statusCode;
    if (details.serviceCode !== undefined) this.serviceCode = details.serviceCode;
    if (details.reason !== undefined) this.reason = details.reason;
    if (details.releasePolicy !== undefined) this.releasePolicy = details.releasePolicy;
    if (details.evaluation !== undefined) this.evaluation = details.evaluation;
  }
}

/** A Key Vault call failed for another reason than a release refusal (not found, bad request, auth, 5xx). */
export class KeyVaultRequestError extends ServiceAnswerError {
  static override readonly code: CvmSkrErrorCode = 'ERR_KEYVAULT_REQUEST';
}

/** The attestation service refused the evidence (HTTP 400); the message carries the service's words. */
export class AttestationRejectedError extends ServiceAnswerError {
  static override readonly code: CvmSkrErrorCode = 'ERR_ATTESTATION_REJECTED';
}

/**
 * Which part of a release answer failed: `header` (JWS header, `kid`/`x5t`), `chain` (X.509 path to a trusted
 * root), `signer` (what the signing certificate may do, the host it names), `pin` (no pinned signer matched),
 * `signature`, `content` (payload shape), `binding` (not the answer to this request: nonce, key, version, enc).
 */
export type ReleaseResponseCheck = 'header' | 'chain' | 'signer' | 'pin' | 'signature' | 'content' | 'binding';

/** The vault's release answer failed verification (signature, chain, host, or content); nothing was unwrapped. */
export class ReleaseResponseInvalidError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_RELEASE_RESPONSE_INVALID';
  /** The failed check, when known. */
  readonly check?: ReleaseResponseCheck;

  constructor(message: string, options?: CvmSkrErrorOptions & { check?: ReleaseResponseCheck }) {
    super(message, options);
    if (options?.check !== undefined) this.check = options.check;
  }
}

/** The released key could not be unwrapped with the transfer key (wrong key, damaged or truncated ciphertext). */
export class UnwrapFailedError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_UNWRAP_FAILED';
}

// agent

/**
 * The key agent (`cvm-skr agent`) could not be reached or broke the connection: not running, restarting, or
 * the socket path is wrong. Nothing was released; call again once it is back (`socket` says where it was
 * looked for).
 */
export class AgentUnavailableError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AGENT_UNAVAILABLE';
  readonly socket: string;

  constructor(message: string, socket: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.socket = socket;
  }
}

/** The key agent has as many requests pending as it accepts (`--max-pending`), or is shutting down; back off. */
export class AgentBusyError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AGENT_BUSY';
}

/** The key agent refused this caller: no rule of its rules file lets this uid/gid (or token) have that key. */
export class AgentForbiddenError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AGENT_FORBIDDEN';
}

/**
 * The key agent could not create, own or set the mode of its Unix socket (permission denied, address in use):
 * the operator fixes the environment, not the command line. `socket` is the path; the system error is the cause.
 */
export class AgentSocketError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_AGENT_SOCKET';
  readonly socket: string;

  constructor(message: string, socket: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.socket = socket;
  }
}
