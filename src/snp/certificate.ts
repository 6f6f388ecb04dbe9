/**
 * One parsed certificate. node:crypto (`X509Certificate`, OpenSSL) checks signatures and gives the key and the
 * names; src/util/der.ts reads what node does not expose (extensions by OID, the validity times, the signature
 * algorithm's parameters) without loading an ASN.1 schema library at start-up.
 */
import { createHash, type KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { type CertificateFields, readCertificate, readRsaPssParams } from '../util/der.js';
import { SnpCertificateError } from '../errors.js';

/** RFC 4055 section 3.1: id-RSASSA-PSS. */
const RSASSA_PSS = '1.2.840.113549.1.1.10';
/** RFC 4055 section 2.1: the hash OIDs a PSS parameter block may name (SHA-1 when absent). */
const HASH_NAMES: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'SHA-1',
  '2.16.840.1.101.3.4.2.1': 'SHA-256',
  '2.16.840.1.101.3.4.2.2': 'SHA-384',
  '2.16.840.1.101.3.4.2.3': 'SHA-512',
};

/** The certificate's signature algorithm: its OID and, for RSASSA-PSS, the hash and salt it names. */
export interface SignatureAlgorithm {
  oid: string;
  pss?: { hash: string; mgfHash: string; saltLength: number };
}

export interface SnpCertificate {
  readonly der: Uint8Array;
  /** SHA-256 of the DER, hex. */
  readonly fingerprint: string;
  /** Distinguished names as `C=US, O=..., CN=...` (node's order), for messages and issuer matching. */
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  readonly selfIssued: boolean;
  readonly signatureAlgorithm: SignatureAlgorithm;
  /** The DER value (inside the OCTET STRING) of the extension `oid`, or undefined when absent. */
  extension(oid: string): Uint8Array | undefined;
  readonly nodeCert: NodeX509;
}

function signatureAlgorithmOf(cert: CertificateFields): SignatureAlgorithm {
  const { oid, parameters } = cert.signatureAlgorithm;
  if (oid !== RSASSA_PSS || parameters === undefined) return { oid };
  const params = readRsaPssParams(parameters);
  return {
    oid,
    pss: {
      hash: HASH_NAMES[params.hash] ?? params.hash,
      mgfHash: HASH_NAMES[params.mgfHash] ?? params.mgfHash,
      saltLength: params.saltLength,
    },
  };
}

const names = (dn: string) => dn.split('\n').join(', ');

export function parseCertificate(der: Uint8Array, what = 'certificate'): SnpCertificate {
  let asn: CertificateFields;
  let nodeCert: NodeX509;
  let signatureAlgorithm: SignatureAlgorithm;
  try {
    nodeCert = new NodeX509(der);
    asn = readCertificate(der);
    signatureAlgorithm = signatureAlgorithmOf(asn);
  } catch (error) {
    throw new SnpCertificateError(`${what} is not a DER X.509 certificate`, { cause: error });
  }
  const extensions = new Map(asn.extensions.map((e) => [e.oid, new Uint8Array(e.value)]));
  return {
    der,
    fingerprint: createHash('sha256').update(der).digest('hex'),
    subject: names(nodeCert.subject),
    issuer: names(nodeCert.issuer),
    notBefore: asn.notBefore,
    notAfter: asn.notAfter,
    publicKey: nodeCert.publicKey,
    selfIssued: nodeCert.subject === nodeCert.issuer,
    signatureAlgorithm,
    extension: (oid) => extensions.get(oid),
    nodeCert,
  };
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block of a PEM text, in order. */
export function parsePemCertificates(pem: string, what = 'PEM bundle'): SnpCertificate[] {
  const out: SnpCertificate[] = [];
  let i = 0;
  for (const match of pem.matchAll(PEM_BLOCK)) {
    const body = (match[1] ?? '').replace(/\s+/g, '');
    out.push(parseCertificate(Buffer.from(body, 'base64'), `${what} certificate ${i++}`));
  }
  return out;
}

/** Whether `cert` is signed by `issuer`'s key (node/OpenSSL checks RSA-PSS parameters from the certificate). */
export function isSignedBy(cert: SnpCertificate, issuer: SnpCertificate): boolean {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return cert.nodeCert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}
