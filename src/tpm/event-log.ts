/**
 * TCG PC Client crypto-agile event logs (the firmware log Linux exposes as
 * /sys/kernel/security/tpm0/binary_bios_measurements and the AzureGuest protocol sends as `TcgLogs`):
 * parse, encode and replay.
 *
 * Layout, from the TCG PC Client Platform Firmware Profile Specification (version 1.05, section 10.2 "Event
 * Log Structures", https://trustedcomputinggroup.org/resource/pc-client-specific-platform-firmware-profile-specification/):
 * the first entry is a TCG_PCClientPCREvent (SHA-1 format: pcrIndex, eventType EV_NO_ACTION, 20 zero bytes,
 * eventSize, event) whose event is the TCG_EfiSpecIDEvent ("Spec ID Event03", the digest sizes of every
 * algorithm the log carries); every later entry is a TCG_PCR_EVENT2 (pcrIndex, eventType, TPML_DIGEST_VALUES,
 * eventSize, event). All integers little-endian. UEFI variable events carry UEFI_VARIABLE_DATA (section 10.4.1:
 * VariableName GUID, UnicodeNameLength and VariableDataLength as UINT64, the UTF-16LE name, the data).
 *
 * The parser reads untrusted bytes: every length is bounds-checked and every failure is a `MalformedDataError`
 * with code `ERR_TCG_LOG_MALFORMED`.
 */
import { createHash } from 'node:crypto';
import { MalformedDataError } from '../errors.js';
import { TPM_ALG } from './constants.js';

/** Event types used here (TCG PC Client PFP section 10.4.1, table 9). */
export const EV = {
  PREBOOT_CERT: 0x0,
  POST_CODE: 0x1,
  NO_ACTION: 0x3,
  SEPARATOR: 0x4,
  S_CRTM_VERSION: 0x8,
  IPL: 0xd,
  EFI_VARIABLE_DRIVER_CONFIG: 0x80000001,
  EFI_VARIABLE_BOOT: 0x80000002,
  EFI_BOOT_SERVICES_APPLICATION: 0x80000003,
  EFI_ACTION: 0x80000007,
  EFI_PLATFORM_FIRMWARE_BLOB: 0x80000008,
  EFI_VARIABLE_AUTHORITY: 0x800000e0,
} as const;

const SPEC_ID_SIGNATURE = 'Spec ID Event03\0';
const STARTUP_LOCALITY_SIGNATURE = 'StartupLocality\0';
/** Most bytes a log may have: far above a real firmware log (tens of KiB), below the service's body limit. */
export const MAX_EVENT_LOG_BYTES = 1024 * 1024;

export interface SpecIdEvent {
  platformClass: number;
  specVersionMajor: number;
  specVersionMinor: number;
  specErrata: number;
  uintnSize: number;
  /** Algorithm id (TPM_ALG_ID) to digest size. */
  algorithms: { algorithmId: number; digestSize: number }[];
  vendorInfo: Uint8Array;
}

export interface TcgEvent {
  pcrIndex: number;
  eventType: number;
  /** Digests by algorithm id. */
  digests: { algorithmId: number; digest: Uint8Array }[];
  event: Uint8Array;
}

export interface TcgEventLog {
  specId: SpecIdEvent;
  events: TcgEvent[];
}

class Reader {
  #offset = 0;
  readonly #view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get offset(): number {
    return this.#offset;
  }
  get remaining(): number {
    return this.bytes.length - this.#offset;
  }
  #need(n: number, what: string): void {
    if (n > this.remaining) {
      throw new MalformedDataError(
        'ERR_TCG_LOG_MALFORMED',
        `the TCG event log is truncated: ${what} needs ${n} bytes at offset ${this.#offset}, ${this.remaining} left`,
      );
    }
  }
  u8(what: string): number {
    this.#need(1, what);
    return this.#view.getUint8(this.#offset++);
  }
  u16(what: string): number {
    this.#need(2, what);
    const v = this.#view.getUint16(this.#offset, true);
    this.#offset += 2;
    return v;
  }
  u32(what: string): number {
    this.#need(4, what);
    const v = this.#view.getUint32(this.#offset, true);
    this.#offset += 4;
    return v;
  }
  u64(what: string): bigint {
    this.#need(8, what);
    const v = this.#view.getBigUint64(this.#offset, true);
    this.#offset += 8;
    return v;
  }
  bytesOf(n: number, what: string): Uint8Array {
    this.#need(n, what);
    const out = this.bytes.subarray(this.#offset, this.#offset + n);
    this.#offset += n;
    return out;
  }
}

function ascii(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1');
}

function parseSpecId(event: Uint8Array): SpecIdEvent {
  const r = new Reader(event);
  if (ascii(r.bytesOf(16, 'the Spec ID signature')) !== SPEC_ID_SIGNATURE) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      'the TCG event log does not start with a "Spec ID Event03" header: it is not a crypto-agile (TCG 2.0) log',
    );
  }
  const platformClass = r.u32('platformClass');
  const specVersionMinor = r.u8('specVersionMinor');
  const specVersionMajor = r.u8('specVersionMajor');
  const specErrata = r.u8('specErrata');
  const uintnSize = r.u8('uintnSize');
  const count = r.u32('numberOfAlgorithms');
  // Each entry is 4 bytes: a count past the event's end is truncation, checked before allocating.
  if (count === 0 || count * 4 > r.remaining) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      `the Spec ID header names ${count} algorithms, which do not fit its event`,
    );
  }
  const algorithms: SpecIdEvent['algorithms'] = [];
  for (let i = 0; i < count; i++) {
    const algorithmId = r.u16('algorithmId');
    const digestSize = r.u16('digestSize');
    if (algorithms.some((a) => a.algorithmId === algorithmId)) {
      throw new MalformedDataError(
        'ERR_TCG_LOG_MALFORMED',
        `the Spec ID header names algorithm 0x${algorithmId.toString(16)} twice`,
      );
    }
    if (digestSize === 0 || digestSize > 64) {
      throw new MalformedDataError(
        'ERR_TCG_LOG_MALFORMED',
        `the Spec ID header gives algorithm 0x${algorithmId.toString(16)} digest size ${digestSize}`,
      );
    }
    algorithms.push({ algorithmId, digestSize });
  }
  const vendorSize = r.u8('vendorInfoSize');
  const vendorInfo = new Uint8Array(r.bytesOf(vendorSize, 'vendorInfo'));
  if (r.remaining !== 0) throw new MalformedDataError(
    'ERR_TCG_LOG_MALFORMED',
    'the Spec ID event has bytes after vendorInfo',
  );
  if (specVersionMajor !== 2) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      `the Spec ID header is for spec version ${specVersionMajor}, not 2`,
    );
  }
  return { platformClass, specVersionMajor, specVersionMinor, specErrata, uintnSize, algorithms, vendorInfo };
}

/**
 * Parses a crypto-agile TCG event log. Throws a `MalformedDataError` (`ERR_TCG_LOG_MALFORMED`) on anything it
 * cannot read.
 */
export function parseEventLog(bytes: Uint8Array): TcgEventLog {
  if (bytes.length > MAX_EVENT_LOG_BYTES) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      `the TCG event log is ${bytes.length} bytes, more than ${MAX_EVENT_LOG_BYTES}`,
    );
  }
  const r = new Reader(bytes);
  const pcr0 = r.u32('the header pcrIndex');
  const type0 = r.u32('the header eventType');
  r.bytesOf(20, 'the header SHA-1 digest');
  const size0 = r.u32('the header eventSize');
  if (pcr0 !== 0 || type0 !== EV.NO_ACTION) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      'the first TCG log entry is not the EV_NO_ACTION Spec ID event in PCR 0',
    );
  }
  const specId = parseSpecId(r.bytesOf(size0, 'the Spec ID event'));
  const sizes = new Map(specId.algorithms.map((a) => [a.algorithmId, a.digestSize]));
  const events: TcgEvent[] = [];
  while (r.remaining > 0) {
    const at = r.offset;
    const pcrIndex = r.u32('pcrIndex');
    const eventType = r.u32('eventType');
    if (pcrIndex > 23) throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      `the event at offset ${at} is for PCR ${pcrIndex} (0-23)`,
    );
    const count = r.u32('digest count');
    if (count > sizes.size) {
      throw new MalformedDataError(
        'ERR_TCG_LOG_MALFORMED',
        `the event at offset ${at} has ${count} digests; the header names ${sizes.size} algorithms`,
      );
    }
    const digests: TcgEvent['digests'] = [];
    for (let i = 0; i < count; i++) {
      const algorithmId = r.u16('hashAlg');
      const size = sizes.get(algorithmId);
      if (size === undefined) {
        throw new MalformedDataError(
          'ERR_TCG_LOG_MALFORMED',
          `the event at offset ${at} has a digest of algorithm 0x${algorithmId.toString(16)}, which the header does not name`,
        );
      }
      digests.push({ algorithmId, digest: new Uint8Array(r.bytesOf(size, 'a digest')) });
    }
    const eventSize = r.u32('eventSize');
    const event = new Uint8Array(r.bytesOf(eventSize, 'event data'));
    events.push({ pcrIndex, eventType, digests, event });
  }
  return { specId, events };
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** Encodes a log in the layout `parseEventLog` reads. */
export function encodeEventLog(log: TcgEventLog): Uint8Array {
  const s = log.specId;
  const spec = Buffer.concat([
    Buffer.from(SPEC_ID_SIGNATURE, 'latin1'),
    u32(s.platformClass),
    Buffer.from([s.specVersionMinor, s.specVersionMajor, s.specErrata, s.uintnSize]),
    u32(s.algorithms.length),
    ...s.algorithms.map((a) => {
      const b = Buffer.alloc(4);
      b.writeUInt16LE(a.algorithmId);
      b.writeUInt16LE(a.digestSize, 2);
      return b;
    }),
    Buffer.from([s.vendorInfo.length]),
    s.vendorInfo,
  ]);
  const parts: Uint8Array[] = [u32(0), u32(EV.NO_ACTION), Buffer.alloc(20), u32(spec.length), spec];
  for (const e of log.events) {
    parts.push(u32(e.pcrIndex), u32(e.eventType), u32(e.digests.length));
    for (const d of e.digests) {
      const alg = Buffer.alloc(2);
      alg.writeUInt16LE(d.algorithmId);
      parts.push(alg, d.digest);
    }
    parts.push(u32(e.event.length), e.event);
  }
  return new Uint8Array(Buffer.concat(parts));
}

/**
 * The SHA-256 bank after replaying the log: each PCR starts at zero (PCR 0 at the locality of a StartupLocality
 * EV_NO_ACTION event, PFP section 10.4.5.3) and is extended with each event's SHA-256 digest; EV_NO_ACTION
 * events are not extended (PFP section 10.4.1). A measured event without a SHA-256 digest is malformed.
 */
export function replaySha256(log: TcgEventLog): Map<number, Uint8Array> {
  if (!log.specId.algorithms.some((a) => a.algorithmId === TPM_ALG.SHA256 && a.digestSize === 32)) {
    throw new MalformedDataError('ERR_TCG_LOG_MALFORMED', 'the TCG event log has no SHA-256 digests');
  }
  const pcrs = new Map<number, Uint8Array>();
  for (const e of log.events) {
    if (e.eventType === EV.NO_ACTION) {
      if (e.pcrIndex === 0 && e.event.length === 17 && ascii(e.event.subarray(0, 16)) === STARTUP_LOCALITY_SIGNATURE) {
        const start = new Uint8Array(32);
        start[31] = e.event[16]!;
        pcrs.set(0, start);
      }
      continue;
    }
    const digest = e.digests.find((d) => d.algorithmId === TPM_ALG.SHA256)?.digest;
    if (digest === undefined) {
      throw new MalformedDataError('ERR_TCG_LOG_MALFORMED', `an event for PCR ${e.pcrIndex} has no SHA-256 digest`);
    }
    const old = pcrs.get(e.pcrIndex) ?? new Uint8Array(32);
    pcrs.set(e.pcrIndex, new Uint8Array(createHash('sha256').update(old).update(digest).digest()));
  }
  return pcrs;
}

/** A UEFI_VARIABLE_DATA structure (PFP section 10.4.1). */
export interface UefiVariable {
  /** The vendor GUID, lower-case canonical text. */
  guid: string;
  name: string;
  data: Uint8Array;
}

/** EFI_GLOBAL_VARIABLE (UEFI 2.10 section 3.3): SecureBoot, PK, KEK. */
export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
/** EFI_IMAGE_SECURITY_DATABASE_GUID (UEFI 2.10 section 32.6.1): db, dbx. */
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';

function guidBytes(guid: string): Buffer {
  const hex = guid.replace(/-/g, '');
  const b = Buffer.from(hex, 'hex');
  // The first three fields are little-endian in memory (UEFI EFI_GUID).
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  return b;
}

function guidText(bytes: Uint8Array): string {
  const b = Buffer.from(bytes);
  b.subarray(0, 4).reverse();
  b.subarray(4, 6).reverse();
  b.subarray(6, 8).reverse();
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function encodeUefiVariable(v: UefiVariable): Uint8Array {
  const name = Buffer.from(v.name, 'utf16le');
  const lengths = Buffer.alloc(16);
  lengths.writeBigUInt64LE(BigInt(v.name.length));
  lengths.writeBigUInt64LE(BigInt(v.data.length), 8);
  return new Uint8Array(Buffer.concat([guidBytes(v.guid), lengths, name, v.data]));
}

export function parseUefiVariable(event: Uint8Array): UefiVariable {
  const r = new Reader(event);
  const guid = guidText(r.bytesOf(16, 'VariableName'));
  const nameLength = r.u64('UnicodeNameLength');
  const dataLength = r.u64('VariableDataLength');
  if (nameLength * 2n > BigInt(r.remaining) || dataLength > BigInt(r.remaining)) {
    throw new MalformedDataError(
      'ERR_TCG_LOG_MALFORMED',
      'a UEFI variable event is shorter than its name and data lengths',
    );
  }
  const name = Buffer.from(r.bytesOf(Number(nameLength) * 2, 'UnicodeName')).toString('utf16le');
  const data = new Uint8Array(r.bytesOf(Number(dataLength), 'VariableData'));
  if (r.remaining !== 0) throw new MalformedDataError(
    'ERR_TCG_LOG_MALFORMED',
    'a UEFI variable event has bytes after its data',
  );
  return { guid, name, data };
}

/** The PCR 7 secure-boot state a log records (the last measurement of each variable wins). */
export interface SecureBootState {
  /** SecureBoot variable measured as 1. */
  enabled: boolean;
  /** Data of PK, KEK, db, dbx as measured in PCR 7 (absent when not measured). */
  variables: Partial<Record<'PK' | 'KEK' | 'db' | 'dbx', Uint8Array>>;
  /** An EV_SEPARATOR closed PCR 7. */
  separator: boolean;
}

export function secureBootState(log: TcgEventLog): SecureBootState {
  const state: SecureBootState = { enabled: false, variables: {}, separator: false };
  for (const e of log.events) {
    if (e.pcrIndex !== 7) continue;
    if (e.eventType === EV.SEPARATOR) state.separator = true;
    if (e.eventType !== EV.EFI_VARIABLE_DRIVER_CONFIG) continue;
    const v = parseUefiVariable(e.event);
    if (v.guid === EFI_GLOBAL_VARIABLE && v.name === 'SecureBoot') {
      state.enabled = v.data.length === 1 && v.data[0] === 1;
    } else if (
      (v.guid === EFI_GLOBAL_VARIABLE && (v.name === 'PK' || v.name === 'KEK')) ||
      (v.guid === EFI_IMAGE_SECURITY_DATABASE && (v.name === 'db' || v.name === 'dbx'))
    ) {
      state.variables[v.name as 'PK' | 'KEK' | 'db' | 'dbx'] = v.data;
    }
  }
  return state;
}
