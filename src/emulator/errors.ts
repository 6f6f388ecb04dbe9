/**
 * The errors of `cvm-skr/emulator`: thrown only by the emulated hardware, attestation service and Key Vault, so
 * the main entry point `cvm-skr` neither defines nor exports them. They are `CvmSkrError`s like every other
 * error; importing this module adds their codes to `CvmSkrErrorCode` (declaration merging of the interfaces that
 * define it in src/errors.ts).
 */
import { CvmSkrError, type CvmSkrErrorCode, type CvmSkrErrorOptions } from '../errors.js';

declare module '../errors.js' {
  interface CvmSkrErrorCodes {
    ERR_EMULATOR: true;
    ERR_EMULATOR_STATE: true;
    ERR_EMULATOR_STATE_LOCKED: true;
    ERR_EMULATED_VAULT_REQUEST: true;
    ERR_EMULATOR_CREDENTIAL: true;
  }

  /** Rules only the emulated attestation service checks (the library's verifiers never throw these codes). */
  interface EvidenceFailureCodes {
    /** The AK in the TPM evidence is not the AK the HCL report (`HCLAkPub`) or the AK certificate names. */
    ERR_AK_MISMATCH: true;
    /** AzureGuest or SevSnpVm evidence came without the VCEK chain (Proof.VcekCertChain / VcekCertChain). */
    ERR_VCEK_CHAIN_MISSING: true;
    /** The AK certificate is unusable or not issued by a trusted vTPM CA. */
    ERR_AK_CERTIFICATE: true;
    /** The runtime data of a SevSnpVm request is not what the report binds, or not usable JSON with a key. */
    ERR_RUNTIME_DATA_BINDING: true;
    /** Evidence verified but an attestation policy rule of the (emulated) service refuses it. */
    ERR_ATTESTATION_POLICY: true;
  }
}

/** The emulator could not start or was used after close. */
export class EmulatorError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EMULATOR';
}

/** The emulator state file exists but cannot be read as emulator state; it is left untouched. */
export class EmulatorStateError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EMULATOR_STATE';
  readonly path: string;
  /** Byte offset of the unreadable record, when the problem is inside the file (the journal). */
  readonly offset?: number;

  constructor(message: string, path: string, options?: CvmSkrErrorOptions & { offset?: number }) {
    super(message, options);
    this.path = path;
    if (options?.offset !== undefined) this.offset = options.offset;
  }
}

/**
 * Another live process owns the emulator state file (its `<state>.lock` names that pid); a second emulator on
 * the same file would overwrite the first one's writes.
 */
export class EmulatorStateLockedError extends EmulatorStateError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EMULATOR_STATE_LOCKED';
  /** The process holding the lock. */
  readonly pid: number;
  readonly lockPath: string;

  constructor(message: string, path: string, lockPath: string, pid: number) {
    super(message, path);
    this.lockPath = lockPath;
    this.pid = pid;
  }
}

/**
 * A request to the emulated Key Vault fails the way the service would: HTTP status, service error code
 * (`BadParameter`, `KeyNotFound`, `Forbidden`, ...) and optional inner code. The server turns it into the
 * service's `{"error":{"code","message","innererror"}}` body.
 */
export class EmulatedVaultRequestError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EMULATED_VAULT_REQUEST';
  readonly statusCode: number;
  readonly serviceCode: string;
  readonly innerCode?: string;

  constructor(statusCode: number, serviceCode: string, message: string, innerCode?: string) {
    super(message);
    this.statusCode = statusCode;
    this.serviceCode = serviceCode;
    if (innerCode !== undefined) this.innerCode = innerCode;
  }
}

/** The emulator token endpoint refused or did not answer a token request. */
export class EmulatorCredentialError extends CvmSkrError {
  static override readonly code: CvmSkrErrorCode = 'ERR_EMULATOR_CREDENTIAL';
}
