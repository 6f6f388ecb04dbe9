/**
 * The TCG event-log parser (src/tpm/event-log.ts) against the layout of the TCG PC Client Platform Firmware
 * Profile Specification 1.05, section 10.2 (TCG_PCClientPCREvent + TCG_EfiSpecIDEvent header, then
 * TCG_PCR_EVENT2 entries, little-endian) and section 10.4.1 (UEFI_VARIABLE_DATA). No real firmware log is among
 * the project's artifacts (test/fixtures/README.md); the known-answer test below builds its bytes by hand from
 * the spec's field list, independently of the encoder.
 */
import { createHash } from 'node:crypto';
import test from 'ava';
import { emulatedBoot, emulatedEventLog } from '../../src/emulator/hardware/tcg-log.js';
import { MalformedDataError } from '../../src/errors.js';
import {
  EFI_GLOBAL_VARIABLE,
  encodeEventLog,
  encodeUefiVariable,
  EV,
  parseEventLog,
  parseUefiVariable,
  replaySha256,
  secureBootState,
} from '../../src/tpm/event-log.js';

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

/** A SHA-256-only log, byte by byte from PFP 1.05 section 10.2, with `events` appended (already encoded). */
function handLog(...events: Uint8Array[]): Uint8Array {
  const specId = Buffer.concat([
    Buffer.from('Spec ID Event03\0', 'latin1'),
    u32(0), // platformClass
    Buffer.from([0, 2, 2, 2]), // specVersionMinor, specVersionMajor, specErrata, uintnSize
    u32(1), // numberOfAlgorithms
    Buffer.from([0x0b, 0x00, 0x20, 0x00]), // TPM_ALG_SHA256, 32 bytes
    Buffer.from([0]), // vendorInfoSize
  ]);
  return new Uint8Array(
    Buffer.concat([u32(0), u32(3), Buffer.alloc(20), u32(specId.length), specId, ...events]),
  );
}

function handEvent(pcr: number, type: number, digest: Uint8Array, data: Uint8Array): Uint8Array {
  return Buffer.concat([u32(pcr), u32(type), u32(1), Buffer.from([0x0b, 0x00]), digest, u32(data.length), data]);
}

test('a hand-built crypto-agile log parses, and PCR 7 replays to SHA256(zeros || SHA256(separator))', (t) => {
  const separator = new Uint8Array(4);
  const log = parseEventLog(handLog(handEvent(7, 4, sha256(separator), separator)));
  t.is(log.specId.specVersionMajor, 2);
  t.deepEqual(log.specId.algorithms, [{ algorithmId: 0x0b, digestSize: 32 }]);
  t.is(log.events.length, 1);
  t.is(log.events[0]!.eventType, EV.SEPARATOR);
  t.deepEqual(replaySha256(log).get(7), sha256(new Uint8Array(32), sha256(separator)));
  t.false(replaySha256(log).has(0));
});

test('a StartupLocality EV_NO_ACTION event starts PCR 0 at the locality and is not extended (PFP 10.4.5.3)', (t) => {
  const locality = new Uint8Array(Buffer.concat([Buffer.from('StartupLocality\0', 'latin1'), Buffer.from([3])]));
  const crtm = new Uint8Array(Buffer.from('crtm'));
  const log = parseEventLog(
    handLog(handEvent(0, EV.NO_ACTION, new Uint8Array(32), locality), handEvent(0, EV.S_CRTM_VERSION, sha256(crtm), crtm)),
  );
  const start = new Uint8Array(32);
  start[31] = 3;
  t.deepEqual(replaySha256(log).get(0), sha256(start, sha256(crtm)));
});

test('the emulated log round-trips: encode(parse(bytes)) is the same bytes, and parse(encode(log)) the same log', (t) => {
  for (const secureBoot of [true, false]) {
    const log = emulatedEventLog({ secureBoot });
    const bytes = encodeEventLog(log);
    t.deepEqual(parseEventLog(bytes), log);
    t.deepEqual(encodeEventLog(parseEventLog(bytes)), bytes);
  }
});

test('UEFI_VARIABLE_DATA round-trips with the GUID in EFI byte order (first three fields little-endian)', (t) => {
  const bytes = encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE, name: 'SecureBoot', data: Uint8Array.of(1) });
  // 8BE4DF61-93CA-11D2-... is stored 61 DF E4 8B CA 93 D2 11 AA 0D ...
  t.is(Buffer.from(bytes.subarray(0, 10)).toString('hex'), '61dfe48bca93d211aa0d');
  t.is(Buffer.from(bytes.subarray(16, 24)).readBigUInt64LE(), 10n); // UnicodeNameLength in characters
  t.deepEqual(parseUefiVariable(bytes), { guid: EFI_GLOBAL_VARIABLE, name: 'SecureBoot', data: Uint8Array.of(1) });
});

test('the emulated log records secure boot in PCR 7, and the secure-boot-off log changes PCR 7 only', (t) => {
  const on = secureBootState(emulatedEventLog());
  t.true(on.enabled);
  t.true(on.separator);
  t.deepEqual(Object.keys(on.variables).sort(), ['KEK', 'PK', 'db', 'dbx']);
  t.false(secureBootState(emulatedEventLog({ secureBoot: false })).enabled);
  const all = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  const a = emulatedBoot(all).pcrs;
  const b = emulatedBoot(all, { secureBoot: false }).pcrs;
  t.deepEqual(
    a.filter((p, i) => Buffer.compare(p.digest, b[i]!.digest) !== 0).map((p) => p.index),
    [7],
  );
  t.deepEqual(a[10]!.digest, new Uint8Array(32), 'a PCR the log does not extend stays zero');
  t.deepEqual(emulatedBoot(all).pcrs, a, 'deterministic');
});

test('every truncation of a log either parses to a prefix of its events or throws ERR_TCG_LOG_MALFORMED', (t) => {
  const bytes = encodeEventLog(emulatedEventLog());
  const full = parseEventLog(bytes).events.length;
  let parsed = 0;
  for (let n = 0; n < bytes.length; n++) {
    try {
      const log = parseEventLog(bytes.subarray(0, n));
      t.true(log.events.length < full);
      parsed++;
    } catch (error) {
      if (!(error instanceof MalformedDataError && error.code === 'ERR_TCG_LOG_MALFORMED')) t.fail(`length ${n}: ${String(error)}`);
    }
  }
  // Only the cuts at event boundaries parse.
  t.is(parsed, full);
});

const malformed: [string, () => Uint8Array, RegExp][] = [
  ['an empty log', () => new Uint8Array(0), /truncated/],
  ['a SHA-1 (TCG 1.2) log without the Spec ID header', () => {
    const b = Buffer.from(handLog());
    b.write('Spec ID Event02\0', 32, 'latin1');
    return new Uint8Array(b);
  }, /not a crypto-agile/],
  ['a first entry that is not EV_NO_ACTION', () => {
    const b = Buffer.from(handLog());
    b.writeUInt32LE(4, 4);
    return new Uint8Array(b);
  }, /Spec ID event/],
  ['a header naming 2^32-1 algorithms', () => {
    const b = Buffer.from(handLog());
    b.writeUInt32LE(0xffffffff, 32 + 24);
    return new Uint8Array(b);
  }, /algorithms/],
  ['an event digest of an algorithm the header does not name', () =>
    handLog(Buffer.concat([u32(7), u32(4), u32(1), Buffer.from([0x04, 0x00]), Buffer.alloc(20), u32(0)])), /does not name/],
  ['an event with more digests than algorithms', () =>
    handLog(Buffer.concat([u32(7), u32(4), u32(0x7fffffff)])), /digests/],
  ['an event for PCR 24', () => handLog(handEvent(24, 4, new Uint8Array(32), new Uint8Array(4))), /PCR 24/],
  ['an event whose eventSize runs past the end', () =>
    handLog(Buffer.concat([u32(7), u32(4), u32(1), Buffer.from([0x0b, 0x00]), Buffer.alloc(32), u32(0xffffffff)])), /truncated/],
  ['a log above 1 MiB', () => new Uint8Array(1024 * 1024 + 1), /more than/],
];

for (const [name, make, message] of malformed) {
  test(`parseEventLog refuses ${name} with ERR_TCG_LOG_MALFORMED`, (t) => {
    const error = t.throws(() => parseEventLog(make()), {
      instanceOf: MalformedDataError,
      code: 'ERR_TCG_LOG_MALFORMED',
    });
    t.is(error?.code, 'ERR_TCG_LOG_MALFORMED');
    t.regex(error?.message ?? '', message);
  });
}

test('a UEFI variable event whose lengths exceed its data, and a measured event without SHA-256, are ERR_TCG_LOG_MALFORMED', (t) => {
  const variable = Buffer.from(encodeUefiVariable({ guid: EFI_GLOBAL_VARIABLE, name: 'PK', data: new Uint8Array(8) }));
  variable.writeBigUInt64LE(0xffffffffffffffffn, 24);
  const log = parseEventLog(handLog(handEvent(7, EV.EFI_VARIABLE_DRIVER_CONFIG, new Uint8Array(32), variable)));
  t.throws(() => secureBootState(log), { instanceOf: MalformedDataError, code: 'ERR_TCG_LOG_MALFORMED' });
  const noSha256 = { ...log, events: [{ ...log.events[0]!, digests: [] }] };
  t.throws(() => replaySha256(noSha256), {
    instanceOf: MalformedDataError,
    code: 'ERR_TCG_LOG_MALFORMED',
    message: /no SHA-256 digest/,
  });
  const sha1Only = { ...log, specId: { ...log.specId, algorithms: [{ algorithmId: 0x04, digestSize: 20 }] } };
  t.throws(() => replaySha256(sha1Only), { instanceOf: MalformedDataError, code: 'ERR_TCG_LOG_MALFORMED' });
});
