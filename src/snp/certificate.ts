import { createHash, type KeyObject, X509Certificate as NodeX509 } from 'node:crypto';
import { SnpCertificateError } from '../errors.js';
import { x509 } from './x509.js';

/** One parsed certificate: the library view (extensions, names) and node's (signature checks, keys). */
export interface SnpCertificate {
  readonly der: Uint8Array;
  /** SHA-256 of the DER, hex. */
  readonly fingerprint: string;
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly publicKey: KeyObject;
  readonly selfIssued: boolean;
  readonly cert: x509.X509Certificate;
  readonly nodeCert: NodeX509;
}

export function parseCertificate(der: Uint8Array, what = 'certificate'): SnpCertificate {
  let cert: x509.X509Certificate;
  let nodeCert: NodeX509;
  try {
    cert = new x509.X509Certificate(der);
    nodeCert = new NodeX509(der);
  } catch (error) {
    throw new SnpCertificateError(`${what} is not a DER X.509 certificate`, { cause: error });
  }
  return {
    der,
    fingerprint: createHash('sha256').update(der).digest('hex'),
    subject: cert.subject,
    issuer: cert.issuer,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    publicKey: nodeCert.publicKey,
    selfIssued: cert.subject === cert.issuer,
    cert,
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
