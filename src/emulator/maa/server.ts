/**
 * The emulated Microsoft Azure Attestation service: HTTPS on loopback with a certificate from the emulator CA.
 *
 * - `POST /attest/AzureGuest?api-version=2020-10-01` (vTPM VMs) and `POST /attest/SevSnpVm?api-version=2022-08-01`
 *   (SNP guests); the other api-versions seen in the field are accepted too.
 * - `GET /certs`: JWKS whose key carries only `kid`, `kty` and `x5c`, like the service's.
 * - `GET /.well-known/openid-configuration`.
 *
 * Evidence is verified with the project's verifiers (see `evidence.ts`); failures answer 400 with
 * `{"error":{"code":"InvalidParameter","message":"... check '<name>' failed: ..."}}`. Tokens are RS256 with
 * `jku` = `{url}/certs` and `kid`, issuer = the base URL, valid `tokenLifetimeSeconds` (default 8 hours, as the
 * service). AzureGuest answers are encrypted to the transfer key: a random AES-256 key wrapped with
 * RSAES-PKCS1-v1_5, the JWT sealed with AES-GCM and the AAD "Transport Key".
 */
import { constants, createCipheriv, type KeyObject, publicEncrypt, randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { CvmSkrError, EvidenceVerificationError } from '../../errors.js';
import { readBoundedBody } from '../../util/http-body.js';
import { EmulatorError } from '../errors.js';
import { listenError } from '../listen-error.js';
import type { TrustedRootInput } from '../../snp/roots.js';
import type { SnpProduct } from '../../snp/tcb.js';
import type { TcbMinimum } from '../../snp/verify.js';
import { EmulatedAkCa } from '../hardware/ak-ca.js';
import { EMULATED_DEFAULT_TCB, EmulatedAmd } from '../hardware/amd.js';
import { EmulatorCa } from '../ca.js';
import { type AzureGuestOsInfo, azureGuestClaims, sevSnpVmClaims } from './claims.js';
import {
  type AttestationPolicy,
  decodeBase64,
  type EvidenceContext,
  verifyAzureGuestRequest,
  verifySevSnpVmRequest,
} from './evidence.js';
import { FixedWindowThrottle, type ThrottleOptions } from '../throttle.js';
import type { EmulatedUvmSigner } from '../hardware/uvm-signer.js';
import { uvmEndorsementCheck } from './uvm-endorsement.js';

/** api-versions the service has answered for these endpoints. */
export const AZURE_GUEST_API_VERSIONS = ['2020-10-01', '2022-08-01', '2022-09-01-preview'] as const;
export const SEV_SNP_VM_API_VERSIONS = ['2022-08-01', '2022-09-01-preview', '2020-10-01'] as const;

export interface AttestationEmulatorOptions {
  /** Emulated chips: their ARKs are trusted. Evidence must carry its VCEK chain (as THIM serves it). */
  amd?: EmulatedAmd | readonly EmulatedAmd[];
  /** vTPM CA whose AK certificates are accepted. Default: the cached emulated vTPM CA. */
  akCa?: EmulatedAkCa;
  /** Roots trusted besides the embedded AMD roots and the emulated chips' roots. */
  trustedRoots?: readonly TrustedRootInput[];
  /** More vTPM CA certificates (PEM) to accept AK certificates from. */
  trustedAkIssuers?: readonly string[];
  policy?: AttestationPolicy;
  /** `iss` of issued tokens and metadata, instead of the base URL (e.g. a name the service is reached by). */
  issuer?: string;
  /** Default 28 800 (8 hours). */
  tokenLifetimeSeconds?: number;
  /** Clock for token times and certificate validity. */
  now?: () => Date;
  /** CA for the TLS and token signing certificates. Default: a fresh one. */
  ca?: EmulatorCa;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (any free port). */
  port?: number;
  /** For the default `amd`/`akCa`: cache folder or false. */
  cache?: string | false;
  /** Emulator-only routes (`emulator-routes.ts`): answer and return true, or return false for other paths. */
  emulatorRoutes?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
  /** Opt-in: answer attestation requests past `limit` per `windowMs` with 429 and `Retry-After`. Default none. */
  throttle?: ThrottleOptions;
  /** Signer of trusted UVM reference information. Default: the cached emulated UVM signer (uvm-signer.ts). */
  uvmSigner?: EmulatedUvmSigner;
  /** More did:x509 issuers of UVM reference information to trust. */
  trustedUvmIssuers?: readonly string[];
}

export interface AttestationEmulatorCounters {
  /** Attestation requests answered with a token. */
  attestations: number;
  azureGuest: number;
  sevSnpVm: number;
  /** Attestation requests refused with 400. */
  rejected: number;
  /** JWKS and OpenID metadata requests. */
  keyRequests: number;
  /** Attestation requests refused with 429 by the opt-in throttle. */
  throttled: number;
}

export interface AttestationEmulator {
  /** Base URL, also the token issuer (no trailing slash). */
  readonly url: string;
  /** PEM of the emulator CA that issued the TLS certificate; pass it as the client's `ca`. */
  readonly caPem: string;
  readonly counters: AttestationEmulatorCounters;
  /** The token signing certificate (PEM). */
  readonly signingCertificatePem: string;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly serviceCode: string,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const body = await readBoundedBody(req, MAX_BODY);
  if (body === undefined) throw new HttpError(413, 'RequestTooLarge', `the request body is larger than ${MAX_BODY} bytes`);
  return body;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

/**
 * The SevSnpVm `nonce` claim: the request's nonce as a string. The REST API documents a string nonce, copied
 * untransformed (MicrosoftDocs/azure-security-docs articles/attestation/claim-sets.md);
 * microsoft/confidential-sidecar-containers pkg/common/maa.go sends a JSON number (uint64), and the service
 * answers it as its decimal digits: the ACI sample token has `"nonce": "3413764049005270139"`
 * (test/fixtures/maa-samples/sevsnpvm-aci-docs-sample.json). A uint64 above 2^53 does not survive JSON.parse,
 * so the digits are taken from the request text itself.
 */
function sevSnpVmNonce(parsed: unknown, raw: Buffer): string | undefined {
  if (typeof parsed === 'string') return parsed;
  if (typeof parsed !== 'number' || !Number.isInteger(parsed) || parsed < 0) return undefined;
  const digits = /"nonce"\s*:\s*(\d{1,20})\s*[,}]/.exec(raw.toString('utf8'))?.[1];
  return digits !== undefined && Number(digits) === parsed ? digits : String(parsed);
}

function jsonBody(buffer: Buffer): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(buffer.toString('utf8'));
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // below
  }
  throw new HttpError(400, 'InvalidParameter', 'the request body is not a JSON object');
}

/** Seals the JWT for the transfer key as the AzureGuest endpoint does. */
export function encryptForTransferKey(jwt: string, transferKey: KeyObject): string {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from('Transport Key', 'ascii'));
  const ciphertext = Buffer.concat([cipher.update(jwt, 'utf8'), cipher.final()]);
  const wrapped = publicEncrypt({ key: transferKey, padding: constants.RSA_PKCS1_PADDING }, key);
  key.fill(0);
  const envelope = {
    AuthenticationData: cipher.getAuthTag().toString('base64'),
    EncryptedInnerKey: wrapped.toString('base64'),
    EncryptionParams: { Iv: iv.toString('base64') },
    Jwt: ciphertext.toString('base64'),
  };
  return Buffer.from(JSON.stringify(envelope), 'utf8').toString('base64url');
}

function b64Text(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return decodeBase64(value, 'field').toString('utf8');
  } catch {
    return undefined;
  }
}

function osInfo(info: Record<string, unknown>): AzureGuestOsInfo {
  const out: AzureGuestOsInfo = {};
  const osType = b64Text(info.OSType);
  if (osType !== undefined) out.osType = osType;
  const distro = b64Text(info.OSDistro);
  if (distro !== undefined) out.osDistro = distro;
  const build = b64Text(info.OSBuild);
  if (build !== undefined) out.osBuild = build;
  if (Number.isInteger(info.OSVersionMajor)) out.osVersionMajor = info.OSVersionMajor as number;
  if (Number.isInteger(info.OSVersionMinor)) out.osVersionMinor = info.OSVersionMinor as number;
  if (
    typeof info.ClientPayload === 'object' &&
    info.ClientPayload !== null &&
    !Array.isArray(info.ClientPayload)
  ) {
    out.clientPayload = info.ClientPayload as Record<string, unknown>;
  }
  return out;
}

/** Starts the emulated attestation service. */
export async function startAttestationEmulator(
  options: AttestationEmulatorOptions = {},
): Promise<AttestationEmulator> {
  const cacheOption = options.cache === undefined ? {} : { cache: options.cache };
  const chips =
    options.amd === undefined
      ? [await EmulatedAmd.load(cacheOption)]
      : Array.isArray(options.amd)
        ? [...(options.amd as readonly EmulatedAmd[])]
        : [options.amd as EmulatedAmd];
  const akCa = options.akCa ?? (await EmulatedAkCa.load(cacheOption));
  const ca = options.ca ?? (await EmulatorCa.create());
  const [tls, signer] = await Promise.all([
    ca.issueServerCertificate({ commonName: 'cvm-skr emulator attestation service' }),
    ca.issueSigningCertificate({ commonName: 'attestation token signing' }),
  ]);
  const now = options.now ?? (() => new Date());
  const lifetime = options.tokenLifetimeSeconds ?? 8 * 3600;
  if (!Number.isInteger(lifetime) || lifetime <= 0)
    throw new EmulatorError('tokenLifetimeSeconds must be a positive integer');
  const trustedRoots: TrustedRootInput[] = [
    ...chips.map((c) => c.trustedRoot),
    ...(options.trustedRoots ?? []),
  ];
  const trustedAkIssuers = [akCa.certPem, ...(options.trustedAkIssuers ?? [])];
  const defaultMinimumTcb = { ...EMULATED_DEFAULT_TCB } as Record<SnpProduct, TcbMinimum>;
  const counters: AttestationEmulatorCounters = {
    attestations: 0,
    azureGuest: 0,
    sevSnpVm: 0,
    rejected: 0,
    keyRequests: 0,
    throttled: 0,
  };
  const throttle = options.throttle ? new FixedWindowThrottle(options.throttle) : undefined;
  const checkUvm = uvmEndorsementCheck({
    ...cacheOption,
    ...(options.uvmSigner === undefined ? {} : { signer: options.uvmSigner }),
    ...(options.trustedUvmIssuers === undefined ? {} : { trustedIssuers: options.trustedUvmIssuers }),
  });
  const kid = signer.x5t;
  // Keys and metadata are also served under the issuer's path, when the issuer names one on this host.
  const issuerPath = options.issuer ? new URL(options.issuer).pathname.replace(/\/+$/, '') : '';
  let url = '';

  const context = (): EvidenceContext => ({
    trustedRoots,
    trustedAkIssuers,
    policy: options.policy ?? {},
    defaultMinimumTcb,
    now: now(),
  });

  const issue = (claims: Record<string, unknown>): Promise<string> => {
    const iat = Math.floor(now().getTime() / 1000);
    return new SignJWT({ ...claims, jti: randomBytes(32).toString('hex') })
      .setProtectedHeader({ alg: 'RS256', jku: `${options.issuer ?? url}/certs`, kid, typ: 'JWT' })
      .setIssuer(options.issuer ?? url)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(iat + lifetime)
      .sign(signer.privateKey);
  };

  const attest = async (kind: 'AzureGuest' | 'SevSnpVm', req: IncomingMessage, query: URLSearchParams) => {
    const apiVersion = query.get('api-version');
    const allowed: readonly string[] =
      kind === 'AzureGuest' ? AZURE_GUEST_API_VERSIONS : SEV_SNP_VM_API_VERSIONS;
    if (apiVersion === null)
      throw new HttpError(400, 'MissingApiVersionParameter', 'the api-version query parameter is required');
    if (!allowed.includes(apiVersion)) {
      throw new HttpError(
        400,
        'InvalidApiVersion',
        `api-version ${apiVersion} is not supported; use one of ${allowed.join(', ')}`,
      );
    }
    const raw = await readBody(req);
    const body = jsonBody(raw);
    if (kind === 'SevSnpVm') {
      const verified = await verifySevSnpVmRequest(body, context());
      const nonce = sevSnpVmNonce(body.nonce, raw);
      const uvm = await checkUvm(body, verified.snp.report.measurement, now());
      const token = await issue(sevSnpVmClaims(verified, nonce, uvm));
      counters.sevSnpVm++;
      return { token };
    }
    const infoText = body.AttestationInfo;
    const info = (() => {
      try {
        return jsonBody(decodeBase64(infoText, 'AttestationInfo'));
      } catch {
        throw new HttpError(400, 'InvalidParameter', 'AttestationInfo is not base64url JSON');
      }
    })();
    const verified = await verifyAzureGuestRequest(info, context());
    const jwt = await issue(azureGuestClaims(verified, osInfo(info)));
    counters.azureGuest++;
    return { token: encryptForTransferKey(jwt, verified.transferKey) };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const target = new URL(req.url ?? '/', 'https://emulator.invalid');
    const path = target.pathname.replace(/\/+$/, '') || '/';
    const method = req.method ?? 'GET';
    try {
      if ((path === '/certs' || path === `${issuerPath}/certs`) && method === 'GET') {
        counters.keyRequests++;
        send(res, 200, { keys: [{ kid, kty: 'RSA', x5c: signer.x5c }] });
        return;
      }
      if (
        (path === '/.well-known/openid-configuration' ||
          path === `${issuerPath}/.well-known/openid-configuration`) &&
        method === 'GET'
      ) {
        counters.keyRequests++;
        send(res, 200, {
          issuer: options.issuer ?? url,
          jwks_uri: `${options.issuer ?? url}/certs`,
          response_types_supported: ['token', 'none'],
          id_token_signing_alg_values_supported: ['RS256'],
          claims_supported: ['x-ms-attestation-type', 'x-ms-compliance-status', 'x-ms-runtime', 'x-ms-ver'],
          revocation_endpoint: `${url}/revocations`,
        });
        return;
      }
      const match = /^\/attest\/(AzureGuest|SevSnpVm)$/i.exec(path);
      if (match) {
        if (method !== 'POST')
          throw new HttpError(405, 'MethodNotAllowed', `${method} is not allowed here; POST evidence`);
        const kind = match[1]!.toLowerCase() === 'azureguest' ? 'AzureGuest' : 'SevSnpVm';
        const verdict = throttle?.admit();
        if (verdict && !verdict.admitted) {
          counters.throttled++;
          req.resume();
          // No recorded 429 of the attestation service was found; status and Retry-After follow RFC 6585 §4 and
          // RFC 9110 §10.2.3, the code and message are the emulator's own.
          send(
            res,
            429,
            { error: { code: 'TooManyRequests', message: 'too many attestation requests (emulated limit)' } },
            { 'retry-after': String(verdict.retryAfterSeconds) },
          );
          return;
        }
        try {
          const answer = await attest(kind, req, target.searchParams);
          counters.attestations++;
          send(res, 200, answer);
        } catch (error) {
          counters.rejected++;
          throw error;
        }
        return;
      }
      if (options.emulatorRoutes && (await options.emulatorRoutes(req, res))) return;
      throw new HttpError(404, 'NotFound', `no such endpoint: ${method} ${path}`);
    } catch (error) {
      if (error instanceof HttpError) {
        send(res, error.statusCode, { error: { code: error.serviceCode, message: error.message } });
      } else if (error instanceof EvidenceVerificationError) {
        send(res, 400, {
          error: {
            code: 'InvalidParameter',
            message: `attestation evidence failed check '${error.check}': ${error.message}`,
            check: error.check,
          },
        });
      } else if (error instanceof CvmSkrError) {
        send(res, 400, {
          error: { code: 'InvalidParameter', message: `attestation evidence rejected: ${error.message}` },
        });
      } else {
        send(res, 500, {
          error: { code: 'InternalError', message: 'the emulated attestation service failed' },
        });
      }
    }
  };

  const server: Server = createServer(
    { cert: tls.certPem, key: tls.keyPem, requestTimeout: 30_000 },
    (req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent) send(res, 500, { error: { code: 'InternalError', message: 'internal error' } });
      });
    },
  );
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(listenError('attestation', host, e)));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  url = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let closed: Promise<void> | undefined;
  return {
    url,
    caPem: ca.certPem,
    counters,
    signingCertificatePem: signer.certPem,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
