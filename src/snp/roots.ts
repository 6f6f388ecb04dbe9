import { readFileSync } from 'node:fs';
import { InvalidArgumentError, SnpCertificateError } from '../errors.js';
import { parseCertificate, parsePemCertificates, type SnpCertificate } from './certificate.js';
import { SNP_PRODUCTS, type SnpProduct } from './tcb.js';

/** A trust anchor: a self-signed root plus the intermediates (ASK, ASVK) known to chain to it. */
export interface TrustedRoot {
  readonly root: SnpCertificate;
  readonly intermediates: readonly SnpCertificate[];
  /** The product the root stands for; undefined for caller roots that did not say. */
  readonly product?: SnpProduct;
  /** True for the AMD roots shipped inside this package. */
  readonly embedded: boolean;
}

/** A root the caller adds (e.g. the emulator's): PEM text or DER, root plus optional intermediates. */
export type TrustedRootInput =
  | string
  | Uint8Array
  | { certificates: string | Uint8Array; product?: SnpProduct };

let embedded: readonly TrustedRoot[] | undefined;

function loadAsset(name: string): SnpCertificate[] {
  // Relative to this module, so the same path works from src/ (tsx) and from dist/.
  const url = new URL(`../../assets/amd/${name}`, import.meta.url);
  let text: string;
  try {
    text = readFileSync(url, 'utf8');
  } catch (error) {
    throw new SnpCertificateError(`embedded AMD certificate file ${name} is missing from the package`, {
      cause: error,
    });
  }
  return parsePemCertificates(text, name);
}

/** The AMD ARKs of Milan, Genoa and Turin with their ASK and ASVK, from the package's assets. */
export function embeddedAmdRoots(): readonly TrustedRoot[] {
  if (embedded !== undefined) return embedded;
  const roots: TrustedRoot[] = [];
  for (const product of SNP_PRODUCTS) {
    const name = product.toLowerCase();
    const [ask, arkA] = loadAsset(`ask-ark-${name}.pem`);
    const [asvk, arkB] = loadAsset(`asvk-ark-${name}.pem`);
    if (!ask || !arkA || !asvk || !arkB || arkA.fingerprint !== arkB.fingerprint || !arkA.selfIssued) {
      throw new SnpCertificateError(
        `embedded AMD chains for ${product} are inconsistent; reinstall the package`,
      );
    }
    roots.push({ root: arkA, intermediates: [ask, asvk], product, embedded: true });
  }
  embedded = roots;
  return roots;
}

function certificatesOf(value: string | Uint8Array): SnpCertificate[] {
  if (typeof value === 'string') return parsePemCertificates(value, 'trusted root');
  const text = Buffer.from(value).toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----')) return parsePemCertificates(text, 'trusted root');
  return [parseCertificate(value, 'trusted root')];
}

/** Turns caller roots into trust anchors: each input needs exactly one self-signed certificate. */
export function trustedRootsFrom(inputs: readonly TrustedRootInput[]): TrustedRoot[] {
  return inputs.map((input, i) => {
    const { certificates, product } =
      typeof input === 'string' || input instanceof Uint8Array
        ? { certificates: input, product: undefined }
        : input;
    const certs = certificatesOf(certificates);
    const selfIssued = certs.filter((c) => c.selfIssued);
    const [root] = selfIssued;
    if (root === undefined || selfIssued.length !== 1) {
      throw new InvalidArgumentError(`trusted root ${i} must contain exactly one self-signed certificate`);
    }
    const trusted: TrustedRoot = {
      root,
      intermediates: certs.filter((c) => c !== root),
      embedded: false,
      ...(product === undefined ? {} : { product }),
    };
    return trusted;
  });
}
