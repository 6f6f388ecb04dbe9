import { SnpCertificateError } from '../errors.js';
import { isAllZero } from './bytes.js';

/** GUIDs of the extended-report certificate table (in their textual form). */
export const CERT_TABLE_GUIDS = {
  vcek: '63da758d-e664-4564-adc5-f4b93be8accd',
  vlek: 'a8074bc2-a25a-483e-aae6-39c045a0b8a1',
  ask: '4ab7b379-bbac-4fe4-a02f-05aef327c782',
  ark: 'c0b406a4-a803-4952-9743-3fb6014cd0ae',
} as const;

export type CertTableKind = keyof typeof CERT_TABLE_GUIDS;

export interface CertTableEntry {
  guid: string;
  /** Known kind, or undefined for GUIDs this library does not use. */
  kind?: CertTableKind;
  data: Uint8Array;
}

const ENTRY_SIZE = 24;

/** GUIDs are stored in the mixed-endian Microsoft layout: the first three groups little-endian. */
export function guidToString(b: Uint8Array): string {
  const h = Buffer.from(b).toString('hex');
  const le = (s: string): string => (s.match(/../g) ?? []).reverse().join('');
  return `${le(h.slice(0, 8))}-${le(h.slice(8, 12))}-${le(h.slice(12, 16))}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function guidToBytes(guid: string): Uint8Array {
  const h = guid.replace(/-/g, '');
  const le = (s: string): string => (s.match(/../g) ?? []).reverse().join('');
  return Buffer.from(le(h.slice(0, 8)) + le(h.slice(8, 12)) + le(h.slice(12, 16)) + h.slice(16), 'hex');
}

/**
 * Parses the certificate table the host appends to an extended report: 24-byte entries (GUID, u32 offset,
 * u32 length, offsets from the table start), ended by an all-zero entry. Bounds-checked; overlapping or
 * out-of-range entries are refused.
 */
export function parseCertTable(table: Uint8Array): CertTableEntry[] {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const entries: CertTableEntry[] = [];
  for (let at = 0; ; at += ENTRY_SIZE) {
    if (at + ENTRY_SIZE > table.length) {
      throw new SnpCertificateError('certificate table has no terminating zero entry');
    }
    if (isAllZero(table, at, at + ENTRY_SIZE)) break;
    const guid = guidToString(table.subarray(at, at + 16));
    const offset = view.getUint32(at + 16, true);
    const length = view.getUint32(at + 20, true);
    if (length === 0 || offset < at + ENTRY_SIZE || offset + length > table.length) {
      throw new SnpCertificateError(`certificate table entry ${guid} points outside the table`);
    }
    const kind = (Object.keys(CERT_TABLE_GUIDS) as CertTableKind[]).find((k) => CERT_TABLE_GUIDS[k] === guid);
    entries.push({
      guid,
      ...(kind === undefined ? {} : { kind }),
      data: table.subarray(offset, offset + length),
    });
  }
  return entries;
}

/** Builds a certificate table (used by tests and the emulator). */
export function buildCertTable(certs: { kind: CertTableKind; der: Uint8Array }[]): Uint8Array {
  const header = (certs.length + 1) * ENTRY_SIZE;
  const total = header + certs.reduce((n, c) => n + c.der.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let offset = header;
  certs.forEach((c, i) => {
    out.set(guidToBytes(CERT_TABLE_GUIDS[c.kind]), i * ENTRY_SIZE);
    view.setUint32(i * ENTRY_SIZE + 16, offset, true);
    view.setUint32(i * ENTRY_SIZE + 20, c.der.length, true);
    out.set(c.der, offset);
    offset += c.der.length;
  });
  return out;
}
