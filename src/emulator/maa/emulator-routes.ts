/**
 * Emulator-only routes on the emulated attestation service, under `/emulator/`. Nothing like them exists on
 * Microsoft Azure Attestation; they exist so that clients in other processes and other languages can use an
 * emulator whose emulated hardware lives only in its memory (`cvm-skr emulator serve --no-cache`):
 *
 * - `GET /emulator/hardware`: the emulated AMD hierarchy and vTPM AK CA, as the JSON of the emulator cache
 *   files (`{ amd: <emulated-amd-*.json>, akCa: <emulated-vtpm-ak-ca.json> }`), private keys included, so that
 *   `cvm-skr release|attest --emulator` sign evidence as the same emulated chip.
 * - `POST /emulator/vm-token` with `{ kind: 'azure-vtpm' | 'sev-guest', knobs?: {...} }`: creates an emulated
 *   VM, attests it through this service and answers `{ token, transferKey: { jwk, privateKeyPem }, ... }`.
 *
 * Both hand out emulator key material, so they are guarded three ways: they are mounted only when the service
 * listens on a loopback address, they answer only requests from a loopback peer, and they require the
 * emulator's managed identity secret (`IDENTITY_HEADER`) in `X-IDENTITY-HEADER`, as its token endpoint does.
 */
import { createHash, generateKeyPairSync, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { EvidenceKnobs } from '../hardware/knobs.js';
import { readBoundedBody, sendJson } from '../../util/http-body.js';

/** The JSON `GET /emulator/hardware` answers: the emulator cache files' contents. */
export interface EmulatedHardwareDocument {
  amd: unknown;
  akCa: unknown;
}

export type VmTokenKind = 'azure-vtpm' | 'sev-guest';

export interface VmTokenAnswer {
  token: string;
  expiresAt: string;
  protocol: 'AzureGuest' | 'SevSnpVm';
  transferKey: { jwk: Record<string, unknown>; privateKeyPem: string };
}

export interface EmulatorRoutesContext {
  /** The `IDENTITY_HEADER` secret. */
  identityHeader: string;
  hardware(): EmulatedHardwareDocument;
  /** Attests a new emulated VM whose transfer key is `transferKeyPair`; throws on refused evidence. */
  vmToken(
    kind: VmTokenKind,
    knobs: EvidenceKnobs,
    transferKeyPair: ReturnType<typeof generateKeyPairSync>,
  ): Promise<Omit<VmTokenAnswer, 'transferKey'> & { jwk: Record<string, unknown> }>;
}

/** True for 127.0.0.0/8, ::1, ::ffff:127.x and `localhost`. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./.test(h);
  return false;
}

const MAX_BODY = 64 * 1024;


const fail = (res: ServerResponse, status: number, code: string, message: string) =>
  sendJson(res, status, { error: { code, message } });

async function readJson(req: IncomingMessage): Promise<unknown> {
  const body = await readBoundedBody(req, MAX_BODY);
  if (body === undefined) throw new RangeError('body too large');
  const text = body.toString('utf8');
  return text === '' ? {} : (JSON.parse(text) as unknown);
}

const BOOLEAN_KNOBS = ['debug', 'oldTcb', 'wrongSignature', 'staleUserData', 'akMismatch'] as const;

/** The knobs a JSON client may set; undefined (with the reason) when something is not a knob. */
export function parseKnobs(value: unknown): EvidenceKnobs | string {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'knobs must be an object';
  const knobs: EvidenceKnobs = {};
  for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
    if ((BOOLEAN_KNOBS as readonly string[]).includes(name)) {
      if (typeof v !== 'boolean') return `knobs.${name} must be true or false`;
      knobs[name as (typeof BOOLEAN_KNOBS)[number]] = v;
    } else if (name === 'measurement') {
      if (typeof v !== 'string' || !/^[0-9a-fA-F]{96}$/.test(v))
        return 'knobs.measurement must be 48 bytes of hex';
      knobs.measurement = new Uint8Array(Buffer.from(v, 'hex'));
    } else if (name === 'weakQuote') {
      if (v !== 'sha1-signature' && v !== 'sha1-bank')
        return 'knobs.weakQuote must be sha1-signature or sha1-bank';
      knobs.weakQuote = v;
    } else if (name === 'transferKeyPolicy') {
      if (v !== 'empty' && v !== 'other-pcrs') return 'knobs.transferKeyPolicy must be empty or other-pcrs';
      knobs.transferKeyPolicy = v;
    } else {
      return `unknown knob ${JSON.stringify(name)}`;
    }
  }
  return knobs;
}

function sameSecret(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  // Digests first: equal lengths for timingSafeEqual, and no early exit on the secret's length.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The `/emulator/*` handler to mount on a loopback attestation service: answers (and returns true) for paths
 * under `/emulator/`, returns false for every other path. `context` is read per request (the emulator wires it
 * once all its services are up; until then the routes answer 503).
 */
export function emulatorRoutes(
  context: () => EmulatorRoutesContext | undefined,
): (req: IncomingMessage, res: ServerResponse) => Promise<boolean> {
  return async (req, res) => {
    const path = new URL(req.url ?? '/', 'https://emulator.invalid').pathname.replace(/\/+$/, '');
    if (!path.startsWith('/emulator/')) return false;
    const method = req.method ?? 'GET';
    if (!isLoopbackHost(req.socket.remoteAddress ?? '')) {
      fail(res, 403, 'Forbidden', 'emulator routes answer loopback clients only');
      return true;
    }
    const ctx = context();
    if (ctx === undefined) {
      fail(res, 503, 'NotReady', 'the emulator is still starting; try again');
      return true;
    }
    if (!sameSecret(req.headers['x-identity-header'], ctx.identityHeader)) {
      req.resume();
      fail(res, 401, 'Unauthorized', 'X-IDENTITY-HEADER is missing or wrong: use the IDENTITY_HEADER value');
      return true;
    }
    if (path === '/emulator/hardware') {
      if (method !== 'GET') fail(res, 405, 'MethodNotAllowed', 'use GET /emulator/hardware');
      else sendJson(res, 200, ctx.hardware());
      return true;
    }
    if (path === '/emulator/vm-token') {
      if (method !== 'POST') {
        fail(res, 405, 'MethodNotAllowed', 'use POST /emulator/vm-token');
        return true;
      }
      let body: unknown;
      try {
        body = await readJson(req);
      } catch {
        fail(res, 400, 'InvalidParameter', `the body must be JSON of at most ${MAX_BODY} bytes`);
        return true;
      }
      const request = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
      const kind = request.kind ?? 'azure-vtpm';
      if (kind !== 'azure-vtpm' && kind !== 'sev-guest') {
        fail(res, 400, 'InvalidParameter', 'kind must be azure-vtpm or sev-guest');
        return true;
      }
      const knobs = parseKnobs(request.knobs);
      if (typeof knobs === 'string') {
        fail(res, 400, 'InvalidParameter', knobs);
        return true;
      }
      const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
      let answer: Awaited<ReturnType<EmulatorRoutesContext['vmToken']>>;
      try {
        answer = await ctx.vmToken(kind, knobs, pair);
      } catch (error) {
        // Knobs that spoil the evidence make the attestation fail: say so, as the service said it.
        fail(
          res,
          422,
          'AttestationFailed',
          `the emulated VM was not attested: ${error instanceof Error ? error.message : 'unknown error'}`,
        );
        return true;
      }
      const { jwk, ...rest } = answer;
      sendJson(res, 200, {
        ...rest,
        transferKey: {
          jwk,
          privateKeyPem: pair.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
        },
      } satisfies VmTokenAnswer);
      return true;
    }
    fail(res, 404, 'NotFound', `no such emulator route: ${method} ${path}`);
    return true;
  };
}
