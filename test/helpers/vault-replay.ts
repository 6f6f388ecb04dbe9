/**
 * Replays recorded Key Vault conversations (request sequences and the real service's answers, from the Azure
 * SDK recordings in test/fixtures/kv-recordings) against the emulated vault, and lists every difference:
 * status code, error code (and the `AKV...` rule code a message starts with), and body shape (field names,
 * nesting, JSON types, which fields are present, array lengths). Values that cannot match are not compared:
 * times, ids, versions, key material, signatures, tokens.
 *
 * Mapping: the recorded host becomes the emulator's URL; a key version the recording saw in an answer
 * becomes the version the emulator answered at the same place; `release_policy.data` authorities become the
 * test issuer; a release `target` becomes a fresh token of the test issuer. A recorded 401 challenge is
 * replayed without a token (as the SDK sends it), every other request with one. A run of the same request
 * (the SDK polling a long-running delete or recover) is sent once and compared with the run's last answer.
 */
import { rawRequest } from './vault-setup.js';

export interface RecordedEntry {
  RequestUri: string;
  RequestMethod: string;
  RequestBody: unknown;
  StatusCode: number;
  ResponseBody: unknown;
}

export interface Recording {
  /** File name in test/fixtures/kv-recordings. */
  name: string;
  source: { repo: string; path: string; commit: string };
  apiVersion: string;
  trimmed?: string;
  Entries: RecordedEntry[];
}

export interface Difference {
  recording: string;
  /** Index of the entry in the recording (the last of a polling run). */
  entry: number;
  /** `METHOD /path/template`, e.g. `POST /keys/{name}/create`. */
  operation: string;
  /** Where in the answer: `status`, `error.code`, or a JSON path such as `attributes.exportable`. */
  path: string;
  recorded: string;
  emulator: string;
}

/** A documented, justified difference. Every field given must match; `reason` says why it is accepted. */
export interface ReplayException {
  recording?: string;
  operation?: string;
  /** A JSON path, or a prefix of one ending in `*` (e.g. `key.*`). */
  path?: string;
  reason: string;
}

export interface ReplayTarget {
  vaultUrl: string;
  caPem: string;
  token: () => Promise<string>;
  /** The authority test tokens are issued by, and a fresh token for a release `target`. */
  issuer?: { url: string; token: (claims: Record<string, unknown>) => Promise<string> };
}

const RECORDED_HOSTS = /^https:\/\/[a-z0-9_-]+\.(vault|managedhsm)\.azure\.net/i;
const VERSION = /^[0-9a-f]{32}$/;

/** `POST /keys/{name}/{version}/sign` from a recorded URI. */
export function operationOf(method: string, uri: string): string {
  const path = new URL(uri).pathname;
  const parts = path.split('/');
  const named = new Set(['keys', 'deletedkeys']);
  const out = parts.map((p, i) => {
    if (i === 2 && named.has(parts[1] ?? '') && !['restore', 'import'].includes(p)) return '{name}';
    if (i === 3 && VERSION.test(p)) return '{version}';
    return p;
  });
  return `${method} ${out.join('/')}`;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

/** Shape differences between a recorded and an emulated JSON value. */
export function shapeDifferences(recorded: unknown, emulated: unknown, path = ''): [string, string, string][] {
  const here = path || '(body)';
  const rt = typeOf(recorded);
  const et = typeOf(emulated);
  if (rt !== et) return [[here, rt, et]];
  if (rt === 'array') {
    const r = recorded as unknown[];
    const e = emulated as unknown[];
    if (r.length !== e.length) return [[`${here}.length`, String(r.length), String(e.length)]];
    return r.flatMap((item, i) => shapeDifferences(item, e[i], `${path}[${i}]`));
  }
  if (rt === 'object') {
    const r = recorded as Record<string, unknown>;
    const e = emulated as Record<string, unknown>;
    const out: [string, string, string][] = [];
    for (const k of new Set([...Object.keys(r), ...Object.keys(e)])) {
      const sub = path ? `${path}.${k}` : k;
      if (!(k in e)) out.push([sub, `present (${typeOf(r[k])})`, 'absent']);
      else if (!(k in r)) out.push([sub, 'absent', `present (${typeOf(e[k])})`]);
      else out.push(...shapeDifferences(r[k], e[k], sub));
    }
    return out;
  }
  return [];
}

function errorOf(body: unknown): { code?: unknown; message?: unknown } | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const error = (body as { error?: unknown }).error;
  return typeof error === 'object' && error !== null ? (error as { code?: unknown; message?: unknown }) : undefined;
}

/** The service rule a message starts with (`AKV10000`, `AKV.SKR.1020`), if any. */
export function ruleCode(message: unknown): string | undefined {
  return typeof message === 'string' ? /^(AKV[.A-Z]*\d+):/.exec(message)?.[1] : undefined;
}

/** Recorded version -> emulator version, learned from key ids at the same place in both answers. */
function learnVersions(recorded: unknown, emulated: unknown, map: Map<string, string>): void {
  if (typeof recorded === 'string' && typeof emulated === 'string') {
    const r = /\/keys\/[^/]+\/([0-9a-f]{32})$/.exec(recorded)?.[1];
    const e = /\/keys\/[^/]+\/([0-9a-f]{32})$/.exec(emulated)?.[1];
    if (r && e) map.set(r, e);
    return;
  }
  if (Array.isArray(recorded) && Array.isArray(emulated)) {
    recorded.forEach((x, i) => learnVersions(x, emulated[i], map));
    return;
  }
  if (typeof recorded === 'object' && recorded !== null && typeof emulated === 'object' && emulated !== null) {
    for (const [k, v] of Object.entries(recorded)) learnVersions(v, (emulated as Record<string, unknown>)[k], map);
  }
}

function mapText(text: string, target: ReplayTarget, versions: Map<string, string>): string {
  let out = text.replace(RECORDED_HOSTS, target.vaultUrl);
  for (const [r, e] of versions) out = out.split(r).join(e);
  return out;
}

async function mapBody(body: unknown, target: ReplayTarget, versions: Map<string, string>): Promise<unknown> {
  if (body === null || body === undefined) return undefined;
  const copy = JSON.parse(mapText(JSON.stringify(body), target, versions)) as Record<string, unknown>;
  const issuer = target.issuer;
  const policy = copy.release_policy as { data?: unknown } | undefined;
  if (issuer && typeof policy?.data === 'string') {
    // The recorded authority is the SDK team's test attestation site; point the policy at our test issuer.
    const doc = JSON.parse(Buffer.from(policy.data, 'base64url').toString('utf8')) as {
      anyOf?: { authority?: string }[];
    };
    for (const a of doc.anyOf ?? []) a.authority = `${issuer.url}/`;
    policy.data = Buffer.from(JSON.stringify(doc), 'utf8').toString('base64url');
  }
  if (issuer && typeof copy.target === 'string') {
    // The recorded token's claims that the recorded policy tests (`sdk-test`), from our issuer.
    copy.target = await issuer.token({ 'sdk-test': true });
  }
  return copy;
}

function requestKey(e: RecordedEntry): string {
  return JSON.stringify([e.RequestMethod, e.RequestUri, e.RequestBody, isChallenge(e)]);
}

/** A recorded 401 answer: the SDK's first, token-less request. */
function isChallenge(e: RecordedEntry): boolean {
  return e.StatusCode === 401;
}

/** Replays one recording; returns every difference (none when the emulator answers like the service). */
export async function replay(recording: Recording, target: ReplayTarget): Promise<Difference[]> {
  const versions = new Map<string, string>();
  const differences: Difference[] = [];
  const entries = recording.Entries;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    // A polling run: send once, compare with the run's last answer.
    if (i + 1 < entries.length && requestKey(entries[i + 1]!) === requestKey(entry)) continue;
    const operation = operationOf(entry.RequestMethod, entry.RequestUri);
    const url = mapText(entry.RequestUri, target, versions);
    const body = await mapBody(entry.RequestBody, target, versions);
    const answer = await rawRequest(url, target.caPem, {
      method: entry.RequestMethod,
      ...(isChallenge(entry) ? {} : { token: await target.token() }),
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    let emulated: unknown = null;
    try {
      emulated = answer.body === '' ? null : JSON.parse(answer.body);
    } catch {
      emulated = answer.body;
    }
    const add = (path: string, recorded: string, emu: string) =>
      differences.push({ recording: recording.name, entry: i, operation, path, recorded, emulator: emu });
    if (answer.status !== entry.StatusCode) add('status', String(entry.StatusCode), String(answer.status));
    const rErr = errorOf(entry.ResponseBody);
    const eErr = errorOf(emulated);
    if (rErr && eErr) {
      if (rErr.code !== eErr.code) add('error.code', String(rErr.code), String(eErr.code));
      const rRule = ruleCode(rErr.message);
      const eRule = ruleCode(eErr.message);
      if (rRule !== eRule) add('error.message rule', String(rRule ?? '(none)'), String(eRule ?? '(none)'));
    }
    for (const [path, r, e] of shapeDifferences(entry.ResponseBody, emulated)) add(path, r, e);
    learnVersions(entry.ResponseBody, emulated, versions);
  }
  return differences;
}

function matches(pattern: string | undefined, value: string): boolean {
  if (pattern === undefined) return true;
  return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
}

/** The exception that documents a difference, if any. */
export function exceptionFor(d: Difference, exceptions: readonly ReplayException[]): ReplayException | undefined {
  return exceptions.find(
    (x) => matches(x.recording, d.recording) && matches(x.operation, d.operation) && matches(x.path, d.path),
  );
}

/** A fixed-width table of differences, one per line, with the exception reason when one applies. */
export function formatTable(differences: readonly Difference[], exceptions: readonly ReplayException[]): string {
  const rows = differences.map((d) => [
    d.recording.replace(/\.json$/, ''),
    String(d.entry),
    d.operation,
    d.path,
    d.recorded,
    d.emulator,
    exceptionFor(d, exceptions)?.reason ?? 'NOT DOCUMENTED',
  ]);
  const head = ['recording', '#', 'operation', 'where', 'real service', 'emulator', 'exception'];
  const widths = head.map((h, i) => Math.min(60, Math.max(h.length, ...rows.map((r) => r[i]!.length))));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('-|-'), ...rows.map(line)].join('\n');
}
