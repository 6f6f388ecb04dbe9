/**
 * Emulated AMD: an ARK -> ASK -> VCEK hierarchy shaped like AMD's (RSA ARK and ASK signing with RSASSA-PSS
 * SHA-384, salt 48; P-384 VCEK with the 1.3.6.1.4.1.3704.1.* extensions for product, TCB and hwID) and SNP
 * reports signed the way the firmware signs them. Every subject says "cvm-skr emulator"; nothing trusts the
 * emulated ARK unless a caller passes `trustedRoot` explicitly.
 *
 * Key material and speed: the ARK and ASK are RSA-4096 like AMD's by default. Generating two RSA-4096 keys
 * takes seconds, so they are generated once per user and kept in the emulator cache folder (see `cache.ts`:
 * `$CVM_SKR_EMULATOR_CACHE`, `$XDG_CACHE_HOME/cvm-skr` or `~/.cache/cvm-skr`, mode 0700), together with the
 * emulated chip's secret. `rootKeyBits: 2048` gives smaller emulator-only keys for a fast start without a
 * cache (`cache: false`, as the tests do). Like hardware, the VCEK's private key is derived from the chip
 * secret and the TCB, so every process that loads the same cache signs with the same VCEK for a given TCB.
 */
import {
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
  webcrypto,
} from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import { EmulatorError } from '../errors.js';
import { encodeSnpReport, type SnpReportFields, signSnpReport } from '../../snp/build.js';
import { parseSnpReport, type SnpReport } from '../../snp/report.js';
import type { TrustedRootInput } from '../../snp/roots.js';
import { decodeTcb, encodeTcb, type SnpProduct, type TcbVersion } from '../../snp/tcb.js';
import { x509 } from '../x509.js';
import { emulatorCacheDir, loadCachedOnce } from '../cache.js';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export type TcbParts = Omit<TcbVersion, 'raw'>;

/** TCB the emulated chip reports by default, per product (plausible current values, not AMD's list). */
export const EMULATED_DEFAULT_TCB: Readonly<Record<SnpProduct, TcbParts>> = {
  Milan: { bootloader: 4, tee: 0, snp: 23, microcode: 213 },
  Genoa: { bootloader: 9, tee: 0, snp: 23, microcode: 72 },
  Turin: { fmc: 1, bootloader: 1, tee: 1, snp: 2, microcode: 4 },
};

/** An older TCB for the "old TCB" knob: SNP firmware and microcode one SPL lower than the default. */
export function olderTcb(product: SnpProduct, tcb: TcbParts = EMULATED_DEFAULT_TCB[product]): TcbParts {
  return { ...tcb, snp: Math.max(0, tcb.snp - 1), microcode: Math.max(0, tcb.microcode - 1) };
}

/** The launch measurement of emulated guests unless a caller sets another. */
export const EMULATED_MEASUREMENT = createHash('sha384').update('cvm-skr emulated guest image').digest();

const CPUID: Record<SnpProduct, { family: number; model: number; stepping: number }> = {
  Milan: { family: 0x19, model: 0x01, stepping: 0x01 },
  Genoa: { family: 0x19, model: 0x11, stepping: 0x01 },
  Turin: { family: 0x1a, model: 0x02, stepping: 0x00 },
};
const PRODUCT_NAME: Record<SnpProduct, string> = { Milan: 'Milan-B0', Genoa: 'Genoa-B1', Turin: 'Turin-C0' };

const OID = '1.3.6.1.4.1.3704.1';
const PSS_SIGN = { name: 'RSA-PSS', saltLength: 48 } as const;
const DAY_MS = 86_400_000;
const CACHE_VERSION = 1;

export interface EmulatedAmdOptions {
  /** Default Milan. */
  product?: SnpProduct;
  /** TCB the chip reports (and its default VCEK certifies). Default `EMULATED_DEFAULT_TCB[product]`. */
  tcb?: Partial<TcbParts>;
  /** RSA size of the emulated ARK and ASK. Default 4096 (AMD's); smaller keys only speed up a cold start. */
  rootKeyBits?: 2048 | 3072 | 4096;
  /** Cache folder, or `false` to keep the hierarchy in memory only. Default: `emulatorCacheDir()`. */
  cache?: string | false;
}

/** The cache file's JSON (also what `GET /emulator/hardware` serves as `amd`): emulator-only key material. */
export interface CachedAmd {
  version: number;
  product: SnpProduct;
  bits: number;
  arkPem: string;
  arkKeyPem: string;
  askPem: string;
  askKeyPem: string;
  /** hex; the emulated chip's secret, from which chip_id and VCEK keys derive. */
  chipSecret: string;
}

export interface EmulatedVcek {
  tcb: TcbVersion;
  certPem: string;
  /** VCEK, ASK, ARK as one PEM bundle (THIM / KDS order). */
  chainPem: string;
  privateKey: KeyObject;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

function pkcs8Pem(der: ArrayBuffer): string {
  return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' })
    .export({ format: 'pem', type: 'pkcs8' })
    .toString();
}

async function importPssKey(pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' });
  return webcrypto.subtle.importKey('pkcs8', der, { name: 'RSA-PSS', hash: 'SHA-384' }, true, ['sign']);
}

const derUint8 = (n: number): Uint8Array => {
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new InvalidArgumentError(`TCB SPL ${n} is not 0-255`);
  return n >= 0x80 ? Uint8Array.of(0x02, 2, 0, n) : Uint8Array.of(0x02, 1, n);
};
const derIa5 = (s: string): Uint8Array => Uint8Array.of(0x16, s.length, ...Buffer.from(s, 'latin1'));

// P-384 group order: a derived scalar must be below it (and nonzero).
const P384_N = BigInt(
  '0xffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973',
);

function deriveVcekKey(chipSecret: Buffer, tcbRaw: bigint): KeyObject {
  const info = Buffer.alloc(8);
  info.writeBigUInt64LE(tcbRaw);
  for (let counter = 0; counter < 16; counter++) {
    const d = Buffer.from(
      hkdfSync('sha384', chipSecret, Buffer.from(`cvm-skr emulated VCEK ${counter}`), info, 48),
    );
    const scalar = BigInt(`0x${d.toString('hex')}`);
    if (scalar === 0n || scalar >= P384_N) continue;
    const ecdh = createECDH('secp384r1');
    ecdh.setPrivateKey(d);
    const point = ecdh.getPublicKey();
    return createPrivateKey({
      key: {
        kty: 'EC',
        crv: 'P-384',
        d: d.toString('base64url'),
        x: point.subarray(1, 49).toString('base64url'),
        y: point.subarray(49, 97).toString('base64url'),
      },
      format: 'jwk',
    });
  }
  throw new EmulatorError('could not derive a VCEK key from the emulated chip secret');
}

async function generateRoot(product: SnpProduct, bits: number): Promise<CachedAmd> {
  const alg = {
    name: 'RSA-PSS',
    modulusLength: bits,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: 'SHA-384',
  };
  const [arkKeys, askKeys] = (await Promise.all([
    webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']),
    webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']),
  ])) as [CryptoKeyPair, CryptoKeyPair];
  const now = Date.now();
  const notBefore = new Date(now - DAY_MS);
  const notAfter = new Date(now + 25 * 365 * DAY_MS);
  const org = 'O=cvm-skr emulator, OU=Emulated AMD (not trusted by default)';
  const ark = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=cvm-skr emulator ARK-${product}, ${org}`,
    keys: arkKeys,
    notBefore,
    notAfter,
    signingAlgorithm: PSS_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const ask = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=cvm-skr emulator SEV-${product}, ${org}`,
    issuer: ark.subject,
    publicKey: askKeys.publicKey,
    signingKey: arkKeys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: PSS_SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const [arkPkcs8, askPkcs8] = await Promise.all([
    webcrypto.subtle.exportKey('pkcs8', arkKeys.privateKey),
    webcrypto.subtle.exportKey('pkcs8', askKeys.privateKey),
  ]);
  return {
    version: CACHE_VERSION,
    product,
    bits,
    arkPem: ark.toString('pem'),
    arkKeyPem: pkcs8Pem(arkPkcs8),
    askPem: ask.toString('pem'),
    askKeyPem: pkcs8Pem(askPkcs8),
    chipSecret: randomBytes(32).toString('hex'),
  };
}

function usable(c: CachedAmd | undefined, product: SnpProduct, bits: number): c is CachedAmd {
  return (
    c !== undefined &&
    c.version === CACHE_VERSION &&
    c.product === product &&
    c.bits === bits &&
    [c.arkPem, c.arkKeyPem, c.askPem, c.askKeyPem, c.chipSecret].every((v) => typeof v === 'string') &&
    new x509.X509Certificate(c.askPem).notAfter.getTime() > Date.now() + DAY_MS
  );
}

function loadRoot(product: SnpProduct, bits: number, cache: string | false): Promise<CachedAmd> {
  return loadCachedOnce<CachedAmd>(
    cache,
    `emulated-amd-${product.toLowerCase()}-rsa${bits}.json`,
    (c): c is CachedAmd => usable(c, product, bits),
    () => generateRoot(product, bits),
  );
}

/** An emulated AMD chip with its certificate hierarchy. Create with `EmulatedAmd.load()`. */
export class EmulatedAmd {
  readonly product: SnpProduct;
  /** The TCB the chip reports by default. */
  readonly tcb: TcbVersion;
  /** 64 bytes as in reports (Turin: 8 significant bytes, then zeros). */
  readonly chipId: Uint8Array;
  readonly arkPem: string;
  readonly askPem: string;
  readonly #askKey: CryptoKey;
  readonly #chipSecret: Buffer;
  readonly #vceks = new Map<bigint, Promise<EmulatedVcek>>();
  readonly #trustedRoot: TrustedRootInput;
  readonly #state: CachedAmd;

  private constructor(state: CachedAmd, askKey: CryptoKey, tcb: TcbParts) {
    this.#state = state;
    this.product = state.product;
    this.tcb = decodeTcb(encodeTcb(tcb, state.product), state.product);
    this.#chipSecret = Buffer.from(state.chipSecret, 'hex');
    const chip = new Uint8Array(64);
    const derived = createHash('sha512').update(this.#chipSecret).update('chip_id').digest();
    chip.set(state.product === 'Turin' ? derived.subarray(0, 8) : derived);
    this.chipId = chip;
    this.arkPem = state.arkPem;
    this.askPem = state.askPem;
    this.#askKey = askKey;
    this.#trustedRoot = { certificates: `${state.arkPem}\n${state.askPem}`, product: state.product };
  }

  static async load(options: EmulatedAmdOptions = {}): Promise<EmulatedAmd> {
    const product = options.product ?? 'Milan';
    if (!(product in CPUID)) throw new InvalidArgumentError(`unknown product ${String(product)}`);
    const bits = options.rootKeyBits ?? 4096;
    if (![2048, 3072, 4096].includes(bits))
      throw new InvalidArgumentError('rootKeyBits must be 2048, 3072 or 4096');
    const cache = options.cache === undefined ? emulatorCacheDir() : options.cache;
    const state = await loadRoot(product, bits, cache);
    const askKey = await importPssKey(state.askKeyPem);
    return new EmulatedAmd(state, askKey, { ...EMULATED_DEFAULT_TCB[product], ...options.tcb });
  }

  /**
   * The chip from a cache document (`toDocument()` of another process, e.g. the emulator's
   * `GET /emulator/hardware`), so that a client signs evidence with the same emulated chip as a `--no-cache`
   * emulator in memory. Refuses documents that are not a usable emulated hierarchy.
   */
  static async fromDocument(document: unknown, options: { tcb?: Partial<TcbParts> } = {}): Promise<EmulatedAmd> {
    const doc = document as CachedAmd | undefined;
    const product = doc?.product;
    if (typeof doc !== 'object' || doc === null || typeof product !== 'string' || !(product in CPUID)) {
      throw new EmulatorError('the emulated AMD document names no known product');
    }
    let ok = false;
    try {
      ok = usable(doc, product, doc.bits);
    } catch {
      ok = false;
    }
    if (!ok) throw new EmulatorError('the emulated AMD document is not a current emulated ARK/ASK hierarchy');
    const askKey = await importPssKey(doc.askKeyPem);
    return new EmulatedAmd(doc, askKey, { ...EMULATED_DEFAULT_TCB[product], ...options.tcb });
  }

  /** Emulator-only: the cache document of this chip, private keys and chip secret included. */
  toDocument(): CachedAmd {
    return { ...this.#state };
  }

  /** The emulated ARK (with the ASK) for `verifySnpReport({ trustedRoots })` or the emulated MAA. */
  get trustedRoot(): TrustedRootInput {
    return this.#trustedRoot;
  }

  /** TCB parts as a TCB_VERSION of this product. */
  tcbVersion(tcb: Partial<TcbParts> = {}): TcbVersion {
    return decodeTcb(encodeTcb({ ...this.tcb, ...tcb }, this.product), this.product);
  }

  /** The VCEK certifying `tcb` (default: the chip's TCB), issued once per process and TCB. */
  vcek(tcb: Partial<TcbParts> | bigint = {}): Promise<EmulatedVcek> {
    const version = typeof tcb === 'bigint' ? decodeTcb(tcb, this.product) : this.tcbVersion(tcb);
    let pending = this.#vceks.get(version.raw);
    if (pending === undefined) {
      pending = this.#issueVcek(version);
      this.#vceks.set(version.raw, pending);
      pending.catch(() => this.#vceks.delete(version.raw));
    }
    return pending;
  }

  async #issueVcek(tcb: TcbVersion): Promise<EmulatedVcek> {
    const privateKey = deriveVcekKey(this.#chipSecret, tcb.raw);
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
    const publicKey = await webcrypto.subtle.importKey(
      'spki',
      spki,
      { name: 'ECDSA', namedCurve: 'P-384' },
      true,
      ['verify'],
    );
    const ext = (suffix: string, value: Uint8Array) => new x509.Extension(`${OID}.${suffix}`, false, value);
    const extensions = [
      ext('1', derUint8(1)),
      ext('2', derIa5(PRODUCT_NAME[this.product])),
      ext('3.1', derUint8(tcb.bootloader)),
      ext('3.2', derUint8(tcb.tee)),
      ext('3.3', derUint8(tcb.snp)),
      ext('3.4', derUint8(0)),
      ext('3.5', derUint8(0)),
      ext('3.6', derUint8(0)),
      ext('3.7', derUint8(0)),
      ext('3.8', derUint8(tcb.microcode)),
    ];
    if (this.product === 'Turin') extensions.push(ext('3.9', derUint8(tcb.fmc ?? 0)));
    extensions.push(ext('4', this.product === 'Turin' ? this.chipId.subarray(0, 8) : this.chipId));
    const ask = new x509.X509Certificate(this.askPem);
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: 'CN=cvm-skr emulator SEV-VCEK, O=cvm-skr emulator, OU=Emulated AMD (not trusted by default)',
      issuer: ask.subject,
      publicKey,
      signingKey: this.#askKey,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(Math.min(now + 7 * 365 * DAY_MS, ask.notAfter.getTime())),
      signingAlgorithm: PSS_SIGN,
      extensions,
    });
    const certPem = cert.toString('pem');
    return { tcb, certPem, chainPem: `${certPem}\n${this.askPem}\n${this.arkPem}\n`, privateKey };
  }

  /**
   * The VCEK chain for a report of this chip, looked up like AMD KDS does: by chip_id and reported_tcb.
   * Undefined for reports of another chip.
   */
  async chainFor(report: Uint8Array | SnpReport): Promise<string | undefined> {
    const parsed = report instanceof Uint8Array ? parseSnpReport(report) : report;
    if (Buffer.compare(Buffer.from(parsed.chipId), Buffer.from(this.chipId)) !== 0) return undefined;
    return (await this.vcek(parsed.reportedTcb.raw)).chainPem;
  }

  /** Lays out and signs a report as this chip; `tcb` picks the reported TCB (and the VCEK that signs). */
  async signReport(fields: SnpReportFields & { tcb?: Partial<TcbParts> } = {}): Promise<Uint8Array> {
    const { tcb, ...rest } = fields;
    const vcek = await this.vcek(tcb ?? {});
    const raw = vcek.tcb.raw;
    const report = encodeSnpReport({
      version: 3,
      cpuid: CPUID[this.product],
      policy: 0x30000n,
      platformInfo: 0x1n,
      measurement: EMULATED_MEASUREMENT,
      currentVersion: { major: 1, minor: 55, build: 21 },
      committedVersion: { major: 1, minor: 55, build: 21 },
      reportId: randomBytes(32),
      ...rest,
      currentTcb: raw,
      reportedTcb: raw,
      committedTcb: raw,
      launchTcb: raw,
      chipId: this.chipId,
      signer: 'vcek',
    });
    return signSnpReport(report, vcek.privateKey);
  }
}
