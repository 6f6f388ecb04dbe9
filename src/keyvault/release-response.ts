/**
 * Verification of Key Vault's answer to a release request: a JWS signed by the vault, with its certificate
 * chain in `x5c`. Nothing in the payload is used before the signature, the X.509 path to a trusted root, what
 * the signer may be used for, and the vault host have been checked.
 *
 * The real answers this accepts are in test/fixtures/real-release/ (Azure/azure-sdk-for-js recordings): a
 * regular vault's header is `{alg, kid: uppercase hex SHA-1 of x5c[0], x5t, typ: "JWT", x5t#S256, x5c}`, a
 * Managed HSM's `{alg, kid: x5t#S256, x5c, x5t#S256}`; `x5c` is leaf, intermediate, root; the leaf is a TLS
 * server certificate (KU digitalSignature + keyEncipherment, EKU serverAuth + clientAuth) naming the vault
 * (`*.vault.azure.net`, `*.<name>.managedhsm.azure.net`).
 */
import { createHash, type KeyObject, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import {
  KEY_USAGE,
  OID,
  readBasicConstraints,
  readCertificate,
  readExtendedKeyUsage,
  readKeyUsage,
} from '../util/der.js';
import { ReleaseResponseInvalidError, type ReleaseResponseCheck } from '../errors.js';
import { loadJose } from '../load-jose.js';
import { isReleaseEncryption, type ReleaseEncryption } from './key-wrap.js';

/** Largest release answer accepted (an RSA-4096 key wrapped, its chain and its policy fit well inside). */
export const MAX_RELEASE_RESPONSE_BYTES = 256 * 1024;

/** Longest certificate path accepted in `x5c` (real answers carry three). */
const MAX_CHAIN_LENGTH = 10;

export interface ReleasedKeyJwk {
  kid: string;
  kty: string;
  key_ops?: string[];
  n?: string;
  e?: string;
  crv?: string;
  x?: string;
  y?: string;
  /** base64url of the key_hsm envelope JSON. */
  key_hsm: string;
}

export interface ReleasePayload {
  request: { 'api-version'?: string; enc: ReleaseEncryption; kid: string; nonce?: string };
  response: {
    key: {
      key: ReleasedKeyJwk;
      attributes: Record<string, unknown>;
      tags?: Record<string, string>;
      release_policy?: { data?: string; immutable?: boolean; contentType?: string };
    };
  };
}

/**
 * Narrows "any certificate a trusted root issued for this host" to a signer you chose. `spkiSha256`: SHA-256
 * of the SubjectPublicKeyInfo (DER) of any certificate of the verified path (leaf, intermediate or root), in
 * base64 (the `pin-sha256` form of RFC 7469), base64url or hex. `issuer`: the certificate (PEM or DER) that
 * must have issued the signing certificate itself.
 */
export type ReleaseSignerPin = { spkiSha256: string } | { issuer: string | Uint8Array };

export interface VerifyReleaseResponseOptions {
  /** The vault the request went to; its host must be named by the signing certificate. */
  vaultUrl: string;
  /** Trusted roots (PEM strings or DER). Default: the system roots Node.js ships. */
  trustedRoots?: ReadonlyArray<string | Uint8Array>;
  /** Time at which certificates must be valid. Default: now. */
  now?: Date;
  /**
   * Replaces the host check on the signing certificate; return true when it may sign for `vaultHost`.
   * For vaults whose signing certificate does not name the vault host.
   */
  signerMatchesVault?: (certificate: X509Certificate, vaultHost: string) => boolean;
  /** When given, the verified path must match at least one pin. */
  signerPins?: ReadonlyArray<ReleaseSignerPin>;
}

export interface VerifiedReleaseResponse {
  payload: ReleasePayload;
  signer: X509Certificate;
}

const invalid = (message: string, check: ReleaseResponseCheck, cause?: unknown) =>
  new ReleaseResponseInvalidError(`release response rejected: ${message}`, {
    check,
    ...(cause === undefined ? {} : { cause }),
  });

/** A certificate with the extensions path validation needs, parsed once. */
interface PathCertificate {
  x509: X509Certificate;
  der: Buffer;
  /** undefined: no basicConstraints extension. */
  basicConstraints?: { ca: boolean; pathLength?: number };
  /** undefined: no keyUsage extension. */
  keyUsage?: number;
  /** undefined: no extKeyUsage extension. */
  extKeyUsage?: string[];
  notBefore: Date;
  notAfter: Date;
}

/**
 * Extensions this verifier understands. RFC 5280 section 4.2: a certificate with a critical extension the
 * verifier does not process must be rejected.
 */
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
  OID.certificatePolicies,
]);

function pathCertificate(der: Buffer): PathCertificate {
  const x509 = new X509Certificate(der);
  const parsed = readCertificate(der);
  const out: PathCertificate = {
    x509,
    der,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
  };
  for (const extension of parsed.extensions) {
    switch (extension.oid) {
      case OID.basicConstraints:
        out.basicConstraints = readBasicConstraints(extension.value);
        break;
      case OID.keyUsage:
        out.keyUsage = readKeyUsage(extension.value);
        break;
      case OID.extKeyUsage:
        out.extKeyUsage = readExtendedKeyUsage(extension.value);
        break;
      default:
        if (extension.critical && !UNDERSTOOD.has(extension.oid)) {
          throw new Error(`"${x509.subject.replace(/\n/g, ', ')}" has an unknown critical extension ${extension.oid}`);
        }
    }
  }
  return out;
}

function parseDerOrPem(items: ReadonlyArray<string | Uint8Array>): PathCertificate[] {
  return items.flatMap((item) =>
    typeof item === 'string'
      ? (item.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((pem) =>
          pathCertificate(Buffer.from(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64')),
        )
      : [pathCertificate(Buffer.from(item))],
  );
}

/** Parsed trust anchors, keyed by the list they came from, so a warm path re-parses nothing. */
const rootCache = new WeakMap<ReadonlyArray<string | Uint8Array>, PathCertificate[]>();
let systemRoots: PathCertificate[] | undefined;

function parseRoots(roots: ReadonlyArray<string | Uint8Array> | undefined): PathCertificate[] {
  if (!roots) {
    // A bundled root with an extension we cannot parse is skipped, not fatal: it only narrows the trust set.
    systemRoots ??= rootCertificates.flatMap((pem) => {
      try {
        return parseDerOrPem([pem]);
      } catch {
        return [];
      }
    });
    return systemRoots;
  }
  let parsed = rootCache.get(roots);
  if (!parsed) {
    try {
      parsed = parseDerOrPem(roots);
    } catch (error) {
      throw invalid('a trusted root certificate does not parse', 'chain', error);
    }
    rootCache.set(roots, parsed);
  }
  return parsed;
}

const subjectOf = (c: PathCertificate) => c.x509.subject.replace(/\n/g, ', ');

function validAt(certificate: PathCertificate, now: Date, role: string): void {
  if (!(now >= certificate.notBefore && now <= certificate.notAfter)) {
    throw invalid(
      `${role} certificate "${subjectOf(certificate)}" is not valid at ${now.toISOString()} ` +
        `(${certificate.notBefore.toISOString()} .. ${certificate.notAfter.toISOString()})`,
      'chain',
    );
  }
}

/** `issuer` signed `child` (names and key identifiers agree, and the signature verifies). */
function issued(issuer: PathCertificate, child: PathCertificate): boolean {
  try {
    return child.x509.checkIssued(issuer.x509) && child.x509.verify(issuer.x509.publicKey);
  } catch {
    return false;
  }
}

/**
 * RFC 5280 section 6.1.4 (k), (l), (n) for a certificate that issues another: it is a CA, the key-usage bit
 * for signing certificates is set when key usage is present, and no more CA certificates follow it towards
 * the leaf than its pathLenConstraint allows.
 */
function checkIssuer(issuer: PathCertificate, casBelow: number): void {
  const name = subjectOf(issuer);
  if (issuer.basicConstraints?.ca !== true) {
    throw invalid(`certificate "${name}" is not a CA (basicConstraints) but issues another`, 'chain');
  }
  if (issuer.keyUsage !== undefined && (issuer.keyUsage & KEY_USAGE.keyCertSign) === 0) {
    throw invalid(`CA certificate "${name}" lacks keyCertSign in its key usage but issues another`, 'chain');
  }
  const limit = issuer.basicConstraints.pathLength;
  if (limit !== undefined && casBelow > limit) {
    throw invalid(
      `CA certificate "${name}" allows ${limit} CA certificate(s) below it (pathLenConstraint), the chain has ${casBelow}`,
      'chain',
    );
  }
}

/**
 * The signing certificate is an end entity that may sign: not a CA, digitalSignature when key usage is
 * present, serverAuth when extended key usage is present (the real release signers are TLS server
 * certificates: test/fixtures/real-release/*.jws).
 */
function checkLeaf(leaf: PathCertificate): void {
  const name = subjectOf(leaf);
  if (leaf.basicConstraints?.ca === true) {
    throw invalid(`the signing certificate "${name}" is a CA certificate, not an end entity`, 'signer');
  }
  if (leaf.keyUsage !== undefined && (leaf.keyUsage & KEY_USAGE.digitalSignature) === 0) {
    throw invalid(`the signing certificate "${name}" lacks digitalSignature in its key usage`, 'signer');
  }
  if (leaf.extKeyUsage !== undefined && !leaf.extKeyUsage.includes(OID.serverAuth)) {
    throw invalid(
      `the signing certificate "${name}" is not for serverAuth (extended key usage ${leaf.extKeyUsage.join(', ')})`,
      'signer',
    );
  }
}

interface VerifiedPath {
  leaf: PathCertificate;
  /** Leaf first, trust anchor last. */
  path: PathCertificate[];
}

/**
 * X.509 path validation (RFC 5280 section 6.1, without policy and name constraints, which no release signer
 * uses) of `x5c` at `now`: each certificate is issued by the next, up to a certificate that is a trusted root
 * or is issued by one. Certificates in `x5c` above the anchor are ignored.
 */
function verifyChain(x5c: unknown, roots: PathCertificate[], now: Date): VerifiedPath {
  if (
    !Array.isArray(x5c) ||
    x5c.length === 0 ||
    x5c.length > MAX_CHAIN_LENGTH ||
    !x5c.every((c) => typeof c === 'string')
  ) {
    throw invalid('the JWS header has no usable x5c certificate chain', 'chain');
  }
  let chain: PathCertificate[];
  try {
    chain = x5c.map((b64: string) => pathCertificate(Buffer.from(b64, 'base64')));
  } catch (error) {
    throw invalid(`a certificate in x5c does not parse or cannot be processed: ${(error as Error).message}`, 'chain', error);
  }
  const rootDers = new Set(roots.map((r) => r.der.toString('base64')));
  const path: PathCertificate[] = [chain[0]!];
  for (let i = 0; ; i++) {
    const current = chain[i]!;
    if (i > 0 && rootDers.has(current.der.toString('base64'))) break;
    const root = roots.find((r) => issued(r, current));
    if (root) {
      path.push(root);
      break;
    }
    const next = chain[i + 1];
    if (!next) {
      throw invalid(
        `the signing chain ends at "${current.x509.issuer.replace(/\n/g, ', ')}", which is not a trusted root; ` +
          'pass the emulator CA as a trusted root when talking to the emulator',
        'chain',
      );
    }
    // What the issuer may do first, so a certificate that may not issue is named as such.
    checkIssuer(next, i);
    if (!issued(next, current)) {
      throw invalid(`"${subjectOf(current)}" is not signed by the next certificate in x5c`, 'chain');
    }
    path.push(next);
  }
  const leaf = path[0]!;
  validAt(leaf, now, 'signing');
  checkLeaf(leaf);
  for (let i = 1; i < path.length; i++) {
    validAt(path[i]!, now, i === path.length - 1 ? 'root' : 'intermediate');
    checkIssuer(path[i]!, i - 1);
  }
  return { leaf, path };
}

/**
 * The signing certificate must name the vault host: in its DNS subject alternative names (a wildcard stands
 * for one left-most label), or, only when it has none, in its subject common name; an IP address only in
 * its IP SANs. Node.js `X509Certificate.checkHost`/`checkIP` (OpenSSL `X509_check_host`) implement these
 * rules on the parsed names, so no attribute value (`O=..., CN=<vault>`) can pose as a name.
 */
export function signerNamesVault(certificate: X509Certificate, vaultHost: string): boolean {
  const host = vaultHost.toLowerCase().replace(/^\[|\]$/g, '');
  if (isIP(host)) return certificate.checkIP(host) !== undefined;
  return certificate.checkHost(host, { subject: 'default', partialWildcards: false }) !== undefined;
}

function pinBytes(pin: string): Buffer {
  return /^[0-9a-f]{64}$/i.test(pin) ? Buffer.from(pin, 'hex') : Buffer.from(pin, 'base64url');
}

function checkPins(verified: VerifiedPath, pins: ReadonlyArray<ReleaseSignerPin>): void {
  const spkiHashes = verified.path.map((c) =>
    createHash('sha256')
      .update(c.x509.publicKey.export({ format: 'der', type: 'spki' }))
      .digest(),
  );
  const issuer = verified.path[1];
  for (const pin of pins) {
    if ('spkiSha256' in pin) {
      // base64 and base64url decode alike in Node.js (`+/` and `-_` both accepted).
      const wanted = pinBytes(pin.spkiSha256);
      if (spkiHashes.some((h) => h.equals(wanted))) return;
    } else if (issuer) {
      let pinned: PathCertificate[];
      try {
        pinned = parseDerOrPem([pin.issuer]);
      } catch (error) {
        throw invalid('a pinned issuer certificate does not parse', 'pin', error);
      }
      if (pinned.some((p) => p.der.equals(issuer.der))) return;
    }
  }
  throw invalid(
    `the signing certificate "${subjectOf(verified.leaf)}" and its chain match none of the pinned release signers`,
    'pin',
  );
}

/**
 * The header's certificate references, when present, must name `x5c[0]`: `x5t` (SHA-1) and `x5t#S256`
 * (SHA-256) as RFC 7515 sections 4.1.7 and 4.1.8 define them, and `kid` as the real services derive it
 * (uppercase hex SHA-1 on regular vaults, the `x5t#S256` value on Managed HSM: test/fixtures/real-release/).
 */
function checkHeaderReferences(header: Record<string, unknown>, leafDer: Buffer): void {
  const sha1 = createHash('sha1').update(leafDer).digest();
  const sha256 = createHash('sha256').update(leafDer).digest();
  const refuse = (field: string) =>
    invalid(`the JWS header ${field} does not identify the x5c[0] certificate`, 'header');
  if (header.x5t !== undefined && header.x5t !== sha1.toString('base64url')) throw refuse('x5t');
  if (header['x5t#S256'] !== undefined && header['x5t#S256'] !== sha256.toString('base64url'))
    throw refuse('x5t#S256');
  if (header.kid !== undefined) {
    const kid = header.kid;
    const ok =
      typeof kid === 'string' &&
      (kid === sha256.toString('base64url') ||
        kid === sha1.toString('base64url') ||
        kid.toLowerCase() === sha1.toString('hex') ||
        kid.toLowerCase() === sha256.toString('hex'));
    if (!ok) throw refuse('kid');
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireString(value: unknown, field: string, max = 64 * 1024): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw invalid(`${field} is missing or not a string`, 'content');
  }
  return value;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Checks the payload's shape; nothing beyond what is checked here is trusted by the unwrap step. */
export function parseReleasePayload(bytes: Uint8Array): ReleasePayload {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (error) {
    throw invalid('the payload is not JSON', 'content', error);
  }
  if (!isRecord(json) || !isRecord(json.request) || !isRecord(json.response)) {
    throw invalid('the payload lacks request/response', 'content');
  }
  const enc = json.request.enc;
  if (!isReleaseEncryption(enc))
    throw invalid(`request.enc ${JSON.stringify(enc)} is not a release algorithm`, 'content');
  const kid = requireString(json.request.kid, 'request.kid', 2048);
  // The vault echoes the nonce the release request carried, and nothing when none was sent: a real Managed
  // HSM answer to a release sent with "nonce":"nonce" signs request.nonce "nonce" (Azure/azure-sdk-for-js
  // @3357deb7, excerpt in test/fixtures/real-release/mhsm-import-release-nonce.json); the answers of
  // test/fixtures/real-release/*.jws were asked without one and carry none. The caller compares it.
  const nonce = json.request.nonce;
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length > 1024)) {
    throw invalid('request.nonce is not a string', 'content');
  }
  const responseKey = json.response.key;
  if (!isRecord(responseKey) || !isRecord(responseKey.key)) throw invalid('response.key.key is missing', 'content');
  const jwk = responseKey.key;
  const released: ReleasedKeyJwk = {
    kid: requireString(jwk.kid, 'response.key.key.kid', 2048),
    kty: requireString(jwk.kty, 'response.key.key.kty', 32),
    key_hsm: requireString(jwk.key_hsm, 'response.key.key.key_hsm', MAX_RELEASE_RESPONSE_BYTES),
  };
  if (!B64URL.test(released.key_hsm)) throw invalid('key_hsm is not base64url', 'content');
  for (const field of ['n', 'e', 'crv', 'x', 'y'] as const) {
    if (jwk[field] !== undefined)
      released[field] = requireString(jwk[field], `response.key.key.${field}`, 2048);
  }
  if (jwk.key_ops !== undefined) {
    if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.every((op) => typeof op === 'string')) {
      throw invalid('response.key.key.key_ops is not a list of strings', 'content');
    }
    released.key_ops = jwk.key_ops as string[];
  }
  const attributes = isRecord(responseKey.attributes) ? responseKey.attributes : {};
  const payload: ReleasePayload = {
    request: { enc, kid },
    response: { key: { key: released, attributes } },
  };
  if (typeof json.request['api-version'] === 'string')
    payload.request['api-version'] = json.request['api-version'];
  if (typeof nonce === 'string') payload.request.nonce = nonce;
  if (isRecord(responseKey.tags)) payload.response.key.tags = responseKey.tags as Record<string, string>;
  if (isRecord(responseKey.release_policy)) {
    const policy = responseKey.release_policy;
    payload.response.key.release_policy = {
      ...(typeof policy.data === 'string' ? { data: policy.data } : {}),
      ...(typeof policy.immutable === 'boolean' ? { immutable: policy.immutable } : {}),
      ...(typeof policy.contentType === 'string' ? { contentType: policy.contentType } : {}),
    };
  }
  return payload;
}

/**
 * Verifies a release answer: RS256 only, signed by `x5c[0]`, whose path validates to a trusted root at `now`,
 * which is an end-entity signing certificate naming the vault host (and matching a pin, when pins are given),
 * and which the header's `kid`/`x5t`/`x5t#S256` identify; then checks the payload's shape. Binding the answer
 * to the request (nonce, key id, enc) is the caller's part: `SecureKeyRelease` does it.
 */
export async function verifyReleaseResponse(
  jws: string,
  options: VerifyReleaseResponseOptions,
): Promise<VerifiedReleaseResponse> {
  if (typeof jws !== 'string' || jws.length === 0) {
    throw invalid(
      'the answer carries no JWS (no "value"): a wrong content type, or a proxy answering instead of the vault?',
      'content',
    );
  }
  if (jws.length > MAX_RELEASE_RESPONSE_BYTES)
    throw invalid(`the answer is larger than ${MAX_RELEASE_RESPONSE_BYTES} bytes`, 'content');
  const { compactVerify, decodeProtectedHeader } = await loadJose();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jws);
  } catch (error) {
    throw invalid('the answer is not a compact JWS', 'header', error);
  }
  if (header.alg !== 'RS256')
    throw invalid(`JWS algorithm ${JSON.stringify(header.alg)} is not RS256`, 'header');
  const vaultHost = new URL(options.vaultUrl).hostname.toLowerCase();
  const verified = verifyChain(header.x5c, parseRoots(options.trustedRoots), options.now ?? new Date());
  const leaf = verified.leaf.x509;
  checkHeaderReferences(header, verified.leaf.der);
  const matches = options.signerMatchesVault ?? signerNamesVault;
  if (!matches(leaf, vaultHost)) {
    throw invalid(
      `the signing certificate "${subjectOf(verified.leaf)}" does not name the vault host ${vaultHost}`,
      'signer',
    );
  }
  if (options.signerPins !== undefined) checkPins(verified, options.signerPins);
  let leafKey: KeyObject;
  let result: Awaited<ReturnType<typeof compactVerify>>;
  try {
    leafKey = leaf.publicKey;
    result = await compactVerify(jws, leafKey, { algorithms: ['RS256'] });
  } catch (error) {
    throw invalid('the JWS signature does not verify under x5c[0]', 'signature', error);
  }
  return { payload: parseReleasePayload(result.payload), signer: leaf };
}
