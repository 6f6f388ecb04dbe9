/**
 * The attestation client: collects evidence from a platform, sends it to MAA with the protocol of its kind
 * (AzureGuest for the vTPM, SevSnpVm for the SNP guest device), opens the AzureGuest answer through the
 * platform's transfer key, and verifies the token (see `token.ts`). The token must carry the nonce this request
 * sent (so an older token for the same platform is not accepted) and its first encryption key in top-level
 * `x-ms-runtime.keys` must be the platform's transfer key, since that is the key Key Vault will wrap to.
 */
import { callerSignal } from '../util/abort.js';
import type { JWTPayload } from 'jose';
import { AbortError, AttestationResponseError } from '../errors.js';
import type { AttestationPlatform, Evidence, TransferKey } from '../hal/types.js';
import type { MaaHttpOptions } from './http.js';
import { httpsRequest, jsonAnswer } from './http.js';
import {
  buildAzureGuestRequest,
  buildSevSnpVmRequest,
  localOsIdentity,
  type OsIdentity,
} from './requests.js';
import { openAzureGuestToken } from './response.js';
import { AttestationTokenVerifier, baseOf, normalizeEndpoint } from './token.js';

export const AZURE_GUEST_API_VERSION = '2020-10-01';
export const SEV_SNP_VM_API_VERSION = '2022-08-01';

export interface AttestationClientOptions extends MaaHttpOptions {
  /** The attestation provider, e.g. `https://sharedeus.eus.attest.azure.net`; also the pinned token issuer. */
  endpoint: string;
  /**
   * Clock for token `exp`/`nbf`, and for the vTPM AK certificate's lifetime (renewal when it is due). Default:
   * the system clock.
   */
  now?: () => Date;
  clockSkewSeconds?: number;
  /** OS fields of the AzureGuest request; default from /etc/os-release. */
  os?: Partial<OsIdentity>;
}

export interface AttestCallOptions {
  /**
   * Sent in ClientPayload (vTPM) or bound into the runtime data and sent in the request (SNP guest); the token
   * must echo it, which proves it was issued for this request. At most 64 bytes on the vTPM.
   */
  nonce?: Uint8Array;
  /**
   * vTPM only: also put the nonce into the quote's qualifying data. Off by default: Microsoft's C++ client
   * quotes with empty qualifying data (Azure/confidential-computing-cvm-guest-attestation @990f662,
   * client-library/src/Attestation/LinuxTpm/lib/Tss2Wrapper.cpp `GetPCRQuote`: `TPM2B_DATA inData = {0}`), and
   * no artifact shows the real service accepting a quote that carries one.
   */
  nonceInQuote?: boolean;
  signal?: AbortSignal;
  /** Same as `signal` (the Azure SDK's name). */
  abortSignal?: AbortSignal;
  /**
   * Runs each phase of the attestation (to time or trace it): `transfer-key` (the key Key Vault will wrap to),
   * `evidence` (reports, quote, certification), `maa` (the request, and opening and verifying the token).
   * Must call `run` once and return its result. Default: runs the phase.
   */
  phase?: <T>(phase: AttestPhase, run: () => Promise<T>) => Promise<T>;
}

export type AttestPhase = 'transfer-key' | 'evidence' | 'maa';

export interface AttestationResult {
  /** The verified JWT. */
  token: string;
  claims: JWTPayload;
  expiresAt: Date;
  /** The platform's transfer key, which the token names. */
  transferKey: TransferKey;
  protocol: 'AzureGuest' | 'SevSnpVm';
  /** Warnings from evidence collection (e.g. the TCG log could not be read, the AK certificate was renewed). */
  diagnostics: string[];
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A base64url JWK integer as a bigint, so `AQAB` and `AAEAAQ` (leading zero bytes) compare equal. */
function jwkInteger(value: unknown): bigint | undefined {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
  const hex = Buffer.from(value, 'base64url').toString('hex');
  return hex.length === 0 ? undefined : BigInt(`0x${hex}`);
}

/**
 * The key Key Vault wraps to: the first RSA key in top-level `x-ms-runtime.keys` whose `key_ops` contain
 * `encrypt` (or whose `key_use` is `enc`). The keys under `x-ms-isolation-tee.x-ms-runtime` (HCLAkPub) are
 * not candidates. Layout: the AzureGuest sample token in Azure/confidential-computing-cvm-guest-attestation
 * aks-linux-sample/README.md (top-level keys = [TpmEphemeralEncryptionKey], key_ops ["encrypt"]).
 */
export function releaseTransferKey(claims: JWTPayload): Record<string, unknown> | undefined {
  const runtime = claims['x-ms-runtime'];
  const keys = isRecord(runtime) && Array.isArray(runtime.keys) ? (runtime.keys as unknown[]) : [];
  return keys.find(
    (k): k is Record<string, unknown> =>
      isRecord(k) &&
      k.kty === 'RSA' &&
      typeof k.n === 'string' &&
      typeof k.e === 'string' &&
      ((Array.isArray(k.key_ops) && k.key_ops.includes('encrypt')) || k.key_use === 'enc'),
  );
}

/**
 * Where each protocol's token carries the nonce the request sent, or undefined when it carries none.
 * AzureGuest: `x-ms-runtime.client-payload.nonce`, the ClientPayload value echoed as sent (standard base64;
 * the sample token in Azure/confidential-computing-cvm-guest-attestation aks-linux-sample/README.md has
 * `"client-payload": {"nonce": "MTIzNA=="}`). SevSnpVm: the top-level `nonce` claim, "an untransformed direct
 * copy of an optional nonce value provided by a client" (MicrosoftDocs/azure-security-docs
 * articles/attestation/claim-sets.md, "Outgoing claims, common for all attestation types").
 */
export function tokenNonce(claims: JWTPayload, protocol: AttestationResult['protocol']): unknown {
  if (protocol === 'SevSnpVm') return claims.nonce;
  const runtime = claims['x-ms-runtime'];
  const payload = isRecord(runtime) ? runtime['client-payload'] : undefined;
  return isRecord(payload) ? payload.nonce : undefined;
}

export class AttestationClient {
  readonly endpoint: string;
  readonly #options: AttestationClientOptions;
  readonly #verifier: AttestationTokenVerifier;

  constructor(options: AttestationClientOptions) {
    this.endpoint = baseOf(normalizeEndpoint(options.endpoint));
    this.#options = options;
    this.#verifier = new AttestationTokenVerifier(options);
  }

  /** Verifies a token from this endpoint (e.g. a cached one) and returns its claims. */
  verifyToken(token: string): Promise<JWTPayload> {
    return this.#verifier.verify(token);
  }

  async attest(platform: AttestationPlatform, call: AttestCallOptions = {}): Promise<AttestationResult> {
    const signal = callerSignal(call);
    const check = () => {
      if (signal?.aborted) throw new AbortError('attestation was aborted', { cause: signal.reason });
    };
    check();
    const vtpm = platform.kind === 'azure-vtpm' || platform.kind === 'emulated-azure-vtpm';
    const evidenceNonce = call.nonce && (!vtpm || call.nonceInQuote === true) ? call.nonce : undefined;
    const phase = call.phase ?? (<T>(_: AttestPhase, run: () => Promise<T>) => run());
    // The transfer key first, so the evidence phase (which certifies it) does not also time its creation;
    // both platforms create it once and hand the same key to the evidence.
    const transferKey = await phase('transfer-key', () => platform.transferKey());
    check();
    const evidence = await phase('evidence', () =>
      platform.collectEvidence({
        ...(evidenceNonce ? { nonce: evidenceNonce } : {}),
        ...(signal ? { signal } : {}),
        ...(this.#options.now ? { now: this.#options.now() } : {}),
      }),
    );
    check();
    return phase('maa', () => this.#exchange(evidence, transferKey, call, signal));
  }

  /** Sends the evidence to MAA and checks the token: signature, issuer, nonce, and the transfer key it names. */
  async #exchange(
    evidence: Evidence,
    transferKey: TransferKey,
    call: AttestCallOptions,
    signal: AbortSignal | undefined,
  ): Promise<AttestationResult> {
    const check = () => {
      if (signal?.aborted) throw new AbortError('attestation was aborted', { cause: signal.reason });
    };
    const http = { ...this.#options, ...(signal ? { signal } : {}), method: 'POST' as const };
    let token: string;
    let protocol: AttestationResult['protocol'];
    if (evidence.kind === 'azure-vtpm') {
      protocol = 'AzureGuest';
      const os = { ...(await localOsIdentity()), ...this.#options.os };
      const body = buildAzureGuestRequest(evidence, { ...(call.nonce ? { nonce: call.nonce } : {}), os });
      const url = new URL(`${this.endpoint}/attest/AzureGuest?api-version=${AZURE_GUEST_API_VERSION}`);
      const answer = jsonAnswer(
        await httpsRequest(url, { ...http, body: JSON.stringify(body) }),
        'MAA AzureGuest',
      );
      if (typeof answer.token !== 'string')
        throw new AttestationResponseError('the AzureGuest answer has no token');
      token = await openAzureGuestToken(answer.token, transferKey);
    } else {
      protocol = 'SevSnpVm';
      const body = buildSevSnpVmRequest(evidence, call.nonce);
      const url = new URL(`${this.endpoint}/attest/SevSnpVm?api-version=${SEV_SNP_VM_API_VERSION}`);
      const answer = jsonAnswer(
        await httpsRequest(url, { ...http, body: JSON.stringify(body) }),
        'MAA SevSnpVm',
      );
      if (typeof answer.token !== 'string')
        throw new AttestationResponseError('the SevSnpVm answer has no token');
      token = answer.token;
    }
    check();
    const claims = await this.#verifier.verify(token);
    if (call.nonce && call.nonce.length > 0) {
      // The request sent the nonce standard base64 (AzureGuest ClientPayload) or base64url (SevSnpVm).
      const sent = Buffer.from(call.nonce).toString(protocol === 'AzureGuest' ? 'base64' : 'base64url');
      const echoed = tokenNonce(claims, protocol);
      if (echoed !== sent) {
        throw new AttestationResponseError(
          echoed === undefined
            ? `the ${protocol} token carries no nonce although one was sent; it was not issued for this request (a replayed token?)`
            : `the ${protocol} token's nonce is not the one this request sent; it was issued for another request (a replayed token?)`,
        );
      }
    }
    const wrapTo = releaseTransferKey(claims);
    if (
      wrapTo === undefined ||
      jwkInteger(wrapTo.n) !== jwkInteger(transferKey.jwk.n) ||
      jwkInteger(wrapTo.e) !== jwkInteger(transferKey.jwk.e)
    ) {
      throw new AttestationResponseError(
        wrapTo === undefined
          ? 'the token has no RSA encryption key in top-level x-ms-runtime.keys; Key Vault would have nothing to wrap to'
          : "the first encryption key in the token's top-level x-ms-runtime.keys is not this platform's transfer key; Key Vault would wrap to another key",
      );
    }
    const diagnostics = evidence.kind === 'azure-vtpm' ? [...(evidence.diagnostics ?? [])] : [];
    return {
      token,
      claims,
      expiresAt: new Date((claims.exp ?? 0) * 1000),
      transferKey,
      protocol,
      diagnostics,
    };
  }
}

/** One attestation: `new AttestationClient(options).attest(platform, options)`. */
export function attest(
  platform: AttestationPlatform,
  options: AttestationClientOptions & AttestCallOptions,
): Promise<AttestationResult> {
  return new AttestationClient(options).attest(platform, options);
}
