import { UnsupportedPlatformError } from '../errors.js';
import type { TpmTransport } from './types.js';

// Placeholder until the native addon lands (same commit series).
export class NativeTpmTransport {
  static async open(_path: string, _timeoutMs?: number): Promise<TpmTransport> {
    throw new UnsupportedPlatformError('native TPM transport not built yet');
  }
}
