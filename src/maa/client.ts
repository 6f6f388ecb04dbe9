/**
 * The attestation client: collects evidence from a platform, sends it to MAA with the protocol of its kind
 * (AzureGuest for the vTPM, SevSnpVm for the SNP guest device), opens the AzureGuest answer through the
 * platform's transfer key, and verifies the token (see `token.ts`). The token must name the platform's transfer
 * key in `x-ms-runtime.keys`, since that is the key Key Vault will wrap to.
 */
import { callerSignal } from '../util/abort.js';
import type { JWTPayload } from 'jose';
import { AbortError, AttestationResponseError } from '../errors.js';
import type { AttestationPlatform, TransferKey } from '../hal/types.js';
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
  /** Clock for token `exp`/`nbf`. */
  now?: () => Date;
  clockSkewSeconds?: number;
  /** OS fields of the AzureGuest request; default from /etc/os-release. */
  os?: Partial<OsIdentity>;
}

export interface AttestCallOptions {
  /** Bound into the quote and ClientPayload (vTPM) or the runtime data (SNP guest). At most 64 bytes on the vTPM. */
  nonce?: Uint8Array;
  signal?: AbortSignal;
  /** Same as `signal` (the Azure SDK's name). */
  abortSignal?: AbortSignal;
}

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

function runtimeKeysOf(claims: JWTPayload): unknown[] {
  const runtime = claims['x-ms-runtime'];
  if (typeof runtime !== 'object' || runtime === null) return [];
  const keys = (runtime as { keys?: unknown }).keys;
  return Array.isArray(keys) ? keys : [];
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
    const evidence = await platform.collectEvidence({
      ...(call.nonce ? { nonce: call.nonce } : {}),
      ...(signal ? { signal } : {}),
    });
    const transferKey = await platform.transferKey();
    check();
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
    const named = runtimeKeysOf(claims).some(
      (k) => typeof k === 'object' && k !== null && (k as { n?: unknown }).n === transferKey.jwk.n,
    );
    if (!named) {
      throw new AttestationResponseError(
        "the token's x-ms-runtime.keys does not name this platform's transfer key; Key Vault would wrap to another key",
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
