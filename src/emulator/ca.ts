/**
 * The emulator's certificate authority: one self-signed root per emulator instance (or loaded from saved
 * state) that issues loopback TLS server certificates and signing certificates (release JWS `x5c`, attestation
 * token signing). Every subject carries "cvm-skr emulator" so it is obvious what it is; nothing in the library
 * trusts this CA unless a caller passes its PEM explicitly.
 */
import 'reflect-metadata';
import { createHash, createPrivateKey, type KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { EmulatorError } from './errors.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Organisation name in every emulator certificate subject. */
export const EMULATOR_ORGANIZATION = 'cvm-skr emulator';

const EC_ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const RSA_ALG = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256',
} as const;

const DAY_MS = 24 * 3600 * 1000;

export interface IssuedCertificate {
  certPem: string;
  certDer: Buffer;
  /** PKCS#8 PEM of the private key; for TLS servers and signers inside the emulator only. */
  keyPem: string;
  privateKey: KeyObject;
  /** Leaf, the intermediate (release signers only), then the root: base64 DER, as in a JWS/JWK `x5c`. */
  x5c: string[];
  /** base64url SHA-1 thumbprint of the leaf (JWS `x5t`). */
  x5t: string;
  /** base64url SHA-256 thumbprint of the leaf (JWS `x5t#S256`). */
  x5tS256: string;
}

export interface ServerCertificateOptions {
  /** Extra DNS names besides `localhost`. */
  dnsNames?: string[];
  /** Extra IP addresses besides 127.0.0.1 and ::1. */
  ipAddresses?: string[];
  commonName?: string;
}

export interface SigningCertificateOptions {
  commonName: string;
  /** `rsa` (RS256, 2048 bits) or `ec` (ES256). Default `rsa`. */
  keyType?: 'rsa' | 'ec';
  /** Hosts the signer speaks for (subject alternative names), e.g. the vault host a release answer names. */
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** A Key Vault release signer: names the vault it signs for (DNS or IP subject alternative names). */
export interface ReleaseSigningCertificateOptions {
  commonName: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /**
   * Issue time (the vault's clock, e.g. the emulator's virtual clock): the signer and, when the one it has is
   * not valid then, the issuing CA are valid from a day before it. Default: the system time.
   */
  now?: Date;
}

export interface SavedEmulatorCa {
  certPem: string;
  keyPem: string;
}

function randomSerial(): string {
  // Positive 16-byte serial: clear the top bit so DER does not read it as negative.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return Buffer.from(bytes).toString('hex');
}

function pemOfKey(der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN PRIVATE KEY-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
}

/** DNS and IP subject alternative names of a leaf certificate. */
function subjectAltNames(options: { dnsNames?: string[]; ipAddresses?: string[] }): x509.JsonGeneralName[] {
  return [
    ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
}

/** Every certificate the emulator issues says it is the emulator's. */
function emulatorCommonName(commonName: string): string {
  return commonName.includes(EMULATOR_ORGANIZATION) ? commonName : `${EMULATOR_ORGANIZATION} ${commonName}`;
}

export class EmulatorCa {
  readonly certPem: string;
  readonly certDer: Buffer;
  readonly #cert: x509.X509Certificate;
  readonly #key: CryptoKey;
  readonly #keyPem: string;
  #intermediate: Promise<{ cert: x509.X509Certificate; key: CryptoKey }> | undefined;

  private constructor(cert: x509.X509Certificate, key: CryptoKey, keyPem: string) {
    this.#cert = cert;
    this.#key = key;
    this.#keyPem = keyPem;
    this.certDer = Buffer.from(cert.rawData);
    this.certPem = cert.toString('pem');
  }

  /** Generates a fresh root (ECDSA P-256, valid 10 years). */
  static async create(commonName = `${EMULATOR_ORGANIZATION} CA`): Promise<EmulatorCa> {
    const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: [commonName] }, { O: [EMULATOR_ORGANIZATION] }],
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + 3650 * DAY_MS),
      keys,
      signingAlgorithm: EC_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    return new EmulatorCa(cert, keys.privateKey, pemOfKey(pkcs8));
  }

  /** Loads a root saved with `toJSON()`, so clients that trust it keep working across restarts. */
  static async load(saved: SavedEmulatorCa): Promise<EmulatorCa> {
    try {
      const cert = new x509.X509Certificate(saved.certPem);
      if (!cert.subject.includes(EMULATOR_ORGANIZATION)) {
        throw new EmulatorError('saved CA certificate is not a cvm-skr emulator CA');
      }
      const der = createPrivateKey(saved.keyPem).export({ format: 'der', type: 'pkcs8' });
      const key = await webcrypto.subtle.importKey('pkcs8', der, EC_ALG, true, ['sign']);
      return new EmulatorCa(cert, key, saved.keyPem);
    } catch (cause) {
      if (cause instanceof EmulatorError) throw cause;
      throw new EmulatorError('saved emulator CA cannot be loaded: check the certificate and key PEM', {
        cause,
      });
    }
  }

  toJSON(): SavedEmulatorCa {
    return { certPem: this.certPem, keyPem: this.#keyPem };
  }

  get subject(): string {
    return this.#cert.subject;
  }

  async #issue(
    commonName: string,
    keys: CryptoKeyPair,
    extensions: x509.Extension[],
    validDays: number,
    via?: { cert: x509.X509Certificate; key: CryptoKey },
    now: number = Date.now(),
  ): Promise<IssuedCertificate> {
    const issuer = via ?? { cert: this.#cert, key: this.#key };
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ CN: [commonName] }, { O: [EMULATOR_ORGANIZATION] }],
      issuer: issuer.cert.subject,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + validDays * DAY_MS),
      publicKey: keys.publicKey,
      signingKey: issuer.key,
      signingAlgorithm: EC_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ...extensions,
      ],
    });
    const der = Buffer.from(cert.rawData);
    const keyPem = pemOfKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    return {
      certPem: cert.toString('pem'),
      certDer: der,
      keyPem,
      privateKey: createPrivateKey(keyPem),
      x5c: [
        der.toString('base64'),
        ...(via ? [Buffer.from(via.cert.rawData).toString('base64')] : []),
        this.certDer.toString('base64'),
      ],
      x5t: createHash('sha1').update(der).digest('base64url'),
      x5tS256: createHash('sha256').update(der).digest('base64url'),
    };
  }

  /** A TLS server certificate (ECDSA P-256) for loopback: `localhost`, 127.0.0.1 and ::1 plus extras. */
  async issueServerCertificate(options: ServerCertificateOptions = {}): Promise<IssuedCertificate> {
    const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const names: x509.JsonGeneralName[] = [
      { type: 'dns', value: 'localhost' },
      ...(options.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
      ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
    ];
    return this.#issue(
      options.commonName ?? `${EMULATOR_ORGANIZATION} TLS`,
      keys,
      [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(names, false),
      ],
      825,
    );
  }

  /** A document-signing certificate (release JWS, attestation tokens). */
  async issueSigningCertificate(options: SigningCertificateOptions): Promise<IssuedCertificate> {
    const alg = options.keyType === 'ec' ? EC_ALG : RSA_ALG;
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const names = subjectAltNames(options);
    return this.#issue(
      emulatorCommonName(options.commonName),
      keys,
      [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
      ],
      825,
    );
  }

  /**
   * An issuing CA under the root (pathLenConstraint 0), made once per process: release signers hang below it
   * so an answer's `x5c` is leaf, intermediate, root, as Key Vault's are (test/fixtures/real-release/*.jws:
   * "Microsoft Azure TLS Issuing CA 01" under "DigiCert Global Root G2", with KU keyCertSign, cRLSign,
   * digitalSignature and EKU serverAuth, clientAuth). Clients trust only the root, so it need not be saved.
   */
  async #issuingCa(now: number): Promise<{ cert: x509.X509Certificate; key: CryptoKey }> {
    const current = await this.#intermediate?.catch(() => undefined);
    // A clock moved past (or before) the one there is gets a new one, as a CA is renewed before it expires.
    if (current && (now < current.cert.notBefore.getTime() || now > current.cert.notAfter.getTime() - 900 * DAY_MS))
      this.#intermediate = undefined;
    this.#intermediate ??= (async () => {
      const keys = (await webcrypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: [{ CN: [`${EMULATOR_ORGANIZATION} issuing CA`] }, { O: [EMULATOR_ORGANIZATION] }],
        issuer: this.#cert.subject,
        notBefore: new Date(now - DAY_MS),
        notAfter: new Date(now + 1825 * DAY_MS),
        publicKey: keys.publicKey,
        signingKey: this.#key,
        signingAlgorithm: EC_ALG,
        extensions: [
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature,
            true,
          ),
          new x509.ExtendedKeyUsageExtension(
            [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
            false,
          ),
          await x509.AuthorityKeyIdentifierExtension.create(this.#cert, false),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { cert, key: keys.privateKey };
    })().catch((error: unknown) => {
      this.#intermediate = undefined;
      throw error;
    });
    return this.#intermediate;
  }

  /**
   * A Key Vault release signer shaped like the real ones (test/fixtures/real-release/*.jws): a TLS server
   * certificate with an RSA-2048 key (RS256), KU digitalSignature, keyEncipherment, dataEncipherment, EKU
   * serverAuth and clientAuth, naming the vault in its SANs, issued by the intermediate; `x5c` is leaf,
   * intermediate, root.
   */
  async issueReleaseSigningCertificate(options: ReleaseSigningCertificateOptions): Promise<IssuedCertificate> {
    const keys = (await webcrypto.subtle.generateKey(RSA_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
    const names = subjectAltNames(options);
    return this.#issue(
      emulatorCommonName(options.commonName),
      keys,
      [
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature |
            x509.KeyUsageFlags.keyEncipherment |
            x509.KeyUsageFlags.dataEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension(
          [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
          false,
        ),
        ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names, false)] : []),
      ],
      825,
      await this.#issuingCa(options.now?.getTime() ?? Date.now()),
      options.now?.getTime(),
    );
  }
}
