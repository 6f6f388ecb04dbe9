import { createHash } from 'node:crypto';
import { MalformedDataError } from '../errors.js';
import { HASH_NAMES, HASH_SIZES, TPM_ALG, TPM_GENERATED_VALUE, TPM_ST } from './constants.js';
import { TpmReader, type TpmWriter } from './marshal.js';

/**
 * TPM 2.0 structures (Part 2) used by the command layer: each has a `write*` marshaller and a `read*`
 * unmarshaller that are exact inverses, so a round trip is byte-identical.
 */

const EMPTY = new Uint8Array(0);

// ---------------------------------------------------------------------------------------------------------
// algorithms and small unions
// ---------------------------------------------------------------------------------------------------------

export function digestSize(hashAlg: number): number {
  const size = HASH_SIZES[hashAlg];
  if (size === undefined) throw new MalformedDataError(
    'ERR_TPM_MALFORMED',
    `unknown hash algorithm 0x${hashAlg.toString(16)}`,
  );
  return size;
}

export function hashName(hashAlg: number): string {
  const name = HASH_NAMES[hashAlg];
  if (name === undefined) {
    throw new MalformedDataError('ERR_TPM_MALFORMED', `hash algorithm 0x${hashAlg.toString(16)} is not supported here`);
  }
  return name;
}

export function hash(hashAlg: number, ...parts: Uint8Array[]): Uint8Array {
  const h = createHash(hashName(hashAlg));
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** Schemes whose TPMU details are just a hashAlg (TPMS_SCHEME_HASH and friends). */
const HASH_SCHEMES: ReadonlySet<number> = new Set([
  TPM_ALG.RSASSA,
  TPM_ALG.RSAPSS,
  TPM_ALG.OAEP,
  TPM_ALG.ECDSA,
  TPM_ALG.ECDH,
  TPM_ALG.SM2,
  TPM_ALG.ECSCHNORR,
  TPM_ALG.ECMQV,
  TPM_ALG.HMAC,
  TPM_ALG.KDF1_SP800_56A,
  TPM_ALG.KDF2,
  TPM_ALG.KDF1_SP800_108,
]);

/** TPMT_RSA_SCHEME / TPMT_ECC_SCHEME / TPMT_RSA_DECRYPT / TPMT_SIG_SCHEME / TPMT_KDF_SCHEME. */
export interface TpmtScheme {
  scheme: number;
  hashAlg?: number;
  /** ECDAA only. */
  count?: number;
}

export const NULL_SCHEME: TpmtScheme = { scheme: TPM_ALG.NULL };

export function writeScheme(w: TpmWriter, s: TpmtScheme): void {
  w.u16(s.scheme);
  if (s.scheme === TPM_ALG.NULL || s.scheme === TPM_ALG.RSAES) return;
  if (s.scheme === TPM_ALG.ECDAA) {
    w.u16(s.hashAlg ?? TPM_ALG.NULL).u16(s.count ?? 0);
    return;
  }
  if (!HASH_SCHEMES.has(s.scheme)) {
    throw new MalformedDataError('ERR_TPM_MALFORMED', `cannot marshal scheme 0x${s.scheme.toString(16)}`);
  }
  w.u16(s.hashAlg ?? TPM_ALG.NULL);
}

export function readScheme(r: TpmReader): TpmtScheme {
  const scheme = r.u16('scheme');
  if (scheme === TPM_ALG.NULL || scheme === TPM_ALG.RSAES) return { scheme };
  if (scheme === TPM_ALG.ECDAA)
    return { scheme, hashAlg: r.u16('scheme.hashAlg'), count: r.u16('scheme.count') };
  if (!HASH_SCHEMES.has(scheme)) r.fail(`unknown scheme 0x${scheme.toString(16)}`);
  return { scheme, hashAlg: r.u16('scheme.hashAlg') };
}

/** TPMT_SYM_DEF_OBJECT (and TPMT_SYM_DEF without XOR). */
export interface TpmtSymDef {
  algorithm: number;
  keyBits?: number;
  mode?: number;
}

export const NULL_SYM: TpmtSymDef = { algorithm: TPM_ALG.NULL };

export function writeSymDef(w: TpmWriter, s: TpmtSymDef): void {
  w.u16(s.algorithm);
  if (s.algorithm === TPM_ALG.NULL) return;
  w.u16(s.keyBits ?? 0);
  if (s.algorithm !== TPM_ALG.XOR) w.u16(s.mode ?? TPM_ALG.NULL);
}

export function readSymDef(r: TpmReader): TpmtSymDef {
  const algorithm = r.u16('symmetric.algorithm');
  if (algorithm === TPM_ALG.NULL) return { algorithm };
  const keyBits = r.u16('symmetric.keyBits');
  if (algorithm === TPM_ALG.XOR) return { algorithm, keyBits };
  return { algorithm, keyBits, mode: r.u16('symmetric.mode') };
}

// ---------------------------------------------------------------------------------------------------------
// TPMT_PUBLIC
// ---------------------------------------------------------------------------------------------------------

interface PublicCommon {
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Uint8Array;
  symmetric: TpmtSymDef;
  scheme: TpmtScheme;
}

export interface RsaPublic extends PublicCommon {
  type: typeof TPM_ALG.RSA;
  keyBits: number;
  /** 0 means the default 65537. */
  exponent: number;
  /** The modulus (empty in a creation template). */
  unique: Uint8Array;
}

export interface EccPublic extends PublicCommon {
  type: typeof TPM_ALG.ECC;
  curveId: number;
  kdf: TpmtScheme;
  unique: { x: Uint8Array; y: Uint8Array };
}

export type TpmtPublic = RsaPublic | EccPublic;

export function writeTpmtPublic(w: TpmWriter, p: TpmtPublic): void {
  w.u16(p.type).u16(p.nameAlg).u32(p.objectAttributes).tpm2b(p.authPolicy);
  writeSymDef(w, p.symmetric);
  writeScheme(w, p.scheme);
  if (p.type === TPM_ALG.RSA) {
    w.u16(p.keyBits).u32(p.exponent).tpm2b(p.unique);
  } else {
    w.u16(p.curveId);
    writeScheme(w, p.kdf);
    w.tpm2b(p.unique.x).tpm2b(p.unique.y);
  }
}

export function readTpmtPublic(r: TpmReader): TpmtPublic {
  const type = r.u16('TPMT_PUBLIC.type');
  const nameAlg = r.u16('TPMT_PUBLIC.nameAlg');
  const objectAttributes = r.u32('TPMT_PUBLIC.objectAttributes');
  const authPolicy = r.tpm2b('TPMT_PUBLIC.authPolicy', 64);
  if (type === TPM_ALG.RSA) {
    const symmetric = readSymDef(r);
    const scheme = readScheme(r);
    const keyBits = r.u16('TPMS_RSA_PARMS.keyBits');
    const exponent = r.u32('TPMS_RSA_PARMS.exponent');
    const unique = r.tpm2b('TPMT_PUBLIC.unique.rsa', 512);
    return { type, nameAlg, objectAttributes, authPolicy, symmetric, scheme, keyBits, exponent, unique };
  }
  if (type === TPM_ALG.ECC) {
    const symmetric = readSymDef(r);
    const scheme = readScheme(r);
    const curveId = r.u16('TPMS_ECC_PARMS.curveID');
    const kdf = readScheme(r);
    const x = r.tpm2b('TPMS_ECC_POINT.x', 128);
    const y = r.tpm2b('TPMS_ECC_POINT.y', 128);
    return { type, nameAlg, objectAttributes, authPolicy, symmetric, scheme, curveId, kdf, unique: { x, y } };
  }
  return r.fail(`TPMT_PUBLIC type 0x${type.toString(16)} is not supported (RSA and ECC are)`);
}

/** TPM2B_PUBLIC: the size-prefixed TPMT_PUBLIC as commands and evidence carry it. */
export function writeTpm2bPublic(w: TpmWriter, p: TpmtPublic): void {
  w.sized16((inner) => writeTpmtPublic(inner, p));
}

export function readTpm2bPublic(r: TpmReader): TpmtPublic {
  const size = r.u16('TPM2B_PUBLIC.size');
  if (size === 0) r.fail('TPM2B_PUBLIC is empty');
  const inner = r.sub(size, 'TPM2B_PUBLIC');
  const pub = readTpmtPublic(inner);
  inner.expectEnd('TPM2B_PUBLIC');
  return pub;
}

/** The marshalled TPMT_PUBLIC (the bytes the name is computed over). */
export function marshalPublic(p: TpmtPublic, w: TpmWriter): Uint8Array {
  const start = w.length;
  writeTpmtPublic(w, p);
  return w.finish().subarray(start);
}

/** TPM name of an object or NV index: nameAlg || H_nameAlg(marshalled public area). */
export function computeName(nameAlg: number, publicArea: Uint8Array): Uint8Array {
  const digest = hash(nameAlg, publicArea);
  const name = new Uint8Array(2 + digest.length);
  name[0] = nameAlg >> 8;
  name[1] = nameAlg & 0xff;
  name.set(digest, 2);
  return name;
}

// ---------------------------------------------------------------------------------------------------------
// NV public area
// ---------------------------------------------------------------------------------------------------------

export interface TpmsNvPublic {
  nvIndex: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Uint8Array;
  dataSize: number;
}

export function writeNvPublic(w: TpmWriter, p: TpmsNvPublic): void {
  w.u32(p.nvIndex).u16(p.nameAlg).u32(p.attributes).tpm2b(p.authPolicy).u16(p.dataSize);
}

export function readNvPublic(r: TpmReader): TpmsNvPublic {
  return {
    nvIndex: r.u32('TPMS_NV_PUBLIC.nvIndex'),
    nameAlg: r.u16('TPMS_NV_PUBLIC.nameAlg'),
    attributes: r.u32('TPMS_NV_PUBLIC.attributes'),
    authPolicy: r.tpm2b('TPMS_NV_PUBLIC.authPolicy', 64),
    dataSize: r.u16('TPMS_NV_PUBLIC.dataSize'),
  };
}

export function writeNvPublic2b(w: TpmWriter, p: TpmsNvPublic): void {
  w.sized16((inner) => writeNvPublic(inner, p));
}

export function readNvPublic2b(r: TpmReader): TpmsNvPublic {
  const size = r.u16('TPM2B_NV_PUBLIC.size');
  const inner = r.sub(size, 'TPM2B_NV_PUBLIC');
  const pub = readNvPublic(inner);
  inner.expectEnd('TPM2B_NV_PUBLIC');
  return pub;
}

// ---------------------------------------------------------------------------------------------------------
// PCR selections and digests
// ---------------------------------------------------------------------------------------------------------

export interface PcrSelection {
  hashAlg: number;
  /** PCR indices, ascending. */
  pcrs: number[];
}

/** Minimum sizeofSelect is 3 (PCR 0-23), as every TPM 2.0 with 24 PCRs expects. */
export function selectionBitmap(pcrs: readonly number[], minBytes = 3): Uint8Array {
  let max = -1;
  for (const p of pcrs) {
    if (!Number.isInteger(p) || p < 0 || p > 255) throw new MalformedDataError(
      'ERR_TPM_MALFORMED',
      `invalid PCR index ${p}`,
    );
    if (p > max) max = p;
  }
  const bytes = new Uint8Array(Math.max(minBytes, (max >> 3) + 1));
  for (const p of pcrs) bytes[p >> 3]! |= 1 << (p & 7);
  return bytes;
}

export function bitmapPcrs(bitmap: Uint8Array): number[] {
  const pcrs: number[] = [];
  for (let i = 0; i < bitmap.length; i++) {
    const byte = bitmap[i]!;
    for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) pcrs.push(i * 8 + bit);
  }
  return pcrs;
}

export function writePcrSelection(w: TpmWriter, selections: readonly PcrSelection[]): void {
  w.u32(selections.length);
  for (const s of selections) {
    const bitmap = selectionBitmap(s.pcrs);
    w.u16(s.hashAlg).u8(bitmap.length).bytes(bitmap);
  }
}

/** TPML_PCR_SELECTION; at most 16 banks (HASH_COUNT) and 32 bytes of select (256 PCRs) are believable. */
export function readPcrSelection(r: TpmReader): PcrSelection[] {
  const count = r.u32('TPML_PCR_SELECTION.count');
  if (count > 16) r.fail(`TPML_PCR_SELECTION count ${count} is too large`);
  const selections: PcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16('TPMS_PCR_SELECTION.hash');
    const size = r.u8('TPMS_PCR_SELECTION.sizeofSelect');
    if (size > 32) r.fail(`TPMS_PCR_SELECTION sizeofSelect ${size} is too large`);
    selections.push({ hashAlg, pcrs: bitmapPcrs(r.bytes(size, 'TPMS_PCR_SELECTION.pcrSelect')) });
  }
  return selections;
}

/** TPML_DIGEST (at most 8 digests). */
export function readDigestList(r: TpmReader): Uint8Array[] {
  const count = r.u32('TPML_DIGEST.count');
  if (count > 8) r.fail(`TPML_DIGEST count ${count} is too large`);
  const digests: Uint8Array[] = [];
  for (let i = 0; i < count; i++) digests.push(r.tpm2b('TPM2B_DIGEST', 64));
  return digests;
}

export function writeDigestList(w: TpmWriter, digests: readonly Uint8Array[]): void {
  w.u32(digests.length);
  for (const d of digests) w.tpm2b(d);
}

/** TPMT_HA list (TPML_DIGEST_VALUES), for PCR_Extend. */
export interface TaggedDigest {
  hashAlg: number;
  digest: Uint8Array;
}

export function writeDigestValues(w: TpmWriter, digests: readonly TaggedDigest[]): void {
  w.u32(digests.length);
  for (const d of digests) {
    if (d.digest.length !== digestSize(d.hashAlg)) {
      throw new MalformedDataError(
        'ERR_TPM_MALFORMED',
        `digest for hash 0x${d.hashAlg.toString(16)} must be ${digestSize(d.hashAlg)} bytes`,
      );
    }
    w.u16(d.hashAlg).bytes(d.digest);
  }
}

// ---------------------------------------------------------------------------------------------------------
// TPMS_ATTEST
// ---------------------------------------------------------------------------------------------------------

export interface TpmsClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

interface AttestCommon {
  qualifiedSigner: Uint8Array;
  extraData: Uint8Array;
  clockInfo: TpmsClockInfo;
  firmwareVersion: bigint;
}

export interface QuoteAttest extends AttestCommon {
  type: typeof TPM_ST.ATTEST_QUOTE;
  quote: { pcrSelect: PcrSelection[]; pcrDigest: Uint8Array };
}

export interface CertifyAttest extends AttestCommon {
  type: typeof TPM_ST.ATTEST_CERTIFY;
  certify: { name: Uint8Array; qualifiedName: Uint8Array };
}

/** Other attestation types (time, creation, audit, NV) are kept as their raw TPMU_ATTEST bytes. */
export interface OtherAttest extends AttestCommon {
  type: number;
  attested: Uint8Array;
}

export type TpmsAttest = QuoteAttest | CertifyAttest | OtherAttest;

export function writeAttest(w: TpmWriter, a: TpmsAttest): void {
  w.u32(TPM_GENERATED_VALUE).u16(a.type).tpm2b(a.qualifiedSigner).tpm2b(a.extraData);
  w.u64(a.clockInfo.clock)
    .u32(a.clockInfo.resetCount)
    .u32(a.clockInfo.restartCount)
    .u8(a.clockInfo.safe ? 1 : 0);
  w.u64(a.firmwareVersion);
  if ('quote' in a) {
    writePcrSelection(w, a.quote.pcrSelect);
    w.tpm2b(a.quote.pcrDigest);
  } else if ('certify' in a) {
    w.tpm2b(a.certify.name).tpm2b(a.certify.qualifiedName);
  } else {
    w.bytes(a.attested);
  }
}

/** TPMS_ATTEST, checking the magic so that data not produced by a TPM is rejected early. */
export function readAttest(r: TpmReader): TpmsAttest {
  const magic = r.u32('TPMS_ATTEST.magic');
  if (magic !== TPM_GENERATED_VALUE)
    r.fail(`TPMS_ATTEST magic is 0x${magic.toString(16)}, not TPM_GENERATED`);
  const type = r.u16('TPMS_ATTEST.type');
  const qualifiedSigner = r.tpm2b('TPMS_ATTEST.qualifiedSigner', 66);
  const extraData = r.tpm2b('TPMS_ATTEST.extraData', 64);
  const clockInfo: TpmsClockInfo = {
    clock: r.u64('TPMS_CLOCK_INFO.clock'),
    resetCount: r.u32('TPMS_CLOCK_INFO.resetCount'),
    restartCount: r.u32('TPMS_CLOCK_INFO.restartCount'),
    safe: readYesNo(r, 'TPMS_CLOCK_INFO.safe'),
  };
  const firmwareVersion = r.u64('TPMS_ATTEST.firmwareVersion');
  const common = { qualifiedSigner, extraData, clockInfo, firmwareVersion };
  if (type === TPM_ST.ATTEST_QUOTE) {
    const pcrSelect = readPcrSelection(r);
    const pcrDigest = r.tpm2b('TPMS_QUOTE_INFO.pcrDigest', 64);
    return { type, ...common, quote: { pcrSelect, pcrDigest } };
  }
  if (type === TPM_ST.ATTEST_CERTIFY) {
    const name = r.tpm2b('TPMS_CERTIFY_INFO.name', 66);
    const qualifiedName = r.tpm2b('TPMS_CERTIFY_INFO.qualifiedName', 66);
    return { type, ...common, certify: { name, qualifiedName } };
  }
  if (type < 0x8014 || type > 0x801f) r.fail(`TPMS_ATTEST type 0x${type.toString(16)} is not an attestation`);
  return { type, ...common, attested: r.bytes(r.remaining, 'TPMU_ATTEST') };
}

function readYesNo(r: TpmReader, field: string): boolean {
  const v = r.u8(field);
  if (v > 1) r.fail(`${field} is ${v}, not YES or NO`);
  return v === 1;
}

/** Parses a whole TPMS_ATTEST blob (e.g. the `quote` or `certifyInfo` of evidence). */
export function parseAttest(bytes: Uint8Array): TpmsAttest {
  const r = new TpmReader(bytes, 'TPMS_ATTEST');
  const attest = readAttest(r);
  r.expectEnd();
  return attest;
}

// ---------------------------------------------------------------------------------------------------------
// TPMT_SIGNATURE
// ---------------------------------------------------------------------------------------------------------

export type TpmtSignature =
  | { sigAlg: typeof TPM_ALG.RSASSA | typeof TPM_ALG.RSAPSS; hashAlg: number; signature: Uint8Array }
  | {
      sigAlg: typeof TPM_ALG.ECDSA | typeof TPM_ALG.ECDAA | typeof TPM_ALG.SM2 | typeof TPM_ALG.ECSCHNORR;
      hashAlg: number;
      r: Uint8Array;
      s: Uint8Array;
    }
  | { sigAlg: typeof TPM_ALG.HMAC; hashAlg: number; digest: Uint8Array }
  | { sigAlg: typeof TPM_ALG.NULL };

export function writeSignature(w: TpmWriter, s: TpmtSignature): void {
  w.u16(s.sigAlg);
  if ('signature' in s) w.u16(s.hashAlg).tpm2b(s.signature);
  else if ('r' in s) w.u16(s.hashAlg).tpm2b(s.r).tpm2b(s.s);
  else if ('digest' in s) w.u16(s.hashAlg).bytes(s.digest);
}

export function readSignature(r: TpmReader): TpmtSignature {
  const sigAlg = r.u16('TPMT_SIGNATURE.sigAlg');
  switch (sigAlg) {
    case TPM_ALG.RSASSA:
    case TPM_ALG.RSAPSS:
      return { sigAlg, hashAlg: r.u16('TPMT_SIGNATURE.hash'), signature: r.tpm2b('TPMT_SIGNATURE.sig', 512) };
    case TPM_ALG.ECDSA:
    case TPM_ALG.ECDAA:
    case TPM_ALG.SM2:
    case TPM_ALG.ECSCHNORR:
      return {
        sigAlg,
        hashAlg: r.u16('TPMT_SIGNATURE.hash'),
        r: r.tpm2b('TPMT_SIGNATURE.signatureR', 128),
        s: r.tpm2b('TPMT_SIGNATURE.signatureS', 128),
      };
    case TPM_ALG.HMAC: {
      const hashAlg = r.u16('TPMT_HA.hashAlg');
      const size = HASH_SIZES[hashAlg];
      if (size === undefined) r.fail(`TPMT_HA hash 0x${hashAlg.toString(16)} is unknown`);
      return { sigAlg, hashAlg, digest: r.bytes(size, 'TPMT_HA.digest') };
    }
    case TPM_ALG.NULL:
      return { sigAlg };
    default:
      return r.fail(`TPMT_SIGNATURE algorithm 0x${sigAlg.toString(16)} is not supported`);
  }
}

export function parseSignature(bytes: Uint8Array): TpmtSignature {
  const r = new TpmReader(bytes, 'TPMT_SIGNATURE');
  const s = readSignature(r);
  r.expectEnd();
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// templates
// ---------------------------------------------------------------------------------------------------------

/** Template for an RSA key; fill `unique` with an empty modulus for CreatePrimary. */
export function rsaTemplate(options: {
  objectAttributes: number;
  nameAlg?: number;
  keyBits?: number;
  scheme?: TpmtScheme;
  symmetric?: TpmtSymDef;
  authPolicy?: Uint8Array;
}): RsaPublic {
  return {
    type: TPM_ALG.RSA,
    nameAlg: options.nameAlg ?? TPM_ALG.SHA256,
    objectAttributes: options.objectAttributes,
    authPolicy: options.authPolicy ?? EMPTY,
    symmetric: options.symmetric ?? NULL_SYM,
    scheme: options.scheme ?? NULL_SCHEME,
    keyBits: options.keyBits ?? 2048,
    exponent: 0,
    unique: EMPTY,
  };
}
