import { MalformedDataError } from '../errors.js';

/**
 * Big-endian reader over untrusted TPM bytes. Every read checks the remaining length first and throws a
 * `MalformedDataError` (`ERR_TPM_MALFORMED`) naming the field, so no parser built on it can read past its buffer.
 * Byte strings are returned as views (no copy); callers that keep them beyond the buffer's life copy.
 */
export class TpmReader {
  readonly #bytes: Uint8Array;
  readonly #view: DataView;
  readonly #end: number;
  #offset: number;
  readonly #what: string;

  constructor(bytes: Uint8Array, what = 'TPM data', start = 0, end = bytes.length) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#offset = start;
    this.#end = end;
    this.#what = what;
  }

  get offset(): number {
    return this.#offset;
  }

  get remaining(): number {
    return this.#end - this.#offset;
  }

  #need(n: number, field: string): number {
    if (n > this.#end - this.#offset) {
      throw new MalformedDataError(
        'ERR_TPM_MALFORMED',
        `${this.#what} is truncated: ${field} needs ${n} bytes at offset ${this.#offset}, ${this.#end - this.#offset} left`,
      );
    }
    const at = this.#offset;
    this.#offset += n;
    return at;
  }

  u8(field = 'UINT8'): number {
    return this.#view.getUint8(this.#need(1, field));
  }

  u16(field = 'UINT16'): number {
    return this.#view.getUint16(this.#need(2, field));
  }

  u32(field = 'UINT32'): number {
    return this.#view.getUint32(this.#need(4, field));
  }

  u64(field = 'UINT64'): bigint {
    return this.#view.getBigUint64(this.#need(8, field));
  }

  bytes(n: number, field = 'bytes'): Uint8Array {
    const at = this.#need(n, field);
    return this.#bytes.subarray(at, at + n);
  }

  /** A TPM2B: UINT16 size, then that many bytes. `max` rejects sizes the structure does not allow. */
  tpm2b(field = 'TPM2B', max?: number): Uint8Array {
    const size = this.u16(`${field}.size`);
    if (max !== undefined && size > max) {
      throw new MalformedDataError(
        'ERR_TPM_MALFORMED',
        `${this.#what}: ${field} size ${size} exceeds its maximum ${max}`,
      );
    }
    return this.bytes(size, field);
  }

  /** The bytes from `start` (an earlier `offset`) up to the current position, as a view. */
  since(start: number): Uint8Array {
    return this.#bytes.subarray(start, this.#offset);
  }

  /** A reader over the next `n` bytes (a sized sub-structure); this reader moves past them. */
  sub(n: number, field: string): TpmReader {
    const at = this.#need(n, field);
    return new TpmReader(this.#bytes, `${this.#what} ${field}`, at, at + n);
  }

  /** Throws unless every byte was consumed: trailing garbage means the structure was misread. */
  expectEnd(field = this.#what): void {
    if (this.#offset !== this.#end) {
      throw new MalformedDataError(
        'ERR_TPM_MALFORMED',
        `${field} has ${this.#end - this.#offset} unexpected trailing bytes`,
      );
    }
  }

  fail(message: string): never {
    throw new MalformedDataError('ERR_TPM_MALFORMED', `${this.#what}: ${message}`);
  }
}

/** Growable big-endian writer. `finish()` returns a view of exactly the written bytes. */
export class TpmWriter {
  #buf: Uint8Array;
  #view: DataView;
  #length = 0;

  constructor(initialCapacity = 256) {
    this.#buf = new Uint8Array(initialCapacity);
    this.#view = new DataView(this.#buf.buffer);
  }

  get length(): number {
    return this.#length;
  }

  #grow(n: number): number {
    const at = this.#length;
    const needed = at + n;
    if (needed > this.#buf.length) {
      let capacity = this.#buf.length * 2;
      while (capacity < needed) capacity *= 2;
      const next = new Uint8Array(capacity);
      next.set(this.#buf.subarray(0, at));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    this.#length = needed;
    return at;
  }

  u8(value: number): this {
    const at = this.#grow(1);
    this.#view.setUint8(at, value);
    return this;
  }

  u16(value: number): this {
    const at = this.#grow(2);
    this.#view.setUint16(at, value);
    return this;
  }

  u32(value: number): this {
    const at = this.#grow(4);
    this.#view.setUint32(at, value >>> 0);
    return this;
  }

  u64(value: bigint): this {
    const at = this.#grow(8);
    this.#view.setBigUint64(at, value);
    return this;
  }

  bytes(value: Uint8Array): this {
    const at = this.#grow(value.length);
    this.#buf.set(value, at);
    return this;
  }

  tpm2b(value: Uint8Array): this {
    if (value.length > 0xffff) throw new MalformedDataError(
      'ERR_TPM_MALFORMED',
      `TPM2B of ${value.length} bytes is too large`,
    );
    return this.u16(value.length).bytes(value);
  }

  /** Writes a UINT16 size prefix followed by what `body` writes (TPM2B around a structure). */
  sized16(body: (w: this) => void): this {
    const at = this.#grow(2);
    body(this);
    const size = this.#length - at - 2;
    if (size > 0xffff) throw new MalformedDataError(
      'ERR_TPM_MALFORMED',
      `sized structure of ${size} bytes is too large`,
    );
    this.#view.setUint16(at, size);
    return this;
  }

  /** Reserves a UINT32 and returns a function that fills it with the number of bytes written since. */
  reserveSize32(): () => void {
    const at = this.#grow(4);
    return () => this.#view.setUint32(at, this.#length - at - 4);
  }

  /** Patches a UINT32 already written at `at`. */
  setU32(at: number, value: number): void {
    this.#view.setUint32(at, value >>> 0);
  }

  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#length);
  }
}

/** Marshals a structure into a fresh buffer (tests, names, policy digests). */
export function marshal<T>(write: (w: TpmWriter, value: T) => void, value: T): Uint8Array {
  const w = new TpmWriter();
  write(w, value);
  return w.finish();
}

/** Unmarshals a structure that must fill `bytes` exactly. */
export function unmarshal<T>(read: (r: TpmReader) => T, bytes: Uint8Array, what: string): T {
  const r = new TpmReader(bytes, what);
  const value = read(r);
  r.expectEnd();
  return value;
}
