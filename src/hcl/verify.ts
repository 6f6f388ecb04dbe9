import { constants, createHash, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { type EvidenceCheck, EvidenceVerificationError, InvalidArgumentError, MalformedDataError } from '../errors.js';
import { bytesEqual, bytesFrom, toHex } from '../snp/bytes.js';
import {
  runCheck,
  type SnpVerificationResult,
  type VerifySnpReportOptions,
  verifySnpReportInto,
} from '../snp/verify.js';
import { TPM_ST, TPMA_OBJECT, TPM_ALG as TPM_ALGS } from '../tpm/constants.js';
import { publicToKeyObject } from '../tpm/keys.js';
import { marshal, TpmReader } from '../tpm/marshal.js';
import { policyPcrDigest } from '../tpm/sessions.js';
import {
  computeName,
  parseAttest,
  type QuoteAttest,
  readTpm2bPublic,
  type TpmtPublic,
  writeTpmtPublic,
} from '../tpm/structures.js';
import { checkHclBinding } from './binding.js';
import { type HclReport, parseHclReport } from './report.js';

const TPM_ST_ATTEST_QUOTE = 0x8018;
const TPM_ALG = {
  sha1: 0x0004,
  sha256: 0x000b,
  sha384: 0x000c,
  sha512: 0x000d,
  rsassa: 0x0014,
  rsapss: 0x0016,
};
const HASH_NAMES: Record<number, string> = { 4: 'sha1', 11: 'sha256', 12: 'sha384', 13: 'sha512' };
/**
 * Hashes accepted for quote and certify signatures, PCR banks and the transfer key's name: SHA-1 is refused
 * (collisions are practical; TCG deprecates it, "TCG Guidance for Secure Update of Software and Firmware" /
 * NIST SP 800-131A Rev. 2 disallow SHA-1 for digital signature generation).
 */
const STRONG_HASHES = new Set([TPM_ALG.sha256, TPM_ALG.sha384, TPM_ALG.sha512]);

/** A PCR value given with the quote: as `{ index, digest }`, or in a list whose position is the index. */
export type PcrInput = { index: number; digest: Uint8Array | string } | Uint8Array | string;

export interface VerifyAzureVtpmEvidenceOptions
  extends Omit<VerifySnpReportOptions, 'certificates' | 'reportData'> {
  /** The NV blob of index 0x01400001, or its parsed form. */
  hclReport: Uint8Array | HclReport;
  /** VCEK chain for the embedded SNP report (THIM JSON, PEM, DER...). */
  certificates: VerifySnpReportOptions['certificates'];
  /** The TPMS_ATTEST the TPM signed. */
  quote: Uint8Array | string;
  /** The quote signature: the raw RSA signature, or a marshalled TPMT_SIGNATURE. */
  signature: Uint8Array | string;
  /** The PCR values the quote covers (SHA-256 bank on Azure). */
  pcrs: readonly PcrInput[];
  /** The qualifying data the quote must carry; default empty (the reference client sends none). */
  nonce?: Uint8Array | string;
  /** The TPM's AK public area (TPM2B_PUBLIC of 0x81000003); when given it must be the runtime data's HCLAkPub. */
  akPub?: Uint8Array;
  /**
   * The transfer key and the AK's certification of it (AzureGuest `TpmInfo.EncKeyPub`, `EncKeyCertifyInfo`,
   * `EncKeyCertifyInfoSignature`); when given, checked as `transfer-key-certify`.
   */
  transferKey?: TransferKeyEvidence;
}

export interface TransferKeyEvidence {
  /** TPM2B_PUBLIC of the transfer key. */
  public: Uint8Array;
  /** The TPMS_ATTEST of TPM2_Certify by the AK. */
  certifyInfo: Uint8Array;
  /** Its signature: the raw RSA signature (SHA-256), or a marshalled TPMT_SIGNATURE. */
  signature: Uint8Array;
}

export interface AzureVtpmVerificationResult {
  ok: true;
  hcl: HclReport;
  snp: SnpVerificationResult;
  quote: QuoteAttest;
  akPub: KeyObject;
  /** The certified transfer key, when `transferKey` was given. */
  transferKey?: KeyObject;
  checks: EvidenceCheck[];
}

function normalisePcrs(pcrs: readonly PcrInput[]): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  pcrs.forEach((p, i) => {
    const { index, digest } =
      typeof p === 'string' || p instanceof Uint8Array
        ? { index: i, digest: p }
        : { index: p.index, digest: p.digest };
    if (!Number.isInteger(index) || index < 0 || index > 31)
      throw new InvalidArgumentError(`PCR index ${index} is out of range`);
    if (out.has(index)) throw new InvalidArgumentError(`PCR ${index} is given twice`);
    out.set(index, bytesFrom(digest, `PCR ${index}`));
  });
  return out;
}

/**
 * Raw RSA signature, or TPMT_SIGNATURE { sigAlg, hash, TPM2B sig }: returns the scheme and signature bytes. A
 * raw signature is RSASSA-PKCS1-v1_5 SHA-256, the AK's scheme on Azure (the AzureGuest protocol sends the raw
 * signature: Azure/confidential-computing-cvm-guest-attestation TpmInfo.cpp, `UnpackPcrQuoteToRSA`). SHA-1 is
 * refused.
 */
function signatureParts(
  signature: Uint8Array,
  keyBytes: number,
  what: string,
  fail: (message: string) => EvidenceVerificationError,
): { scheme: number; hash: number; sig: Uint8Array } {
  if (signature.length === keyBytes) return { scheme: TPM_ALG.rsassa, hash: TPM_ALG.sha256, sig: signature };
  if (signature.length >= 6) {
    const v = new DataView(signature.buffer, signature.byteOffset, signature.byteLength);
    const scheme = v.getUint16(0);
    const hash = v.getUint16(2);
    const size = v.getUint16(4);
    if ((scheme === TPM_ALG.rsassa || scheme === TPM_ALG.rsapss) && size === signature.length - 6) {
      if (!STRONG_HASHES.has(hash)) {
        throw fail(
          `the ${what} signature uses ${HASH_NAMES[hash] ?? `hash 0x${hash.toString(16)}`}; SHA-256 or stronger is required`,
        );
      }
      return { scheme, hash, sig: signature.subarray(6) };
    }
  }
  throw fail(`the ${what} signature is neither a ${keyBytes}-byte RSA signature nor an RSA TPMT_SIGNATURE`);
}

function verifyRsa(data: Uint8Array, key: KeyObject, parts: { scheme: number; hash: number; sig: Uint8Array }) {
  return cryptoVerify(
    HASH_NAMES[parts.hash]!,
    data,
    parts.scheme === TPM_ALG.rsapss
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }
      : key,
    parts.sig,
  );
}

/**
 * The transfer key check of the AzureGuest protocol: the AK certified it (TPM2_Certify, signature SHA-256 or
 * stronger), it is an RSA decryption key bound to the TPM and usable only under its policy, and that policy is
 * PolicyPCR over exactly the PCRs (selection and values) the quote covers, so the key decrypts only in the
 * measured state the service attested. The Microsoft client creates it that way: `GetEphemeralKey(pcr_values)`
 * with the quoted PCR values (Azure/confidential-computing-cvm-guest-attestation AttestationClientImpl.cpp,
 * `GetTpmInfo`). TPM 2.0 Part 3, 23.7 (TPM2_PolicyPCR) defines the digest.
 */
export function verifyTransferKeyCertification(
  akPub: KeyObject,
  evidence: TransferKeyEvidence,
  quote: QuoteAttest,
  pcrs: readonly PcrInput[],
): KeyObject {
  const fail = (message: string) => new EvidenceVerificationError(
    'ERR_TRANSFER_KEY_CERTIFY',
    message,
    'transfer-key-certify',
  );
  let pub: TpmtPublic;
  try {
    const r = new TpmReader(evidence.public, 'EncKeyPub');
    pub = readTpm2bPublic(r);
    r.expectEnd();
  } catch (error) {
    if (error instanceof MalformedDataError) throw fail(`the transfer key public area does not parse: ${error.message}`);
    throw error;
  }
  const keyBytes = (akPub.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
  const parts = signatureParts(evidence.signature, keyBytes, 'certify', fail);
  if (!verifyRsa(evidence.certifyInfo, akPub, parts)) {
    throw fail('the certify signature does not verify under the AK');
  }
  let attest: ReturnType<typeof parseAttest>;
  try {
    attest = parseAttest(evidence.certifyInfo);
  } catch (error) {
    if (error instanceof MalformedDataError) throw fail(`the certify info is not a TPMS_ATTEST: ${error.message}`);
    throw error;
  }
  if (attest.type !== TPM_ST.ATTEST_CERTIFY || !('certify' in attest)) {
    throw fail('the certify info is not a certify attestation');
  }
  if (!STRONG_HASHES.has(pub.nameAlg)) {
    throw fail(`the transfer key's name algorithm 0x${pub.nameAlg.toString(16)} is not SHA-256 or stronger`);
  }
  if (!bytesEqual(computeName(pub.nameAlg, marshal(writeTpmtPublic, pub)), attest.certify.name)) {
    throw fail('the certified name is not the name of the transfer key');
  }
  const a = pub.objectAttributes;
  const required =
    TPMA_OBJECT.decrypt | TPMA_OBJECT.fixedTPM | TPMA_OBJECT.fixedParent | TPMA_OBJECT.sensitiveDataOrigin;
  const forbidden = TPMA_OBJECT.sign | TPMA_OBJECT.restricted | TPMA_OBJECT.userWithAuth;
  if (pub.type !== TPM_ALGS.RSA || (a & required) !== required || (a & forbidden) !== 0) {
    throw fail(
      `the transfer key (attributes 0x${a.toString(16)}) is not an RSA decrypt-only key bound to the TPM and usable only under its policy`,
    );
  }
  const values = normalisePcrs(pcrs);
  const selected = quote.quote.pcrSelect.flatMap((s) => s.pcrs.map((i) => values.get(i)));
  if (selected.some((v) => v === undefined)) throw fail('a quoted PCR has no value to check the policy with');
  const expected = policyPcrDigest(pub.nameAlg, quote.quote.pcrSelect, selected as Uint8Array[]);
  if (!bytesEqual(pub.authPolicy, expected)) {
    throw fail(
      pub.authPolicy.length === 0
        ? 'the transfer key has an empty authPolicy: it is not bound to the quoted PCRs'
        : "the transfer key's authPolicy is not PolicyPCR over the quoted PCRs and values",
    );
  }
  return publicToKeyObject(pub);
}

/**
 * Verifies Azure confidential-VM evidence the way the attestation service does: the embedded SNP report (all
 * checks of `verifySnpReport`), the HCL binding of the runtime data, then the TPM quote: signed by `HCLAkPub`,
 * carrying the nonce, and with a PCR digest equal to the digest of the given PCR values.
 */
export function verifyAzureVtpmEvidence(
  options: VerifyAzureVtpmEvidenceOptions,
): AzureVtpmVerificationResult {
  const checks: EvidenceCheck[] = [];
  const hcl = options.hclReport instanceof Uint8Array ? parseHclReport(options.hclReport) : options.hclReport;

  const snpReport = runCheck(checks, 'hardware-report', () => {
    if (hcl.reportType !== 'snp' || hcl.snpReport === undefined) {
      throw new EvidenceVerificationError(
        'ERR_HCL_UNSUPPORTED_REPORT',
        `the HCL report carries a ${hcl.reportType.toUpperCase()} report; only SEV-SNP is verified (TDX quote verification is not supported)`,
        'hardware-report',
      );
    }
    return { detail: `SEV-SNP report version ${hcl.snpReport.version}`, value: hcl.snpReport };
  });
  const {
    hclReport: _h,
    quote: _q,
    signature: _s,
    pcrs: _p,
    nonce: _n,
    akPub: _a,
    transferKey: _t,
    ...snpOptions
  } = options;
  const snp = verifySnpReportInto(snpReport, snpOptions, checks);

  runCheck(checks, 'hcl-binding', () => ({ detail: checkHclBinding(hcl), value: undefined }));

  const akPub = runCheck(checks, 'ak-public-key', () => {
    const ak = hcl.runtimeData.akPub;
    if (ak === undefined || ak.asymmetricKeyType !== 'rsa') {
      throw new EvidenceVerificationError(
        'ERR_HCL_RUNTIME_DATA',
        'the runtime data has no RSA HCLAkPub key',
        'ak-public-key',
      );
    }
    if (options.akPub !== undefined) {
      let tpmAk: KeyObject;
      try {
        const reader = new TpmReader(options.akPub, 'AK TPM2B_PUBLIC');
        tpmAk = publicToKeyObject(readTpm2bPublic(reader));
        reader.expectEnd();
      } catch (error) {
        if (error instanceof MalformedDataError)
          throw new EvidenceVerificationError(
            'ERR_HCL_RUNTIME_DATA',
            `the AK public area does not parse: ${error.message}`,
            'ak-public-key',
          );
        throw error;
      }
      const a = ak.export({ format: 'jwk' });
      const b = tpmAk.export({ format: 'jwk' });
      if (a.n !== b.n || a.e !== b.e) {
        throw new EvidenceVerificationError(
          'ERR_HCL_RUNTIME_DATA',
          'the TPM AK is not the HCLAkPub of the runtime data',
          'ak-public-key',
        );
      }
    }
    const matched = options.akPub === undefined ? '' : ', equal to the TPM AK';
    return { detail: `HCLAkPub RSA-${ak.asymmetricKeyDetails?.modulusLength}${matched}`, value: ak };
  });

  const quoteBytes = bytesFrom(options.quote, 'quote');
  const { attest: quote, hashName: quoteHash } = runCheck(checks, 'quote-signature', () => {
    const keyBytes = (akPub.asymmetricKeyDetails?.modulusLength ?? 2048) / 8;
    const parts = signatureParts(
      bytesFrom(options.signature, 'signature'),
      keyBytes,
      'quote',
      (message) => new EvidenceVerificationError('ERR_QUOTE_SIGNATURE', message, 'quote-signature'),
    );
    const { scheme, hash } = parts;
    const hashName = HASH_NAMES[hash];
    const ok = verifyRsa(quoteBytes, akPub, parts);
    if (!ok)
      throw new EvidenceVerificationError(
        'ERR_QUOTE_SIGNATURE',
        'the quote signature does not verify under HCLAkPub',
        'quote-signature',
      );
    let attest: ReturnType<typeof parseAttest>;
    try {
      attest = parseAttest(quoteBytes);
    } catch (error) {
      if (error instanceof MalformedDataError)
        throw new MalformedDataError('ERR_QUOTE_MALFORMED', `quote: ${error.message}`, { cause: error });
      throw error;
    }
    if (attest.type !== TPM_ST_ATTEST_QUOTE || !('quote' in attest)) {
      throw new EvidenceVerificationError(
        'ERR_QUOTE_SIGNATURE',
        `the signed structure is not a quote (type 0x${attest.type.toString(16)})`,
        'quote-signature',
      );
    }
    return {
      detail: `${scheme === TPM_ALG.rsapss ? 'RSASSA-PSS' : 'RSASSA-PKCS1-v1_5'} ${hashName} by HCLAkPub`,
      value: { attest, hashName: hashName as string },
    };
  });

  runCheck(checks, 'quote-nonce', () => {
    const nonce = options.nonce === undefined ? new Uint8Array(0) : bytesFrom(options.nonce, 'nonce');
    if (!bytesEqual(nonce, quote.extraData)) {
      throw new EvidenceVerificationError(
        'ERR_QUOTE_NONCE',
        `the quote carries extraData ${toHex(quote.extraData) || '(empty)'}, not the expected nonce ${toHex(nonce) || '(empty)'}`,
        'quote-nonce',
      );
    }
    return {
      detail:
        nonce.length === 0
          ? 'empty qualifying data, as expected'
          : `extraData = nonce (${nonce.length} bytes)`,
      value: undefined,
    };
  });

  runCheck(checks, 'quote-pcr-digest', () => {
    const values = normalisePcrs(options.pcrs);
    const quoted = new Set<number>();
    // The TPM digests the selected PCRs with the hash of the signing scheme.
    const hash = createHash(quoteHash);
    for (const selection of quote.quote.pcrSelect) {
      const bank = HASH_NAMES[selection.hashAlg];
      if (bank === undefined)
        throw new EvidenceVerificationError(
          'ERR_QUOTE_PCR_DIGEST',
          `the quote selects unknown bank 0x${selection.hashAlg.toString(16)}`,
          'quote-pcr-digest',
        );
      if (!STRONG_HASHES.has(selection.hashAlg))
        throw new EvidenceVerificationError(
          'ERR_QUOTE_PCR_DIGEST',
          `the quote selects the ${bank} PCR bank; quote the SHA-256 (or stronger) bank`,
          'quote-pcr-digest',
        );
      for (const index of selection.pcrs) {
        if (quoted.has(index)) {
          throw new EvidenceVerificationError(
            'ERR_QUOTE_PCR_DIGEST',
            'the quote selects one PCR in two banks; give one bank',
            'quote-pcr-digest',
          );
        }
        quoted.add(index);
        const value = values.get(index);
        if (value === undefined)
          throw new EvidenceVerificationError(
            'ERR_QUOTE_PCR_DIGEST',
            `PCR ${index} is quoted but its value was not given`,
            'quote-pcr-digest',
          );
        if (value.length !== createHash(bank).digest().length) {
          throw new EvidenceVerificationError(
            'ERR_QUOTE_PCR_DIGEST',
            `PCR ${index} is ${value.length} bytes, not a ${bank} digest`,
            'quote-pcr-digest',
          );
        }
        hash.update(value);
      }
    }
    const unquoted = [...values.keys()].filter((i) => !quoted.has(i));
    if (unquoted.length > 0) {
      throw new EvidenceVerificationError(
        'ERR_QUOTE_PCR_DIGEST',
        `PCRs ${unquoted.join(', ')} were given but are not covered by the quote`,
        'quote-pcr-digest',
      );
    }
    const digest = hash.digest();
    if (!bytesEqual(digest, quote.quote.pcrDigest)) {
      throw new EvidenceVerificationError(
        'ERR_QUOTE_PCR_DIGEST',
        `the quote's pcrDigest ${toHex(quote.quote.pcrDigest)} is not the digest of the given PCR values ${toHex(digest)}`,
        'quote-pcr-digest',
      );
    }
    return {
      detail: `pcrDigest covers PCRs ${[...quoted].sort((a, b) => a - b).join(',')}`,
      value: undefined,
    };
  });

  const transfer = options.transferKey;
  const transferKey =
    transfer === undefined
      ? undefined
      : runCheck(checks, 'transfer-key-certify', () => ({
          detail: 'the AK certified an RSA decryption key bound to PolicyPCR over the quoted PCRs',
          value: verifyTransferKeyCertification(akPub, transfer, quote, options.pcrs),
        }));

  return { ok: true, hcl, snp, quote, akPub, ...(transferKey ? { transferKey } : {}), checks };
}
