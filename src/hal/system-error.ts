import { constants } from 'node:os';
import {
  DeviceError,
  DeviceNotFoundError,
  DevicePermissionError,
  NotATpmError,
  type SystemErrorDetails,
  TpmCommandRejectedError,
  TransportClosedError,
  TransportError,
  TransportTimeoutError,
  UnsupportedPlatformError,
} from '../errors.js';
import type { NativeError } from './addon.js';

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, value]) => [Math.abs(value), name] as const),
);

export interface NodeSystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

/** A Node-style system error (`code` like ENOENT, negative `errno` as in libuv, `syscall`, `path`). */
export function nodeSystemError(errno: number, syscall: string, path?: string): NodeSystemError {
  const positive = Math.abs(errno);
  const code = errnoNames.get(positive) ?? 'UNKNOWN';
  const error = new Error(`${code}: ${syscall} failed${path ? ` '${path}'` : ''}`) as NodeSystemError;
  error.code = code;
  error.errno = -positive;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  return error;
}

const NOT_FOUND = new Set(['ENOENT', 'ENXIO', 'ENODEV', 'ECONNREFUSED', 'ENOTDIR']);
const PERMISSION = new Set(['EACCES', 'EPERM']);

/**
 * Wraps a system error in the project's coded error. `advice` completes the message for each class of
 * failure, since what to check differs between a TPM and the SNP guest device.
 */
export function wrapSystemError(
  cause: NodeSystemError,
  what: string,
  advice: { notFound: string; permission: string; other?: string },
): DeviceError {
  const details: SystemErrorDetails = {
    systemCode: cause.code,
    errno: cause.errno,
    syscall: cause.syscall,
    ...(cause.path !== undefined ? { path: cause.path } : {}),
  };
  if (NOT_FOUND.has(cause.code)) {
    return new DeviceNotFoundError(`${what}: ${cause.code}; ${advice.notFound}`, details, { cause });
  }
  if (PERMISSION.has(cause.code)) {
    return new DevicePermissionError(`${what}: ${cause.code}; ${advice.permission}`, details, { cause });
  }
  return new DeviceError(
    `${what}: ${cause.code} in ${cause.syscall}${advice.other ? `; ${advice.other}` : ''}`,
    details,
    {
      cause,
    },
  );
}

export const TPM_ADVICE = {
  notFound:
    'no TPM there: on an Azure confidential VM the vTPM is /dev/tpmrm0 (is the tpm_crb/tpm_tis driver loaded?); for swtpm pass its Unix socket path',
  permission: 'run as root or add the service user to the group owning the device (usually "tss")',
};

/** Maps an addon rejection from the TPM transport onto the coded errors. */
export function tpmTransportError(error: unknown, path: string): Error {
  const native = error as NativeError;
  switch (native?.kind) {
    case 'system':
      // The event loop's poller refuses a device without a poll operation (/dev/null, /dev/zero, or a TPM
      // device of a kernel before 4.20): the addon closes it before writing anything (native/addon.cc).
      if (native.syscall === 'epoll_ctl' && Math.abs(native.errno ?? 0) === constants.errno.EPERM) {
        return notATpm(path, 'character device that cannot be polled (a TPM can be, from Linux 4.20)', error);
      }
      return wrapSystemError(
        nodeSystemError(native.errno ?? 0, native.syscall ?? 'unknown', native.path ?? path),
        `TPM at ${path}`,
        TPM_ADVICE,
      );
    case 'timeout':
      return new TransportTimeoutError(`the TPM at ${path} did not answer in time; is it busy or hung?`, {
        cause: error,
      });
    case 'closed':
      return new TransportClosedError(`the TPM transport for ${path} is closed`, { cause: error });
    case 'eof':
      return new TransportError(
        `the TPM at ${path} closed the connection; is swtpm or the TPM service still running?`,
        {
          cause: error,
        },
      );
    case 'protocol':
      return new TransportError(`TPM exchange with ${path} failed: ${native.message}`, { cause: error });
    case 'invalid':
      return new TpmCommandRejectedError(native.message, { cause: error });
    case 'not-tpm':
      return notATpm(path, native.fileType ?? 'file of unknown type', error);
    case 'unsupported':
      return new UnsupportedPlatformError(
        `${native.message}; use the emulator or a TCP TPM (openTpm({ tcp })) on this platform`,
        { cause: error },
      );
    default:
      return error instanceof Error ? error : new TransportError(String(error));
  }
}

/** The error for a TPM path that is a regular file, directory, FIFO...: nothing was written to it. */
export function notATpm(path: string, fileType: string, cause?: unknown): NotATpmError {
  return new NotATpmError(
    `${path} is a ${fileType}, not a TPM: give a TPM character device (/dev/tpmrm0) or a swtpm Unix socket; nothing was written to it`,
    { path, fileType },
    cause === undefined ? undefined : { cause },
  );
}
