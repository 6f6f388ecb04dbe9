/**
 * HTTP layer of the emulated vault: routes the Key Vault keys REST API (served at the root path, as key ids
 * must be `scheme://host[:port]/keys/{name}[/{version}]`), runs the SDK's challenge flow (an
 * unauthenticated request gets 401 with `WWW-Authenticate: Bearer authorization=..., resource=...`),
 * authenticates and authorises each call, and answers in the service's JSON and error shapes. The token
 * endpoint (App Service managed identity protocol) is a separate handler.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { InvalidArgumentError } from '../../errors.js';
import { readBoundedBody } from '../../util/http-body.js';
import { EmulatedVaultRequestError, EmulatorStateError } from '../errors.js';
import type { KeyPermission, VaultAuth } from './auth.js';
import { type DataPlaneContext, dataPlaneRoute } from './data-plane.js';
import { type ReleaseContext, releaseKey } from './release.js';
import type { VaultStore } from './store.js';
import type { FixedWindowThrottle } from '../throttle.js';
import { VaultErrors } from './vault-error.js';

/** Largest request body accepted. */
const MAX_BODY_BYTES = 1024 * 1024;
/**
 * Key Vault data-plane API versions the emulator answers. The service refuses any other with 400
 * `BadParameter` "The specified version (X) is not recognized. Consider using the latest supported version
 * (Y)." (a real answer quoted in Azure/azure-sdk-for-python issue 28595). The list is the versions the
 * official SDKs send: the JS SDK's `KnownVersions` (7.5, 7.6-preview.2, 7.6, 2025-07-01) and the older
 * ones its recordings were made with (7.3, 7.4-preview.1; Azure/azure-sdk-for-js
 * sdk/keyvault/keyvault-keys/recordings/node).
 */
export const SUPPORTED_API_VERSIONS: readonly string[] = [
  '2016-10-01',
  '7.0',
  '7.1',
  '7.2',
  '7.3-preview',
  '7.3',
  '7.4-preview.1',
  '7.4',
  '7.5-preview.1',
  '7.5',
  '7.6-preview.1',
  '7.6-preview.2',
  '7.6',
  '2025-06-01-preview',
  '2025-07-01',
];
const LATEST_API_VERSION = '2025-07-01';
/**
 * Versions whose answers leave out `attributes.exportable` when it is false: the service's 7.3 answers for a
 * non-exportable key have no `exportable` field, its 7.4-preview.1 answers say `"exportable": false`
 * (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/node: keys_client__..._key_rotation/
 * recording_rotatekey_supports_rotating_a_key.json at 7.3, keys_client__create_read_update_and_delete_operations/
 * recording_can_get_a_specific_version_of_a_key.json at 7.4-preview.1).
 */
const NO_EXPORTABLE_FALSE = new Set(['2016-10-01', '7.0', '7.1', '7.2', '7.3-preview', '7.3']);

/** The answer as an older API version shapes it (see NO_EXPORTABLE_FALSE). */
function forApiVersion(body: unknown, apiVersion: string): unknown {
  if (!NO_EXPORTABLE_FALSE.has(apiVersion)) return body;
  const strip = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(strip);
    else if (typeof v === 'object' && v !== null) {
      const o = v as Record<string, unknown>;
      const a = o.attributes as Record<string, unknown> | undefined;
      if (typeof a === 'object' && a !== null && a.exportable === false) delete a.exportable;
      Object.values(o).forEach(strip);
    }
  };
  strip(body);
  return body;
}

/** App Service managed identity API version (what @azure/msal-node sends). */
export const MANAGED_IDENTITY_API_VERSION = '2019-08-01';

export interface VaultHandlerOptions {
  store: VaultStore;
  auth: VaultAuth;
  release: ReleaseContext;
  /** Cryptographic operations, backup/restore and random bytes (data-plane.ts). */
  dataPlane: DataPlaneContext;
  /** Resource named in the challenge and required as token audience. */
  resource: string;
  /** Opt-in throttle for key operations (release and cryptographic operations); default none. */
  throttle?: FixedWindowThrottle;
  /** Resolves once every state change so far is on disk (emulators with a state file). */
  commit?: () => Promise<void>;
}

type Json = Record<string, unknown>;

function send(
  res: ServerResponse,
  status: number,
  body?: unknown,
  headers: Record<string, string> = {},
): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-cache',
    'x-ms-request-id': randomUUID(),
    'x-ms-keyvault-service-version': '1.9.0.0',
    ...headers,
  });
  res.end(text);
}

function errorBody(e: EmulatedVaultRequestError): Json {
  return {
    error: {
      code: e.serviceCode,
      message: e.message,
      ...(e.innerCode ? { innererror: { code: e.innerCode } } : {}),
    },
  };
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const body = await readBoundedBody(req, MAX_BODY_BYTES);
  if (body === undefined) throw new EmulatedVaultRequestError(413, 'RequestEntityTooLarge', 'The request body is too large.');
  const text = body.toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    throw VaultErrors.badParameter('The request body is not valid JSON.');
  }
}

interface Route {
  permission: KeyPermission;
  run: (body: unknown) => Promise<{ status: number; body?: unknown }> | { status: number; body?: unknown };
}

const ok = (body: unknown) => ({ status: 200, body });

/** Key operations the throttle counts: release and the cryptographic operations ("all other transactions"). */
const THROTTLED_PERMISSIONS: ReadonlySet<KeyPermission> = new Set<KeyPermission>([
  'release',
  'encrypt',
  'decrypt',
  'wrapKey',
  'unwrapKey',
  'sign',
  'verify',
]);

function route(
  o: VaultHandlerOptions,
  method: string,
  parts: string[],
  query: URLSearchParams,
  apiVersion: string,
): Route | undefined {
  const dataPlane = dataPlaneRoute(o.dataPlane, method, parts);
  if (dataPlane) return dataPlane;
  const { store } = o;
  const [root, name, a, b] = parts;
  if (root === 'keys') {
    if (name === undefined) {
      return method === 'GET'
        ? { permission: 'list', run: () => ok(store.listKeys(query, apiVersion)) }
        : undefined;
    }
    if (a === undefined || (a === '' && parts.length === 3)) {
      switch (method) {
        case 'GET':
          return { permission: 'get', run: () => ok(store.getKey(name)) };
        case 'PUT':
          return { permission: 'import', run: (body) => ok(store.importKey(name, body)) };
        case 'PATCH':
          return { permission: 'update', run: (body) => ok(store.updateKey(name, undefined, body)) };
        case 'DELETE':
          return a === undefined ? { permission: 'delete', run: () => ok(store.deleteKey(name)) } : undefined;
        default:
          return undefined;
      }
    }
    if (b === undefined) {
      if (a === 'create' && method === 'POST') {
        return { permission: 'create', run: async (body) => ok(await store.createKey(name, body)) };
      }
      if (a === 'versions' && method === 'GET') {
        return { permission: 'list', run: () => ok(store.listVersions(name, query, apiVersion)) };
      }
      if (a === 'rotationpolicy') {
        if (method === 'GET')
          return { permission: 'getrotationpolicy', run: () => ok(store.getRotationPolicy(name)) };
        if (method === 'PUT') {
          return { permission: 'setrotationpolicy', run: (body) => ok(store.setRotationPolicy(name, body)) };
        }
        return undefined;
      }
      if (a === 'rotate' && method === 'POST') {
        return { permission: 'rotate', run: async () => ok(await store.rotateKey(name)) };
      }
      if (a === 'release' && method === 'POST') {
        return {
          permission: 'release',
          run: async (body) => ok(await releaseKey(o.release, name, undefined, body, apiVersion)),
        };
      }
      if (method === 'GET') return { permission: 'get', run: () => ok(store.getKey(name, a)) };
      if (method === 'PATCH')
        return { permission: 'update', run: (body) => ok(store.updateKey(name, a, body)) };
      return undefined;
    }
    if (b === 'release' && parts.length === 4 && method === 'POST') {
      // An empty version segment (`/keys/{name}//release`) is a versionless release: the Python SDK sends it
      // (Azure/azure-sdk-for-python sdk/keyvault/azure-keyvault-keys/azure/keyvault/keys/_client.py,
      // `release_key`: `key_version=version or ""`), and so did the JS SDK when the service answered 200
      // (recording keys_client__create_read_update_and_delete_operations_releasekey/
      // recording_can_create_an_exportable_key_and_release_it.json in Azure/azure-sdk-for-js).
      const version = a === '' ? undefined : a;
      return {
        permission: 'release',
        run: async (body) => ok(await releaseKey(o.release, name, version, body, apiVersion)),
      };
    }
    return undefined;
  }
  if (root === 'deletedkeys') {
    if (name === undefined) {
      return method === 'GET'
        ? { permission: 'list', run: () => ok(store.listDeletedKeys(query, apiVersion)) }
        : undefined;
    }
    if (a === undefined) {
      if (method === 'GET') return { permission: 'get', run: () => ok(store.getDeletedKey(name)) };
      if (method === 'DELETE') {
        return {
          permission: 'purge',
          run: () => {
            store.purgeDeletedKey(name);
            return { status: 204 };
          },
        };
      }
      return undefined;
    }
    if (a === 'recover' && b === undefined && method === 'POST') {
      return { permission: 'recover', run: () => ok(store.recoverDeletedKey(name)) };
    }
  }
  return undefined;
}

function challengeHeader(o: VaultHandlerOptions): string {
  return `Bearer authorization="https://login.microsoftonline.com/${o.auth.tenantId}", resource="${o.resource}"`;
}

export function createVaultHandler(
  o: VaultHandlerOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const method = (req.method ?? 'GET').toUpperCase();
    try {
      let url: URL;
      let parts: string[];
      try {
        url = new URL(req.url ?? '/', 'http://vault.invalid');
        parts = url.pathname.split('/').slice(1).map(decodeURIComponent);
      } catch {
        req.resume();
        throw VaultErrors.badParameter('The request URL is malformed.');
      }
      const apiVersion = url.searchParams.get('api-version');
      if (!req.headers.authorization) {
        req.resume();
        // The service's wording, rule code included (recorded 401 answers in Azure/azure-sdk-for-js
        // sdk/keyvault/keyvault-keys/recordings/node, e.g. keys_client__..._key_rotation/
        // recording_rotatekey_supports_rotating_a_key.json).
        throw new EmulatedVaultRequestError(
          401,
          'Unauthorized',
          'AKV10000: Request is missing a Bearer or PoP token.',
        );
      }
      const principal = await o.auth.authenticate(req.headers.authorization, o.resource);
      if (!apiVersion) throw VaultErrors.badParameter("The 'api-version' query parameter is missing.");
      if (!SUPPORTED_API_VERSIONS.includes(apiVersion)) {
        req.resume();
        throw VaultErrors.badParameter(
          `The specified version (${apiVersion}) is not recognized. Consider using the latest supported version (${LATEST_API_VERSION}).`,
        );
      }
      const r = route(o, method, parts, url.searchParams, apiVersion);
      if (!r) {
        req.resume();
        throw new EmulatedVaultRequestError(
          404,
          'NotFound',
          `The operation ${method} ${url.pathname} is not supported.`,
        );
      }
      o.auth.authorize(principal, r.permission);
      if (o.throttle && method === 'POST' && THROTTLED_PERMISSIONS.has(r.permission)) {
        const verdict = o.throttle.admit();
        if (!verdict.admitted) {
          req.resume();
          // 429 + Retry-After: MicrosoftDocs articles/key-vault/general/overview-throttling.md. No recorded 429
          // body of the service was found; the code and message are the emulator's own.
          send(
            res,
            429,
            {
              error: {
                code: 'Throttled',
                message: 'Request was not processed because too many requests were received (emulated limit).',
              },
            },
            { 'retry-after': String(verdict.retryAfterSeconds) },
          );
          return;
        }
      }
      let body: unknown;
      if (method === 'GET' || method === 'DELETE') req.resume();
      else body = await readBody(req);
      const result = await r.run(body);
      // Durability before acknowledgement: nothing is answered until every change so far (this request's and
      // any it could have observed) is fsynced.
      if (o.commit) await o.commit();
      send(res, result.status, forApiVersion(result.body, apiVersion));
    } catch (e) {
      if (e instanceof EmulatedVaultRequestError) {
        // A refusal (a 409 on a name a concurrent create just took) must not tell of state a crash could undo.
        if (o.commit) await o.commit().catch(() => {});
        const challenge = e.statusCode === 401 && !req.headers.authorization;
        send(
          res,
          e.statusCode,
          challenge && !o.dataPlane.flavour.challengeBody ? undefined : errorBody(e),
          e.statusCode === 401 ? { 'www-authenticate': challengeHeader(o) } : {},
        );
        return;
      }
      if (e instanceof EmulatorStateError) {
        send(res, 500, {
          error: {
            code: 'InternalServerError',
            message: 'The emulator could not write its state file; the change may not survive a restart.',
          },
        });
        return;
      }
      if (e instanceof InvalidArgumentError) {
        send(res, 400, { error: { code: 'BadParameter', message: e.message } });
        return;
      }
      send(res, 500, {
        error: { code: 'InternalServerError', message: 'The emulated vault failed unexpectedly.' },
      });
    }
  };
  return (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent)
        send(res, 500, { error: { code: 'InternalServerError', message: 'Unexpected failure.' } });
      else res.destroy();
    });
  };
}

/**
 * The App Service managed identity token endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), as
 * `ManagedIdentityCredential` calls it: `GET ?api-version=2019-08-01&resource=...[&client_id=...]` with
 * header `X-IDENTITY-HEADER`; answers `{access_token, expires_on, resource, token_type, client_id}`.
 */
export function createTokenHandler(auth: VaultAuth): (req: IncomingMessage, res: ServerResponse) => void {
  const fail = (res: ServerResponse, status: number, error: string, description: string) =>
    send(res, status, { error, error_description: description, statusCode: status });
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://token.invalid');
    } catch {
      return fail(res, 400, 'invalid_request', 'The request URL is malformed.');
    }
    if (req.method !== 'GET' || url.pathname.replace(/\/+$/, '') !== '/msi/token') {
      return fail(res, 404, 'not_found', 'Use GET /msi/token.');
    }
    const header = req.headers['x-identity-header'];
    if (!auth.checkIdentityHeader(typeof header === 'string' ? header : undefined)) {
      return fail(
        res,
        401,
        'unauthorized',
        'X-IDENTITY-HEADER is missing or wrong: use the IDENTITY_HEADER value.',
      );
    }
    const resource = url.searchParams.get('resource');
    if (!resource) return fail(res, 400, 'invalid_request', 'The resource query parameter is required.');
    const id =
      url.searchParams.get('client_id') ??
      url.searchParams.get('principal_id') ??
      url.searchParams.get('object_id') ??
      url.searchParams.get('mi_res_id') ??
      undefined;
    try {
      const { token, expiresOn, principal } = await auth.issueToken(id, resource);
      send(res, 200, {
        access_token: token,
        expires_on: expiresOn,
        resource: resource.replace(/\/+$/, ''),
        token_type: 'Bearer',
        client_id: principal.id,
      });
    } catch {
      fail(res, 400, 'invalid_request', 'No managed identity with that id is configured in the emulator.');
    }
  };
  return (req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) fail(res, 500, 'server_error', 'Unexpected failure.');
      else res.destroy();
    });
  };
}
