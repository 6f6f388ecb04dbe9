import { stat } from 'node:fs/promises';
import net from 'node:net';
import {
  DeviceError,
  DeviceNotFoundError,
  DevicePermissionError,
  InvalidArgumentError,
  TransportClosedError,
  TransportError,
  TransportTimeoutError,
} from '../errors.js';
import { notATpm } from './system-error.js';
import { checkCommandFrame, MAX_TPM_RESPONSE_SIZE, readFrameSize, TPM_HEADER_SIZE } from './tpm-frame.js';
import type { TpmTransport } from './types.js';

export interface SocketTransportOptions {
  /** `host:port` of a TPM command server (swtpm `--server type=tcp`). */
  tcp?: string;
  /** Path of a Unix socket (swtpm `--server type=unixio`). */
  socketPath?: string;
  /** How long one command may take, in milliseconds. Default 30 000. */
  timeoutMs?: number;
}

interface Pending {
  command: Uint8Array;
  resolve: (response: Uint8Array) => void;
  reject: (error: Error) => void;
}

/**
 * A pure TypeScript TPM transport over a stream socket, for machines without the native addon.
 * Commands are sent one at a time; the rest wait in a queue so responses can never interleave.
 */
export class SocketTpmTransport implements TpmTransport {
  readonly #socket: net.Socket;
  readonly #timeoutMs: number;
  readonly #where: string;
  readonly #queue: Pending[] = [];
  #inFlight: Pending | undefined;
  #received: Buffer[] = [];
  #receivedLength = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #broken: Error | undefined;

  private constructor(socket: net.Socket, where: string, timeoutMs: number) {
    this.#socket = socket;
    this.#where = where;
    this.#timeoutMs = timeoutMs;
    socket.on('data', (chunk) => this.#onData(chunk));
    socket.on('error', (error) =>
      this.#fail(new TransportError(`TPM socket ${where} failed`, { cause: error })),
    );
    socket.on('close', () =>
      this.#fail(
        new TransportError(`TPM socket ${where} was closed by the other side; is the TPM still running?`),
      ),
    );
  }

  static async connect(options: SocketTransportOptions): Promise<SocketTpmTransport> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    let connectOptions: net.NetConnectOpts;
    let where: string;
    if (options.tcp !== undefined) {
      const match = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(options.tcp);
      if (!match)
        throw new InvalidArgumentError(`tcp must be "host:port", got ${JSON.stringify(options.tcp)}`);
      connectOptions = { host: match[1]!, port: Number(match[2]) };
      where = options.tcp;
    } else if (options.socketPath !== undefined) {
      // connect(2) cannot write into a regular file, but say plainly what the path is instead of ECONNREFUSED.
      const type = await fileTypeOf(options.socketPath);
      if (type !== undefined && type !== 'socket') throw notATpm(options.socketPath, type);
      connectOptions = { path: options.socketPath };
      where = options.socketPath;
    } else {
      throw new InvalidArgumentError('SocketTpmTransport needs either tcp or socketPath');
    }
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(connectOptions);
      s.setNoDelay(true);
      s.once('connect', () => {
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (error: NodeJS.ErrnoException) => {
        s.destroy();
        reject(connectError(error, where));
      });
    });
    return new SocketTpmTransport(socket, where, timeoutMs);
  }

  transmit(command: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new TransportClosedError('TPM transport is closed'));
    if (this.#broken) return Promise.reject(this.#broken);
    try {
      checkCommandFrame(command);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ command: Uint8Array.from(command), resolve, reject });
      this.#pump();
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new TransportClosedError('TPM transport was closed before the command completed');
    this.#rejectAll(error);
    await new Promise<void>((resolve) => {
      if (this.#socket.destroyed) return resolve();
      this.#socket.once('close', () => resolve());
      this.#socket.destroy();
    });
  }

  #pump(): void {
    if (this.#inFlight || this.#queue.length === 0) return;
    const next = this.#queue.shift()!;
    this.#inFlight = next;
    this.#received = [];
    this.#receivedLength = 0;
    this.#timer = setTimeout(() => {
      this.#fail(
        new TransportTimeoutError(`TPM at ${this.#where} did not answer within ${this.#timeoutMs} ms`),
      );
      this.#socket.destroy();
    }, this.#timeoutMs);
    this.#socket.write(next.command);
  }

  #onData(chunk: Buffer): void {
    if (!this.#inFlight) {
      this.#fail(new TransportError(`TPM at ${this.#where} sent ${chunk.length} bytes nobody asked for`));
      this.#socket.destroy();
      return;
    }
    this.#received.push(chunk);
    this.#receivedLength += chunk.length;
    if (this.#receivedLength < TPM_HEADER_SIZE) return;
    const head = this.#received.length === 1 ? this.#received[0]! : Buffer.concat(this.#received);
    const size = readFrameSize(head);
    if (size < TPM_HEADER_SIZE || size > MAX_TPM_RESPONSE_SIZE || this.#receivedLength > size) {
      this.#fail(new TransportError(`TPM at ${this.#where} sent a response frame of invalid size ${size}`));
      this.#socket.destroy();
      return;
    }
    if (this.#receivedLength < size) return;
    const response = new Uint8Array(Buffer.concat(this.#received, size));
    const done = this.#inFlight;
    this.#inFlight = undefined;
    clearTimeout(this.#timer);
    done.resolve(response);
    this.#pump();
  }

  #fail(error: Error): void {
    if (this.#closed) return;
    this.#broken ??= error;
    this.#rejectAll(error);
  }

  #rejectAll(error: Error): void {
    clearTimeout(this.#timer);
    const pending = this.#inFlight ? [this.#inFlight, ...this.#queue] : [...this.#queue];
    this.#inFlight = undefined;
    this.#queue.length = 0;
    for (const p of pending) p.reject(error);
  }
}

/** What a path is (`socket`, `regular file`, ...), or undefined when stat fails (connect reports why). */
async function fileTypeOf(path: string): Promise<string | undefined> {
  const st = await stat(path).catch(() => undefined);
  if (!st) return undefined;
  if (st.isSocket()) return 'socket';
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  return 'file of unknown type';
}

function connectError(error: NodeJS.ErrnoException, where: string): Error {
  const details = {
    systemCode: error.code ?? 'UNKNOWN',
    errno: error.errno ?? 0,
    syscall: error.syscall ?? 'connect',
    path: where,
  };
  switch (error.code) {
    case 'ENOENT':
    case 'ECONNREFUSED':
      return new DeviceNotFoundError(
        `no TPM is listening at ${where} (${error.code}); start swtpm or check the address`,
        details,
        {
          cause: error,
        },
      );
    case 'EACCES':
    case 'EPERM':
      return new DevicePermissionError(`permission denied connecting to the TPM at ${where}`, details, {
        cause: error,
      });
    default:
      return new DeviceError(
        `cannot connect to the TPM at ${where} (${error.code ?? error.message})`,
        details,
        {
          cause: error,
        },
      );
  }
}
