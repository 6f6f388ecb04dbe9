/**
 * The emulated "vTPM CA" that issues AK certificates, standing in for the Azure CA that certifies each
 * confidential VM's AK. RSA-2048, RSASSA-PKCS1-v1_5 SHA-256; cached with the emulated AMD hierarchy (see
 * `cache.ts`) so AK certificates written into a swtpm stay verifiable by a later emulator process.
 */
import { createPrivateKey, type KeyObject, randomBytes, webcrypto } from 'node:crypto';
import { EmulatorError } from '../errors.js';
import { x509 } from '../x509.js';
import { emulatorCacheDir, loadCachedOnce } from '../cache.js';

const ALG = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CACHE_NAME = 'emulated-vtpm-ak-ca.json';

/** The cache file's JSON (also what `GET /emulator/hardware` serves as `akCa`): emulator-only key material. */
export interface CachedCa {
  version: 1;
  certPem: string;
  keyPem: string;
}

function serial(): string {
  const b = randomBytes(12);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function generate(): Promise<CachedCa> {
  const keys = (await webcrypto.subtle.generateKey(
    { ...ALG, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=cvm-skr emulator vTPM AK CA, O=cvm-skr emulator',
    keys,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 20 * 365 * DAY_MS),
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8' })
    .toString();
  return { version: 1, certPem: cert.toString('pem'), keyPem };
}


export class EmulatedAkCa {
  readonly certPem: string;
  readonly #key: webcrypto.CryptoKey;
  readonly #subject: string;
  readonly #state: CachedCa;

  private constructor(state: CachedCa, key: webcrypto.CryptoKey) {
    this.#state = state;
    const certPem = state.certPem;
    this.certPem = certPem;
    this.#key = key;
    this.#subject = new x509.X509Certificate(certPem).subject;
  }

  /** Loads the cached CA or makes one. `cache: false` keeps it in memory. */
  static async load(options: { cache?: string | false } = {}): Promise<EmulatedAkCa> {
    const cache = options.cache === undefined ? emulatorCacheDir() : options.cache;
    const state = await loadCachedOnce(
      cache,
      CACHE_NAME,
      (c: CachedCa | undefined): c is CachedCa =>
        c?.version === 1 && typeof c.certPem === 'string' && typeof c.keyPem === 'string',
      generate,
    );
    return EmulatedAkCa.#fromState(state);
  }

  static async #fromState(state: CachedCa): Promise<EmulatedAkCa> {
    const der = createPrivateKey(state.keyPem).export({ format: 'der', type: 'pkcs8' });
    const signing = await webcrypto.subtle.importKey('pkcs8', der, ALG, false, ['sign']);
    return new EmulatedAkCa(state, signing);
  }

  /** The CA from a cache document (`toDocument()` of another process, e.g. `GET /emulator/hardware`). */
  static async fromDocument(document: unknown): Promise<EmulatedAkCa> {
    const doc = document as CachedCa | undefined;
    if (
      typeof doc !== 'object' ||
      doc === null ||
      doc.version !== 1 ||
      typeof doc.certPem !== 'string' ||
      typeof doc.keyPem !== 'string'
    ) {
      throw new EmulatorError('the emulated vTPM AK CA document is not version 1 with certPem and keyPem');
    }
    try {
      new x509.X509Certificate(doc.certPem);
      return await EmulatedAkCa.#fromState({ version: 1, certPem: doc.certPem, keyPem: doc.keyPem });
    } catch (error) {
      throw new EmulatorError('the emulated vTPM AK CA document holds no usable certificate and key', {
        cause: error,
      });
    }
  }

  /** Emulator-only: the cache document of this CA, private key included. */
  toDocument(): CachedCa {
    return { ...this.#state };
  }

  /** An AK certificate (DER) for `akPublicKey`, valid from a day ago for a year unless `validity` says otherwise. */
  async issue(
    akPublicKey: KeyObject,
    subject = 'CN=cvm-skr emulator vTPM AK, O=cvm-skr emulator',
    validity: { notBefore?: Date; notAfter?: Date } = {},
  ): Promise<Uint8Array> {
    const spki = akPublicKey.export({ format: 'der', type: 'spki' });
    const publicKey = await webcrypto.subtle.importKey('spki', spki, ALG, true, ['verify']);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject,
      issuer: this.#subject,
      publicKey,
      signingKey: this.#key,
      notBefore: validity.notBefore ?? new Date(now - DAY_MS),
      notAfter: validity.notAfter ?? new Date(now + 365 * DAY_MS),
      signingAlgorithm: ALG,
      extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
    });
    return new Uint8Array(cert.rawData);
  }
}

/**
 * Issuer of the placeholder AK certificate, in the form Microsoft's guest library recognises
 * (Azure/confidential-computing-cvm-guest-attestation client-library/src/Attestation/AttestationClient/lib/
 * TpmCertOperations.cpp: an issuer containing "/CN=MICROSOFT AZURE TRUSTED VM RSA" is "not provisioned yet").
 * The rest of the name is the emulator's own; no real certificate was available to copy it from.
 */
export const EMULATED_PLACEHOLDER_AK_ISSUER = 'CN=MICROSOFT AZURE TRUSTED VM RSA CA (cvm-skr emulator placeholder)';

/**
 * A placeholder AK certificate (DER) for `akPublicKey`, as a confidential VM carries before its own is
 * provisioned: issued by a throwaway key under EMULATED_PLACEHOLDER_AK_ISSUER.
 */
export async function issuePlaceholderAkCertificate(akPublicKey: KeyObject): Promise<Uint8Array> {
  const keys = (await webcrypto.subtle.generateKey(
    { ...ALG, modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) },
    true,
    ['sign', 'verify'],
  )) as webcrypto.CryptoKeyPair;
  const spki = akPublicKey.export({ format: 'der', type: 'spki' });
  const publicKey = await webcrypto.subtle.importKey('spki', spki, ALG, true, ['verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'CN=cvm-skr emulator vTPM AK (placeholder), O=cvm-skr emulator',
    issuer: EMULATED_PLACEHOLDER_AK_ISSUER,
    publicKey,
    signingKey: keys.privateKey,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + 365 * DAY_MS),
    signingAlgorithm: ALG,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  return new Uint8Array(cert.rawData);
}
