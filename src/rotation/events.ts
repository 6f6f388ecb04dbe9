/**
 * Version awareness for holders of released keys. Key Vault creates a new key version on rotation and tells
 * Event Grid (`Microsoft.KeyVault.KeyNewVersionCreated`); a `SecureKeyRelease` keeps resolving a versionless
 * key id to the version it released last until it learns otherwise. Two ways to learn:
 *
 * - `createEventGridHandler(...)`: a webhook endpoint for an Event Grid subscription, as a Node `http` request
 *   listener or as `handle(request)` over a body a framework already read. It accepts the Event Grid schema
 *   (array of events, `aeg-event-type`), CloudEvents 1.0 (structured, batched, or binary `ce-*` headers),
 *   answers the subscription-validation handshake (`Microsoft.EventGrid.SubscriptionValidationEvent` ->
 *   `{validationResponse}`) and the CloudEvents abuse-protection `OPTIONS` request.
 * - `watchKeyVersions(keyClient, name, ...)`: polls `listPropertiesOfKeyVersions` at a set interval.
 *
 * Either way a new version only drops the versionless mapping (`SecureKeyRelease.invalidateCurrentVersion`):
 * released versions stay cached, so nothing is released or attested again until the new version is used.
 *
 * Event Grid does not sign events, so nothing here can prove an event is genuine, and nothing trusts one: an
 * event is a hint to ask the vault again, whose answer is verified as always. The only check the handler can
 * make is the one the subscriber sets up: an optional shared secret in the endpoint URL (`?code=...`).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { AbortError, EventDeliveryError, InvalidArgumentError } from '../errors.js';

export const EVENT_GRID_VALIDATION_EVENT = 'Microsoft.EventGrid.SubscriptionValidationEvent';
const KEY_EVENTS = {
  'Microsoft.KeyVault.KeyNewVersionCreated': 'KeyNewVersionCreated',
  'Microsoft.KeyVault.KeyNearExpiry': 'KeyNearExpiry',
  'Microsoft.KeyVault.KeyExpired': 'KeyExpired',
} as const;
export type KeyVersionNoticeType = (typeof KEY_EVENTS)[keyof typeof KEY_EVENTS];

/** A new, expiring or expired key version, from an event or a poll. */
export interface KeyVersionNotice {
  type: KeyVersionNoticeType;
  /** Versioned key id. */
  kid: string;
  /** Versionless key id: `https://<vault>/keys/<name>`. */
  keyId: string;
  name: string;
  version: string;
  vaultName?: string;
  notBefore?: Date;
  expiresOn?: Date;
  /** Only from polling: when the version was created, and whether it is enabled. */
  createdOn?: Date;
  enabled?: boolean;
  /** Event id (or `poll:<kid>`). */
  id: string;
  source: 'EventGrid' | 'CloudEvents' | 'poll';
}

/** What a new version does to a `SecureKeyRelease`; a `SecureKeyRelease` satisfies it. */
export interface CurrentVersionCache {
  invalidateCurrentVersion(keyId: string): boolean;
}

type NoticeListener = (notice: KeyVersionNotice) => void | Promise<void>;

export interface EventGridHandlerOptions {
  onNewVersion?: NoticeListener;
  onNearExpiry?: NoticeListener;
  onExpired?: NoticeListener;
  /** Caches whose versionless mapping a new version drops (before `onNewVersion` runs). */
  skr?: CurrentVersionCache | readonly CurrentVersionCache[];
  /** Only these keys (versionless ids; host and name compared); events of other keys are acknowledged and ignored. */
  keyIds?: readonly string[];
  /** When set, every request must carry it as the `code` query parameter of the endpoint URL. */
  sharedSecret?: string;
  /** Largest body accepted. Default 1 MiB (Event Grid's batch limit). */
  maxBodyBytes?: number;
  /** Origins the CloudEvents `OPTIONS` handshake allows. Default `['eventgrid.azure.net']`; `'*'` allows any. */
  allowedOrigins?: readonly string[] | '*';
}

export interface EventGridRequest {
  method?: string;
  /** Path and query, for the shared secret. */
  url?: string;
  headers?: IncomingHttpHeaders | Record<string, string | string[] | undefined>;
  /** The body: raw bytes or text, or JSON a framework already parsed. */
  body?: unknown;
}

export interface EventGridResponse {
  status: number;
  headers: Record<string, string>;
  body?: unknown;
}

export interface EventGridHandler {
  /** Node `http` request listener. */
  (req: IncomingMessage, res: ServerResponse): void;
  /** The same over a request a framework already read. */
  handle(request: EventGridRequest): Promise<EventGridResponse>;
}

const DEFAULT_MAX_BODY = 1 << 20;
const SEEN_LIMIT = 4096;
const KID = /^(https?:\/\/[^/\s?#@]+)\/keys\/([0-9A-Za-z-]{1,127})\/([0-9A-Za-z]{1,64})$/;

type Json = Record<string, unknown>;

function header(headers: EventGridRequest['headers'], name: string): string | undefined {
  const value = headers?.[name] ?? headers?.[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function secondsToDate(value: unknown): Date | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? new Date(value * 1000) : undefined;
}

/** Versionless key ids compared by host and name (a vault names itself by its host). */
function keyMatcher(keyIds: readonly string[] | undefined): ((kid: string) => boolean) | undefined {
  if (!keyIds) return undefined;
  const wanted = new Set(
    keyIds.map((id) => {
      let url: URL;
      try {
        url = new URL(id);
      } catch {
        throw new InvalidArgumentError(
          `keyIds entry ${JSON.stringify(id)} is not https://<vault>/keys/<name>`,
        );
      }
      const name = /^\/keys\/([0-9A-Za-z-]{1,127})\/?$/.exec(url.pathname)?.[1];
      if (!name)
        throw new InvalidArgumentError(
          `keyIds entry ${JSON.stringify(id)} is not https://<vault>/keys/<name>`,
        );
      return `${url.hostname.toLowerCase()}/${name.toLowerCase()}`;
    }),
  );
  return (kid) => {
    const url = new URL(kid);
    const name = KID.exec(kid)?.[2] ?? '';
    return wanted.has(`${url.hostname.toLowerCase()}/${name.toLowerCase()}`);
  };
}

function invalidateAll(skr: EventGridHandlerOptions['skr'], kid: string): void {
  if (!skr) return;
  for (const cache of Array.isArray(skr) ? skr : [skr as CurrentVersionCache])
    cache.invalidateCurrentVersion(kid);
}

/** A Key Vault key event (either schema) as a notice; other events give undefined. */
function noticeOf(event: Json, source: 'EventGrid' | 'CloudEvents'): KeyVersionNotice | undefined {
  const type = source === 'EventGrid' ? event.eventType : event.type;
  if (typeof type !== 'string' || !Object.hasOwn(KEY_EVENTS, type)) return undefined;
  const data = event.data;
  const bad = (why: string) => new EventDeliveryError(`a ${type} event is malformed: ${why}`, 400);
  if (!isObject(data)) throw bad('no data object');
  if (data.ObjectType !== undefined && data.ObjectType !== 'Key') return undefined;
  const kid = data.Id;
  const match = typeof kid === 'string' ? KID.exec(kid) : null;
  if (!match || typeof kid !== 'string') throw bad('data.Id is not a versioned key id');
  const id = typeof event.id === 'string' && event.id.length > 0 ? event.id : `${type}:${kid}`;
  const notBefore = secondsToDate(data.NBF);
  const expiresOn = secondsToDate(data.EXP);
  return {
    type: KEY_EVENTS[type as keyof typeof KEY_EVENTS],
    kid,
    keyId: `${match[1]}/keys/${match[2]}`,
    name: match[2]!,
    version: match[3]!,
    ...(typeof data.VaultName === 'string' ? { vaultName: data.VaultName } : {}),
    ...(notBefore ? { notBefore } : {}),
    ...(expiresOn ? { expiresOn } : {}),
    id,
    source,
  };
}

function secretMatches(expected: string, url: string | undefined): boolean {
  let given: string | null = null;
  try {
    given = new URL(url ?? '/', 'http://localhost').searchParams.get('code');
  } catch {
    given = null;
  }
  if (given === null) return false;
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

function parseBody(body: unknown): unknown {
  if (body === undefined || body === null) return undefined;
  if (typeof body === 'string' || body instanceof Uint8Array) {
    const text = typeof body === 'string' ? body : Buffer.from(body).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch {
      throw new EventDeliveryError('the body is not JSON', 400);
    }
  }
  return body;
}

class Seen {
  readonly #set = new Set<string>();
  has(key: string): boolean {
    return this.#set.has(key);
  }
  add(key: string): void {
    this.#set.add(key);
    if (this.#set.size > SEEN_LIMIT) this.#set.delete(this.#set.values().next().value as string);
  }
}

export function createEventGridHandler(options: EventGridHandlerOptions = {}): EventGridHandler {
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (!Number.isSafeInteger(maxBody) || maxBody < 1)
    throw new InvalidArgumentError('maxBodyBytes must be a positive integer');
  if (options.sharedSecret !== undefined && options.sharedSecret.length < 16) {
    throw new InvalidArgumentError('sharedSecret must be at least 16 characters');
  }
  const matches = keyMatcher(options.keyIds);
  const origins = options.allowedOrigins ?? ['eventgrid.azure.net'];
  const seen = new Seen();

  async function deliver(notice: KeyVersionNotice): Promise<void> {
    if (matches && !matches(notice.kid)) return;
    // Event Grid delivers at least once: one version is news once, however often it arrives.
    const key =
      notice.type === 'KeyNewVersionCreated' ? `new:${notice.kid.toLowerCase()}` : `event:${notice.id}`;
    if (seen.has(key)) return;
    if (notice.type === 'KeyNewVersionCreated') {
      invalidateAll(options.skr, notice.kid);
      await options.onNewVersion?.(notice);
    } else if (notice.type === 'KeyNearExpiry') {
      await options.onNearExpiry?.(notice);
    } else {
      await options.onExpired?.(notice);
    }
    // Only once handled: a listener that failed gets the redelivery Event Grid makes after our 500.
    seen.add(key);
  }

  async function handle(request: EventGridRequest): Promise<EventGridResponse> {
    const method = (request.method ?? 'POST').toUpperCase();
    if (options.sharedSecret !== undefined && !secretMatches(options.sharedSecret, request.url)) {
      throw new EventDeliveryError('the request does not carry the shared secret (?code=...)', 401);
    }
    if (method === 'OPTIONS') {
      const origin = header(request.headers, 'webhook-request-origin');
      if (!origin) throw new EventDeliveryError('OPTIONS without WebHook-Request-Origin', 400);
      if (origins !== '*' && !origins.includes(origin.toLowerCase())) {
        throw new EventDeliveryError(`origin ${origin} is not allowed to deliver here`, 403);
      }
      return {
        status: 200,
        headers: { 'webhook-allowed-origin': origin, 'webhook-allowed-rate': '*', allow: 'POST, OPTIONS' },
      };
    }
    if (method !== 'POST')
      throw new EventDeliveryError(`method ${method} is not accepted; Event Grid POSTs`, 405);
    const contentType = (header(request.headers, 'content-type') ?? '').toLowerCase();
    const parsed = parseBody(request.body);

    const binaryType = header(request.headers, 'ce-type');
    let events: { event: Json; source: 'EventGrid' | 'CloudEvents' }[];
    if (binaryType !== undefined && header(request.headers, 'ce-specversion') !== undefined) {
      events = [
        {
          event: { type: binaryType, id: header(request.headers, 'ce-id'), data: parsed },
          source: 'CloudEvents',
        },
      ];
    } else {
      const list = Array.isArray(parsed) ? parsed : isObject(parsed) ? [parsed] : undefined;
      if (!list) throw new EventDeliveryError('the body is neither an event nor an array of events', 400);
      if (list.length > 5000) throw new EventDeliveryError('too many events in one delivery', 413);
      events = list.map((event) => {
        if (!isObject(event)) throw new EventDeliveryError('an event is not a JSON object', 400);
        const cloud = typeof event.specversion === 'string' || contentType.includes('cloudevents');
        return { event, source: cloud ? 'CloudEvents' : 'EventGrid' };
      });
    }
    for (const { event, source } of events) {
      const type = source === 'EventGrid' ? event.eventType : event.type;
      if (type === EVENT_GRID_VALIDATION_EVENT) {
        const code = isObject(event.data) ? event.data.validationCode : undefined;
        if (typeof code !== 'string' || code.length === 0 || code.length > 1024) {
          throw new EventDeliveryError('a subscription validation event without validationCode', 400);
        }
        return {
          status: 200,
          headers: { 'content-type': 'application/json' },
          body: { validationResponse: code },
        };
      }
    }
    const notices = events.map(({ event, source }) => noticeOf(event, source)).filter((n) => n !== undefined);
    for (const notice of notices) await deliver(notice);
    return { status: 200, headers: {} };
  }

  async function handleSafely(request: EventGridRequest): Promise<EventGridResponse> {
    try {
      return await handle(request);
    } catch (error) {
      if (error instanceof EventDeliveryError) {
        return {
          status: error.statusCode,
          headers: { 'content-type': 'application/json' },
          body: { error: error.message },
        };
      }
      // A listener failed: 500 makes Event Grid redeliver later. Its message stays in the process.
      return {
        status: 500,
        headers: { 'content-type': 'application/json' },
        body: { error: 'handler failed' },
      };
    }
  }

  const listener = ((req: IncomingMessage, res: ServerResponse) => {
    const send = (response: EventGridResponse) => {
      if (res.headersSent) return;
      const payload = response.body === undefined ? undefined : JSON.stringify(response.body);
      res.writeHead(response.status, response.headers);
      res.end(payload);
    };
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBody) {
      send({ status: 413, headers: {}, body: { error: 'body too large' } });
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > maxBody) {
        tooLarge = true;
        chunks.length = 0;
        send({ status: 413, headers: { connection: 'close' }, body: { error: 'body too large' } });
        return;
      }
      chunks.push(chunk);
    });
    req.on('error', () => send({ status: 400, headers: {}, body: { error: 'request aborted' } }));
    req.on('end', () => {
      if (tooLarge) return;
      void handleSafely({
        ...(req.method ? { method: req.method } : {}),
        ...(req.url ? { url: req.url } : {}),
        headers: req.headers,
        body: Buffer.concat(chunks),
      }).then(send);
    });
  }) as EventGridHandler;
  listener.handle = handleSafely;
  return listener;
}

// ---------------------------------------------------------------------------------------------------------
// polling
// ---------------------------------------------------------------------------------------------------------

/** The one `KeyClient` method polling uses; a `KeyClient` satisfies it. */
export interface KeyVersionLister {
  listPropertiesOfKeyVersions(
    name: string,
    options?: { abortSignal?: AbortSignal },
  ): AsyncIterable<{
    id?: string;
    name: string;
    version?: string;
    vaultUrl: string;
    enabled?: boolean;
    createdOn?: Date;
    notBefore?: Date;
    expiresOn?: Date;
  }>;
}

export interface WatchKeyVersionsOptions {
  /** Time between polls (after one ends, the next is this far away). At least 1 ms; minutes suit real vaults. */
  intervalMs: number;
  onNewVersion?: NoticeListener;
  skr?: CurrentVersionCache | readonly CurrentVersionCache[];
  /** Stops polling. */
  signal?: AbortSignal;
  /** A poll failed (throttling, network); polling goes on. Default: ignore. */
  onError?: (error: unknown) => void;
}

export interface KeyVersionWatcher {
  /** Versioned ids seen so far, lower-cased. */
  readonly versions: ReadonlySet<string>;
  /** Polls now (or joins the poll in flight) and returns the new versions it found. */
  poll(): Promise<KeyVersionNotice[]>;
  stop(): void;
}

/**
 * Lists the versions of `keyName` once (errors reach the caller: a missing `list` permission shows at once),
 * then every `intervalMs`, reporting versions not seen before, oldest first.
 */
export async function watchKeyVersions(
  client: KeyVersionLister,
  keyName: string,
  options: WatchKeyVersionsOptions,
): Promise<KeyVersionWatcher> {
  const interval = options.intervalMs;
  if (!Number.isFinite(interval) || interval < 1)
    throw new InvalidArgumentError('intervalMs must be at least 1');
  if (options.signal?.aborted) throw new AbortError('watchKeyVersions was aborted');
  const stopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
  const versions = new Set<string>();
  let inFlight: Promise<KeyVersionNotice[]> | undefined;
  let timer: NodeJS.Timeout | undefined;

  const list = async () => {
    const found: KeyVersionNotice[] = [];
    for await (const p of client.listPropertiesOfKeyVersions(keyName, { abortSignal: signal })) {
      const match = p.id ? KID.exec(p.id) : null;
      if (!match || !p.id || versions.has(p.id.toLowerCase())) continue;
      found.push({
        type: 'KeyNewVersionCreated',
        kid: p.id,
        keyId: `${match[1]}/keys/${match[2]}`,
        name: match[2]!,
        version: match[3]!,
        ...(p.createdOn ? { createdOn: p.createdOn } : {}),
        ...(p.enabled !== undefined ? { enabled: p.enabled } : {}),
        ...(p.notBefore ? { notBefore: p.notBefore } : {}),
        ...(p.expiresOn ? { expiresOn: p.expiresOn } : {}),
        id: `poll:${p.id}`,
        source: 'poll',
      });
    }
    return found.sort((a, b) => (a.createdOn?.getTime() ?? 0) - (b.createdOn?.getTime() ?? 0));
  };

  const baseline = await list();
  for (const n of baseline) versions.add(n.kid.toLowerCase());

  const poll = (): Promise<KeyVersionNotice[]> => {
    if (signal.aborted) return Promise.resolve([]);
    inFlight ??= (async () => {
      try {
        const fresh = await list();
        for (const notice of fresh) {
          invalidateAll(options.skr, notice.kid);
          await options.onNewVersion?.(notice);
          versions.add(notice.kid.toLowerCase());
        }
        return fresh;
      } finally {
        inFlight = undefined;
      }
    })();
    return inFlight;
  };

  const schedule = () => {
    if (signal.aborted) return;
    timer = setTimeout(() => {
      poll()
        .catch((error: unknown) => {
          if (!signal.aborted) options.onError?.(error);
        })
        .finally(schedule);
    }, interval);
    // Watching alone should not keep a process alive.
    timer.unref();
  };
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  schedule();

  return {
    versions,
    poll,
    stop: () => stopper.abort(),
  };
}
