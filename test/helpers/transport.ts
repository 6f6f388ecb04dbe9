import { openTpm } from '../../src/hal/open-tpm.js';
import { SocketTpmTransport } from '../../src/hal/socket-transport.js';
import type { TpmTransport } from '../../src/hal/types.js';
import type { Swtpm } from './swtpm.js';

/**
 * Connects to a swtpm started by `startSwtpm()` through the transport production code uses on a confidential
 * VM: the native addon on the Unix socket. Falls back to the TypeScript socket transport only while the
 * addon is not built (never under CI=true).
 */
export async function connectSwtpm(tpm: Swtpm): Promise<TpmTransport> {
  try {
    return await openTpm({ path: tpm.socketPath });
  } catch (error) {
    if (process.env.CI === 'true') throw error;
    return SocketTpmTransport.connect({ socketPath: tpm.socketPath });
  }
}
