/**
 * A JSON Web Key (RFC 7517 section 4; RSA, EC and oct members of RFC 7518 section 6) as node:crypto reads
 * (`createPublicKey({ key, format: 'jwk' })`) and writes (`key.export({ format: 'jwk' })`) it.
 *
 * The library's own type, not node:crypto's `JsonWebKey`: that export is gone from the newest @types/node, and
 * a public type naming it would fail to compile for a user on those types (scripts/consumer-check.sh compiles
 * the README examples against @types/node 20 and the latest).
 */
export interface Jwk {
  kty?: string;
  kid?: string;
  use?: string;
  key_ops?: string[];
  alg?: string;
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
  d?: string;
  p?: string;
  q?: string;
  dp?: string;
  dq?: string;
  qi?: string;
  k?: string;
  [member: string]: unknown;
}
