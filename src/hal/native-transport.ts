import { TransportClosedError } from '../errors.js';
import { loadAddon, type NativeTpmHandle } from './addon.js';
import { tpmTransportError } from './system-error.js';
import { checkCommandFrame } from './tpm-frame.js';
import type { TpmTransport } from './types.js';

/**
 * TPM transport through the native addon: a TPM character device (`/dev/tpmrm0`) or a Unix socket (swtpm).
 * Commands are written with non-blocking I/O and the answer is awaited in the event loop's own poller (no thread
 * hop per command; see native/addon.cc); commands on one transport are answered strictly one after another.
 */
export class NativeTpmTransport implements TpmTransport {
  readonly path: string;
  readonly #handle: NativeTpmHandle;
  #closed = false;

  private constructor(handle: NativeTpmHandle, path: string) {
    this.#handle = handle;
    this.path = path;
  }

  static async open(path: string, timeoutMs = 30_000): Promise<NativeTpmTransport> {
    const addon = loadAddon();
    try {
      return new NativeTpmTransport(await addon.openTpm(path, timeoutMs), path);
    } catch (error) {
      throw tpmTransportError(error, path);
    }
  }

  /** True when the path was a Unix socket rather than a character device. */
  get isSocket(): boolean {
    return this.#handle.isSocket;
  }

  /** Commands queued or in flight on this transport. */
  get pending(): number {
    return this.#handle.pending;
  }

  async transmit(command: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new TransportClosedError(`the TPM transport for ${this.path} is closed`);
    checkCommandFrame(command);
    try {
      return await this.#handle.transmit(command);
    } catch (error) {
      throw tpmTransportError(error, this.path);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#handle.close();
  }
}
