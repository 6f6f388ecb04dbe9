/**
 * The HTTP API of Microsoft's confidential sidecar for key release (microsoft/confidential-sidecar-containers,
 * `cmd/skr`), served by the agent so a client of that sidecar works unchanged. Routes, request fields and
 * answers follow its server code, internal/httpginendpoints/httpginendpoints.go (commit
 * e3e00a1a216a8087a71183f97bae1a1fab9adde2) and cmd/skr/main.go (commit 43efaab687c97d86d7041bca84818dd86834a4fb),
 * and its documentation, cmd/skr/README.md (commit 0bb29ae26cc999476b4a6fbc0af76296d6d69178):
 *
 * - `GET /status` → 200 `{"message":"Status OK"}` (the code's spelling; the README writes "STATUS OK").
 * - `POST /key/release` `{maa_endpoint, akv_endpoint, kid, access_token?}` (the first three required, gin's
 *   `binding:"required"`) → 200 `{"key": "<the JWK, as a JSON string>"}`; 400 `{"error"}` for a request that
 *   does not bind; 403 `{"error"}` when the release fails. The key is fetched from
 *   `https://<akv_endpoint>/keys/<kid>/release` (pkg/skr/akv.go, AKVReleaseKeyRequestURITemplate), so `kid`
 *   is a key name, optionally `name/version`; the JWK is the private key (RSA, EC) or `{"kty":"oct","k"}`
 *   (pkg/skr/skr.go, SecureKeyRelease).
 * - `POST /attest/raw`, `/attest/maa`, `/attest/combined` → 501 `{"error"}` here: they hand out an SNP report
 *   or an MAA token over caller-chosen runtime data; on an Azure confidential VM the report is the vTPM's HCL
 *   report, whose report data the guest cannot choose, and this agent's tokens are bound to its own transfer
 *   key. Not emulated rather than answered with something else.
 *
 * Differences the agent adds: each request is authorized by the caller's uid/gid (or the HTTP token); the
 * `maa_endpoint` must be the attestation endpoint the agent was started with (one platform, one token);
 * `access_token` is refused (the agent releases with its own identity, never a caller's token); more requests
 * than the agent's bound answer 503.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AgentBusyError, AgentForbiddenError, CvmSkrError } from '../errors.js';
import type { SecureKeyRelease } from '../keyvault/secure-key-release.js';
import type { AgentCaller, AgentRules } from './rules.js';
import { readJson, sendJson } from './http.js';
import type { AgentLogEntry } from './server.js';

const ROUTES = new Set(['/status', '/key/release', '/attest/raw', '/attest/maa', '/attest/combined']);

export function isSidecarRoute(route: string): boolean {
  return ROUTES.has(route);
}

export interface SidecarContext {
  caller: AgentCaller;
  skr: SecureKeyRelease;
  rules: AgentRules;
  attestationEndpoint: string;
  ready(): boolean;
  decide(caller: AgentCaller, route: string, keyId: string | undefined, allowed: boolean): void;
  work<T>(run: () => Promise<T>): Promise<T>;
  log(entry: AgentLogEntry): void;
}

/** `host[:port]` of an endpoint given with or without a scheme, lower case (the sidecar takes bare hosts). */
function hostOf(endpoint: string): string | undefined {
  try {
    const url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(endpoint) ? endpoint : `https://${endpoint}`);
    if (url.pathname !== '/' && url.pathname !== '') return undefined;
    return url.host.toLowerCase();
  } catch {
    return undefined;
  }
}

export async function handleSidecar(
  req: IncomingMessage,
  res: ServerResponse,
  route: string,
  ctx: SidecarContext,
): Promise<void> {
  const error = (status: number, message: string) => sendJson(res, status, { error: message });
  try {
    if (route === '/status') {
      if (req.method !== 'GET') return error(404, `no ${req.method ?? ''} /status`);
      // The sidecar answers 200 either way; the message says whether it is ready.
      return sendJson(res, 200, { message: ctx.ready() ? 'Status OK' : 'Status NOT OK' });
    }
    if (req.method !== 'POST') return error(404, `no ${req.method ?? ''} ${route}`);
    if (route !== '/key/release') {
      return error(
        501,
        `${route} is not offered by the cvm-skr agent: on a confidential VM the hardware report is the vTPM's, whose report data a caller cannot choose; use /key/release`,
      );
    }
    let body: Record<string, unknown>;
    try {
      const parsed = await readJson(req);
      body = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
    } catch {
      return error(400, 'invalid request format: the body is not JSON');
    }
    const missing = ['maa_endpoint', 'akv_endpoint', 'kid'].filter(
      (f) => typeof body[f] !== 'string' || body[f] === '',
    );
    if (missing.length > 0) return error(400, `invalid request format: ${missing.join(', ')} required`);
    if (body.access_token !== undefined && body.access_token !== '') {
      return error(
        400,
        'access_token is not accepted: the cvm-skr agent releases keys with its own identity; grant it keys/release and leave access_token out',
      );
    }
    const maa = hostOf(body.maa_endpoint as string);
    if (maa === undefined || maa !== hostOf(ctx.attestationEndpoint)) {
      return error(
        403,
        `secure key release failed: this agent attests with ${ctx.attestationEndpoint}, not ${String(body.maa_endpoint)}; the key's release policy must name the agent's attestation endpoint`,
      );
    }
    const vault = hostOf(body.akv_endpoint as string);
    const kid = body.kid as string;
    if (vault === undefined || !/^[A-Za-z0-9-]+(\/[A-Za-z0-9]+)?$/.test(kid))
      return error(400, 'invalid request format: akv_endpoint must be a host, kid a key name (or name/version)');
    const keyId = `https://${vault}/keys/${kid}`;
    ctx.decide(ctx.caller, route, keyId, ctx.rules.allows(ctx.caller, keyId));
    const released = await ctx.work(() => ctx.skr.releaseKey(keyId));
    // The sidecar's answer: {"key": "<JWK JSON>"} (a string holding JSON, as json.Marshal of the jwk.Key).
    return sendJson(res, 200, { key: JSON.stringify(released.key.export({ format: 'jwk' })) });
  } catch (caught) {
    const code = caught instanceof CvmSkrError ? caught.code : 'ERR_CVM_SKR';
    if (!(caught instanceof AgentForbiddenError)) ctx.log({ event: 'request-failed', route, code });
    const message = caught instanceof CvmSkrError ? caught.message : 'the agent failed unexpectedly; see its log';
    return error(caught instanceof AgentBusyError ? 503 : 403, `secure key release failed: ${message} [${code}]`);
  }
}
