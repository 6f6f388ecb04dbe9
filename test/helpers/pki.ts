import { webcrypto } from 'node:crypto';
import { x509 } from '../../src/emulator/x509.js';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

const RSA = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};

export interface TestCert {
  cert: x509.X509Certificate;
  keys: CryptoKeyPair;
  /** base64 DER, as in x5c */
  b64: string;
  pem: string;
}

function wrap(cert: x509.X509Certificate, keys: CryptoKeyPair): TestCert {
  return { cert, keys, b64: Buffer.from(cert.rawData).toString('base64'), pem: cert.toString('pem') };
}

/** A self-signed test CA; `pathLength` and `keyUsage` (x509.KeyUsageFlags) add those extensions. */
export async function testCa(
  name = 'test root',
  days = 30,
  options: { pathLength?: number; keyUsage?: number } = {},
): Promise<TestCert> {
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + days * 86_400_000),
    keys,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(true, options.pathLength, true),
      ...(options.keyUsage !== undefined ? [new x509.KeyUsagesExtension(options.keyUsage, true)] : []),
    ],
  });
  return wrap(cert, keys);
}

/** A leaf signed by `issuer`, naming `dns`/`ip` in its subject alternative names. */
export async function testLeaf(
  issuer: TestCert,
  options: {
    cn?: string;
    dns?: string[];
    ip?: string[];
    notBefore?: Date;
    notAfter?: Date;
    ca?: boolean;
    pathLength?: number;
    /** x509.KeyUsageFlags bits; no key usage extension when absent. */
    keyUsage?: number;
    /** Extended key usage OIDs; none when absent. */
    extKeyUsage?: string[];
    /** The whole subject as RDNs, instead of `CN=<cn>` (for names whose attribute values hold commas). */
    subject?: x509.JsonName;
    /** Adds a critical extension with this OID (and an ASN.1 NULL value). */
    criticalExtension?: string;
  } = {},
): Promise<TestCert> {
  const keys = (await webcrypto.subtle.generateKey(RSA, true, ['sign', 'verify'])) as CryptoKeyPair;
  const names = [
    ...(options.dns ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(options.ip ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: options.subject ?? `CN=${options.cn ?? 'release signing'}`,
    issuer: issuer.cert.subject,
    notBefore: options.notBefore ?? new Date(Date.now() - 86_400_000),
    notAfter: options.notAfter ?? new Date(Date.now() + 10 * 86_400_000),
    signingKey: issuer.keys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: RSA,
    extensions: [
      new x509.BasicConstraintsExtension(options.ca ?? false, options.pathLength, true),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      ...(options.keyUsage !== undefined ? [new x509.KeyUsagesExtension(options.keyUsage, true)] : []),
      ...(options.extKeyUsage ? [new x509.ExtendedKeyUsageExtension(options.extKeyUsage)] : []),
      ...(options.criticalExtension
        ? [new x509.Extension(options.criticalExtension, true, new Uint8Array([5, 0]))]
        : []),
    ],
  });
  return wrap(cert, keys);
}
