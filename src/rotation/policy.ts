/**
 * The rotation policy model and its two wire shapes.
 *
 * - Service / CLI JSON (REST `GET|PUT {vault}/keys/{name}/rotationpolicy`, `az keyvault key rotation-policy
 *   update --value policy.json`): `lifetimeActions[].trigger.timeAfterCreate|timeBeforeExpiry`,
 *   `lifetimeActions[].action.type`, `attributes.expiryTime`; responses add `id` and
 *   `attributes.created|updated` (Unix seconds).
 * - SDK (`KeyRotationPolicyProperties` / `KeyRotationPolicy` of @azure/keyvault-keys): flat
 *   `lifetimeActions[].action` string beside the triggers, `expiresIn`, `id`, `createdOn`, `updatedOn`.
 *
 * Durations stay as the text the author wrote, so a policy round-trips byte for byte and
 * `validateRotationPolicy` can report a bad duration with its field instead of the parser throwing early.
 * Action types compare case-insensitively, like the service, and always come out as `Rotate` / `Notify`.
 */
import type { KeyRotationPolicy, KeyRotationPolicyProperties } from '@azure/keyvault-keys';
import { RotationPolicyFormatError } from '../errors.js';

export type RotationActionType = 'Rotate' | 'Notify';

export interface RotationLifetimeAction {
  readonly action: RotationActionType;
  /** ISO-8601 duration after the version's creation. */
  readonly timeAfterCreate?: string;
  /** ISO-8601 duration before the version's expiry. */
  readonly timeBeforeExpiry?: string;
}

export interface RotationPolicy {
  readonly lifetimeActions: readonly RotationLifetimeAction[];
  /** ISO-8601 duration: expiry of each new version, counted from its creation. */
  readonly expiryTime?: string;
  /** Read-only on the service: `{vault}/keys/{name}/rotationpolicy`. */
  readonly id?: string;
  readonly createdOn?: Date;
  readonly updatedOn?: Date;
}

export interface ServiceLifetimeActionJson {
  trigger: { timeAfterCreate?: string; timeBeforeExpiry?: string };
  action: { type: RotationActionType };
}

export interface ServiceRotationPolicyJson {
  id?: string;
  lifetimeActions: ServiceLifetimeActionJson[];
  attributes: { expiryTime?: string; created?: number; updated?: number };
}

/** Far above anything the service accepts (one action per type); only bounds the work on hostile input. */
const MAX_ACTIONS = 64;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function fail(field: string, message: string): never {
  throw new RotationPolicyFormatError(`${field} ${message}`, field);
}

/** `null` means absent: the CLI and some SDKs serialise unset fields as null. */
function optionalString(container: JsonObject, key: string, field: string): string | undefined {
  const value = container[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') fail(field, 'must be an ISO-8601 duration string');
  return value;
}

/** Case-insensitive like the service; the result is the canonical spelling. */
export function parseActionType(value: unknown, field = 'action.type'): RotationActionType {
  if (typeof value === 'string') {
    const lower = value.toLowerCase();
    if (lower === 'rotate') return 'Rotate';
    if (lower === 'notify') return 'Notify';
  }
  return fail(field, `must be "Rotate" or "Notify" (got ${JSON.stringify(value)?.slice(0, 40)})`);
}

function optionalTimestamp(value: unknown, field: string): Date | undefined {
  if (value === undefined || value === null) return undefined;
  // The REST API uses Unix seconds; `az` output and our own JSON use ISO strings.
  const date =
    typeof value === 'number'
      ? new Date(value * 1000)
      : typeof value === 'string'
        ? new Date(value)
        : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    fail(field, 'must be Unix seconds or an ISO-8601 date-time');
  }
  return date;
}

function parseAction(raw: unknown, index: number): RotationLifetimeAction {
  const field = `lifetimeActions[${index}]`;
  if (!isObject(raw)) fail(field, 'must be an object');
  let action: RotationActionType;
  let triggerSource: JsonObject;
  let triggerField: string;
  if (isObject(raw.action)) {
    action = parseActionType(raw.action.type, `${field}.action.type`);
    const trigger = raw.trigger ?? {};
    if (!isObject(trigger)) fail(`${field}.trigger`, 'must be an object');
    triggerSource = trigger;
    triggerField = `${field}.trigger`;
  } else {
    // SDK / az output shape: flat action string beside the triggers.
    action = parseActionType(raw.action, `${field}.action`);
    triggerSource = raw;
    triggerField = field;
  }
  const timeAfterCreate = optionalString(triggerSource, 'timeAfterCreate', `${triggerField}.timeAfterCreate`);
  const timeBeforeExpiry = optionalString(
    triggerSource,
    'timeBeforeExpiry',
    `${triggerField}.timeBeforeExpiry`,
  );
  return {
    action,
    ...(timeAfterCreate === undefined ? {} : { timeAfterCreate }),
    ...(timeBeforeExpiry === undefined ? {} : { timeBeforeExpiry }),
  };
}

function parseActions(value: unknown): RotationLifetimeAction[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail('lifetimeActions', 'must be an array');
  if (value.length > MAX_ACTIONS) fail('lifetimeActions', `has more than ${MAX_ACTIONS} entries`);
  return value.map((raw, index) => parseAction(raw, index));
}

/**
 * Reads any policy JSON a user or service may hand us: the REST request or response body, `az` output
 * (flat actions, `expiresIn` beside `attributes`), or an SDK object serialised to JSON. Each action may use
 * either shape. Throws `RotationPolicyFormatError` naming the field when the document is not a policy.
 */
export function parseRotationPolicy(json: unknown): RotationPolicy {
  if (!isObject(json)) fail('policy', 'must be a JSON object');
  const lifetimeActions = parseActions(json.lifetimeActions);
  const attributes = json.attributes ?? {};
  if (!isObject(attributes)) fail('attributes', 'must be an object');
  const fromAttributes = optionalString(attributes, 'expiryTime', 'attributes.expiryTime');
  const fromSdk = optionalString(json, 'expiresIn', 'expiresIn');
  if (fromAttributes !== undefined && fromSdk !== undefined && fromAttributes !== fromSdk) {
    fail('expiresIn', `disagrees with attributes.expiryTime (${fromSdk} vs ${fromAttributes})`);
  }
  const expiryTime = fromAttributes ?? fromSdk;
  const id = json.id ?? undefined;
  if (id !== undefined && typeof id !== 'string') fail('id', 'must be a string');
  const createdOn = optionalTimestamp(attributes.created ?? json.createdOn, 'attributes.created');
  const updatedOn = optionalTimestamp(attributes.updated ?? json.updatedOn, 'attributes.updated');
  return {
    lifetimeActions,
    ...(expiryTime === undefined ? {} : { expiryTime }),
    ...(id === undefined ? {} : { id }),
    ...(createdOn === undefined ? {} : { createdOn }),
    ...(updatedOn === undefined ? {} : { updatedOn }),
  };
}

/** Reads the service JSON shape (request or response body). Same leniency as `parseRotationPolicy`. */
export function fromServiceJson(json: unknown): RotationPolicy {
  return parseRotationPolicy(json);
}

export interface ToServiceJsonOptions {
  /**
   * Add `id` and `attributes.created|updated` (Unix seconds) as the service does in responses. Off by
   * default: a PUT body carries only the writable fields.
   */
  includeMetadata?: boolean;
}

/** The REST / CLI shape. Action types come out canonical (`Rotate`, `Notify`). */
export function toServiceJson(
  policy: RotationPolicy,
  options: ToServiceJsonOptions = {},
): ServiceRotationPolicyJson {
  const out: ServiceRotationPolicyJson = {
    lifetimeActions: policy.lifetimeActions.map((entry) => {
      const trigger: ServiceLifetimeActionJson['trigger'] = {};
      if (entry.timeAfterCreate !== undefined) trigger.timeAfterCreate = entry.timeAfterCreate;
      if (entry.timeBeforeExpiry !== undefined) trigger.timeBeforeExpiry = entry.timeBeforeExpiry;
      return { trigger, action: { type: parseActionType(entry.action) } };
    }),
    attributes: {},
  };
  if (policy.expiryTime !== undefined) out.attributes.expiryTime = policy.expiryTime;
  if (options.includeMetadata) {
    if (policy.id !== undefined) out.id = policy.id;
    if (policy.createdOn !== undefined)
      out.attributes.created = Math.floor(policy.createdOn.getTime() / 1000);
    if (policy.updatedOn !== undefined)
      out.attributes.updated = Math.floor(policy.updatedOn.getTime() / 1000);
    // The service puts `id` first; keep that order for readable diffs against real responses.
    if (out.id !== undefined)
      return { id: out.id, lifetimeActions: out.lifetimeActions, attributes: out.attributes };
  }
  return out;
}

/** Reads an SDK policy (`getKeyRotationPolicy` result or `KeyRotationPolicyProperties`). */
export function fromSdk(policy: KeyRotationPolicyProperties | KeyRotationPolicy): RotationPolicy {
  if (!isObject(policy)) fail('policy', 'must be an object');
  const full = policy as KeyRotationPolicy;
  const lifetimeActions = parseActions(policy.lifetimeActions);
  const expiryTime = optionalString(policy as unknown as JsonObject, 'expiresIn', 'expiresIn');
  const createdOn = full.createdOn instanceof Date ? full.createdOn : undefined;
  const updatedOn = full.updatedOn instanceof Date ? full.updatedOn : undefined;
  return {
    lifetimeActions,
    ...(expiryTime === undefined ? {} : { expiryTime }),
    ...(typeof full.id === 'string' ? { id: full.id } : {}),
    ...(createdOn === undefined ? {} : { createdOn }),
    ...(updatedOn === undefined ? {} : { updatedOn }),
  };
}

/** The SDK shape for `keyClient.updateKeyRotationPolicy(name, toSdk(policy))` (writable fields only). */
export function toSdk(policy: RotationPolicy): KeyRotationPolicyProperties {
  const out: KeyRotationPolicyProperties = {
    lifetimeActions: policy.lifetimeActions.map((entry) => ({
      action: parseActionType(entry.action),
      ...(entry.timeAfterCreate === undefined ? {} : { timeAfterCreate: entry.timeAfterCreate }),
      ...(entry.timeBeforeExpiry === undefined ? {} : { timeBeforeExpiry: entry.timeBeforeExpiry }),
    })),
  };
  if (policy.expiryTime !== undefined) out.expiresIn = policy.expiryTime;
  return out;
}

/** The first action of a type, if any (the service allows one per type). */
export function findAction(
  policy: RotationPolicy,
  type: RotationActionType,
): RotationLifetimeAction | undefined {
  return policy.lifetimeActions.find((entry) => entry.action === type);
}
