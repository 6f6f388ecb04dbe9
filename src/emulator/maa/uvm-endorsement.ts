/**
 * UVM endorsements of a SevSnpVm request (confidential containers), as the emulated attestation service checks
 * them.
 *
 * Request shape, from microsoft/confidential-sidecar-containers pkg/common/maa.go (commit fa8df58aa090): the
 * base64url report document carries `Endorsements`, base64url of `{"Uvm": [base64url(COSE_Sign1)]}`. The
 * COSE_Sign1 document is UVM reference information (shape in ../hardware/uvm-signer.ts, taken from the real one
 * in pkg/common/security-context-test/reference-info-base64).
 *
 * Token claims, from the sample ACI token in MicrosoftDocs/azure-docs
 * articles/container-instances/confidential-containers-attestation-concepts.md (commit 22ee31b48162,
 * test/fixtures/maa-samples/sevsnpvm-aci-docs-sample.json): `x-ms-compliance-status: azure-compliant-uvm` and
 * `x-ms-sevsnpvm-uvm-endorsement` holding the endorsement's payload (`x-ms-sevsnpvm-guestsvn` as a string and
 * `x-ms-sevsnpvm-launchmeasurement`), both at the top level. AKS confidential containers are released on
 * `azure-signed-katacc-uvm` instead (microsoft/confidential-container-demos kafka/setup-key.sh, commit
 * 17bbb79b4a60); which UVM gets which value is not published, and the emulator decides it by the feed
 * (EMULATED_UVM_FEEDS).
 *
 * An endorsement counts only when: the document is a tagged COSE_Sign1 signed with PS256/384/512 by the first
 * certificate of its x5chain; each certificate is signed by the next and valid now; `iss` is a did:x509 the
 * service trusts (by default the emulated signer's), whose fingerprint is a CA of the chain and whose EKU the leaf
 * carries; the feed is known; and the payload's launch measurement equals the report's. No artifact shows what the
 * real service answers to a bad endorsement, so the emulator issues the token without the compliance claim
 * (and without the endorsement claim) rather than refusing it.
 */
import { constants, createHash, verify, X509Certificate } from 'node:crypto';
import cbor from 'cbor';
import { toHex } from '../../snp/bytes.js';
import { EMULATED_UVM_FEEDS, EmulatedUvmSigner } from '../hardware/uvm-signer.js';

export type UvmComplianceStatus = 'azure-compliant-uvm' | 'azure-signed-katacc-uvm';

/** Feed -> the compliance value the emulated service gives a UVM of that product. */
export const UVM_FEED_COMPLIANCE: Readonly<Record<string, UvmComplianceStatus>> = {
  [EMULATED_UVM_FEEDS.aci]: 'azure-compliant-uvm',
  [EMULATED_UVM_FEEDS.aks]: 'azure-signed-katacc-uvm',
};

export interface VerifiedUvmReferenceInfo {
  issuer: string;
  feed: string;
  /** The payload JSON, as the token's `x-ms-sevsnpvm-uvm-endorsement` claim carries it. */
  payload: Record<string, unknown>;
  /** Lowercase hex. */
  launchMeasurement: string;
}

export type UvmEndorsementOutcome =
  | { ok: true; status: UvmComplianceStatus; endorsement: VerifiedUvmReferenceInfo }
  | { ok: false; reason: string };

const MAX_DOCUMENT_BYTES = 256 * 1024;
const MAX_ENDORSEMENTS = 4;
const MAX_CHAIN = 8;
const PSS_HASH: Readonly<Record<number, { hash: string; saltLength: number }>> = {
  [-37]: { hash: 'sha256', saltLength: 32 },
  [-38]: { hash: 'sha384', saltLength: 48 },
  [-39]: { hash: 'sha512', saltLength: 64 },
};
const DID_X509 = /^did:x509:0:sha256:([A-Za-z0-9_-]{43})::eku:([0-9]+(?:\.[0-9]+)+)$/;
const HEX_MEASUREMENT = /^[0-9a-fA-F]{96}$/;

class Refused extends Error {}
const refuse = (reason: string): never => {
  throw new Refused(reason);
};

function decodeCbor(bytes: Uint8Array, what: string): unknown {
  try {
    const result = cbor.Decoder.decodeFirstSync(Buffer.from(bytes), {
      max_depth: 16,
      preferMap: true,
      preventDuplicateKeys: true,
      extendedResults: true,
    }) as { value: unknown; unused?: Buffer };
    if (result.unused && result.unused.length > 0) refuse(`${what} has bytes after its CBOR item`);
    return result.value;
  } catch (error) {
    if (error instanceof Refused) throw error;
    return refuse(`${what} is not CBOR`);
  }
}

const isBytes = (v: unknown): v is Buffer => Buffer.isBuffer(v);

/**
 * Verifies one UVM reference information document (tagged COSE_Sign1 bytes) against trusted did:x509 issuers.
 * `at` is the time the certificates must be valid at. Exported for tests, which also run it on the real
 * document with its own issuer and signing time.
 */
export function verifyUvmReferenceInfo(
  document: Uint8Array,
  trustedIssuers: readonly string[],
  at: Date,
): VerifiedUvmReferenceInfo {
  if (document.length > MAX_DOCUMENT_BYTES) refuse(`the document is larger than ${MAX_DOCUMENT_BYTES} bytes`);
  const top = decodeCbor(document, 'the document');
  if (!(top instanceof cbor.Tagged) || top.tag !== 18) refuse('the document is not a tagged COSE_Sign1 (tag 18)');
  const parts = (top as cbor.Tagged).value as unknown;
  if (!Array.isArray(parts) || parts.length !== 4) refuse('the COSE_Sign1 is not an array of four');
  const [protectedBytes, , payload, signature] = parts as unknown[];
  if (!isBytes(protectedBytes) || !isBytes(payload) || !isBytes(signature))
    refuse('the COSE_Sign1 protected header, payload or signature is not a byte string');
  const header = decodeCbor(protectedBytes as Buffer, 'the protected header');
  if (!(header instanceof Map)) refuse('the protected header is not a map');
  const h = header as Map<unknown, unknown>;

  const alg = h.get(1);
  const pss = typeof alg === 'number' ? PSS_HASH[alg] : undefined;
  if (pss === undefined) refuse(`algorithm ${String(alg)} is not PS256, PS384 or PS512`);
  const x5chain = h.get(33);
  const chainDer = isBytes(x5chain) ? [x5chain] : x5chain;
  if (!Array.isArray(chainDer) || chainDer.length === 0 || chainDer.length > MAX_CHAIN || !chainDer.every(isBytes))
    refuse('x5chain (label 33) is not a list of certificates');
  let chain: X509Certificate[];
  try {
    chain = (chainDer as Buffer[]).map((der) => new X509Certificate(der));
  } catch {
    return refuse('x5chain holds a certificate that does not parse');
  }
  for (let i = 0; i < chain.length; i++) {
    const cert = chain[i]!;
    if (at < new Date(cert.validFrom) || at > new Date(cert.validTo)) refuse(`certificate ${i} of x5chain is not valid now`);
    const issuer = chain[i + 1] ?? cert;
    let signed = false;
    try {
      signed = cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
    } catch {
      signed = false;
    }
    if (!signed) refuse(`certificate ${i} of x5chain is not signed by the next one`);
  }

  const iss = h.get('iss');
  if (typeof iss !== 'string' || !trustedIssuers.includes(iss)) refuse('the issuer is not a trusted UVM signer');
  const did = DID_X509.exec(iss as string);
  if (did === null) refuse('the issuer is not a did:x509 with a SHA-256 fingerprint and an EKU');
  const [, fingerprint, eku] = did as RegExpExecArray;
  const cas = chain.slice(1);
  if (!cas.some((c) => createHash('sha256').update(c.raw).digest('base64url') === fingerprint))
    refuse('no CA of x5chain has the fingerprint the issuer names');
  if (!(chain[0]!.keyUsage ?? []).includes(eku!)) refuse(`the signing certificate lacks the EKU ${eku}`);

  const feed = h.get('feed');
  if (typeof feed !== 'string' || feed.length === 0) refuse('the protected header names no feed');
  const contentType = h.get(3);
  if (contentType !== undefined && contentType !== 'application/json')
    refuse(`content type ${String(contentType)} is not application/json`);

  if (chain[0]!.publicKey.asymmetricKeyType !== 'rsa') refuse('the x5chain leaf has no RSA key for PS256/384/512');
  // Sig_structure of RFC 9052 section 4.4, with empty external AAD.
  const toBeSigned = cbor.encode(['Signature1', protectedBytes, Buffer.alloc(0), payload]);
  let good = false;
  try {
    good = verify(
      pss!.hash,
      toBeSigned,
      { key: chain[0]!.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pss!.saltLength },
      signature as Buffer,
    );
  } catch {
    good = false;
  }
  if (!good) refuse('the COSE_Sign1 signature does not verify with the x5chain leaf');

  let body: unknown;
  try {
    body = JSON.parse((payload as Buffer).toString('utf8'));
  } catch {
    return refuse('the payload is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) refuse('the payload is not a JSON object');
  const claims = body as Record<string, unknown>;
  const measurement = claims['x-ms-sevsnpvm-launchmeasurement'];
  if (typeof measurement !== 'string' || !HEX_MEASUREMENT.test(measurement))
    refuse('the payload has no 48-byte hex x-ms-sevsnpvm-launchmeasurement');
  const svn = claims['x-ms-sevsnpvm-guestsvn'];
  if (typeof svn !== 'string' || !/^\d{1,20}$/.test(svn)) refuse('the payload has no decimal x-ms-sevsnpvm-guestsvn');
  return {
    issuer: iss as string,
    feed: feed as string,
    payload: claims,
    launchMeasurement: (measurement as string).toLowerCase(),
  };
}

const B64URL = /^[A-Za-z0-9_-]*={0,2}$/;
function b64urlField(value: unknown, what: string, limit: number): Buffer {
  if (typeof value !== 'string' || !B64URL.test(value)) return refuse(`${what} is not base64url`);
  if (value.length > Math.ceil(limit / 3) * 4 + 2) return refuse(`${what} is too large`);
  return Buffer.from(value, 'base64url');
}

/**
 * The `Endorsements` field of a SevSnpVm report document: undefined when absent, else the outcome for the
 * report's launch measurement (the first endorsement that verifies and matches wins).
 */
export function evaluateUvmEndorsements(
  endorsements: unknown,
  reportMeasurement: Uint8Array,
  trustedIssuers: readonly string[],
  at: Date,
): UvmEndorsementOutcome | undefined {
  if (endorsements === undefined || endorsements === null || endorsements === '') return undefined;
  try {
    const json = b64urlField(endorsements, 'report.Endorsements', MAX_ENDORSEMENTS * MAX_DOCUMENT_BYTES * 2);
    let doc: unknown;
    try {
      doc = JSON.parse(json.toString('utf8'));
    } catch {
      return refuse('report.Endorsements is not JSON');
    }
    const uvm = (doc as { Uvm?: unknown } | null)?.Uvm;
    if (!Array.isArray(uvm) || uvm.length === 0 || uvm.length > MAX_ENDORSEMENTS)
      refuse(`report.Endorsements.Uvm is not a list of 1 to ${MAX_ENDORSEMENTS} documents`);
    const wanted = toHex(reportMeasurement);
    let reason = '';
    for (const [i, entry] of (uvm as unknown[]).entries()) {
      try {
        const bytes = b64urlField(entry, `report.Endorsements.Uvm[${i}]`, MAX_DOCUMENT_BYTES);
        const verified = verifyUvmReferenceInfo(bytes, trustedIssuers, at);
        if (verified.launchMeasurement !== wanted) refuse('its launch measurement is not the report\'s');
        const status = UVM_FEED_COMPLIANCE[verified.feed];
        if (status === undefined) refuse(`feed ${verified.feed} is not a known UVM`);
        return { ok: true, status: status!, endorsement: verified };
      } catch (error) {
        if (!(error instanceof Refused)) throw error;
        reason = `Uvm[${i}]: ${error.message}`;
      }
    }
    return { ok: false, reason };
  } catch (error) {
    if (error instanceof Refused) return { ok: false, reason: error.message };
    throw error;
  }
}

export interface UvmEndorsementCheckOptions {
  /** The signer whose issuer is trusted. Default: the cached emulated signer, loaded at the first endorsement. */
  signer?: EmulatedUvmSigner;
  /** More trusted did:x509 issuers. */
  trustedIssuers?: readonly string[];
  /** For the default signer: cache folder or false. */
  cache?: string | false;
}

/**
 * The service's check of a SevSnpVm request's UVM endorsements: reads `Endorsements` from the report document
 * (already verified, so it decodes) and evaluates it at `now`.
 */
export function uvmEndorsementCheck(
  options: UvmEndorsementCheckOptions = {},
): (body: Record<string, unknown>, reportMeasurement: Uint8Array, now: Date) => Promise<UvmEndorsementOutcome | undefined> {
  let issuers: Promise<readonly string[]> | undefined;
  const trusted = (): Promise<readonly string[]> => {
    issuers ??= (async () => {
      const signer =
        options.signer ??
        (await EmulatedUvmSigner.load(options.cache === undefined ? {} : { cache: options.cache }));
      return [signer.issuer, ...(options.trustedIssuers ?? [])];
    })();
    issuers.catch(() => {
      issuers = undefined;
    });
    return issuers;
  };
  return async (body, reportMeasurement, now) => {
    let endorsements: unknown;
    try {
      const doc: unknown = JSON.parse(Buffer.from(String(body.report), 'base64').toString('utf8'));
      endorsements = (doc as Record<string, unknown>).Endorsements;
    } catch {
      return undefined;
    }
    if (endorsements === undefined || endorsements === null || endorsements === '') return undefined;
    return evaluateUvmEndorsements(endorsements, reportMeasurement, await trusted(), now);
  };
}
