import { EvidenceVerificationError } from '../errors.js';
import { isSignedBy, type SnpCertificate } from './certificate.js';
import { embeddedAmdRoots, type TrustedRoot, type TrustedRootInput, trustedRootsFrom } from './roots.js';
import { readVcekExtensions, type VcekExtensions } from './vcek-extensions.js';

/** The anchors one verification trusts: the embedded AMD roots plus any the caller added. */
export interface TrustStore {
  readonly id: number;
  readonly roots: readonly TrustedRoot[];
  readonly intermediates: readonly SnpCertificate[];
}

/** A leaf that chains to a trusted root, with what verification needs from it, computed once. */
export interface VerifiedChain {
  /** Leaf first, trusted root last. */
  readonly path: readonly SnpCertificate[];
  readonly root: TrustedRoot;
  readonly leaf: SnpCertificate;
  readonly extensions: VcekExtensions;
}

let nextStoreId = 0;
let defaultStore: TrustStore | undefined;
const storesByInput = new WeakMap<readonly TrustedRootInput[], TrustStore>();

function makeStore(roots: readonly TrustedRoot[]): TrustStore {
  return { id: nextStoreId++, roots, intermediates: roots.flatMap((r) => r.intermediates) };
}

/** The trust store for a verification; the same `added` array yields the same store (and warm cache). */
export function trustStoreFor(added?: readonly TrustedRootInput[]): TrustStore {
  if (added === undefined || added.length === 0) {
    defaultStore ??= makeStore(embeddedAmdRoots());
    return defaultStore;
  }
  let store = storesByInput.get(added);
  if (store === undefined) {
    store = makeStore([...embeddedAmdRoots(), ...trustedRootsFrom(added)]);
    storesByInput.set(added, store);
  }
  return store;
}

// AMD signs ASK, ASVK, VCEK and VLEK with RSASSA-PSS SHA-384, MGF1 SHA-384, salt 48; anything else under an AMD
// root is not AMD's.
function isAmdSignatureAlgorithm(cert: SnpCertificate): boolean {
  const pss = cert.signatureAlgorithm.pss;
  return pss?.hash === 'SHA-384' && pss.mgfHash === 'SHA-384' && pss.saltLength === 48;
}

const MAX_DEPTH = 4;

function build(leaf: SnpCertificate, offered: readonly SnpCertificate[], store: TrustStore): VerifiedChain {
  const path: SnpCertificate[] = [leaf];
  let current = leaf;
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    const root = store.roots.find((r) => isSignedBy(current, r.root));
    if (root !== undefined) {
      if (current.fingerprint !== root.root.fingerprint) path.push(root.root);
      if (root.embedded) {
        const odd = path.find((c) => c !== root.root && !isAmdSignatureAlgorithm(c));
        if (odd !== undefined) {
          throw new EvidenceVerificationError(
            'ERR_SNP_CHAIN',
            `${odd.subject} is not signed with RSASSA-PSS SHA-384 (salt 48) as AMD signs`,
            'certificate-chain',
          );
        }
      }
      return { path, root, leaf, extensions: readVcekExtensions(leaf) };
    }
    const named = [...offered, ...store.intermediates].filter(
      (c) => c.subject === current.issuer && !path.includes(c),
    );
    const issuer = named.find((c) => isSignedBy(current, c));
    if (issuer === undefined) {
      if (named.length > 0) {
        throw new EvidenceVerificationError(
          'ERR_SNP_CHAIN',
          `${current.subject} is not signed by any certificate named ${current.issuer}; the chain is broken`,
          'certificate-chain',
        );
      }
      throw new EvidenceVerificationError(
        'ERR_SNP_UNTRUSTED_ROOT',
        `the chain of ${leaf.subject} ends at ${current.issuer}, which is not an embedded AMD root or a trusted root the caller added`,
        'certificate-chain',
      );
    }
    if (issuer.selfIssued) {
      throw new EvidenceVerificationError(
        'ERR_SNP_UNTRUSTED_ROOT',
        `the chain of ${leaf.subject} ends in the self-signed root ${issuer.subject}, which is not an embedded AMD root or a trusted root the caller added`,
        'certificate-chain',
      );
    }
    path.push(issuer);
    current = issuer;
  }
  throw new EvidenceVerificationError(
    'ERR_SNP_CHAIN',
    `the chain of ${leaf.subject} is longer than ${MAX_DEPTH} certificates`,
    'certificate-chain',
  );
}

const cache = new Map<string, VerifiedChain>();
const CACHE_MAX = 256;

/**
 * Builds and verifies the chain from `leaf` to a trusted root, memoised per (trust store, leaf, offered
 * certificates): the RSA checks run once per VCEK, so later reports cost one ECDSA verification. Validity
 * dates are not part of the memo; the caller checks them at its own `now` every time.
 */
export function verifiedChain(
  leaf: SnpCertificate,
  offered: readonly SnpCertificate[],
  store: TrustStore,
): VerifiedChain {
  let key = `${store.id}|${leaf.fingerprint}`;
  for (const c of offered) key += `|${c.fingerprint}`;
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const chain = build(leaf, offered, store);
  if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
  cache.set(key, chain);
  return chain;
}

/** Forgets every memoised chain (tests; or after changing trust). */
export function clearChainCache(): void {
  cache.clear();
}
