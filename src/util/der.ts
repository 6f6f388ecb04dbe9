/**
 * The few X.509 fields node:crypto's `X509Certificate` does not expose, read from the DER: the extensions by
 * OID, the validity times, and the outer signature algorithm with its parameters (ITU-T X.690 for the encoding,
 * RFC 5280 section 4.1 for the structure, RFC 4055 section 3.1 for RSASSA-PSS parameters).
 *
 * Why not @peculiar/asn1-x509: that schema library and asn1js under it add about 13 MB and 60-100 ms to
 * `import('cvm-skr')` (bench/startup.bench.ts), and every caller here is synchronous, so loading it lazily
 * would need a synchronous require() at first use, which hung a test worker under tsx's loader. The reader
 * is strict DER only (definite lengths, minimal length octets, single-byte tags, nothing left over), and it
 * only ever sees bytes OpenSSL has already accepted as a certificate (`new X509Certificate(der)` runs first).
 * test/util/der.test.ts checks it against @peculiar/asn1-x509 on the real certificates in test/fixtures/.
 */

export class DerError extends Error {}

interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  offset: number;
  /** Offset of the first content byte. */
  start: number;
  /** Offset just past the content. */
  end: number;
}

function readTlv(buf: Uint8Array, offset: number, limit: number): Tlv {
  if (offset + 2 > limit) throw new DerError('truncated DER element');
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('multi-byte DER tags are not used in certificates');
  let length = buf[offset + 1]!;
  let start = offset + 2;
  if (length & 0x80) {
    const count = length & 0x7f;
    if (count === 0) throw new DerError('indefinite length is not DER');
    if (count > 4 || start + count > limit) throw new DerError('DER length too long');
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + buf[start + i]!;
    if (buf[start] === 0 || length < 0x80) throw new DerError('DER length is not minimal');
    start += count;
  }
  const end = start + length;
  if (end > limit) throw new DerError('DER element runs past its container');
  return { tag, offset, start, end };
}

/** The elements inside `[start, end)`, which they must fill exactly. */
function children(buf: Uint8Array, start: number, end: number): Tlv[] {
  const out: Tlv[] = [];
  for (let at = start; at < end; ) {
    const tlv = readTlv(buf, at, end);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

const SEQUENCE = 0x30;
const content = (buf: Uint8Array, t: Tlv) => buf.subarray(t.start, t.end);

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t === undefined || t.tag !== tag) throw new DerError(`${what} is missing or has the wrong type`);
  return t;
}

/** The elements of a whole-buffer SEQUENCE. */
function sequence(der: Uint8Array, what: string): Tlv[] {
  const outer = expect(readTlv(der, 0, der.length), SEQUENCE, what);
  if (outer.end !== der.length) throw new DerError(`${what} has trailing bytes`);
  return children(der, outer.start, outer.end);
}

/** X.690 section 8.19: an OBJECT IDENTIFIER's content octets in dotted form. */
export function oidString(bytes: Uint8Array): string {
  if (bytes.length === 0 || (bytes[bytes.length - 1]! & 0x80) !== 0) throw new DerError('malformed OID');
  const arcs: number[] = [];
  let value = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (value === 0 && b === 0x80) throw new DerError('OID arc is not minimal');
    value = value * 128 + (b & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER / 128) throw new DerError('OID arc too large');
    if ((b & 0x80) === 0) {
      arcs.push(value);
      value = 0;
    }
  }
  const first = arcs[0]!;
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...arcs.slice(1)].join('.');
}

function oid(buf: Uint8Array, t: Tlv | undefined, what: string): string {
  return oidString(content(buf, expect(t, 0x06, what)));
}

/** RFC 5280 section 4.1.2.5: UTCTime YYMMDDHHMMSSZ (years 1950-2049) or GeneralizedTime YYYYMMDDHHMMSSZ. */
function time(buf: Uint8Array, t: Tlv | undefined): Date {
  const text = t === undefined ? '' : Buffer.from(content(buf, t)).toString('latin1');
  const m =
    t?.tag === 0x17
      ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text)
      : t?.tag === 0x18
        ? /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text)
        : null;
  if (!m) throw new DerError('validity time is not a UTCTime or GeneralizedTime in UTC');
  let year = Number(m[1]);
  if (t!.tag === 0x17) year += year < 50 ? 2000 : 1900;
  const ms = Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return new Date(ms);
}

/** A non-negative INTEGER that fits a JavaScript number exactly. */
function smallInteger(buf: Uint8Array, t: Tlv | undefined, what: string): number {
  const bytes = content(buf, expect(t, 0x02, what));
  if (bytes.length === 0 || bytes.length > 6 || (bytes[0]! & 0x80) !== 0) throw new DerError(`${what} is out of range`);
  if (bytes.length > 1 && bytes[0] === 0 && (bytes[1]! & 0x80) === 0) throw new DerError(`${what} is not minimal`);
  return bytes.reduce((n, b) => n * 256 + b, 0);
}

function boolean(buf: Uint8Array, t: Tlv, what: string): boolean {
  const bytes = content(buf, t);
  if (bytes.length !== 1 || (bytes[0] !== 0 && bytes[0] !== 0xff)) throw new DerError(`${what} is not a BOOLEAN`);
  return bytes[0] === 0xff;
}

export interface AlgorithmIdentifier {
  oid: string;
  /** The parameters element, whole (tag and length included); undefined when absent. */
  parameters?: Uint8Array;
}

function algorithm(buf: Uint8Array, t: Tlv | undefined, what: string): AlgorithmIdentifier {
  const [id, params, extra] = children(buf, expect(t, SEQUENCE, what).start, t!.end);
  if (extra !== undefined) throw new DerError(`${what} has extra elements`);
  const out: AlgorithmIdentifier = { oid: oid(buf, id, `${what} OID`) };
  if (params !== undefined) out.parameters = buf.subarray(params.offset, params.end);
  return out;
}

export interface CertificateExtension {
  oid: string;
  critical: boolean;
  /** The content of extnValue's OCTET STRING: the extension's own DER. */
  value: Uint8Array;
}

export interface CertificateFields {
  /** The outer signatureAlgorithm (RFC 5280 section 4.1.1.2). */
  signatureAlgorithm: AlgorithmIdentifier;
  notBefore: Date;
  notAfter: Date;
  extensions: CertificateExtension[];
}

/** RFC 5280 section 4.1: Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
export function readCertificate(der: Uint8Array): CertificateFields {
  const [tbs, sigAlg, sigValue, extra] = sequence(der, 'Certificate');
  expect(sigValue, 0x03, 'signatureValue');
  if (extra !== undefined) throw new DerError('Certificate has extra elements');
  const fields = children(der, expect(tbs, SEQUENCE, 'tbsCertificate').start, tbs!.end);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version, absent for v1
  expect(fields[i++], 0x02, 'serialNumber');
  expect(fields[i++], SEQUENCE, 'signature');
  expect(fields[i++], SEQUENCE, 'issuer');
  const validity = children(der, expect(fields[i], SEQUENCE, 'validity').start, fields[i++]!.end);
  if (validity.length !== 2) throw new DerError('validity does not hold two times');
  expect(fields[i++], SEQUENCE, 'subject');
  expect(fields[i++], SEQUENCE, 'subjectPublicKeyInfo');
  const extensions: CertificateExtension[] = [];
  for (; i < fields.length; i++) {
    const f = fields[i]!;
    if (f.tag === 0x81 || f.tag === 0xa1 || f.tag === 0x82 || f.tag === 0xa2) continue; // unique identifiers
    if (f.tag !== 0xa3 || i !== fields.length - 1) throw new DerError('unexpected element in tbsCertificate');
    const [list, more] = children(der, f.start, f.end);
    if (more !== undefined) throw new DerError('[3] extensions holds more than one element');
    for (const e of children(der, expect(list, SEQUENCE, 'extensions').start, list!.end)) {
      const parts = children(der, expect(e, SEQUENCE, 'Extension').start, e.end);
      const hasCritical = parts.length === 3;
      if (parts.length !== 2 && !hasCritical) throw new DerError('Extension does not have 2 or 3 elements');
      extensions.push({
        oid: oid(der, parts[0], 'extnID'),
        critical: hasCritical ? boolean(der, expect(parts[1], 0x01, 'critical'), 'critical') : false,
        value: content(der, expect(parts[hasCritical ? 2 : 1], 0x04, 'extnValue')),
      });
    }
  }
  return {
    signatureAlgorithm: algorithm(der, sigAlg, 'signatureAlgorithm'),
    notBefore: time(der, validity[0]),
    notAfter: time(der, validity[1]),
    extensions,
  };
}

/** RFC 4055 section 3.1 RSASSA-PSS-params, defaults filled in (SHA-1, MGF1 with SHA-1, salt 20). */
export function readRsaPssParams(der: Uint8Array): { hash: string; mgfHash: string; saltLength: number } {
  const SHA1 = '1.3.14.3.2.26';
  const out = { hash: SHA1, mgfHash: SHA1, saltLength: 20 };
  for (const field of sequence(der, 'RSASSA-PSS-params')) {
    const [inner, extra] = children(der, field.start, field.end);
    if (extra !== undefined) throw new DerError('RSASSA-PSS-params field holds more than one element');
    if (field.tag === 0xa0) out.hash = algorithm(der, inner, 'hashAlgorithm').oid;
    else if (field.tag === 0xa1) {
      const mgf = algorithm(der, inner, 'maskGenAlgorithm');
      if (mgf.parameters === undefined) throw new DerError('maskGenAlgorithm has no hash');
      out.mgfHash = algorithm(mgf.parameters, readTlv(mgf.parameters, 0, mgf.parameters.length), 'MGF hash').oid;
    } else if (field.tag === 0xa2) out.saltLength = smallInteger(der, inner, 'saltLength');
    else if (field.tag !== 0xa3) throw new DerError('unexpected element in RSASSA-PSS-params');
  }
  return out;
}

/** RFC 5280 section 4.2.1.9: BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }. */
export function readBasicConstraints(der: Uint8Array): { ca: boolean; pathLength?: number } {
  const fields = sequence(der, 'BasicConstraints');
  let i = 0;
  const ca = fields[0]?.tag === 0x01 ? boolean(der, fields[i++]!, 'cA') : false;
  const out: { ca: boolean; pathLength?: number } = { ca };
  if (fields[i] !== undefined) out.pathLength = smallInteger(der, fields[i++], 'pathLenConstraint');
  if (i !== fields.length) throw new DerError('BasicConstraints has extra elements');
  return out;
}

/**
 * RFC 5280 section 4.2.1.3: KeyUsage ::= BIT STRING. Bit n (digitalSignature is 0, keyCertSign 5) becomes
 * 1 << n, as @peculiar/asn1-x509's `KeyUsage.toNumber()` and its `KeyUsageFlags` count them.
 */
export function readKeyUsage(der: Uint8Array): number {
  const t = expect(readTlv(der, 0, der.length), 0x03, 'KeyUsage');
  if (t.end !== der.length || t.end - t.start < 1 || der[t.start]! > 7) throw new DerError('malformed KeyUsage');
  let flags = 0;
  for (let i = t.start + 1, n = 0; i < t.end; i++)
    for (let bit = 7; bit >= 0; bit--, n++) if ((der[i]! >> bit) & 1) flags += 2 ** n;
  return flags;
}

/** RFC 5280 section 4.2.1.12: ExtKeyUsageSyntax ::= SEQUENCE SIZE (1..MAX) OF KeyPurposeId. */
export function readExtendedKeyUsage(der: Uint8Array): string[] {
  return sequence(der, 'ExtKeyUsageSyntax').map((t) => oid(der, t, 'KeyPurposeId'));
}

/** OIDs this library refers to (RFC 5280 section 4.2.1 and 4.2.1.12). */
export const OID = {
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  certificatePolicies: '2.5.29.32',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const;

/** RFC 5280 section 4.2.1.3 bit numbers, as flags. */
export const KEY_USAGE = { digitalSignature: 1, keyCertSign: 1 << 5 } as const;
