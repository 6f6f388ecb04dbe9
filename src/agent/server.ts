/**
 * The key agent's server: one `SecureKeyRelease` (one platform, transfer key, token cache and key cache) for
 * every process of the machine, served over a Unix socket (HTTP/1.1 on it, so `curl --unix-socket` works),
 * and optionally on a loopback TCP port behind a bearer token. Two APIs on both: the native one (`/v1/...`)
 * and the one of Microsoft's confidential sidecar (`/status`, `/key/release`; see ./sidecar.ts).
 *
 * Authorization: a Unix peer is who the kernel says it is (SO_PEERCRED, read by the addon when the connection
 * is accepted); a TCP request has no such identity and must carry the token, then counts as `http` in the
 * rules. Every decision is logged with the caller and the key id, never key material or tokens.
 */
import { randomUUID, timingSafeEqual } from 'node:crypto';
import { chmod, chown, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import path from 'node:path';
import {
  AgentBusyError,
  AgentForbiddenError,
  AgentSocketError,
  CvmSkrError,
  InvalidArgumentError,
  MalformedDataError,
} from '../errors.js';
import { type PeerCredentials, tryLoadAddon } from '../hal/addon.js';
import type { SecureKeyRelease } from '../keyvault/secure-key-release.js';
import { type AgentCaller, type AgentRules, describeCaller } from './rules.js';
import { readJson, sendJson } from './http.js';
import { handleSidecar, isSidecarRoute } from './sidecar.js';
import { DEFAULT_AGENT_SOCKET, errorToWire, keyToWire } from './wire.js';

export interface AgentLogEntry {
  event: 'listening' | 'decision' | 'request-failed' | 'busy' | 'shutdown' | 'peer-unknown';
  [field: string]: unknown;
}

export interface AgentServerOptions {
  /** The one release client; the agent closes it on shutdown. */
  skr: SecureKeyRelease;
  /** The attestation endpoint `skr` uses (sidecar requests must name the same). */
  attestationEndpoint: string;
  rules: AgentRules;
  /** Unix socket path. Ignored with `listenFd`. */
  socket?: string;
  /** A listening socket inherited from systemd (socket activation: fd 3). */
  listenFd?: number;
  /** Mode of the socket file. Default 0o660. */
  mode?: number;
  /** Group owning the socket file (gid). */
  gid?: number;
  /** Opt-in loopback HTTP (127.0.0.1) on this port (0: any free port); needs `token`. */
  http?: { port: number; token: string };
  /** Requests doing work (release, prewarm) at one time; more are refused with AgentBusyError. Default 256. */
  maxPending?: number;
  /** Longest wait for requests in flight at shutdown before connections are cut. Default 30 000 ms. */
  shutdownTimeoutMs?: number;
  /** Where decisions and failures go. Default: one JSON line each on stderr. */
  log?: (entry: AgentLogEntry) => void;
  /** Reads peer credentials of an accepted Unix connection. Default: the addon's SO_PEERCRED. */
  peerCredentials?: (socket: Socket) => PeerCredentials;
}

export interface AgentServer {
  /** The Unix socket path (undefined with socket activation). */
  readonly socket: string | undefined;
  /** The loopback HTTP port, when enabled. */
  readonly httpPort: number | undefined;
  /** Requests doing work now. */
  readonly pending: number;
  /** Stops accepting, lets requests in flight finish, then closes the release client. */
  close(): Promise<void>;
}

export function defaultAgentLog(entry: AgentLogEntry): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`);
}

function addonPeerCredentials(socket: Socket): PeerCredentials {
  const loaded = tryLoadAddon();
  if (loaded instanceof Error) throw loaded;
  // Node has no public accessor for a socket's descriptor; the handle's is what libuv accepted.
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the accepted socket has no descriptor');
  return loaded.addon.peerCredentials(fd);
}

/** Status of each error class on the native API (the body carries the code either way). */
function statusOf(error: unknown): number {
  if (error instanceof AgentForbiddenError) return 403;
  if (error instanceof AgentBusyError) return 503;
  if (error instanceof InvalidArgumentError || error instanceof MalformedDataError) return 400;
  if (error instanceof CvmSkrError) return 502;
  return 500;
}

/**
 * What is at the socket path, read-only: nothing, or a socket file an agent that died left behind ('stale').
 * A file that is not a socket is refused, and so is a socket another process answers on (never replaced).
 */
async function socketPathState(socketPath: string): Promise<'free' | 'stale'> {
  const info = await lstat(socketPath).catch(() => undefined);
  if (!info) return 'free';
  if (!info.isSocket())
    throw new InvalidArgumentError(`${socketPath} exists and is not a socket; choose another --socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    throw new AgentSocketError(
      `socket ${socketPath}: another agent (or another program) already listens on it; stop it or choose another --socket`,
      socketPath,
    );
  }
  return 'stale';
}

const DEFAULT_AGENT_SOCKET_DIR = path.dirname(DEFAULT_AGENT_SOCKET);

/**
 * Checks a socket path before anything is opened or bound, and changes nothing: the path must fit sun_path,
 * and its folder must exist unless it is the default folder (`/run/cvm-skr`, on a tmpfs that a reboot
 * empties), which the agent creates. A folder the operator named is never made, so a mistyped `--socket`
 * leaves nothing behind. Symbolic links are followed (`/var/run` is a link to `/run` on Debian). A file
 * that is not a socket, or a socket another process answers on, is refused here too. Says whether a socket
 * file an agent that died left behind is there ('stale'), for the server to remove.
 */
export async function checkAgentSocketPath(socket: string): Promise<'free' | 'stale'> {
  const socketPath = path.resolve(socket);
  // sun_path holds 108 bytes with its terminating NUL (unix(7)); libuv in Node 20 binds a longer path cut
  // short, which would leave the agent listening somewhere its clients never look.
  if (Buffer.byteLength(socketPath) > 107) {
    throw new InvalidArgumentError(
      `socket ${socketPath}: a Unix socket path must be under 108 bytes (this one has ${Buffer.byteLength(socketPath)}); choose a shorter --socket`,
    );
  }
  const dir = path.dirname(socketPath);
  if (dir !== DEFAULT_AGENT_SOCKET_DIR) {
    const info = await stat(dir).catch(() => undefined);
    if (!info?.isDirectory()) {
      throw new InvalidArgumentError(
        `socket ${socketPath}: the folder ${dir} does not exist (only the default ${DEFAULT_AGENT_SOCKET_DIR} is created); create it or choose another --socket`,
      );
    }
  }
  return socketPathState(socketPath);
}

/** A socket that cannot be created or set up, as a coded error that says what to check. */
export function agentSocketError(socketPath: string, error: unknown): AgentSocketError {
  const code = (error as NodeJS.ErrnoException)?.code;
  const why =
    code === 'EACCES' || code === 'EPERM'
      ? `permission denied; run the agent as a user that may write to ${path.dirname(socketPath)} (and own the socket with --group), or choose another --socket`
      : code === 'EADDRINUSE'
        ? 'the address is in use; is another process listening there?'
        : `it cannot be set up (${code ?? 'unknown error'})`;
  return new AgentSocketError(`socket ${socketPath}: ${why}`, socketPath, { cause: error });
}

function listen(server: Server, how: { path: string } | { fd: number } | { port: number; host: string }) {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(how, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export async function startAgentServer(options: AgentServerOptions): Promise<AgentServer> {
  const log = options.log ?? defaultAgentLog;
  const maxPending = options.maxPending ?? 256;
  const peerCredentials = options.peerCredentials ?? addonPeerCredentials;
  const { skr, rules } = options;
  const callers = new WeakMap<Socket, AgentCaller | Error>();
  let pending = 0;
  let stopping = false;
  let idle: (() => void) | undefined;
  const token = options.http ? Buffer.from(options.http.token, 'utf8') : undefined;
  if (options.http && options.http.token.length < 16)
    throw new InvalidArgumentError('the HTTP token must be at least 16 characters (use a random one)');

  /** Logs and answers an authorization decision; true when allowed. */
  const decide = (caller: AgentCaller, route: string, keyId: string | undefined, allowed: boolean) => {
    log({
      event: 'decision',
      route,
      caller: describeCaller(caller),
      ...(caller.kind === 'unix' ? { pid: caller.pid, uid: caller.uid, gid: caller.gid } : {}),
      ...(keyId !== undefined ? { keyId } : {}),
      allowed,
    });
    if (!allowed) {
      throw new AgentForbiddenError(
        keyId === undefined
          ? `the agent has no rule for ${describeCaller(caller)}; add one to its rules file`
          : `the agent's rules do not give ${keyId} to ${describeCaller(caller)}; add a rule to its rules file`,
      );
    }
  };

  /** Counts a request doing work; refuses it when the bound is reached or the agent is stopping. */
  const work = async <T>(run: () => Promise<T>): Promise<T> => {
    if (stopping) throw new AgentBusyError('the agent is shutting down; call again once it has restarted');
    if (pending >= maxPending) {
      log({ event: 'busy', pending, maxPending });
      throw new AgentBusyError(
        `the agent has ${pending} requests pending (its --max-pending); back off and call again`,
      );
    }
    pending++;
    try {
      return await run();
    } finally {
      pending--;
      if (pending === 0) idle?.();
    }
  };

  const keyIdOf = (body: unknown): string => {
    const keyId = (body as { keyId?: unknown } | null)?.keyId;
    if (typeof keyId !== 'string' || keyId === '')
      throw new InvalidArgumentError('the request needs "keyId": "https://<vault>/keys/<name>[/<version>]"');
    return keyId;
  };

  const native = async (req: IncomingMessage, res: ServerResponse, caller: AgentCaller, route: string) => {
    try {
      if (req.method === 'GET' && route === '/v1/status') {
        return sendJson(res, 200, {
          ok: !stopping,
          attestationEndpoint: options.attestationEndpoint,
          pending,
          maxPending,
        });
      }
      if (req.method === 'GET' && route === '/v1/stats') {
        decide(caller, route, undefined, rules.knows(caller));
        return sendJson(res, 200, skr.stats());
      }
      if (req.method !== 'POST') return sendJson(res, 404, { error: errorToWire(notFound(req, route)) });
      const body = await readJson(req);
      if (route === '/v1/keys/release') {
        const keyId = keyIdOf(body);
        decide(caller, route, keyId, rules.allows(caller, keyId));
        const key = await work(() => skr.releaseKey(keyId));
        return sendJson(res, 200, { key: keyToWire(key) });
      }
      if (route === '/v1/prewarm') {
        decide(caller, route, undefined, rules.knows(caller));
        const result = await work(() => skr.prewarm());
        return sendJson(res, 200, result.ok ? { ok: true } : { ok: false, error: errorToWire(result.error) });
      }
      if (route === '/v1/keys/invalidate') {
        const keyId = (body as { keyId?: unknown } | null)?.keyId;
        if (keyId === undefined) {
          decide(caller, route, '*', rules.allowsAll(caller));
          skr.invalidate();
        } else {
          const id = keyIdOf(body);
          decide(caller, route, id, rules.allows(caller, id));
          skr.invalidate(id);
        }
        return sendJson(res, 200, {});
      }
      if (route === '/v1/keys/invalidate-current-version') {
        const keyId = keyIdOf(body);
        decide(caller, route, keyId, rules.allows(caller, keyId));
        return sendJson(res, 200, { dropped: skr.invalidateCurrentVersion(keyId) });
      }
      return sendJson(res, 404, { error: errorToWire(notFound(req, route)) });
    } catch (error) {
      if (!(error instanceof AgentForbiddenError))
        log({ event: 'request-failed', route, caller: describeCaller(caller), code: errorToWire(error).code });
      return sendJson(res, statusOf(error), { error: errorToWire(error) });
    }
  };

  const handler = (transport: 'unix' | 'http') => (req: IncomingMessage, res: ServerResponse) => {
    if (stopping) res.setHeader('connection', 'close');
    const route = new URL(req.url ?? '/', 'http://agent').pathname;
    let caller: AgentCaller | Error;
    if (transport === 'http') {
      const given = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const ok = token !== undefined && given !== undefined && safeEqual(Buffer.from(given, 'utf8'), token);
      caller = ok
        ? { kind: 'http' }
        : new AgentForbiddenError('the agent\'s HTTP port needs "Authorization: Bearer <token>" (its --token-file)');
    } else {
      caller = callers.get(req.socket) ?? new AgentForbiddenError('the caller\'s credentials are unknown');
    }
    // Health checks answer everyone: they carry nothing.
    const open = req.method === 'GET' && (route === '/status' || route === '/v1/status');
    if (caller instanceof Error && !open) {
      log({ event: 'decision', route, caller: transport === 'http' ? 'http without token' : 'unknown peer', allowed: false });
      const status = transport === 'http' ? 401 : 403;
      if (isSidecarRoute(route)) return sendJson(res, status, { error: caller.message });
      return sendJson(res, status, { error: errorToWire(caller) });
    }
    const who: AgentCaller = caller instanceof Error ? { kind: 'http' } : caller;
    if (isSidecarRoute(route)) {
      void handleSidecar(req, res, route, {
        caller: who,
        skr,
        rules,
        attestationEndpoint: options.attestationEndpoint,
        ready: () => !stopping,
        decide,
        work,
        log,
      });
      return;
    }
    void native(req, res, who, route);
  };

  const unix = createServer(handler('unix'));
  unix.on('connection', (socket: Socket) => {
    try {
      const peer = peerCredentials(socket);
      callers.set(socket, { kind: 'unix', ...peer });
    } catch (error) {
      log({ event: 'peer-unknown', reason: (error as Error).message });
      callers.set(socket, error as Error);
    }
  });
  let socketPath: string | undefined;
  if (options.listenFd !== undefined) {
    await listen(unix, { fd: options.listenFd });
  } else {
    const bound = path.resolve(options.socket ?? DEFAULT_AGENT_SOCKET);
    socketPath = bound;
    const found = await checkAgentSocketPath(bound);
    if (path.dirname(bound) === DEFAULT_AGENT_SOCKET_DIR) {
      await mkdir(DEFAULT_AGENT_SOCKET_DIR, { recursive: true, mode: 0o755 }).catch((error: unknown) => {
        throw agentSocketError(bound, error);
      });
    }
    // A socket file left by an agent that died is replaced; a live one was refused above.
    if (found === 'stale') {
      await unlink(bound).catch((error: unknown) => {
        throw agentSocketError(bound, error);
      });
    }
    // No window where the socket is reachable with the process umask's mode: created 0600, then widened.
    const umask = process.umask(0o177);
    try {
      await listen(unix, { path: bound }).catch((error: unknown) => {
        throw agentSocketError(bound, error);
      });
    } finally {
      process.umask(umask);
    }
    try {
      if (options.gid !== undefined) await chown(bound, -1, options.gid);
      await chmod(bound, options.mode ?? 0o660);
    } catch (error) {
      // A socket left with the wrong owner or mode is not served: close it and take its file away.
      await new Promise((resolve) => unix.close(resolve));
      await unlink(bound).catch(() => {});
      throw agentSocketError(bound, error);
    }
  }
  let tcp: Server | undefined;
  let httpPort: number | undefined;
  if (options.http) {
    tcp = createServer(handler('http'));
    await listen(tcp, { port: options.http.port, host: '127.0.0.1' }).catch(async (error) => {
      await new Promise((r) => unix.close(r));
      throw error;
    });
    httpPort = (tcp.address() as { port: number }).port;
  }
  log({
    event: 'listening',
    ...(socketPath ? { socket: socketPath } : { fd: options.listenFd }),
    ...(httpPort !== undefined ? { httpPort } : {}),
    instance: randomUUID(),
  });

  let closing: Promise<void> | undefined;
  return {
    socket: socketPath,
    httpPort,
    get pending() {
      return pending;
    },
    close() {
      closing ??= (async () => {
        stopping = true;
        log({ event: 'shutdown', pending });
        const servers = [unix, ...(tcp ? [tcp] : [])];
        const closed = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
        for (const s of servers) s.closeIdleConnections();
        if (pending > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            new Promise<void>((r) => (idle = r)),
            new Promise<void>((r) => (timer = setTimeout(r, options.shutdownTimeoutMs ?? 30_000))),
          ]);
          clearTimeout(timer);
        }
        // Answers in flight have been written; connections still open are idle keep-alives.
        for (const s of servers) s.closeAllConnections();
        await Promise.all(closed);
        await skr.close();
      })();
      return closing;
    },
  };
}

function notFound(req: IncomingMessage, route: string): InvalidArgumentError {
  return new InvalidArgumentError(`the agent has no ${req.method ?? 'GET'} ${route}`);
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
