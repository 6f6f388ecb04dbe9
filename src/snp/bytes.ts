import { InvalidArgumentError } from '../errors.js';

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function isAllZero(bytes: Uint8Array, start = 0, end = bytes.length): boolean {
  for (let i = start; i < end; i++) if (bytes[i] !== 0) return false;
  return true;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Accepts bytes or a hex string (caller convenience for expected values); `what` names the argument in errors. */
export function bytesFrom(value: Uint8Array | string, what: string): Uint8Array {
  if (typeof value !== 'string') return value;
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(value)) {
    throw new InvalidArgumentError(`${what} must be bytes or an even-length hex string`);
  }
  return Buffer.from(value, 'hex');
}
