/**
 * Verification of Key Vault's answer to a release request: a JWS signed by the vault, with its certificate
 * chain in `x5c`. Nothing in the payload is used before the signature, the chain to a trusted root and the
 * vault host have been checked.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { ReleaseResponseInvalidError } from '../errors.js';
import { loadJose } from '../load-jose.js';
import { x509 } from '../snp/x509.js';
import { isReleaseEncryption, type ReleaseEncryption } from './key-wrap.js';

/** Largest release answer accepted (an RSA-4096 key wrapped, its chain and its policy fit well inside). */
export const MAX_RELEASE_RESPONSE_BYTES = 256 * 1024;

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
  request: { 'api-version'?: string; enc: ReleaseEncryption; kid: string };
  response: {
    key: {
      key: ReleasedKeyJwk;
      attributes: Record<string, unknown>;
      tags?: Record<string, string>;
      release_policy?: { data?: string; immutable?: boolean; contentType?: string };
    };
  };
}

export interface VerifyReleaseResponseOptions {
  /** The vault the request went to; its host must be named by the signing certificate. */
  vaultUrl: string;
  /** Trusted roots (PEM strings or DER). Default: the system roots Node.js ships. */
  trustedRoots?: ReadonlyArray<string | Uint8Array>;
  /** Time at which certificates must be valid. Default: now. */
  now?: Date;
  /**
   * Replaces the host check on the signing certificate; return true when it may sign for `vaultHost`.
   * For vaults whose signing certificate names neither the vault nor its DNS suffix.
   */
  signerMatchesVault?: (certificate: x509.X509Certificate, vaultHost: string) => boolean;
}

export interface VerifiedReleaseResponse {
  payload: ReleasePayload;
  signer: x509.X509Certificate;
}

const invalid = (message: string, cause?: unknown) =>
  new ReleaseResponseInvalidError(
    `release response rejected: ${message}`,
    cause === undefined ? undefined : { cause },
  );

/** Parsed trust anchors, keyed by the list they came from, so a warm path re-parses nothing. */
const rootCache = new WeakMap<ReadonlyArray<string | Uint8Array>, x509.X509Certificate[]>();
let systemRoots: x509.X509Certificate[] | undefined;

function parseRoots(roots: ReadonlyArray<string | Uint8Array> | undefined): x509.X509Certificate[] {
  if (!roots) {
    systemRoots ??= rootCertificates.map((pem) => new x509.X509Certificate(pem));
    return systemRoots;
  }
  let parsed = rootCache.get(roots);
  if (!parsed) {
    parsed = roots.flatMap((root) =>
      typeof root === 'string'
        ? (root.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
            (pem) => new x509.X509Certificate(pem),
          )
        : [new x509.X509Certificate(root)],
    );
    rootCache.set(roots, parsed);
  }
  return parsed;
}

function thumbprint(certificate: x509.X509Certificate): string {
  return createHash('sha256').update(new Uint8Array(certificate.rawData)).digest('hex');
}

function hostMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  if (p === host) return true;
  // A wildcard stands for exactly one left-most label.
  if (p.startsWith('*.')) {
    const dot = host.indexOf('.');
    return dot > 0 && host.slice(dot + 1) === p.slice(2);
  }
  return false;
}

/**
 * The signing certificate must name the vault: by its host, a wildcard over it, or the DNS suffix the vault
 * lives under (`vault.azure.net` signs for `myvault.vault.azure.net`).
 */
export function signerNamesVault(certificate: x509.X509Certificate, vaultHost: string): boolean {
  const host = vaultHost.toLowerCase().replace(/^\[|\]$/g, '');
  const san = certificate.getExtension(x509.SubjectAlternativeNameExtension);
  const names = san?.names.toJSON() ?? [];
  if (isIP(host)) return names.some((n) => n.type === 'ip' && n.value === host);
  const dnsNames = names.filter((n) => n.type === 'dns').map((n) => n.value);
  if (dnsNames.length === 0) {
    const cn = /(?:^|,\s*)CN=([^,]+)/.exec(certificate.subject)?.[1];
    if (cn) dnsNames.push(cn.trim());
  }
  const suffix = host.includes('.') ? host.slice(host.indexOf('.') + 1) : undefined;
  return dnsNames.some(
    (name) => hostMatches(name, host) || (suffix !== undefined && name.toLowerCase() === suffix),
  );
}

function validAt(certificate: x509.X509Certificate, now: Date, role: string): void {
  if (now < certificate.notBefore || now > certificate.notAfter) {
    throw invalid(
      `${role} certificate "${certificate.subject}" is not valid at ${now.toISOString()} ` +
        `(${certificate.notBefore.toISOString()} .. ${certificate.notAfter.toISOString()})`,
    );
  }
}

function isCa(certificate: x509.X509Certificate): boolean {
  const constraints = certificate.getExtension(x509.BasicConstraintsExtension);
  return constraints?.ca === true;
}

async function signedBy(child: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  if (child.issuer !== issuer.subject) return false;
  try {
    return await child.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false;
  }
}

/** Verifies the chain in `x5c` up to one of the trusted roots, at `now`. Returns the leaf. */
async function verifyChain(
  x5c: unknown,
  roots: x509.X509Certificate[],
  now: Date,
): Promise<{ leaf: x509.X509Certificate; leafKey: KeyObject }> {
  if (
    !Array.isArray(x5c) ||
    x5c.length === 0 ||
    x5c.length > 10 ||
    !x5c.every((c) => typeof c === 'string')
  ) {
    throw invalid('the JWS header has no usable x5c certificate chain');
  }
  let chain: x509.X509Certificate[];
  try {
    chain = x5c.map((b64: string) => new x509.X509Certificate(Buffer.from(b64, 'base64')));
  } catch (error) {
    throw invalid('a certificate in x5c does not parse', error);
  }
  const leaf = chain[0]!;
  validAt(leaf, now, 'signing');
  for (let i = 1; i < chain.length; i++) {
    const cert = chain[i]!;
    validAt(cert, now, 'intermediate');
    if (!isCa(cert)) throw invalid(`certificate "${cert.subject}" in x5c is not a CA but issues another`);
    if (!(await signedBy(chain[i - 1]!, cert))) {
      throw invalid(`"${chain[i - 1]!.subject}" is not signed by the next certificate in x5c`);
    }
  }
  const rootPrints = new Set(roots.map(thumbprint));
  const top = chain[chain.length - 1]!;
  let anchored = rootPrints.has(thumbprint(top));
  if (!anchored) {
    for (const root of roots) {
      if (root.subject === top.issuer && (await signedBy(top, root))) {
        validAt(root, now, 'root');
        anchored = true;
        break;
      }
    }
  }
  if (!anchored) {
    throw invalid(
      `the signing chain ends at "${top.issuer}", which is not a trusted root; ` +
        'pass the emulator CA as a trusted root when talking to the emulator',
    );
  }
  let leafKey: KeyObject;
  try {
    leafKey = createPublicKey({ key: Buffer.from(leaf.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (error) {
    throw invalid('the signing certificate key is unusable', error);
  }
  return { leaf, leafKey };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireString(value: unknown, field: string, max = 64 * 1024): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > max) {
    throw invalid(`${field} is missing or not a string`);
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
    throw invalid('the payload is not JSON', error);
  }
  if (!isRecord(json) || !isRecord(json.request) || !isRecord(json.response)) {
    throw invalid('the payload lacks request/response');
  }
  const enc = json.request.enc;
  if (!isReleaseEncryption(enc))
    throw invalid(`request.enc ${JSON.stringify(enc)} is not a release algorithm`);
  const kid = requireString(json.request.kid, 'request.kid', 2048);
  const responseKey = json.response.key;
  if (!isRecord(responseKey) || !isRecord(responseKey.key)) throw invalid('response.key.key is missing');
  const jwk = responseKey.key;
  const released: ReleasedKeyJwk = {
    kid: requireString(jwk.kid, 'response.key.key.kid', 2048),
    kty: requireString(jwk.kty, 'response.key.key.kty', 32),
    key_hsm: requireString(jwk.key_hsm, 'response.key.key.key_hsm', MAX_RELEASE_RESPONSE_BYTES),
  };
  if (!B64URL.test(released.key_hsm)) throw invalid('key_hsm is not base64url');
  for (const field of ['n', 'e', 'crv', 'x', 'y'] as const) {
    if (jwk[field] !== undefined)
      released[field] = requireString(jwk[field], `response.key.key.${field}`, 2048);
  }
  if (jwk.key_ops !== undefined) {
    if (!Array.isArray(jwk.key_ops) || !jwk.key_ops.every((op) => typeof op === 'string')) {
      throw invalid('response.key.key.key_ops is not a list of strings');
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
 * Verifies a release answer: RS256 only, signed by `x5c[0]`, whose chain ends at a trusted root and which
 * names the vault host; then checks the payload's shape.
 */
export async function verifyReleaseResponse(
  jws: string,
  options: VerifyReleaseResponseOptions,
): Promise<VerifiedReleaseResponse> {
  if (typeof jws !== 'string' || jws.length === 0) {
    throw invalid(
      'the answer carries no JWS (no "value"): a wrong content type, or a proxy answering instead of the vault?',
    );
  }
  if (jws.length > MAX_RELEASE_RESPONSE_BYTES)
    throw invalid(`the answer is larger than ${MAX_RELEASE_RESPONSE_BYTES} bytes`);
  const { compactVerify, decodeProtectedHeader } = await loadJose();
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(jws);
  } catch (error) {
    throw invalid('the answer is not a compact JWS', error);
  }
  if (header.alg !== 'RS256') throw invalid(`JWS algorithm ${JSON.stringify(header.alg)} is not RS256`);
  const vaultHost = new URL(options.vaultUrl).hostname.toLowerCase();
  const { leaf, leafKey } = await verifyChain(
    header.x5c,
    parseRoots(options.trustedRoots),
    options.now ?? new Date(),
  );
  const matches = options.signerMatchesVault ?? signerNamesVault;
  if (!matches(leaf, vaultHost)) {
    throw invalid(`the signing certificate "${leaf.subject}" does not name the vault host ${vaultHost}`);
  }
  let verified: Awaited<ReturnType<typeof compactVerify>>;
  try {
    verified = await compactVerify(jws, leafKey, { algorithms: ['RS256'] });
  } catch (error) {
    throw invalid('the JWS signature does not verify under x5c[0]', error);
  }
  return { payload: parseReleasePayload(verified.payload), signer: leaf };
}
