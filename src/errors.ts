/**
 * The one error hierarchy of cvm-skr.
 *
 * Every error the library throws is a `CvmSkrError` with a stable `code` string (also available as a
 * static `code` on the class, so callers can compare without an instance). Messages say what to check;
 * they never contain key material, tokens or private keys. Where a lower-level error caused ours, it is
 * kept as `cause`.
 */

export interface CvmSkrErrorOptions {
  cause?: unknown;
}

export class CvmSkrError extends Error {
  static code = 'ERR_CVM_SKR';
  readonly code: string;

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
  static override code = 'ERR_INVALID_ARGUMENT';
}

/** The running OS or architecture has no support for the requested hardware backend. */
export class UnsupportedPlatformError extends CvmSkrError {
  static override code = 'ERR_UNSUPPORTED_PLATFORM';
}

/** The operation was cancelled through an AbortSignal. */
export class AbortError extends CvmSkrError {
  static override code = 'ERR_ABORTED';
}

/** Untrusted bytes did not parse: truncated, inconsistent, or out of range. */
export class MalformedDataError extends CvmSkrError {
  static override code = 'ERR_MALFORMED_DATA';
}

// ---------------------------------------------------------------------------------------------------------
// hal: native addon, devices, transports
// ---------------------------------------------------------------------------------------------------------

/** The native addon could not be loaded; the message lists what was tried and how to build it. */
export class AddonLoadError extends CvmSkrError {
  static override code = 'ERR_ADDON_LOAD';
}

export interface SystemErrorDetails {
  /** Node-style system error code, e.g. `ENOENT`. */
  systemCode: string;
  /** Positive errno value as reported by the OS. */
  errno: number;
  syscall: string;
  path?: string;
}

/** A system call on a device or socket failed. `cause` is a Node-style system error. */
export class DeviceError extends CvmSkrError implements SystemErrorDetails {
  static override code = 'ERR_DEVICE';
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
  static override code = 'ERR_DEVICE_NOT_FOUND';
}

/** The process may not open the device (EACCES, EPERM). */
export class DevicePermissionError extends DeviceError {
  static override code = 'ERR_DEVICE_PERMISSION';
}

/** A transport was used after `close()`, or closed while a command was queued or in flight. */
export class TransportClosedError extends CvmSkrError {
  static override code = 'ERR_TRANSPORT_CLOSED';
}

/** The device did not answer within the transport's timeout. */
export class TransportTimeoutError extends CvmSkrError {
  static override code = 'ERR_TRANSPORT_TIMEOUT';
}

/** The connection broke (peer closed, reset) or the device returned an unusable frame. */
export class TransportError extends CvmSkrError {
  static override code = 'ERR_TRANSPORT';
}

/** A TPM command was refused before it reached the device (too large, or its header size is wrong). */
export class TpmCommandRejectedError extends CvmSkrError {
  static override code = 'ERR_TPM_COMMAND_REJECTED';
}

/** The SEV-SNP firmware or the hypervisor refused a guest request. */
export class SnpFirmwareError extends CvmSkrError {
  static override code = 'ERR_SNP_FIRMWARE';
  readonly firmwareError: number;
  readonly vmmError: number;

  constructor(message: string, firmwareError: number, vmmError: number, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.firmwareError = firmwareError;
    this.vmmError = vmmError;
  }
}

/** No confidential-computing backend is available on this machine. */
export class NotConfidentialError extends CvmSkrError {
  static override code = 'ERR_NOT_CONFIDENTIAL';
}

// ---------------------------------------------------------------------------------------------------------
// tpm
// ---------------------------------------------------------------------------------------------------------
// (TPM command layer errors go here)

// ---------------------------------------------------------------------------------------------------------
// snp / hcl evidence
// ---------------------------------------------------------------------------------------------------------
// (evidence parsing and verification errors go here)

// ---------------------------------------------------------------------------------------------------------
// maa / keyvault / rotation / emulator
// ---------------------------------------------------------------------------------------------------------
// (attestation, release, rotation and emulator errors go here)
// rotation

/** An ISO-8601 duration (e.g. `P18M`, `PT48H`) did not parse; `field` names where it came from. */
export class InvalidDurationError extends InvalidArgumentError {
  static override code = 'ERR_INVALID_DURATION';
  readonly field: string;

  constructor(message: string, field: string, options?: CvmSkrErrorOptions) {
    super(message, options);
    this.field = field;
  }
}

/** A rotation policy document is not shaped like one (wrong types, unknown action); `field` is its path. */
export class RotationPolicyFormatError extends MalformedDataError {
  static override code = 'ERR_ROTATION_POLICY_FORMAT';
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
  static override code = 'ERR_ROTATION_POLICY_INVALID';
  readonly violations: readonly RotationPolicyViolationDetail[];

  constructor(violations: readonly RotationPolicyViolationDetail[], options?: CvmSkrErrorOptions) {
    super(
      `rotation policy is invalid: ${violations.map((v) => `${v.field}: ${v.message}`).join('; ')}`,
      options,
    );
    this.violations = violations;
  }
}
