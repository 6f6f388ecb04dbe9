import { createHash } from 'node:crypto';
import { SnpCertificateError } from '../errors.js';
import { parseCertTable } from './cert-table.js';
import { parseCertificate, parsePemCertificates, type SnpCertificate } from './certificate.js';

/** The JSON THIM (and the confidential-container variable) hands out. */
export interface ThimCertificates {
  vcekCert: string;
  certificateChain: string;
  /** Hex of reported_tcb. */
  tcbm?: string;
  /** Seconds the answer may be cached, as a string or number. */
  cacheControl?: string | number;
}

/** Anything certificates for a report can come as. */
export type SnpCertificateSource = string | Uint8Array | ThimCertificates | SnpCertificates | SnpCertificate;

/** Certificates for verifying one report: the signing leaf(s) and everything else offered with them. */
export interface SnpCertificates {
  readonly kind: 'snp-certificates';
  /** VCEK and/or VLEK candidates; verification picks the one matching the report's signer. */
  readonly leaves: readonly { kind: 'vcek' | 'vlek'; cert: SnpCertificate }[];
  /** Intermediates and roots offered by the source (ASK, ASVK, ARK); only trusted through a trusted root. */
  readonly others: readonly SnpCertificate[];
}

const CSP_ID_OID = '1.3.6.1.4.1.3704.1.5';

function isSnpCertificate(value: unknown): value is SnpCertificate {
  return typeof value === 'object' && value !== null && 'nodeCert' in value && 'fingerprint' in value;
}

function isThim(value: unknown): value is ThimCertificates {
  return typeof value === 'object' && value !== null && 'vcekCert' in value;
}

/** A leaf is the EC key; VLEK when it says so (CN or CSP-id extension). */
function leafKind(cert: SnpCertificate): 'vcek' | 'vlek' | undefined {
  if (cert.publicKey.asymmetricKeyType !== 'ec') return undefined;
  if (/VLEK/i.test(cert.subject) || cert.extension(CSP_ID_OID) !== undefined) return 'vlek';
  return 'vcek';
}

function fromText(text: string, what: string): SnpCertificate[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(trimmed);
    } catch (error) {
      throw new SnpCertificateError(`${what} looks like JSON but does not parse`, { cause: error });
    }
    if (!isThim(json))
      throw new SnpCertificateError(`${what} is JSON without a vcekCert (not a THIM answer)`);
    return fromThim(json, what);
  }
  const certs = parsePemCertificates(text, what);
  if (certs.length === 0) throw new SnpCertificateError(`${what} holds no PEM certificate`);
  return certs;
}

function fromThim(thim: ThimCertificates, what: string): SnpCertificate[] {
  if (typeof thim.vcekCert !== 'string' || typeof thim.certificateChain !== 'string') {
    throw new SnpCertificateError(`${what}: vcekCert and certificateChain must be PEM strings`);
  }
  return [
    ...parsePemCertificates(thim.vcekCert, `${what} vcekCert`),
    ...parsePemCertificates(thim.certificateChain),
  ];
}

function fromBytes(
  bytes: Uint8Array,
  what: string,
  tagged: Map<SnpCertificate, 'vcek' | 'vlek'>,
): SnpCertificate[] {
  const head = Buffer.from(bytes.subarray(0, 64)).toString('latin1').trimStart();
  if (head.startsWith('{') || head.startsWith('-----BEGIN'))
    return fromText(Buffer.from(bytes).toString('utf8'), what);
  // A DER certificate starts with SEQUENCE and a long-form length; a certificate table starts with a GUID.
  if (bytes[0] === 0x30 && (bytes[1] === 0x82 || bytes[1] === 0x81)) return [parseCertificate(bytes, what)];
  const out: SnpCertificate[] = [];
  for (const entry of parseCertTable(bytes)) {
    if (entry.kind === undefined) continue;
    const cert = parseCertificate(entry.data, `${what} ${entry.kind}`);
    if (entry.kind === 'vcek' || entry.kind === 'vlek') tagged.set(cert, entry.kind);
    out.push(cert);
  }
  return out;
}

/**
 * Loads certificates for report verification from a THIM JSON (object or text), a PEM bundle, DER bytes, the
 * extended-report certificate table, or a list of these. Throws `SnpCertificateError` when nothing usable is in
 * them. The result can be reused across verifications (and is what the chain cache keys on).
 */
export function loadSnpCertificates(
  source: SnpCertificateSource | readonly SnpCertificateSource[],
): SnpCertificates {
  const sources = Array.isArray(source)
    ? (source as readonly SnpCertificateSource[])
    : [source as SnpCertificateSource];
  const tagged = new Map<SnpCertificate, 'vcek' | 'vlek'>();
  const all: SnpCertificate[] = [];
  sources.forEach((s, i) => {
    const what = `certificate source ${i}`;
    if (typeof s === 'string') all.push(...fromText(s, what));
    else if (s instanceof Uint8Array) all.push(...fromBytes(s, what, tagged));
    else if (isSnpCertificate(s)) all.push(s);
    else if (isThim(s)) all.push(...fromThim(s, what));
    else if (typeof s === 'object' && s !== null && (s as SnpCertificates).kind === 'snp-certificates') {
      for (const leaf of s.leaves) {
        tagged.set(leaf.cert, leaf.kind);
        all.push(leaf.cert);
      }
      all.push(...s.others);
    } else throw new SnpCertificateError(`${what} is not a supported certificate source`);
  });
  const seen = new Set<string>();
  const leaves: { kind: 'vcek' | 'vlek'; cert: SnpCertificate }[] = [];
  const others: SnpCertificate[] = [];
  for (const cert of all) {
    if (seen.has(cert.fingerprint)) continue;
    seen.add(cert.fingerprint);
    const kind = tagged.get(cert) ?? leafKind(cert);
    if (kind === undefined) others.push(cert);
    else leaves.push({ kind, cert });
  }
  if (leaves.length === 0)
    throw new SnpCertificateError('no VCEK or VLEK (EC P-384 certificate) among the certificates');
  return { kind: 'snp-certificates', leaves, others };
}

const loaded = new Map<string, SnpCertificates>();
const LOADED_MAX = 64;

/**
 * Like `loadSnpCertificates`, remembering the result per input text or bytes, so callers that pass the same PEM
 * or THIM string on every verification do not re-parse X.509 each time.
 */
export function loadSnpCertificatesCached(
  source: SnpCertificateSource | readonly SnpCertificateSource[],
): SnpCertificates {
  let key: string | undefined;
  if (typeof source === 'string') key = `s:${source}`;
  else if (source instanceof Uint8Array) key = `b:${createHash('sha256').update(source).digest('hex')}`;
  if (key === undefined) return loadSnpCertificates(source);
  const hit = loaded.get(key);
  if (hit !== undefined) return hit;
  const result = loadSnpCertificates(source);
  if (loaded.size >= LOADED_MAX) loaded.delete(loaded.keys().next().value as string);
  loaded.set(key, result);
  return result;
}
