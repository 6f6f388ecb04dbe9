/**
 * Identities of the emulated vault: principals with key permissions (an access-policy model), the tokens
 * its token endpoint issues, and their verification on each vault request.
 *
 * Tokens are ES256 JWTs signed by a key that lives only in this emulator instance, with `aud` the Key
 * Vault resource, `oid`/`appid` the principal id and `tid` the tenant. They are validated against real
 * time (the SDK caches them by wall-clock expiry), not the virtual clock.
 */
import { generateKeyPairSync, type KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';
import { jwtVerify, SignJWT } from 'jose';
import { InvalidArgumentError } from '../../errors.js';
import { VaultHttpError } from './vault-error.js';

export const KEY_PERMISSIONS = [
  'get',
  'list',
  'create',
  'import',
  'update',
  'delete',
  'recover',
  'purge',
  'release',
  'rotate',
  'getrotationpolicy',
  'setrotationpolicy',
  // data plane (access-policy key permission names, as in `az keyvault set-policy --key-permissions`)
  'encrypt',
  'decrypt',
  'sign',
  'verify',
  'wrapKey',
  'unwrapKey',
  'backup',
  'restore',
  // Managed HSM's random-number action (Microsoft.KeyVault/managedHsm/rng/action)
  'rng',
] as const;
export type KeyPermission = (typeof KEY_PERMISSIONS)[number];

/** The Key Vault resource tokens are issued for and the challenge names. */
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';
/** Lifetime of issued access tokens. */
export const TOKEN_LIFETIME_SECONDS = 3600;

export interface PrincipalConfig {
  /** Client id / object id the principal is selected by (`client_id` at the token endpoint). */
  id: string;
  /** Display name for messages. */
  name?: string;
  /** Key permissions; `'all'` grants every one. Default `'all'`. */
  permissions?: readonly KeyPermission[] | 'all';
}

export interface Principal {
  id: string;
  name: string;
  permissions: ReadonlySet<KeyPermission>;
}

export interface VaultAuthOptions {
  tenantId: string;
  principals: readonly PrincipalConfig[];
  /** Principal used when a token request names none (the system-assigned identity). Default: the first. */
  defaultPrincipalId?: string;
  /** Secret the token endpoint requires in `X-IDENTITY-HEADER`. Default: random. */
  identityHeader?: string;
  vaultName: string;
}

export class VaultAuth {
  readonly tenantId: string;
  readonly identityHeader: string;
  readonly issuer: string;
  readonly #principals = new Map<string, Principal>();
  readonly #defaultPrincipalId: string;
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #vaultName: string;

  constructor(options: VaultAuthOptions) {
    if (options.principals.length === 0)
      throw new InvalidArgumentError('the vault needs at least one principal');
    this.tenantId = options.tenantId;
    this.issuer = `https://sts.windows.net/${options.tenantId}/`;
    this.#vaultName = options.vaultName;
    this.identityHeader = options.identityHeader ?? randomBytes(24).toString('base64url');
    for (const p of options.principals) this.addPrincipal(p);
    this.#defaultPrincipalId = options.defaultPrincipalId ?? options.principals[0]!.id;
    if (!this.#principals.has(this.#defaultPrincipalId.toLowerCase())) {
      throw new InvalidArgumentError('defaultPrincipalId names no configured principal');
    }
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#privateKey = pair.privateKey;
    this.#publicKey = pair.publicKey;
  }

  addPrincipal(config: PrincipalConfig): Principal {
    if (typeof config.id !== 'string' || config.id.length === 0 || config.id.length > 128) {
      throw new InvalidArgumentError('a principal id must be a non-empty string of at most 128 characters');
    }
    const perms = config.permissions ?? 'all';
    if (perms !== 'all') {
      for (const p of perms) {
        if (!(KEY_PERMISSIONS as readonly string[]).includes(p)) {
          throw new InvalidArgumentError(
            `unknown key permission "${String(p)}"; use ${KEY_PERMISSIONS.join(', ')}`,
          );
        }
      }
    }
    const principal: Principal = {
      id: config.id,
      name: config.name ?? config.id,
      permissions: new Set(perms === 'all' ? KEY_PERMISSIONS : perms),
    };
    this.#principals.set(config.id.toLowerCase(), principal);
    return principal;
  }

  principal(id: string): Principal | undefined {
    return this.#principals.get(id.toLowerCase());
  }

  /** Checks the `X-IDENTITY-HEADER` secret in constant time. */
  checkIdentityHeader(value: string | undefined): boolean {
    if (value === undefined) return false;
    const a = Buffer.from(value);
    const b = Buffer.from(this.identityHeader);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Issues an access token for a principal (default principal when `principalId` is undefined). */
  async issueToken(
    principalId: string | undefined,
    resource: string,
  ): Promise<{ token: string; expiresOn: number; principal: Principal }> {
    const principal = this.principal(principalId ?? this.#defaultPrincipalId);
    if (!principal) throw new InvalidArgumentError('no such managed identity in this emulator');
    const now = Math.floor(Date.now() / 1000);
    const expiresOn = now + TOKEN_LIFETIME_SECONDS;
    const token = await new SignJWT({
      oid: principal.id,
      appid: principal.id,
      tid: this.tenantId,
      sub: principal.id,
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience(resource.replace(/\/+$/, ''))
      .setIssuedAt(now)
      .setNotBefore(now - 60)
      .setExpirationTime(expiresOn)
      .sign(this.#privateKey);
    return { token, expiresOn, principal };
  }

  /** Verifies a bearer token of a vault request; throws the service's 401 when it is not acceptable. */
  async authenticate(authorization: string | undefined, resource: string): Promise<Principal> {
    const match = /^Bearer\s+([A-Za-z0-9._-]+)$/i.exec(authorization ?? '');
    if (!match) throw unauthorized('AKV10000: Request is missing a Bearer or PoP token.');
    try {
      const { payload } = await jwtVerify(match[1]!, this.#publicKey, {
        algorithms: ['ES256'],
        issuer: this.issuer,
        audience: [resource.replace(/\/+$/, ''), `${resource.replace(/\/+$/, '')}/`],
        clockTolerance: 60,
      });
      const principal = typeof payload.oid === 'string' ? this.principal(payload.oid) : undefined;
      if (!principal) throw unauthorized('AKV10032: Invalid issuer or principal.');
      return principal;
    } catch (cause) {
      if (cause instanceof VaultHttpError) throw cause;
      throw unauthorized('AKV10022: Invalid token: check the token audience, issuer and expiry.');
    }
  }

  /** Throws the service's 403 when the principal lacks a key permission. */
  authorize(principal: Principal, permission: KeyPermission): void {
    if (principal.permissions.has(permission)) return;
    throw new VaultHttpError(
      403,
      'Forbidden',
      `The user, group or application 'appid=${principal.id};oid=${principal.id};iss=${this.issuer}' does not have keys ${permission} permission on key vault '${this.#vaultName}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287`,
      'AccessDenied',
    );
  }
}

function unauthorized(message: string): VaultHttpError {
  return new VaultHttpError(401, 'Unauthorized', message);
}
