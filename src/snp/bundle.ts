import type { SnpCertificate } from './certificate.js';
import type { SnpCertificates } from './certificates.js';
import { trustStoreFor, verifiedChain } from './chain.js';
import type { SnpSigner } from './report.js';
import type { TrustedRootInput } from './roots.js';

export function certificateToPem(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

/**
 * The PEM bundle an attestation service expects for a report: signing leaf, intermediate, root. When the chain
 * can be built to a trusted root (embedded ASK/ARK fill in what the source lacked) that path is used; otherwise
 * the leaf and whatever came with it, in the order given.
 */
export function certificateBundlePem(
  certs: SnpCertificates,
  signer: SnpSigner,
  trustedRoots?: readonly TrustedRootInput[],
): string {
  const leaf = certs.leaves.find((l) => l.kind === signer) ?? certs.leaves[0];
  if (leaf === undefined) return '';
  let path: readonly SnpCertificate[];
  try {
    path = verifiedChain(leaf.cert, certs.others, trustStoreFor(trustedRoots)).path;
  } catch {
    path = [leaf.cert, ...certs.others];
  }
  return path.map((c) => certificateToPem(c.der)).join('');
}
