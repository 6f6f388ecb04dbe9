/**
 * TPM evidence made in software with the project's own TPM structures: public areas, quotes and certify
 * results that a TPM would produce, signed with an RSA key held in node:crypto (RSASSA-PKCS1-v1_5 SHA-256, the
 * AK's scheme on Azure).
 */
import { createHash, type KeyObject, sign } from 'node:crypto';
import { InvalidArgumentError } from '../../errors.js';
import type { PcrValue } from '../../hal/types.js';
import { TPM_ALG, TPM_RH, TPM_ST, TPMA_OBJECT } from '../../tpm/constants.js';
import { marshal, TpmWriter } from '../../tpm/marshal.js';
import { policyPcrDigest } from '../../tpm/sessions.js';
import {
  computeName,
  type PcrSelection,
  type RsaPublic,
  rsaTemplate,
  type TpmsClockInfo,
  writeAttest,
  writeTpm2bPublic,
  writeTpmtPublic,
} from '../../tpm/structures.js';

/** A public area with its marshalled forms. */
export interface SoftPublic {
  public: RsaPublic;
  /** TPM2B_PUBLIC, as evidence carries it. */
  public2b: Uint8Array;
  name: Uint8Array;
  /** Qualified name under `hierarchy`. */
  qualifiedName: Uint8Array;
}

/**
 * The transfer key attributes: decrypt only, TPM-bound, usable only by policy (as Microsoft's client makes its
 * ephemeral key: Azure/confidential-computing-cvm-guest-attestation @990f662, client-library/src/Attestation/LinuxTpm/lib/Tss2Util.cpp).
 */
export const TRANSFER_KEY_ATTRIBUTES =
  TPMA_OBJECT.decrypt |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.noDA;

function modulusOf(key: KeyObject): Uint8Array {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string') throw new InvalidArgumentError('expected an RSA key');
  return new Uint8Array(Buffer.from(jwk.n, 'base64url'));
}

/** Fills a template with the key's modulus and computes its name and qualified name (primary key). */
export function softPublic(template: RsaPublic, key: KeyObject, hierarchy: number): SoftPublic {
  const unique = modulusOf(key);
  const pub: RsaPublic = { ...template, keyBits: unique.length * 8, unique };
  const name = computeName(pub.nameAlg, marshal(writeTpmtPublic, pub));
  const parent = new Uint8Array(4);
  new DataView(parent.buffer).setUint32(0, hierarchy);
  const qualifiedName = computeName(pub.nameAlg, Buffer.concat([parent, name]));
  return { public: pub, public2b: marshal(writeTpm2bPublic, pub), name, qualifiedName };
}

/**
 * The transfer key's public area: the DESIGN template with PolicyPCR over `pcrs` as its authPolicy (or, for
 * negative tests, an empty policy or one over only the first PCR).
 */
export function transferKeyPublic(
  key: KeyObject,
  pcrs: readonly PcrValue[],
  policy: 'quoted-pcrs' | 'empty' | 'other-pcrs' = 'quoted-pcrs',
): SoftPublic {
  const bound = policy === 'other-pcrs' ? pcrs.slice(0, 1) : pcrs;
  const selection: PcrSelection[] = [{ hashAlg: TPM_ALG.SHA256, pcrs: bound.map((p) => p.index) }];
  const authPolicy =
    policy === 'empty'
      ? new Uint8Array(0)
      : policyPcrDigest(
          TPM_ALG.SHA256,
          selection,
          bound.map((p) => p.digest),
        );
  return softPublic(rsaTemplate({ objectAttributes: TRANSFER_KEY_ATTRIBUTES, authPolicy }), key, TPM_RH.NULL);
}

export interface SoftSigner {
  key: KeyObject;
  qualifiedName: Uint8Array;
}

export interface SoftAttest {
  attestBytes: Uint8Array;
  /** Raw RSASSA-PKCS1-v1_5 SHA-256 signature, as the AzureGuest protocol sends it. */
  signature: Uint8Array;
}

const startedAt = Date.now();

function clockInfo(): TpmsClockInfo {
  return { clock: BigInt(Date.now() - startedAt), resetCount: 0, restartCount: 0, safe: true };
}

const FIRMWARE_VERSION = 0x2000_0000_0001_0000n;

function signAttest(signer: SoftSigner, attestBytes: Uint8Array): SoftAttest {
  return { attestBytes, signature: new Uint8Array(sign('sha256', attestBytes, signer.key)) };
}

/**
 * TPM2_Quote over SHA-256 PCRs with `nonce` as qualifying data. `weak` makes the SHA-1 quotes a verifier must
 * refuse: signed with SHA-1 (the signature then is a marshalled TPMT_SIGNATURE, since the raw form implies
 * SHA-256), or selecting the SHA-1 bank (`pcrs` then hold SHA-1 values).
 */
export function softQuote(
  signer: SoftSigner,
  pcrs: readonly PcrValue[],
  nonce: Uint8Array,
  weak?: 'sha1-signature' | 'sha1-bank',
): SoftAttest {
  if (nonce.length > 64) throw new InvalidArgumentError('quote nonce is at most 64 bytes');
  // The TPM digests the selected PCRs with the signing scheme's hash.
  const signHash = weak === 'sha1-signature' ? 'sha1' : 'sha256';
  const digest = createHash(signHash);
  for (const p of pcrs) digest.update(p.digest);
  const w = new TpmWriter(256);
  writeAttest(w, {
    type: TPM_ST.ATTEST_QUOTE,
    qualifiedSigner: signer.qualifiedName,
    extraData: nonce,
    clockInfo: clockInfo(),
    firmwareVersion: FIRMWARE_VERSION,
    quote: {
      pcrSelect: [
        { hashAlg: weak === 'sha1-bank' ? TPM_ALG.SHA1 : TPM_ALG.SHA256, pcrs: pcrs.map((p) => p.index) },
      ],
      pcrDigest: new Uint8Array(digest.digest()),
    },
  });
  const attestBytes = w.finish();
  if (weak !== 'sha1-signature') return signAttest(signer, attestBytes);
  const raw = sign('sha1', attestBytes, signer.key);
  const tpmt = new TpmWriter(raw.length + 6).u16(TPM_ALG.RSASSA).u16(TPM_ALG.SHA1).tpm2b(raw).finish();
  return { attestBytes, signature: tpmt };
}

/** TPM2_Certify of `object` by the signer, empty qualifying data. */
export function softCertify(signer: SoftSigner, object: SoftPublic): SoftAttest {
  const w = new TpmWriter(256);
  writeAttest(w, {
    type: TPM_ST.ATTEST_CERTIFY,
    qualifiedSigner: signer.qualifiedName,
    extraData: new Uint8Array(0),
    clockInfo: clockInfo(),
    firmwareVersion: FIRMWARE_VERSION,
    certify: { name: object.name, qualifiedName: object.qualifiedName },
  });
  return signAttest(signer, w.finish());
}
