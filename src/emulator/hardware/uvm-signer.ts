/**
 * Emulated UVM signer: signs UVM reference information for emulated confidential containers, the document a
 * container's security context holds and the attestation service checks as "UVM endorsements".
 *
 * The shape is the real one, taken from microsoft/confidential-sidecar-containers
 * pkg/common/security-context-test/reference-info-base64 (commit fa8df58aa090, a document Microsoft signed for
 * the ACI utility VM; test/fixtures/uvm/ keeps a copy):
 * - a tagged COSE_Sign1 (RFC 9052 section 4.2);
 * - protected header: alg -38 (PS384), content type "application/json", x5chain (label 33, RFC 9360) of leaf,
 *   intermediate and root, x5t (label 34: [-16 (SHA-256), digest of the leaf]), `iss` a did:x509 naming the
 *   root's SHA-256 fingerprint and the leaf's EKU 1.3.6.1.4.1.311.76.59.1.2, `feed` (the UVM product,
 *   "ContainerPlat-AMD-UVM" for ACI), `signingtime` (CBOR tag 1);
 * - payload: JSON `{"x-ms-sevsnpvm-guestsvn": "<decimal>", "x-ms-sevsnpvm-launchmeasurement": "<hex>"}`.
 * The real unprotected header carries an RFC 3161 `timestamp`; the emulator has no time-stamping authority and
 * leaves the unprotected header empty.
 *
 * Keys: RSA-3072 for the three certificates (the real root and intermediate are RSA-4096; the size is not part
 * of the wire format and smaller keys start faster), cached like the emulated AMD hierarchy (cache.ts).
 * Every subject says "cvm-skr emulator"; the real service trusts none of it.
 */
import {
  constants,
  createHash,
  createPrivateKey,
  type KeyObject,
  randomBytes,
  sign,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import cbor from 'cbor';
import { InvalidArgumentError } from '../../errors.js';
import { emulatorCacheDir, loadCachedOnce } from '../cache.js';
import { x509 } from '../x509.js';
import { EMULATED_MEASUREMENT } from './amd.js';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** The EKU the real UVM signing certificate carries and the real issuer DID names. */
export const UVM_SIGNING_EKU = '1.3.6.1.4.1.311.76.59.1.2';
/** The other EKU of the real leaf (same certificate). */
const UVM_SIGNING_EKU_SIBLING = '1.3.6.1.4.1.311.76.59.1.1';

/**
 * Feeds of emulated UVM reference information. `aci` is the real ACI feed (the sidecar's test data above).
 * No public artifact names the feed of AKS (Kata) confidential-container UVMs; `aks` is the emulator's own
 * name for it, and the emulated service maps it to the AKS compliance value.
 */
export const EMULATED_UVM_FEEDS = {
  aci: 'ContainerPlat-AMD-UVM',
  aks: 'cvm-skr-emulated-KataCC-AMD-UVM',
} as const;
export type UvmFlavour = keyof typeof EMULATED_UVM_FEEDS;

const CACHE_VERSION = 1;
const CACHE_FILE = 'emulated-uvm-signer-rsa3072.json';
const DAY_MS = 86_400_000;
const SIGN = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-384' } as const;

interface CachedUvmSigner {
  version: number;
  rootPem: string;
  intermediatePem: string;
  leafPem: string;
  leafKeyPem: string;
}

export interface UvmReferenceInfoOptions {
  /** The launch measurement (48 bytes) the reference information vouches for. Default: the emulated guest's. */
  launchMeasurement?: Uint8Array;
  /** The UVM's security version, as a decimal string in the payload. Default 100 (as in the real sample). */
  guestSvn?: number;
  /** Which UVM product: the feed. Default `aci`. */
  flavour?: UvmFlavour;
  /** `signingtime`; default now. */
  signingTime?: Date;
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x01;
  return b.toString('hex');
}

async function generate(): Promise<CachedUvmSigner> {
  const alg = { ...SIGN, modulusLength: 3072, publicExponent: new Uint8Array([1, 0, 1]) };
  const [rootKeys, interKeys, leafKeys] = (await Promise.all([
    webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']),
    webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']),
    webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']),
  ])) as [CryptoKeyPair, CryptoKeyPair, CryptoKeyPair];
  const now = Date.now();
  const notBefore = new Date(now - DAY_MS);
  const notAfter = new Date(now + 25 * 365 * DAY_MS);
  const org = 'O=cvm-skr emulator, OU=Emulated UVM signer (not trusted by default)';
  const ca = (pathLength?: number) => [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
  ];
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=cvm-skr emulator Supply Chain Root, ${org}`,
    keys: rootKeys,
    notBefore,
    notAfter,
    signingAlgorithm: SIGN,
    extensions: ca(),
  });
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=cvm-skr emulator UVM Products CA, ${org}`,
    issuer: root.subject,
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: SIGN,
    extensions: ca(0),
  });
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=cvm-skr emulator ContainerPlat, ${org}`,
    issuer: intermediate.subject,
    publicKey: leafKeys.publicKey,
    signingKey: interKeys.privateKey,
    notBefore,
    notAfter,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([UVM_SIGNING_EKU_SIBLING, UVM_SIGNING_EKU]),
    ],
  });
  const leafPkcs8 = await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey);
  return {
    version: CACHE_VERSION,
    rootPem: root.toString('pem'),
    intermediatePem: intermediate.toString('pem'),
    leafPem: leaf.toString('pem'),
    leafKeyPem: createPrivateKey({ key: Buffer.from(leafPkcs8), format: 'der', type: 'pkcs8' })
      .export({ format: 'pem', type: 'pkcs8' })
      .toString(),
  };
}

function usable(c: CachedUvmSigner | undefined): c is CachedUvmSigner {
  if (c === undefined || c.version !== CACHE_VERSION) return false;
  if (![c.rootPem, c.intermediatePem, c.leafPem, c.leafKeyPem].every((v) => typeof v === 'string')) return false;
  try {
    return new Date(new X509Certificate(c.leafPem).validTo).getTime() > Date.now() + DAY_MS;
  } catch {
    return false;
  }
}

function loadState(cache: string | false): Promise<CachedUvmSigner> {
  return loadCachedOnce(cache, CACHE_FILE, usable, generate);
}

/** `did:x509:0:sha256:<base64url fingerprint of the CA>::eku:<oid>` (the DID:x509 method, version 0). */
export function didX509(caDer: Uint8Array, eku = UVM_SIGNING_EKU): string {
  return `did:x509:0:sha256:${createHash('sha256').update(caDer).digest('base64url')}::eku:${eku}`;
}

/** The emulated signer of UVM reference information. Create with `EmulatedUvmSigner.load()`. */
export class EmulatedUvmSigner {
  /** The `iss` of its documents, a did:x509 on its root: what the emulated service trusts. */
  readonly issuer: string;
  readonly rootPem: string;
  /** DER of leaf, intermediate, root (the x5chain order). */
  readonly #chain: Buffer[];
  readonly #key: KeyObject;

  private constructor(state: CachedUvmSigner) {
    const certs = [state.leafPem, state.intermediatePem, state.rootPem].map((p) => new X509Certificate(p));
    this.#chain = certs.map((c) => c.raw);
    this.#key = createPrivateKey(state.leafKeyPem);
    this.rootPem = state.rootPem;
    this.issuer = didX509(this.#chain[2]!);
  }

  /** The signer kept in the emulator cache (or memory only with `cache: false`), generated once. */
  static async load(options: { cache?: string | false } = {}): Promise<EmulatedUvmSigner> {
    const cache = options.cache === undefined ? emulatorCacheDir() : options.cache;
    return new EmulatedUvmSigner(await loadState(cache));
  }

  /** UVM reference information (tagged COSE_Sign1 bytes) for a launch measurement. */
  sign(options: UvmReferenceInfoOptions = {}): Uint8Array {
    const measurement = options.launchMeasurement ?? EMULATED_MEASUREMENT;
    if (measurement.length !== 48) throw new InvalidArgumentError('a launch measurement is 48 bytes');
    const svn = options.guestSvn ?? 100;
    if (!Number.isSafeInteger(svn) || svn < 0) throw new InvalidArgumentError('guestSvn must be a non-negative integer');
    const flavour = options.flavour ?? 'aci';
    const feed = EMULATED_UVM_FEEDS[flavour];
    if (feed === undefined) throw new InvalidArgumentError(`unknown UVM flavour ${String(flavour)}`);
    const signingTime = Math.floor((options.signingTime ?? new Date()).getTime() / 1000);
    const protectedHeader = new Map<number | string, unknown>([
      [1, -38],
      [3, 'application/json'],
      [33, this.#chain],
      [34, [-16, createHash('sha256').update(this.#chain[0]!).digest()]],
      ['iss', this.issuer],
      ['feed', feed],
      ['signingtime', new cbor.Tagged(1, signingTime)],
    ]);
    const protectedBytes = cbor.encode(protectedHeader);
    const payload = Buffer.from(
      JSON.stringify(
        {
          'x-ms-sevsnpvm-guestsvn': String(svn),
          'x-ms-sevsnpvm-launchmeasurement': Buffer.from(measurement).toString('hex'),
        },
        null,
        2,
      ),
      'utf8',
    );
    const toBeSigned = cbor.encode(['Signature1', protectedBytes, Buffer.alloc(0), payload]);
    const signature = sign('sha384', toBeSigned, {
      key: this.#key,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 48,
    });
    return new Uint8Array(
      cbor.encode(new cbor.Tagged(18, [protectedBytes, new Map(), payload, signature])),
    );
  }
}
