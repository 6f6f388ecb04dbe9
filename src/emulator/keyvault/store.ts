/**
 * The emulated vault's keys: versions, attributes, release policies, rotation policies and soft delete,
 * with the service's rules. Operations take the REST request bodies and return REST response bodies, so
 * the HTTP layer only routes and authorises. Every mutation calls `onChange` (persistence) and emits the
 * Event Grid events the service would.
 *
 * Times are Unix seconds, read from the virtual clock.
 */
import { randomBytes } from 'node:crypto';
import { RotationPolicyFormatError } from '../../errors.js';
import {
  parseReleasePolicyData,
  releasePolicyJson,
  RELEASE_POLICY_CONTENT_TYPE,
  type ReleasePolicy,
} from '../../keyvault/release-policy.js';
import { addDuration, parseDuration, subtractDuration } from '../../rotation/duration.js';
import { fromServiceJson, type RotationLifetimeAction, toServiceJson } from '../../rotation/policy.js';
import {
  DEFAULT_NOTIFY_BEFORE_EXPIRY,
  normalizeRotationPolicyForService,
  rotationPolicyErrors,
  validateRotationPolicy,
} from '../../rotation/validate.js';
import type { ClockTask, VirtualClock } from './clock.js';
import { KEY_VAULT_EVENT_TYPES, type KeyVaultEventType, type VaultEvents } from './events.js';
import { type FlavourFacts, flavourFacts } from './flavour.js';
import {
  baseKty,
  checkKeyOps,
  defaultKeyOps,
  generateKeyMaterial,
  importKeyMaterial,
  isKeyType,
  type KeyMaterial,
  publicJwkFields,
  type VaultKeyType,
} from './key-material.js';
import { VaultErrors } from './vault-error.js';

export const RECOVERY_LEVEL = 'Recoverable+Purgeable';
export const RECOVERABLE_DAYS = 90;
/** The service pages lists at 25 items at most. */
export const MAX_PAGE_SIZE = 25;

const KEY_NAME = /^[0-9a-zA-Z-]{1,127}$/;
const VERSION = /^[0-9a-f]{32}$/;

export interface StoredReleasePolicy {
  contentType: string;
  immutable?: boolean;
  /** base64url of the policy JSON, as given. */
  data: string;
}

export interface StoredVersion {
  version: string;
  kty: VaultKeyType;
  keyOps: string[];
  material: KeyMaterial;
  enabled: boolean;
  nbf?: number;
  exp?: number;
  exportable: boolean;
  created: number;
  updated: number;
  tags?: Record<string, string>;
  releasePolicy?: StoredReleasePolicy;
  /** KeyNearExpiry already sent for this version. */
  nearExpiryNotified?: boolean;
  /** KeyExpired already sent for this version. */
  expiredNotified?: boolean;
}

export interface StoredRotationPolicy {
  lifetimeActions: RotationLifetimeAction[];
  expiryTime?: string;
  created: number;
  updated: number;
}

export interface StoredKey {
  name: string;
  /** Oldest first; the last one is the current version. */
  versions: StoredVersion[];
  rotationPolicy?: StoredRotationPolicy;
  deleted?: { deletedDate: number; scheduledPurgeDate: number };
}

export interface VaultStoreOptions {
  vaultUrl: string;
  vaultName: string;
  clock: VirtualClock;
  events: VaultEvents;
  /** Called with the changed key's name after every mutation (persistence). */
  onChange?: (name: string) => void;
  keys?: StoredKey[];
  /** Key types and import rules of the vault's flavour. Default: an emulator started without a flavour. */
  flavour?: FlavourFacts;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function newVersionId(): string {
  return randomBytes(16).toString('hex');
}

function optionalBool(v: unknown, field: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw VaultErrors.badParameter(`${field} must be a boolean.`);
  return v;
}

function optionalTime(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw VaultErrors.badParameter(`${field} must be a time in seconds since 1970-01-01.`);
  }
  return v;
}

function parseTags(v: unknown): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw VaultErrors.badParameter('tags must be an object of strings.');
  const entries = Object.entries(v);
  if (entries.length > 15) throw VaultErrors.badParameter('A key can have at most 15 tags.');
  for (const [k, val] of entries) {
    if (typeof val !== 'string' || k.length > 512 || val.length > 256) {
      throw VaultErrors.badParameter(
        'Tag names are at most 512 characters and values strings of at most 256.',
      );
    }
  }
  return { ...(v as Record<string, string>) };
}

interface ParsedAttributes {
  enabled?: boolean;
  nbf?: number;
  exp?: number;
  exportable?: boolean;
}

function parseAttributes(v: unknown): ParsedAttributes {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) throw VaultErrors.badParameter('attributes must be an object.');
  const out: ParsedAttributes = {};
  const enabled = optionalBool(v.enabled, 'attributes.enabled');
  const exportable = optionalBool(v.exportable, 'attributes.exportable');
  const nbf = optionalTime(v.nbf, 'attributes.nbf');
  const exp = optionalTime(v.exp, 'attributes.exp');
  if (enabled !== undefined) out.enabled = enabled;
  if (exportable !== undefined) out.exportable = exportable;
  if (nbf !== undefined) out.nbf = nbf;
  if (exp !== undefined) out.exp = exp;
  return out;
}

/**
 * Checks a `release_policy` request field (AKV.SKR.1013 when it is not a policy) and stores the policy as the
 * service writes it back: rewritten in the current spelling and the flavour's property order (`data` of the
 * answers in test/fixtures/real-release/ and the recordings quoted in src/keyvault/release-policy.ts).
 */
function parseReleasePolicyField(
  v: unknown,
  order: FlavourFacts['releasePolicyOrder'],
): { stored: StoredReleasePolicy; policy: ReleasePolicy } | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw VaultErrors.skr(1013, 'release_policy must be an object.');
  const contentType = v.contentType ?? RELEASE_POLICY_CONTENT_TYPE;
  if (
    typeof contentType !== 'string' ||
    contentType.replace(/\s+/g, '').toLowerCase() !== 'application/json;charset=utf-8'
  ) {
    throw VaultErrors.skr(1013, `Unsupported contentType; use "${RELEASE_POLICY_CONTENT_TYPE}".`);
  }
  const immutable = optionalBool(v.immutable, 'release_policy.immutable');
  if (typeof v.data !== 'string' || v.data.length === 0)
    throw VaultErrors.skr(1013, 'release_policy.data is required.');
  let policy: ReleasePolicy;
  try {
    policy = parseReleasePolicyData(v.data);
  } catch (cause) {
    throw VaultErrors.skr(1013, cause instanceof Error ? cause.message : undefined);
  }
  return {
    stored: {
      contentType: RELEASE_POLICY_CONTENT_TYPE,
      ...(immutable ? { immutable } : {}),
      data: Buffer.from(releasePolicyJson(policy, order), 'utf8').toString('base64url'),
    },
    policy,
  };
}

/** The newest immutable release policy of any version of the key, if one was ever set. */
function immutablePolicyOf(key: StoredKey): StoredReleasePolicy | undefined {
  for (let i = key.versions.length - 1; i >= 0; i--) {
    const p = key.versions[i]!.releasePolicy;
    if (p?.immutable) return p;
  }
  return undefined;
}

function checkName(name: string): void {
  if (!KEY_NAME.test(name)) {
    throw VaultErrors.badParameter(
      'The key name is invalid: use 1-127 characters, letters, digits and dashes only.',
    );
  }
}

export interface ListPage {
  value: Json[];
  nextLink: string | null;
}

export class VaultStore implements ClockTask {
  readonly vaultUrl: string;
  readonly vaultName: string;
  readonly flavour: FlavourFacts;
  readonly #clock: VirtualClock;
  readonly #events: VaultEvents;
  readonly #onChange: (name: string) => void;
  readonly #keys = new Map<string, StoredKey>();
  /** Keys whose scheduled rotation failed at a given due instant; not retried for that instant. */
  readonly #failedRotations = new Map<string, number>();

  constructor(options: VaultStoreOptions) {
    this.vaultUrl = options.vaultUrl.replace(/\/+$/, '');
    this.vaultName = options.vaultName;
    this.flavour = options.flavour ?? flavourFacts(undefined);
    this.#clock = options.clock;
    this.#events = options.events;
    this.#onChange = options.onChange ?? (() => {});
    for (const k of options.keys ?? []) this.#keys.set(k.name.toLowerCase(), k);
  }

  /** The live stored form of one key (by name, any case), for the journal; `undefined` once it is gone. */
  keyForState(name: string): StoredKey | undefined {
    return this.#keys.get(name.toLowerCase());
  }

  /** A deep copy of every key, for persistence. */
  snapshot(): StoredKey[] {
    return structuredClone([...this.#keys.values()]);
  }

  // -------------------------------------------------------------------------------------------------------
  // lookups and views
  // -------------------------------------------------------------------------------------------------------

  #live(name: string): StoredKey {
    const key = this.#keys.get(name.toLowerCase());
    if (!key || key.deleted) throw VaultErrors.keyNotFound(name);
    return key;
  }

  #version(key: StoredKey, version?: string): StoredVersion {
    if (!version) return key.versions[key.versions.length - 1]!;
    const v = key.versions.find((x) => x.version === version.toLowerCase());
    if (!v) throw VaultErrors.keyNotFound(key.name, version);
    return v;
  }

  /** The stored version a request names (current when `version` is empty). Internal: holds private material. */
  resolve(name: string, version?: string): { key: StoredKey; version: StoredVersion } {
    const key = this.#live(name);
    return { key, version: this.#version(key, version) };
  }

  kid(name: string, version?: string): string {
    return `${this.vaultUrl}/keys/${name}${version ? `/${version}` : ''}`;
  }

  attributesJson(v: StoredVersion): Json {
    return {
      enabled: v.enabled,
      ...(v.nbf !== undefined ? { nbf: v.nbf } : {}),
      ...(v.exp !== undefined ? { exp: v.exp } : {}),
      created: v.created,
      updated: v.updated,
      recoveryLevel: RECOVERY_LEVEL,
      recoverableDays: RECOVERABLE_DAYS,
      exportable: v.exportable,
    };
  }

  /** The REST `KeyBundle` (public parts only). */
  bundle(key: StoredKey, v: StoredVersion): Json {
    return {
      key: {
        kid: this.kid(key.name, v.version),
        kty: v.kty,
        key_ops: [...v.keyOps],
        ...publicJwkFields(v.kty, v.material),
      },
      attributes: this.attributesJson(v),
      ...(v.tags ? { tags: { ...v.tags } } : {}),
      // `immutable` is always stated, false included, as the service answers (recording
      // recording_can_create_an_exportable_key_and_release_it.json of Azure/azure-sdk-for-js, commit 2b36517d).
      ...(v.releasePolicy
        ? { release_policy: { ...v.releasePolicy, immutable: v.releasePolicy.immutable === true } }
        : {}),
    };
  }

  #deletedBundle(key: StoredKey): Json {
    const v = this.#version(key);
    return {
      recoveryId: `${this.vaultUrl}/deletedkeys/${key.name}`,
      deletedDate: key.deleted!.deletedDate,
      scheduledPurgeDate: key.deleted!.scheduledPurgeDate,
      ...this.bundle(key, v),
    };
  }

  getKey(name: string, version?: string): Json {
    if (version && !VERSION.test(version.toLowerCase())) throw VaultErrors.keyNotFound(name, version);
    const { key, version: v } = this.resolve(name, version);
    return this.bundle(key, v);
  }

  // -------------------------------------------------------------------------------------------------------
  // create / import / update
  // -------------------------------------------------------------------------------------------------------

  #targetForNewVersion(name: string): StoredKey | undefined {
    checkName(name);
    const key = this.#keys.get(name.toLowerCase());
    if (key?.deleted) {
      throw VaultErrors.conflict(
        `Key ${name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.`,
      );
    }
    return key;
  }

  /** Exportable/policy rules shared by create and import. */
  #releaseRules(
    kty: VaultKeyType,
    exportable: boolean,
    policyField: unknown,
    existing: StoredKey | undefined,
  ): StoredReleasePolicy | undefined {
    const parsed = parseReleasePolicyField(policyField, this.flavour.releasePolicyOrder);
    // An immutable policy binds every later version: none may drop it (a non-exportable version), replace it
    // or make it mutable. Rotation copies it (rotateKey).
    const locked = existing ? immutablePolicyOf(existing) : undefined;
    if (!exportable) {
      if (parsed) throw VaultErrors.skr(1005);
      if (locked) throw VaultErrors.skr(1020, 'A new version must keep it: create it exportable.');
      return undefined;
    }
    if (!kty.endsWith('-HSM')) {
      throw VaultErrors.badParameter(
        'Exportable keys must be HSM-protected: use RSA-HSM, EC-HSM or oct-HSM.',
      );
    }
    if (parsed) {
      if (locked && (locked.data !== parsed.stored.data || parsed.stored.immutable !== true))
        throw VaultErrors.skr(1020);
      return parsed.stored;
    }
    // A new version of an exportable key keeps the key's policy; only the first version must bring one.
    const inherited = locked ?? (existing ? this.#version(existing).releasePolicy : undefined);
    if (inherited) return { ...inherited };
    throw VaultErrors.skr(1004);
  }

  /** Whether policy `data` as sent is the stored policy (compared as stored, so any spelling of it matches). */
  #samePolicy(data: unknown, stored: StoredReleasePolicy): boolean {
    if (typeof data !== 'string') return false;
    try {
      const policy = parseReleasePolicyData(data);
      return Buffer.from(releasePolicyJson(policy, this.flavour.releasePolicyOrder)).toString('base64url') === stored.data;
    } catch {
      return false;
    }
  }

  /** The version a create or an import adds: new id, timestamps now, attributes as given. */
  #addNewVersion(
    name: string,
    existing: StoredKey | undefined,
    fields: Pick<StoredVersion, 'kty' | 'keyOps' | 'material' | 'exportable'> &
      Partial<Pick<StoredVersion, 'tags' | 'releasePolicy'>>,
    attrs: ParsedAttributes,
  ): Json {
    const { tags, releasePolicy, ...rest } = fields;
    const now = this.#clock.nowSeconds();
    return this.#addVersion(name, existing, {
      version: newVersionId(),
      ...rest,
      enabled: attrs.enabled ?? true,
      ...(attrs.nbf !== undefined ? { nbf: attrs.nbf } : {}),
      ...(attrs.exp !== undefined ? { exp: attrs.exp } : {}),
      created: now,
      updated: now,
      ...(tags ? { tags } : {}),
      ...(releasePolicy ? { releasePolicy } : {}),
    });
  }

  #addVersion(name: string, existing: StoredKey | undefined, v: StoredVersion): Json {
    const key = existing ?? { name, versions: [] };
    key.versions.push(v);
    if (!existing) this.#keys.set(name.toLowerCase(), key);
    this.#onChange(name);
    this.#emit(KEY_VAULT_EVENT_TYPES.newVersionCreated, key, v);
    return this.bundle(key, v);
  }

  /** Key types differ per flavour: oct-HSM only in Managed HSM, software RSA/EC only in vaults. */
  #checkKeyType(kty: VaultKeyType): void {
    if (this.flavour.keyTypes.includes(kty)) return;
    throw VaultErrors.badParameter(
      `Key type ${kty} is not supported by a ${this.flavour.label}; use ${this.flavour.keyTypes.join(', ')}.`,
    );
  }

  async createKey(name: string, body: unknown): Promise<Json> {
    this.#targetForNewVersion(name);
    if (!isObject(body)) throw VaultErrors.badParameter('The request body must be a JSON object.');
    if (!isKeyType(body.kty)) {
      throw VaultErrors.badParameter('kty must be one of RSA, RSA-HSM, EC, EC-HSM, oct-HSM.');
    }
    const kty = body.kty;
    this.#checkKeyType(kty);
    const attrs = parseAttributes(body.attributes);
    const keySize = body.key_size ?? undefined;
    if (keySize !== undefined && typeof keySize !== 'number')
      throw VaultErrors.badParameter('key_size must be a number.');
    const publicExponent = body.public_exponent ?? undefined;
    if (publicExponent !== undefined && typeof publicExponent !== 'number') {
      throw VaultErrors.badParameter('public_exponent must be a number.');
    }
    const crv = body.crv ?? undefined;
    if (crv !== undefined && typeof crv !== 'string') throw VaultErrors.badParameter('crv must be a string.');
    if (crv !== undefined && baseKty(kty) !== 'EC')
      throw VaultErrors.badParameter(`crv is not valid for ${kty} keys.`);
    const keyOps =
      body.key_ops === undefined || body.key_ops === null ? defaultKeyOps(kty) : checkKeyOps(body.key_ops);
    const tags = parseTags(body.tags);
    const exportable = attrs.exportable ?? false;
    // Validate everything before the (slow) key generation, then re-check the name afterwards.
    this.#releaseRules(kty, exportable, body.release_policy, this.#keys.get(name.toLowerCase()));
    const material = await generateKeyMaterial({
      kty,
      ...(keySize !== undefined ? { keySize } : {}),
      ...(publicExponent !== undefined ? { publicExponent } : {}),
      ...(crv !== undefined ? { crv } : {}),
    });
    const existing = this.#targetForNewVersion(name);
    const releasePolicy = this.#releaseRules(kty, exportable, body.release_policy, existing);
    return this.#addNewVersion(
      name,
      existing,
      { kty, keyOps, material, exportable, tags, releasePolicy },
      attrs,
    );
  }

  importKey(name: string, body: unknown): Json {
    const existing = this.#targetForNewVersion(name);
    if (!isObject(body)) throw VaultErrors.badParameter('The request body must be a JSON object.');
    const hsm = optionalBool(body.Hsm, 'Hsm') ?? false;
    const { kty, material } = importKeyMaterial(body.key, hsm || this.flavour.importsAsHsm);
    this.#checkKeyType(kty);
    const jwk = body.key as Json;
    const keyOps =
      jwk.key_ops === undefined || jwk.key_ops === null ? defaultKeyOps(kty) : checkKeyOps(jwk.key_ops);
    const attrs = parseAttributes(body.attributes);
    const tags = parseTags(body.tags);
    const exportable = attrs.exportable ?? false;
    const releasePolicy = this.#releaseRules(kty, exportable, body.release_policy, existing);
    return this.#addNewVersion(
      name,
      existing,
      { kty, keyOps, material, exportable, tags, releasePolicy },
      attrs,
    );
  }

  updateKey(name: string, version: string | undefined, body: unknown): Json {
    const { key, version: v } = this.resolve(name, version);
    if (!isObject(body)) throw VaultErrors.badParameter('The request body must be a JSON object.');
    const attrs = parseAttributes(body.attributes);
    if (attrs.exportable !== undefined && attrs.exportable !== v.exportable) throw VaultErrors.skr(1014);
    const keyOps =
      body.key_ops === undefined || body.key_ops === null ? undefined : checkKeyOps(body.key_ops);
    const tags = body.tags === undefined ? undefined : parseTags(body.tags);
    let releasePolicy: StoredReleasePolicy | undefined;
    if (body.release_policy !== undefined && body.release_policy !== null) {
      // An immutable policy refuses any other policy before that policy is even read: the service answers
      // AKV.SKR.1020 to a different policy that is itself malformed (recording
      // recording_errors_when_updating_an_immutable_release_policy.json of Azure/azure-sdk-for-js).
      const sent = body.release_policy as { data?: unknown };
      if (v.releasePolicy?.immutable && isObject(sent) && !this.#samePolicy(sent.data, v.releasePolicy)) {
        throw VaultErrors.skr(1020);
      }
      const parsed = parseReleasePolicyField(body.release_policy, this.flavour.releasePolicyOrder);
      if (!v.exportable) throw VaultErrors.skr(1005);
      const current = v.releasePolicy;
      if (current?.immutable) {
        const same = current.data === parsed!.stored.data;
        if (!same || parsed!.stored.immutable !== true) throw VaultErrors.skr(1020);
      }
      releasePolicy = parsed!.stored;
    }
    // All checks passed: apply.
    if (attrs.enabled !== undefined) v.enabled = attrs.enabled;
    if (attrs.nbf !== undefined) v.nbf = attrs.nbf;
    if (attrs.exp !== undefined && attrs.exp !== v.exp) {
      v.exp = attrs.exp;
      delete v.nearExpiryNotified;
      delete v.expiredNotified;
    }
    if (keyOps) v.keyOps = keyOps;
    if (tags !== undefined) {
      if (Object.keys(tags ?? {}).length === 0) delete v.tags;
      else v.tags = tags!;
    }
    if (releasePolicy) v.releasePolicy = releasePolicy;
    v.updated = this.#clock.nowSeconds();
    this.#onChange(key.name);
    return this.bundle(key, v);
  }

  // -------------------------------------------------------------------------------------------------------
  // lists
  // -------------------------------------------------------------------------------------------------------

  #pageSize(maxresults: string | null): number {
    if (maxresults === null) return MAX_PAGE_SIZE;
    const n = Number(maxresults);
    if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE_SIZE) {
      throw VaultErrors.badParameter(`maxresults must be an integer from 1 to ${MAX_PAGE_SIZE}.`);
    }
    return n;
  }

  #page(items: Json[], start: number, size: number, path: string, apiVersion: string): ListPage {
    const slice = items.slice(start, start + size);
    const more = start + size < items.length;
    const token = Buffer.from(JSON.stringify({ o: start + size }), 'utf8').toString('base64url');
    return {
      value: slice,
      nextLink: more
        ? `${this.vaultUrl}${path}?api-version=${encodeURIComponent(apiVersion)}&$skiptoken=${token}&maxresults=${size}`
        : null,
    };
  }

  #offset(skiptoken: string | null): number {
    if (skiptoken === null) return 0;
    try {
      const o = (
        JSON.parse(Buffer.from(skiptoken, 'base64url').toString('utf8')) as {
          o?: unknown;
        }
      ).o;
      if (typeof o === 'number' && Number.isInteger(o) && o >= 0) return o;
    } catch {
      // fall through
    }
    throw VaultErrors.badParameter('The $skiptoken is invalid.');
  }

  #item(key: StoredKey, v: StoredVersion, withVersion: boolean): Json {
    return {
      kid: this.kid(key.name, withVersion ? v.version : undefined),
      attributes: this.attributesJson(v),
      ...(v.tags ? { tags: { ...v.tags } } : {}),
    };
  }

  listKeys(query: URLSearchParams, apiVersion: string): ListPage {
    const size = this.#pageSize(query.get('maxresults'));
    const items = [...this.#keys.values()]
      .filter((k) => !k.deleted)
      .sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1))
      .map((k) => this.#item(k, this.#version(k), false));
    return this.#page(items, this.#offset(query.get('$skiptoken')), size, '/keys', apiVersion);
  }

  listVersions(name: string, query: URLSearchParams, apiVersion: string): ListPage {
    const size = this.#pageSize(query.get('maxresults'));
    // The versions of a key that does not exist are an empty list, not 404 (recording
    // keys_client__list_keys_in_various_ways/recording_list_0_versions_of_a_nonexisting_key.json of
    // Azure/azure-sdk-for-js, commit 53ec4941).
    const found = this.#keys.get(name.toLowerCase());
    if (!found || found.deleted) return { value: [], nextLink: null };
    const key = this.#live(name);
    const items = key.versions.map((v) => this.#item(key, v, true));
    return this.#page(
      items,
      this.#offset(query.get('$skiptoken')),
      size,
      `/keys/${key.name}/versions`,
      apiVersion,
    );
  }

  // -------------------------------------------------------------------------------------------------------
  // delete / recover / purge
  // -------------------------------------------------------------------------------------------------------

  deleteKey(name: string): Json {
    const key = this.#live(name);
    const now = this.#clock.nowSeconds();
    key.deleted = {
      deletedDate: now,
      scheduledPurgeDate: now + RECOVERABLE_DAYS * 86400,
    };
    this.#onChange(key.name);
    return this.#deletedBundle(key);
  }

  #deleted(name: string): StoredKey {
    const key = this.#keys.get(name.toLowerCase());
    if (!key?.deleted) {
      throw VaultErrors.deletedKeyNotFound(name);
    }
    return key;
  }

  getDeletedKey(name: string): Json {
    return this.#deletedBundle(this.#deleted(name));
  }

  listDeletedKeys(query: URLSearchParams, apiVersion: string): ListPage {
    const size = this.#pageSize(query.get('maxresults'));
    const items = [...this.#keys.values()]
      .filter((k) => k.deleted)
      .sort((a, b) => (a.name.toLowerCase() < b.name.toLowerCase() ? -1 : 1))
      .map((k) => ({
        recoveryId: `${this.vaultUrl}/deletedkeys/${k.name}`,
        deletedDate: k.deleted!.deletedDate,
        scheduledPurgeDate: k.deleted!.scheduledPurgeDate,
        ...this.#item(k, this.#version(k), false),
      }));
    return this.#page(items, this.#offset(query.get('$skiptoken')), size, '/deletedkeys', apiVersion);
  }

  purgeDeletedKey(name: string): void {
    const key = this.#deleted(name);
    this.#keys.delete(key.name.toLowerCase());
    this.#onChange(key.name);
  }

  recoverDeletedKey(name: string): Json {
    const key = this.#deleted(name);
    delete key.deleted;
    this.#onChange(key.name);
    return this.bundle(key, this.#version(key));
  }

  // -------------------------------------------------------------------------------------------------------
  // backup / restore (sealing is backup.ts's job)
  // -------------------------------------------------------------------------------------------------------

  /** A deep copy of a live key with every version, for `POST /keys/{name}/backup`. Holds private material. */
  backupKey(name: string): StoredKey {
    return structuredClone(this.#live(name));
  }

  /**
   * Adds a key from a backup under its own name and version ids. The name must be free: live or
   * soft-deleted, it answers `conflict(kid)` and changes nothing.
   */
  restoreKey(key: StoredKey, conflict: (kid: string) => Error): Json {
    checkName(key.name);
    const existing = this.#keys.get(key.name.toLowerCase());
    if (existing) throw conflict(this.kid(existing.name, this.#version(existing).version));
    for (const v of key.versions) this.#checkKeyType(v.kty);
    const restored = structuredClone(key);
    delete restored.deleted;
    this.#keys.set(restored.name.toLowerCase(), restored);
    this.#onChange(restored.name);
    return this.bundle(restored, this.#version(restored));
  }

  // -------------------------------------------------------------------------------------------------------
  // rotation
  // -------------------------------------------------------------------------------------------------------

  #policyJson(key: StoredKey): Json {
    const id = `${this.kid(key.name)}/rotationpolicy`;
    const p = key.rotationPolicy;
    if (!p) {
      // What the service answers for a key that never had a policy set.
      return {
        id,
        lifetimeActions: [
          {
            trigger: { timeBeforeExpiry: DEFAULT_NOTIFY_BEFORE_EXPIRY },
            action: { type: 'Notify' },
          },
        ],
        attributes: {},
      };
    }
    return toServiceJson(
      {
        id,
        lifetimeActions: p.lifetimeActions,
        ...(p.expiryTime !== undefined ? { expiryTime: p.expiryTime } : {}),
        createdOn: new Date(p.created * 1000),
        updatedOn: new Date(p.updated * 1000),
      },
      { includeMetadata: true },
    ) as unknown as Json;
  }

  getRotationPolicy(name: string): Json {
    return this.#policyJson(this.#live(name));
  }

  setRotationPolicy(name: string, body: unknown): Json {
    const key = this.#live(name);
    let parsed: ReturnType<typeof fromServiceJson>;
    try {
      parsed = fromServiceJson(body);
    } catch (cause) {
      if (cause instanceof RotationPolicyFormatError)
        throw VaultErrors.badParameter(`Invalid rotation policy: ${cause.message}.`);
      throw cause;
    }
    const current = this.#version(key);
    // Warnings (a before-expiry trigger on a key without expiry) are stored, as the service does.
    const violations = rotationPolicyErrors(
      validateRotationPolicy(parsed, {
        keyExpiresOn: current.exp !== undefined ? new Date(current.exp * 1000) : null,
      }),
    );
    if (violations.length > 0) {
      throw VaultErrors.badParameter(
        `Invalid rotation policy: ${violations.map((v) => `${v.field}: ${v.message}`).join('; ')}.`,
      );
    }
    const normalized = normalizeRotationPolicyForService(parsed);
    const now = this.#clock.nowSeconds();
    key.rotationPolicy = {
      lifetimeActions: normalized.lifetimeActions.map((a) => ({ ...a })),
      ...(normalized.expiryTime !== undefined ? { expiryTime: normalized.expiryTime } : {}),
      created: key.rotationPolicy?.created ?? now,
      updated: now,
    };
    this.#failedRotations.delete(key.name.toLowerCase());
    this.#onChange(key.name);
    return this.#policyJson(key);
  }

  /** `POST /keys/{name}/rotate`: a new version with new material and the current version's properties. */
  async rotateKey(name: string): Promise<Json> {
    const key = this.#live(name);
    const current = this.#version(key);
    const material = await generateKeyMaterial({
      kty: current.kty,
      ...(current.material.keySize !== undefined && baseKty(current.kty) !== 'EC'
        ? { keySize: current.material.keySize }
        : {}),
      ...(current.material.crv !== undefined ? { crv: current.material.crv } : {}),
    });
    if (key.deleted || this.#keys.get(name.toLowerCase()) !== key) throw VaultErrors.keyNotFound(name);
    const latest = this.#version(key);
    const nowMs = this.#clock.nowMs();
    const now = Math.floor(nowMs / 1000);
    const expiryTime = key.rotationPolicy?.expiryTime;
    const exp = expiryTime
      ? Math.floor(
          addDuration(new Date(now * 1000), parseDuration(expiryTime, 'attributes.expiryTime')).getTime() /
            1000,
        )
      : undefined;
    return this.#addVersion(key.name, key, {
      version: newVersionId(),
      kty: latest.kty,
      keyOps: [...latest.keyOps],
      material,
      enabled: true,
      ...(exp !== undefined ? { exp } : {}),
      exportable: latest.exportable,
      created: now,
      updated: now,
      ...(latest.tags ? { tags: { ...latest.tags } } : {}),
      ...((immutablePolicyOf(key) ?? latest.releasePolicy)
        ? { releasePolicy: { ...(immutablePolicyOf(key) ?? latest.releasePolicy)! } }
        : {}),
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // lifetime actions on the virtual clock
  // -------------------------------------------------------------------------------------------------------

  #emit(type: KeyVaultEventType, key: StoredKey, v: StoredVersion): void {
    this.#events.emit(
      type,
      {
        Id: this.kid(key.name, v.version),
        VaultName: this.vaultName,
        ObjectType: 'Key',
        ObjectName: key.name,
        Version: v.version,
        NBF: v.nbf ?? null,
        EXP: v.exp ?? null,
      },
      this.#clock.now(),
    );
  }

  /** Due instants (ms) of one key's current version. */
  #due(key: StoredKey): {
    rotate?: number;
    nearExpiry?: number;
    expired?: number;
  } {
    const v = this.#version(key);
    const out: { rotate?: number; nearExpiry?: number; expired?: number } = {};
    const actions = key.rotationPolicy?.lifetimeActions ?? [
      {
        action: 'Notify' as const,
        timeBeforeExpiry: DEFAULT_NOTIFY_BEFORE_EXPIRY,
      },
    ];
    const created = new Date(v.created * 1000);
    const expires = v.exp !== undefined ? new Date(v.exp * 1000) : undefined;
    for (const a of actions) {
      let at: number | undefined;
      try {
        if (a.timeAfterCreate) at = addDuration(created, parseDuration(a.timeAfterCreate)).getTime();
        else if (a.timeBeforeExpiry && expires)
          at = subtractDuration(expires, parseDuration(a.timeBeforeExpiry)).getTime();
      } catch {
        at = undefined;
      }
      if (at === undefined) continue;
      if (a.action === 'Rotate') {
        if (this.#failedRotations.get(key.name.toLowerCase()) !== at) out.rotate = at;
      } else if (!v.nearExpiryNotified) out.nearExpiry = at;
    }
    if (expires && !v.expiredNotified) out.expired = expires.getTime();
    return out;
  }

  nextDueMs(): number | undefined {
    let next: number | undefined;
    for (const key of this.#keys.values()) {
      if (key.deleted) {
        // Soft-deleted keys are purged by the system at their scheduled purge date.
        const at = key.deleted.scheduledPurgeDate * 1000;
        if (next === undefined || at < next) next = at;
        continue;
      }
      for (const at of Object.values(this.#due(key))) {
        if (at !== undefined && (next === undefined || at < next)) next = at;
      }
    }
    return next;
  }

  async runDue(nowMs: number): Promise<void> {
    for (const key of [...this.#keys.values()]) {
      if (key.deleted) {
        if (key.deleted.scheduledPurgeDate * 1000 <= nowMs) {
          this.#keys.delete(key.name.toLowerCase());
          this.#onChange(key.name);
        }
        continue;
      }
      const due = this.#due(key);
      const v = this.#version(key);
      if (due.nearExpiry !== undefined && due.nearExpiry <= nowMs) {
        v.nearExpiryNotified = true;
        this.#onChange(key.name);
        this.#emit(KEY_VAULT_EVENT_TYPES.nearExpiry, key, v);
      }
      if (due.expired !== undefined && due.expired <= nowMs) {
        v.expiredNotified = true;
        this.#onChange(key.name);
        this.#emit(KEY_VAULT_EVENT_TYPES.expired, key, v);
      }
      if (due.rotate !== undefined && due.rotate <= nowMs) {
        try {
          await this.rotateKey(key.name);
        } catch {
          // Remember the failure for this due instant so the clock moves on instead of retrying forever.
          this.#failedRotations.set(key.name.toLowerCase(), due.rotate);
        }
      }
    }
  }
}
