import { InvalidArgumentError } from '../errors.js';
import { SocketTpmTransport } from './socket-transport.js';
import type { TpmTransport } from './types.js';

export interface OpenTpmOptions {
  /**
   * Character device (default `/dev/tpmrm0`) or Unix socket path (swtpm `--server type=unixio`), opened by the
   * native addon.
   */
  path?: string;
  /** `host:port` of a TPM command server (swtpm `--server type=tcp`), served by the pure TypeScript transport. */
  tcp?: string;
  /** Per-command timeout in milliseconds. Default 30 000. */
  timeoutMs?: number;
}

export const DEFAULT_TPM_PATH = '/dev/tpmrm0';

/** Opens a TPM: the native transport for device paths and Unix sockets, TypeScript sockets for TCP. */
export async function openTpm(options: OpenTpmOptions = {}): Promise<TpmTransport> {
  if (options.tcp !== undefined && options.path !== undefined) {
    throw new InvalidArgumentError('openTpm takes either path or tcp, not both');
  }
  if (options.tcp !== undefined) {
    return SocketTpmTransport.connect({
      tcp: options.tcp,
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
  }
  const { NativeTpmTransport } = await import('./native-transport.js');
  return NativeTpmTransport.open(options.path ?? DEFAULT_TPM_PATH, options.timeoutMs);
}
