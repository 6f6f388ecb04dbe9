/**
 * The client side of the key agent: what `new SecureKeyRelease({ agent: { socket } })` delegates to. One
 * HTTP/1.1 request per call on the agent's Unix socket, on a fresh connection (the agent authorizes each
 * connection by its peer credentials, and a restarted agent is simply reached again by the next call). Errors
 * come back as the same classes and codes as in-process; a missing or dying agent is `AgentUnavailableError`.
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { AbortError, AgentUnavailableError, CvmSkrError, InvalidArgumentError, MalformedDataError } from '../errors.js';
import type { ReleaseStats } from '../keyvault/diagnostics.js';
import type { PrewarmResult, ReleasedKey, ReleaseKeyCallOptions } from '../keyvault/secure-key-release.js';
import { callerSignal } from '../util/abort.js';
import { AGENT_SOCKET_ENV, DEFAULT_AGENT_SOCKET, errorFromWire, keyFromWire } from './wire.js';

export interface AgentClientOptions {
  /** The agent's socket. Default `$CVM_SKR_AGENT_SOCKET`, else `/run/cvm-skr/agent.sock`. */
  socket?: string;
  /** Longest wait for one answer. Default 90 000 ms (longer than the agent's own release timeout). */
  timeoutMs?: number;
}

/**
 * The agent `SecureKeyRelease` should use, from its `agent` option and the environment, or undefined to work
 * in-process: `agent: false` never, an object or `true` always, `'auto'` when the socket exists; without the
 * option, when `$CVM_SKR_AGENT_SOCKET` is set and no platform object was passed (a caller that hands over its
 * own platform wants it used).
 */
export function agentSocketFor(
  agent: AgentClientOptions | boolean | 'auto' | undefined,
  platform: unknown,
): AgentClientOptions | undefined {
  const envSocket = process.env[AGENT_SOCKET_ENV];
  if (agent === false) return undefined;
  if (agent === true) return { socket: envSocket || DEFAULT_AGENT_SOCKET };
  if (agent === 'auto') {
    const socket = envSocket || DEFAULT_AGENT_SOCKET;
    return existsSync(socket) ? { socket } : undefined;
  }
  if (typeof agent === 'object' && agent !== null) return { ...agent, socket: agent.socket ?? (envSocket || DEFAULT_AGENT_SOCKET) };
  if (agent !== undefined) throw new InvalidArgumentError('agent must be an object, true, false or "auto"');
  if (envSocket && (platform === undefined || platform === 'auto')) return { socket: envSocket };
  return undefined;
}

export class AgentClient {
  readonly socket: string;
  readonly #timeoutMs: number;
  /** Invalidations not yet acknowledged: later calls wait for them, so they see their effect. */
  #barrier: Promise<unknown> = Promise.resolve();

  constructor(options: AgentClientOptions = {}) {
    this.socket = options.socket ?? (process.env[AGENT_SOCKET_ENV] || DEFAULT_AGENT_SOCKET);
    this.#timeoutMs = options.timeoutMs ?? 90_000;
  }

  async releaseKey(keyId: string, options: ReleaseKeyCallOptions = {}): Promise<ReleasedKey> {
    if (typeof keyId !== 'string' || keyId === '')
      throw new InvalidArgumentError('releaseKey needs a key id: https://<vault>/keys/<name>[/<version>]');
    await this.#barrier;
    const answer = (await this.#call('POST', '/v1/keys/release', { keyId }, callerSignal(options))) as {
      key?: unknown;
    };
    return keyFromWire(answer.key);
  }

  async prewarm(): Promise<PrewarmResult> {
    try {
      const answer = (await this.#call('POST', '/v1/prewarm', {})) as { ok?: boolean; error?: unknown };
      return answer.ok === true ? { ok: true } : { ok: false, error: errorFromWire(answer.error, this.socket) };
    } catch (error) {
      return { ok: false, error: error as Error };
    }
  }

  /** The agent's counters (shared by every client of the agent). */
  async stats(): Promise<ReleaseStats> {
    return (await this.#call('GET', '/v1/stats')) as ReleaseStats;
  }

  async status(): Promise<{ ok: boolean; attestationEndpoint: string; pending: number; maxPending: number }> {
    return (await this.#call('GET', '/v1/status')) as never;
  }

  /** Asks the agent to forget keys (all needs a rule allowing `*`); later calls of this client wait for it. */
  invalidate(keyId?: string): Promise<void> {
    const done = this.#barrier.then(() =>
      this.#call('POST', '/v1/keys/invalidate', keyId === undefined ? {} : { keyId }),
    );
    this.#barrier = done.catch(() => undefined);
    return done.then(() => undefined);
  }

  invalidateCurrentVersion(keyId: string): Promise<boolean> {
    const done = this.#barrier.then(() => this.#call('POST', '/v1/keys/invalidate-current-version', { keyId }));
    this.#barrier = done.catch(() => undefined);
    return done.then((answer) => (answer as { dropped?: boolean }).dropped === true);
  }

  #call(method: 'GET' | 'POST', path: string, body?: unknown, signal?: AbortSignal): Promise<unknown> {
    const unavailable = (why: string, cause?: unknown) =>
      new AgentUnavailableError(
        `the cvm-skr agent at ${this.socket} ${why}; is it running (systemctl status cvm-skr-agent.socket)? Call again once it is`,
        this.socket,
        cause === undefined ? undefined : { cause },
      );
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new AbortError('the call to the agent was cancelled'));
      const text = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        {
          socketPath: this.socket,
          path,
          method,
          agent: false,
          headers: {
            host: 'cvm-skr-agent',
            ...(text !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }
              : {}),
          },
          timeout: this.#timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (error) => reject(unavailable('broke the connection', error)));
          res.on('end', () => {
            const raw = Buffer.concat(chunks).toString('utf8');
            chunks.forEach((c) => c.fill(0));
            let parsed: unknown;
            try {
              parsed = JSON.parse(raw);
            } catch (error) {
              return reject(
                new MalformedDataError('ERR_AGENT_ANSWER_MALFORMED', `the agent at ${this.socket} answered HTTP ${res.statusCode} without JSON`, {
                  cause: error,
                }),
              );
            }
            if (res.statusCode === 200) return resolve(parsed);
            const wire = (parsed as { error?: unknown } | null)?.error;
            const error = errorFromWire(wire, this.socket);
            reject(error instanceof CvmSkrError ? error : unavailable('answered an unknown error'));
          });
        },
      );
      const onAbort = () => req.destroy(new AbortError('the call to the agent was cancelled'));
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('close', () => signal?.removeEventListener('abort', onAbort));
      req.on('timeout', () => req.destroy(unavailable(`did not answer within ${this.#timeoutMs} ms`)));
      req.on('error', (error: NodeJS.ErrnoException) => {
        if (error instanceof CvmSkrError) return reject(error);
        const why =
          error.code === 'ENOENT'
            ? 'does not exist'
            : error.code === 'ECONNREFUSED'
              ? 'refused the connection (not running)'
              : error.code === 'EACCES'
                ? 'may not be opened by this user (socket mode/group)'
                : `failed (${error.code ?? 'connection error'})`;
        reject(unavailable(why, error));
      });
      req.end(text);
    });
  }
}
