import { TpmCommandRejectedError } from '../errors.js';

/** TPM 2.0 header: tag (2) | size (4) | code (4), big-endian. */
export const TPM_HEADER_SIZE = 10;
/** The largest command any transport accepts (the reference TPM's MAX_COMMAND_SIZE). */
export const MAX_TPM_COMMAND_SIZE = 4096;
/** The largest response a transport will accept before calling the frame corrupt. */
export const MAX_TPM_RESPONSE_SIZE = 64 * 1024;

/** Refuses a command that no TPM would accept, before it reaches a device. */
export function checkCommandFrame(command: Uint8Array): void {
  if (!(command instanceof Uint8Array)) {
    throw new TpmCommandRejectedError('TPM command must be a Uint8Array');
  }
  if (command.length < TPM_HEADER_SIZE) {
    throw new TpmCommandRejectedError(
      `TPM command of ${command.length} bytes is shorter than the 10-byte header`,
    );
  }
  if (command.length > MAX_TPM_COMMAND_SIZE) {
    throw new TpmCommandRejectedError(
      `TPM command of ${command.length} bytes exceeds the ${MAX_TPM_COMMAND_SIZE}-byte limit`,
    );
  }
  const declared = readFrameSize(command);
  if (declared !== command.length) {
    throw new TpmCommandRejectedError(
      `TPM command header declares ${declared} bytes but the buffer holds ${command.length}`,
    );
  }
}

export function readFrameSize(frame: Uint8Array): number {
  return ((frame[2]! << 24) >>> 0) + (frame[3]! << 16) + (frame[4]! << 8) + frame[5]!;
}
