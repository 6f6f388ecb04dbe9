/**
 * Envelope encryption that survives key rotation. Each envelope holds data encrypted with AES-256-GCM under a
 * fresh 256-bit data key; the data key is wrapped with a key released from Key Vault, and the envelope names
 * the **versioned** id of that key. Decrypting releases (or takes from the `SecureKeyRelease` cache) exactly
 * that version, so data written before a rotation stays readable after it; `rewrap` moves an envelope to the
 * newest version by re-wrapping only its data key (the data is never decrypted).
 *
 * Envelope format 1 (binary, integers big-endian):
 *
 *   offset  size  field
 *   0       4     magic "CSKE" (0x43 0x53 0x4b 0x45)
 *   4       1     format version, 1
 *   5       1     content encryption: 1 = AES-256-GCM (12-byte iv, 16-byte tag)
 *   6       1     key wrapping: 1 = AES-KWP (RFC 5649, id-aesN-wrap-pad) under an oct key of N bits;
 *                 2 = RSA-OAEP-256 (SHA-256, MGF1-SHA-256) under an RSA key (>= 2048 bits)
 *   7       1     reserved, 0
 *   8       2     K, length of the key id (1..1024)
 *   10      K     versioned key id, UTF-8: https://<vault>/keys/<name>/<version>
 *   10+K    2     W, length of the wrapped data key (1..1024)
 *   12+K    W     wrapped data key
 *   12+K+W  12    AES-GCM iv
 *   24+K+W  n     ciphertext (as long as the plaintext)
 *   end-16  16    AES-GCM tag
 *
 * The GCM additional data is bytes 0..5 (magic, format version, content encryption) followed by the caller's
 * `aad`. The key id and the wrapped key are deliberately outside it, so a rewrap touches only them: swapping
 * either still fails, because the data key they yield would not be the one the tag was made with.
 *
 * EC keys are refused (`EnvelopeKeyError`): Key Vault EC keys are signing keys (`sign`/`verify`), and using one
 * for ECDH key agreement as well would give one key two purposes. Use an `oct-HSM` (AES) or `RSA-HSM` key.
 */
import {
  constants,
  createCipheriv,
  createDecipheriv,
  type KeyObject,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import {
  CvmSkrError,
  EnvelopeAuthenticationError,
  EnvelopeKeyError,
  InvalidArgumentError,
  KeyVersionUnavailableError,
  MalformedDataError,
} from '../errors.js';
import type { ReleasedKey } from '../keyvault/secure-key-release.js';

export const ENVELOPE_MAGIC: Readonly<Buffer> = Buffer.from('CSKE', 'latin1');
export const ENVELOPE_FORMAT_VERSION = 1;
const CONTENT_AES_256_GCM = 1;
const KEY_WRAPPINGS = { 1: 'AES-KWP', 2: 'RSA-OAEP-256' } as const;
export type EnvelopeKeyWrapping = (typeof KEY_WRAPPINGS)[keyof typeof KEY_WRAPPINGS];
const WRAPPING_CODE: Record<EnvelopeKeyWrapping, number> = { 'AES-KWP': 1, 'RSA-OAEP-256': 2 };

const FIXED_HEADER = 8;
const AAD_PREFIX = 6;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
const MAX_KID_BYTES = 1024;
const MAX_WRAPPED_BYTES = 1024;
const MIN_RSA_BITS = 2048;
const VERSIONED_KID = /^https?:\/\/[^/\s?#@]+\/keys\/([0-9A-Za-z-]{1,127})\/([0-9A-Za-z]{1,64})$/;

/** The header fields of an envelope, which say which key version it needs. */
export interface EnvelopeHeader {
  formatVersion: number;
  contentEncryption: 'A256GCM';
  keyWrapping: EnvelopeKeyWrapping;
  /** Versioned key id of the key that wraps the data key. */
  kid: string;
  /** Key name and version, from `kid`. */
  name: string;
  version: string;
  /** Length of the data (the plaintext). */
  dataLength: number;
}

/** The parts of an envelope; byte fields are views into the envelope passed to `parseEnvelope`. */
export interface ParsedEnvelope extends EnvelopeHeader {
  wrappedKey: Uint8Array;
  iv: Uint8Array;
  ciphertext: Uint8Array;
  tag: Uint8Array;
}

/** Largest header: the fixed part, both length-prefixed fields at their maximum, and the iv. */
export const MAX_ENVELOPE_HEADER_BYTES = FIXED_HEADER + 2 + 1024 + 2 + 1024 + 12;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function parseHeader(view: Buffer, totalLength: number) {
  const bad = (why: string) => new MalformedDataError('ERR_ENVELOPE_FORMAT', `not a valid cvm-skr envelope: ${why}`);
  if (view.length < FIXED_HEADER) throw bad(`${view.length} bytes is shorter than the 8-byte header`);
  if (!view.subarray(0, 4).equals(ENVELOPE_MAGIC)) throw bad('it does not start with "CSKE"');
  const formatVersion = view[4]!;
  if (formatVersion !== ENVELOPE_FORMAT_VERSION) {
    throw bad(
      `format version ${formatVersion} is not supported (this cvm-skr reads version ${ENVELOPE_FORMAT_VERSION}); a newer cvm-skr may read it`,
    );
  }
  if (view[5] !== CONTENT_AES_256_GCM) throw bad(`unknown content encryption ${view[5]}`);
  const keyWrapping = KEY_WRAPPINGS[view[6] as keyof typeof KEY_WRAPPINGS];
  if (keyWrapping === undefined) throw bad(`unknown key wrapping ${view[6]}`);
  if (view[7] !== 0) throw bad('reserved byte 7 is not 0');
  let offset = FIXED_HEADER;
  const field = (what: string, max: number): Buffer => {
    if (offset + 2 > view.length) throw bad(`truncated before the length of the ${what}`);
    const length = view.readUInt16BE(offset);
    offset += 2;
    if (length === 0 || length > max) throw bad(`${what} length ${length} is outside 1..${max}`);
    if (offset + length > view.length) throw bad(`truncated inside the ${what}`);
    const out = view.subarray(offset, offset + length);
    offset += length;
    return out;
  };
  const kidBytes = field('key id', MAX_KID_BYTES);
  let kid: string;
  try {
    kid = utf8.decode(kidBytes);
  } catch {
    throw bad('the key id is not UTF-8');
  }
  const match = VERSIONED_KID.exec(kid);
  if (!match) throw bad('the key id is not a versioned id https://<vault>/keys/<name>/<version>');
  const wrappedKey = field('wrapped key', MAX_WRAPPED_BYTES);
  if (totalLength - offset < IV_BYTES + TAG_BYTES) throw bad('truncated before the end of the iv and tag');
  const header: EnvelopeHeader = {
    formatVersion,
    contentEncryption: 'A256GCM',
    keyWrapping,
    kid,
    name: match[1]!,
    version: match[2]!,
    dataLength: totalLength - offset - IV_BYTES - TAG_BYTES,
  };
  return { header, wrappedKey, ivOffset: offset };
}

function asBuffer(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) throw new InvalidArgumentError('an envelope is a Uint8Array');
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Parses an envelope with bounds checks; never reads past `bytes`. Throws a `MalformedDataError`
 * (`ERR_ENVELOPE_FORMAT`).
 */
export function parseEnvelope(bytes: Uint8Array): ParsedEnvelope {
  const view = asBuffer(bytes);
  const { header, wrappedKey, ivOffset } = parseHeader(view, view.length);
  return {
    ...header,
    wrappedKey,
    iv: view.subarray(ivOffset, ivOffset + IV_BYTES),
    ciphertext: view.subarray(ivOffset + IV_BYTES, view.length - TAG_BYTES),
    tag: view.subarray(view.length - TAG_BYTES),
  };
}

/**
 * The header of an envelope from its first bytes (`MAX_ENVELOPE_HEADER_BYTES` always suffice) and its total
 * length, so large envelopes can be sorted by key version without reading them whole.
 */
export function parseEnvelopeHeader(head: Uint8Array, totalLength: number = head.length): EnvelopeHeader {
  const view = asBuffer(head);
  if (!Number.isSafeInteger(totalLength) || totalLength < view.length) {
    throw new InvalidArgumentError('totalLength must be at least the number of bytes given');
  }
  return parseHeader(view, totalLength).header;
}

/** The versioned key id an envelope is under (to find envelopes that still need a rewrap). */
export function envelopeKeyId(envelope: Uint8Array): string {
  return parseEnvelope(envelope).kid;
}

/** What `EnvelopeCipher` needs of `SecureKeyRelease`; a `SecureKeyRelease` satisfies it. */
export interface EnvelopeKeyReleaser {
  releaseKey(keyId: string, options?: { signal?: AbortSignal }): Promise<ReleasedKey>;
}

/** Reads a version's attributes to explain a refused release; a `KeyClient` satisfies it. */
export interface EnvelopeKeyInspector {
  getKey(
    name: string,
    options?: { version?: string },
  ): Promise<{ properties: { enabled?: boolean; expiresOn?: Date; notBefore?: Date } }>;
}

export interface EnvelopeCipherOptions {
  skr: EnvelopeKeyReleaser;
  /**
   * The key envelopes are written under: `https://<vault>/keys/<name>` encrypts under the current version
   * (and `rewrap` moves envelopes to it); a versioned id pins one version.
   */
  keyId: string;
  /** More versionless key ids whose envelopes `decrypt` and `rewrap` accept (e.g. while moving to a new key). */
  decryptKeyIds?: readonly string[];
  /** Used only to say why a version cannot be released (disabled, expired, gone); needs `keys/get`. */
  keyClient?: EnvelopeKeyInspector;
}

export interface EnvelopeOptions {
  /** Additional authenticated data: must be the same at decrypt. */
  aad?: Uint8Array;
  signal?: AbortSignal;
}

export interface RewrapResult {
  /** The envelope under the newest version (the input itself when it already was). */
  envelope: Buffer;
  from: string;
  to: string;
  changed: boolean;
}

interface AllowedKey {
  vaultUrl: string;
  host: string;
  name: string;
}

function allowedKey(keyId: string, what: string): AllowedKey & { version?: string } {
  let url: URL;
  try {
    url = new URL(keyId);
  } catch {
    throw new InvalidArgumentError(
      `${what} ${JSON.stringify(keyId)} is not a key id https://<vault>/keys/<name>`,
    );
  }
  const match = /^\/keys\/([0-9A-Za-z-]{1,127})(?:\/([0-9A-Za-z]{1,64}))?\/?$/.exec(url.pathname);
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !match || url.search || url.hash) {
    throw new InvalidArgumentError(
      `${what} ${JSON.stringify(keyId)} is not a key id https://<vault>/keys/<name>`,
    );
  }
  return {
    vaultUrl: url.origin,
    host: url.hostname.toLowerCase(),
    name: match[1]!,
    ...(match[2] ? { version: match[2] } : {}),
  };
}

/** oct keys wrap with AES-KWP, RSA keys with RSA-OAEP-256; anything else is refused. */
function wrappingFor(released: ReleasedKey): EnvelopeKeyWrapping {
  const key = released.key;
  if (key.type === 'secret') {
    const size = key.symmetricKeySize ?? 0;
    if (size === 16 || size === 24 || size === 32) return 'AES-KWP';
  } else if (key.type === 'private' && key.asymmetricKeyType === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) >= MIN_RSA_BITS) return 'RSA-OAEP-256';
  } else if (key.type === 'private' && key.asymmetricKeyType === 'ec') {
    throw new EnvelopeKeyError(
      `${released.name} is an EC key; Key Vault EC keys sign and do not encrypt, so they cannot protect envelopes. Use an oct-HSM (AES-256) or RSA-HSM key`,
      'unsupported-key-type',
    );
  }
  throw new EnvelopeKeyError(
    `${released.name} (${released.keyType}) cannot protect envelopes: use an oct-HSM key of 128/192/256 bits or an RSA-HSM key of at least ${MIN_RSA_BITS} bits`,
    'unsupported-key-type',
  );
}

function kwpCipher(key: KeyObject): string {
  return `id-aes${(key.symmetricKeySize ?? 0) * 8}-wrap-pad`;
}

const KWP_IV = Buffer.from('A65959A6', 'hex');

function wrapDataKey(wrapping: EnvelopeKeyWrapping, key: KeyObject, dataKey: Buffer): Buffer {
  if (wrapping === 'RSA-OAEP-256') {
    return publicEncrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, dataKey);
  }
  const cipher = createCipheriv(kwpCipher(key), key, KWP_IV);
  return Buffer.concat([cipher.update(dataKey), cipher.final()]);
}

/** The data key, or `EnvelopeAuthenticationError` (wrong version, altered wrapped key). Caller zeroes it. */
function unwrapDataKey(parsed: ParsedEnvelope, released: ReleasedKey): Buffer {
  const fail = (cause?: unknown) =>
    new EnvelopeAuthenticationError(
      `the envelope's data key does not unwrap under ${parsed.kid}: the envelope was altered or damaged`,
      cause === undefined ? undefined : { cause },
    );
  let wrapping: EnvelopeKeyWrapping;
  try {
    wrapping = wrappingFor(released);
  } catch (error) {
    throw fail(error);
  }
  if (wrapping !== parsed.keyWrapping) throw fail();
  let dataKey: Buffer;
  try {
    if (wrapping === 'RSA-OAEP-256') {
      dataKey = privateDecrypt(
        { key: released.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        parsed.wrappedKey,
      );
    } else {
      const decipher = createDecipheriv(kwpCipher(released.key), released.key, KWP_IV);
      const head = decipher.update(parsed.wrappedKey);
      const tail = decipher.final();
      dataKey = tail.length === 0 ? head : Buffer.concat([head, tail]);
      if (tail.length > 0) {
        head.fill(0);
        tail.fill(0);
      }
    }
  } catch (cause) {
    throw fail(cause);
  }
  if (dataKey.length !== DATA_KEY_BYTES) {
    dataKey.fill(0);
    throw fail();
  }
  return dataKey;
}

function gcmAad(envelope: Uint8Array, aad: Uint8Array | undefined): Buffer {
  const prefix = envelope.subarray(0, AAD_PREFIX);
  return aad ? Buffer.concat([prefix, aad]) : Buffer.from(prefix);
}

/** Header (up to and including the iv) for a key id and wrapped key. */
function buildHeader(kid: string, wrapping: EnvelopeKeyWrapping, wrapped: Buffer, iv: Uint8Array): Buffer {
  const kidBytes = Buffer.from(kid, 'utf8');
  if (kidBytes.length > MAX_KID_BYTES || !VERSIONED_KID.test(kid)) {
    throw new EnvelopeKeyError(
      `the released key id ${JSON.stringify(kid)} is not a versioned key id`,
      'foreign-key',
    );
  }
  const header = Buffer.alloc(FIXED_HEADER + 2 + kidBytes.length + 2 + wrapped.length + IV_BYTES);
  ENVELOPE_MAGIC.copy(header, 0);
  header[4] = ENVELOPE_FORMAT_VERSION;
  header[5] = CONTENT_AES_256_GCM;
  header[6] = WRAPPING_CODE[wrapping];
  let offset = header.writeUInt16BE(kidBytes.length, FIXED_HEADER);
  offset += kidBytes.copy(header, offset);
  offset = header.writeUInt16BE(wrapped.length, offset);
  offset += wrapped.copy(header, offset);
  header.set(iv, offset);
  return header;
}

function versionOf(kid: string): string {
  return VERSIONED_KID.exec(kid)?.[2]?.toLowerCase() ?? '';
}

/** Service messages (ours carry them as `cause`) that say why a version was not released. */
function causeText(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const message = (e as { message?: unknown }).message;
    if (typeof message === 'string') parts.push(message);
  }
  return parts.join(' | ');
}

export class EnvelopeCipher {
  readonly #skr: EnvelopeKeyReleaser;
  readonly #keyId: string;
  readonly #allowed: AllowedKey[];
  readonly #inspector: EnvelopeKeyInspector | undefined;

  constructor(options: EnvelopeCipherOptions) {
    if (!options?.skr || typeof options.skr.releaseKey !== 'function') {
      throw new InvalidArgumentError('EnvelopeCipher needs skr (a SecureKeyRelease)');
    }
    const own = allowedKey(options.keyId, 'keyId');
    this.#skr = options.skr;
    this.#keyId = options.keyId;
    this.#inspector = options.keyClient;
    this.#allowed = [
      own,
      ...(options.decryptKeyIds ?? []).map((id) => allowedKey(id, 'decryptKeyIds entry')),
    ];
  }

  /** Encrypts `plaintext` under a fresh data key wrapped with the current version of the key. */
  async encrypt(plaintext: Uint8Array, options: EnvelopeOptions = {}): Promise<Buffer> {
    if (!(plaintext instanceof Uint8Array)) throw new InvalidArgumentError('plaintext must be a Uint8Array');
    const released = await this.#skr.releaseKey(
      this.#keyId,
      options.signal ? { signal: options.signal } : {},
    );
    const wrapping = wrappingFor(released);
    const dataKey = randomBytes(DATA_KEY_BYTES);
    try {
      const header = buildHeader(
        released.kid,
        wrapping,
        wrapDataKey(wrapping, released.key, dataKey),
        randomBytes(IV_BYTES),
      );
      const cipher = createCipheriv('aes-256-gcm', dataKey, header.subarray(header.length - IV_BYTES));
      cipher.setAAD(gcmAad(header, options.aad));
      const envelope = Buffer.allocUnsafe(header.length + plaintext.length + TAG_BYTES);
      header.copy(envelope, 0);
      let offset = header.length;
      offset += cipher.update(plaintext).copy(envelope, offset);
      offset += cipher.final().copy(envelope, offset);
      cipher.getAuthTag().copy(envelope, offset);
      return envelope;
    } finally {
      dataKey.fill(0);
    }
  }

  /** Decrypts an envelope with exactly the key version it names. The result is the caller's to zero. */
  async decrypt(envelope: Uint8Array, options: EnvelopeOptions = {}): Promise<Buffer> {
    const parsed = parseEnvelope(envelope);
    const released = await this.#releaseVersion(parsed, options.signal);
    const dataKey = unwrapDataKey(parsed, released);
    let plaintext: Buffer | undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', dataKey, parsed.iv).setAuthTag(parsed.tag);
      decipher.setAAD(gcmAad(envelope, options.aad));
      plaintext = decipher.update(parsed.ciphertext);
      const tail = decipher.final();
      if (tail.length === 0) return plaintext;
      const whole = Buffer.concat([plaintext, tail]);
      tail.fill(0);
      plaintext.fill(0);
      return whole;
    } catch (cause) {
      // GCM hands out plaintext before the tag is checked; none of it may outlive a failed check.
      plaintext?.fill(0);
      throw new EnvelopeAuthenticationError(
        `the envelope under ${parsed.kid} failed authentication: it was altered or damaged, or the aad differs from the one it was encrypted with`,
        { cause },
      );
    } finally {
      dataKey.fill(0);
    }
  }

  /**
   * Moves an envelope to the newest version of the key (the current one `keyId` resolves to): unwraps the data
   * key with the version the envelope names and wraps it again. The data itself is not decrypted, so its
   * integrity is checked at the next `decrypt`, not here.
   */
  async rewrap(envelope: Uint8Array, options: Pick<EnvelopeOptions, 'signal'> = {}): Promise<RewrapResult> {
    const parsed = parseEnvelope(envelope);
    const signalOption = options.signal ? { signal: options.signal } : {};
    const target = await this.#skr.releaseKey(this.#keyId, signalOption);
    const sameKey = allowedKey(target.kid, 'released key id');
    const from = allowedKey(parsed.kid, 'envelope key id');
    if (
      sameKey.host === from.host &&
      sameKey.name.toLowerCase() === from.name.toLowerCase() &&
      versionOf(target.kid) === parsed.version.toLowerCase()
    ) {
      return { envelope: Buffer.from(envelope), from: parsed.kid, to: target.kid, changed: false };
    }
    const wrapping = wrappingFor(target);
    const source = await this.#releaseVersion(parsed, options.signal);
    const dataKey = unwrapDataKey(parsed, source);
    try {
      const header = buildHeader(target.kid, wrapping, wrapDataKey(wrapping, target.key, dataKey), parsed.iv);
      const out = Buffer.allocUnsafe(header.length + parsed.ciphertext.length + TAG_BYTES);
      header.copy(out, 0);
      out.set(parsed.ciphertext, header.length);
      out.set(parsed.tag, header.length + parsed.ciphertext.length);
      return { envelope: out, from: parsed.kid, to: target.kid, changed: true };
    } finally {
      dataKey.fill(0);
    }
  }

  /** Releases the version an envelope names, through the vault address this cipher was configured with. */
  async #releaseVersion(parsed: ParsedEnvelope, signal: AbortSignal | undefined): Promise<ReleasedKey> {
    const named = allowedKey(parsed.kid, 'envelope key id');
    const allowed = this.#allowed.find(
      (k) => k.host === named.host && k.name.toLowerCase() === named.name.toLowerCase(),
    );
    if (!allowed) {
      throw new EnvelopeKeyError(
        `the envelope is under ${parsed.kid}, which is not ${this.#keyId}${this.#allowed.length > 1 ? ' or one of decryptKeyIds' : ''}; add its key to decryptKeyIds if it is one of yours`,
        'foreign-key',
      );
    }
    // Our configured address, not the envelope's: an envelope must not steer where tokens are sent.
    const keyId = `${allowed.vaultUrl}/keys/${allowed.name}/${parsed.version}`;
    let released: ReleasedKey;
    try {
      released = await this.#skr.releaseKey(keyId, signal ? { signal } : {});
    } catch (error) {
      throw (await this.#unavailable(error, parsed, allowed)) ?? error;
    }
    if (versionOf(released.kid) !== parsed.version.toLowerCase()) {
      throw new EnvelopeKeyError(
        `asked for version ${parsed.version} of ${allowed.name}, got ${released.kid}`,
        'foreign-key',
      );
    }
    return released;
  }

  /** Turns a refused release of an old version into an error that names the version and the fix. */
  async #unavailable(
    error: unknown,
    parsed: ParsedEnvelope,
    key: AllowedKey,
  ): Promise<KeyVersionUnavailableError | undefined> {
    if (!(error instanceof CvmSkrError)) return undefined;
    // SecureKeyRelease may already have classified the refusal; the envelope adds the fix for its data.
    const classified = error instanceof KeyVersionUnavailableError ? error.reason : undefined;
    const status = (error as { statusCode?: unknown }).statusCode;
    if (status !== 403 && status !== 404 && !classified) return undefined;
    const text = causeText(error);
    let reason: KeyVersionUnavailableError['reason'] | undefined = classified;
    let when: Date | undefined;
    if (this.#inspector) {
      try {
        const { properties } = await this.#inspector.getKey(key.name, { version: parsed.version });
        const now = Date.now();
        if (properties.enabled === false) reason = 'disabled';
        else if (
          properties.expiresOn &&
          (properties.expiresOn.getTime() <= now || /validity|expired/i.test(text))
        ) {
          reason = 'expired';
          when = properties.expiresOn;
        } else if (properties.notBefore && (properties.notBefore.getTime() > now || /validity/i.test(text))) {
          reason = 'not-yet-valid';
          when = properties.notBefore;
        }
      } catch (inspectError) {
        if ((inspectError as { statusCode?: unknown }).statusCode === 404) reason = 'not-found';
      }
    }
    if (reason === undefined) {
      if (/disabled/i.test(text)) reason = 'disabled';
      else if (/expired|validity period/i.test(text)) reason = 'expired';
      else if (status === 404) reason = 'not-found';
      else return undefined;
    }
    const vault = key.host.split('.')[0] ?? key.host;
    const version = parsed.version;
    const which = `version ${version} of key ${key.name} (${parsed.kid})`;
    const setAttributes = `az keyvault key set-attributes --vault-name ${vault} --name ${key.name} --version ${version}`;
    const messages: Record<KeyVersionUnavailableError['reason'], string> = {
      disabled: `${which} is disabled, so Key Vault does not release it and data under it cannot be decrypted. Re-enable that version (${setAttributes} --enabled true) to read the data; rewrap envelopes to the current version (EnvelopeCipher.rewrap) before disabling old versions`,
      expired: `${which} expired${when ? ` on ${when.toISOString()}` : ''}, and Key Vault does not release a key outside its validity period. Extend its expiry (${setAttributes} --expires <date>) to read the data, then rewrap the envelopes to the current version`,
      'not-yet-valid': `${which} is not valid yet${when ? ` (not before ${when.toISOString()})` : ''}, so Key Vault does not release it; check its activation date (${setAttributes} --not-before <date>)`,
      'not-found': `${which} does not exist in the vault: the key was deleted or purged, or the envelope names a wrong version. Recover a soft-deleted key (az keyvault key recover --vault-name ${vault} --name ${key.name}) or restore it from a backup`,
    };
    return new KeyVersionUnavailableError(
      messages[reason],
      { kid: parsed.kid, version, reason },
      { cause: error },
    );
  }
}
