/**
 * Vault-wide rotation audit against the Azure Policy built-in "Keys should have a rotation policy ensuring
 * that their rotation is scheduled within the specified number of days after creation"
 * (d8cf8476-a2ec-4916-896e-992351803c44, parameter `maximumDaysToRotate`).
 *
 * The built-in's rule, as published: a key is non-compliant when its `scheduledRotationDate` does not exist,
 * or is greater than `addDays(attributes.createdOn, maximumDaysToRotate)`. We compute the scheduled date the
 * way the service does for the key's current version (see plan.ts): `createdOn + timeAfterCreate`, or
 * `expiresOn - timeBeforeExpiry`; none without a Rotate action, or with a before-expiry Rotate on a key with
 * no expiry. The deadline is exactly `createdOn + N * 24 h`, and a rotation exactly on it is compliant
 * ("greater", not "greater or equal").
 *
 * Beyond the built-in, every entry says whether the current version will expire before (or without) being
 * rotated, which is what breaks services. Keys managed by a certificate (`managed: true`) are skipped: they
 * rotate with their certificate and take no rotation policy.
 */
import type { KeyProperties, KeyRotationPolicy } from '@azure/keyvault-keys';
import { AbortError, InvalidArgumentError, InvalidDurationError } from '../errors.js';
import { MS_PER_DAY } from './duration.js';
import { planRotation } from './plan.js';
import { fromSdk, type RotationPolicy } from './policy.js';

/** The two KeyClient methods the audit uses; a real `KeyClient` satisfies it. */
export interface RotationAuditClient {
  listPropertiesOfKeys(): AsyncIterable<KeyProperties> & {
    byPage?(settings?: { maxPageSize?: number }): AsyncIterable<KeyProperties[]>;
  };
  getKeyRotationPolicy(name: string): Promise<KeyRotationPolicy>;
}

export type RotationAuditStatus = 'compliant' | 'non-compliant' | 'skipped' | 'error';

export type RotationAuditReason =
  | 'NO_POLICY'
  | 'ROTATE_ACTION_MISSING'
  | 'ONLY_NOTIFY'
  | 'NO_KEY_EXPIRY'
  | 'ROTATION_TOO_LATE'
  | 'INVALID_POLICY'
  | 'MANAGED_KEY'
  | 'POLICY_UNREADABLE';

export interface RotationAuditEntry {
  name: string;
  id?: string;
  enabled?: boolean;
  createdOn?: Date;
  expiresOn?: Date;
  status: RotationAuditStatus;
  /** Absent for compliant keys. */
  reason?: RotationAuditReason;
  message: string;
  /** When the service will rotate the current version, if it will. */
  scheduledRotationOn?: Date;
  /** `createdOn + maximumDaysToRotate` days. */
  rotationDeadline?: Date;
  /** The current version expires before, or without, a rotation replacing it. */
  expiresWithoutRotation: boolean;
  expired: boolean;
  policy?: RotationPolicy;
}

export interface RotationAuditProgress {
  pages: number;
  listed: number;
  audited: number;
}

export interface AuditRotationOptions {
  maximumDaysToRotate: number;
  /** Reference time for `expired` and due dates (defaults to now). */
  now?: Date;
  /** Called after each listed page and each audited key. */
  onProgress?: (progress: RotationAuditProgress) => void;
  /** Rotation policies fetched at once (default 8); keeps large vaults fast without tripping throttling. */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface RotationAuditReport {
  maximumDaysToRotate: number;
  evaluatedAt: Date;
  keys: RotationAuditEntry[];
  summary: {
    total: number;
    compliant: number;
    nonCompliant: number;
    skipped: number;
    errors: number;
    expiringWithoutRotation: number;
  };
}

/**
 * The SDK says `id`, `createdOn` and `updatedOn` are undefined when no policy was explicitly set; the service
 * then answers with its default (Notify P30D only). Some vaults answer 404 instead; both mean "no policy".
 */
function isUnsetPolicy(policy: KeyRotationPolicy): boolean {
  // Timestamps are the signal: a default policy may still carry an `id`.
  return policy.createdOn === undefined && policy.updatedOn === undefined;
}

function isNotFound(error: unknown): boolean {
  return (
    typeof error === 'object' && error !== null && (error as { statusCode?: unknown }).statusCode === 404
  );
}

function describeError(error: unknown): string {
  if (typeof error === 'object' && error !== null) {
    const { statusCode, code, message } = error as {
      statusCode?: unknown;
      code?: unknown;
      message?: unknown;
    };
    const parts = [statusCode, code].filter((p) => p !== undefined).join(' ');
    const text = typeof message === 'string' ? message.split('\n')[0] : '';
    return parts === '' ? text || 'unknown error' : `${parts}: ${text}`;
  }
  return String(error);
}

/** Judges one key against the built-in rule. Pure; exported for tests and custom listings. */
export function auditKey(
  key: Pick<KeyProperties, 'name' | 'id' | 'enabled' | 'createdOn' | 'expiresOn' | 'managed'>,
  policy: RotationPolicy | undefined,
  maximumDaysToRotate: number,
  now: Date,
): RotationAuditEntry {
  const entry: RotationAuditEntry = {
    name: key.name,
    ...(key.id === undefined ? {} : { id: key.id }),
    ...(key.enabled === undefined ? {} : { enabled: key.enabled }),
    ...(key.createdOn === undefined ? {} : { createdOn: key.createdOn }),
    ...(key.expiresOn === undefined ? {} : { expiresOn: key.expiresOn }),
    status: 'non-compliant',
    message: '',
    expiresWithoutRotation: false,
    expired: key.expiresOn !== undefined && key.expiresOn.getTime() <= now.getTime(),
    ...(policy === undefined ? {} : { policy }),
  };
  const fail = (reason: RotationAuditReason, message: string): RotationAuditEntry => {
    entry.reason = reason;
    entry.message = message;
    return entry;
  };

  if (key.managed) {
    entry.status = 'skipped';
    return fail('MANAGED_KEY', 'key backs a certificate and rotates with it; rotation policies do not apply');
  }
  if (key.createdOn === undefined) {
    entry.status = 'error';
    return fail('POLICY_UNREADABLE', 'the vault did not report when the key was created');
  }
  entry.rotationDeadline = new Date(key.createdOn.getTime() + maximumDaysToRotate * MS_PER_DAY);

  let plan: ReturnType<typeof planRotation>;
  try {
    plan = planRotation(policy, { createdOn: key.createdOn, expiresOn: key.expiresOn }, { now });
  } catch (error) {
    if (!(error instanceof InvalidDurationError)) {
      entry.status = 'error';
      return fail('POLICY_UNREADABLE', `the key's dates cannot be evaluated: ${(error as Error).message}`);
    }
    entry.expiresWithoutRotation = key.expiresOn !== undefined;
    return fail('INVALID_POLICY', `the rotation policy cannot be evaluated: ${error.message}`);
  }
  entry.expiresWithoutRotation = plan.expiresBeforeRotation;
  if (plan.rotation !== undefined) entry.scheduledRotationOn = plan.rotation.at;

  const actions = policy?.lifetimeActions ?? [];
  const hasRotate = actions.some((a) => a.action === 'Rotate');
  if (policy === undefined) {
    return fail('NO_POLICY', 'the key has no rotation policy, so no rotation is scheduled');
  }
  if (!hasRotate) {
    return actions.some((a) => a.action === 'Notify')
      ? fail('ONLY_NOTIFY', 'the rotation policy only notifies near expiry; add a Rotate action')
      : fail('ROTATE_ACTION_MISSING', 'the rotation policy has no Rotate action');
  }
  if (plan.rotation === undefined) {
    return fail('NO_KEY_EXPIRY', `no rotation is scheduled: ${plan.rotationReason ?? 'unknown reason'}`);
  }
  if (plan.rotation.at.getTime() > entry.rotationDeadline.getTime()) {
    const days = (plan.rotation.at.getTime() - key.createdOn.getTime()) / MS_PER_DAY;
    return fail(
      'ROTATION_TOO_LATE',
      `rotation is scheduled ${Number.isInteger(days) ? days : days.toFixed(1)} days after creation (${plan.rotation.trigger} ${plan.rotation.duration}), later than the ${maximumDaysToRotate} allowed`,
    );
  }
  entry.status = 'compliant';
  entry.message = `rotation scheduled ${plan.rotation.at.toISOString()}, within ${maximumDaysToRotate} days of creation`;
  return entry;
}

/** Runs `worker` over `items` with at most `limit` in flight, keeping results in input order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  worker: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const run = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await worker(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
  return results;
}

/**
 * Audits every key of a vault. Keys are listed page by page and their policies fetched with bounded
 * concurrency; a key whose policy cannot be read is reported as `error` and the audit goes on.
 */
export async function auditRotation(
  client: RotationAuditClient,
  options: AuditRotationOptions,
): Promise<RotationAuditReport> {
  const { maximumDaysToRotate } = options;
  if (!Number.isSafeInteger(maximumDaysToRotate) || maximumDaysToRotate < 1) {
    throw new InvalidArgumentError('maximumDaysToRotate must be a whole number of days, at least 1');
  }
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new InvalidArgumentError('concurrency must be a whole number, at least 1');
  }
  const now = options.now ?? new Date();
  const progress: RotationAuditProgress = { pages: 0, listed: 0, audited: 0 };
  const report = () => options.onProgress?.({ ...progress });
  const checkAbort = () => {
    if (options.signal?.aborted)
      throw new AbortError('rotation audit cancelled', { cause: options.signal.reason });
  };

  const auditOne = async (key: KeyProperties): Promise<RotationAuditEntry> => {
    checkAbort();
    let policy: RotationPolicy | undefined;
    let entry: RotationAuditEntry;
    if (key.managed) {
      entry = auditKey(key, undefined, maximumDaysToRotate, now);
    } else {
      try {
        const raw = await client.getKeyRotationPolicy(key.name);
        policy = isUnsetPolicy(raw) ? undefined : fromSdk(raw);
        entry = auditKey(key, policy, maximumDaysToRotate, now);
      } catch (error) {
        if (isNotFound(error)) {
          entry = auditKey(key, undefined, maximumDaysToRotate, now);
        } else {
          entry = auditKey(key, undefined, maximumDaysToRotate, now);
          entry.status = 'error';
          entry.reason = 'POLICY_UNREADABLE';
          entry.message = `could not read the rotation policy (check the getrotationpolicy permission): ${describeError(error)}`;
          delete entry.scheduledRotationOn;
          entry.expiresWithoutRotation = false;
        }
      }
    }
    progress.audited++;
    report();
    return entry;
  };

  const keys: RotationAuditEntry[] = [];
  const listing = client.listPropertiesOfKeys();
  const pages: AsyncIterable<KeyProperties[]> =
    typeof listing.byPage === 'function'
      ? listing.byPage()
      : (async function* () {
          const all: KeyProperties[] = [];
          for await (const key of listing) all.push(key);
          yield all;
        })();
  for await (const page of pages) {
    checkAbort();
    progress.pages++;
    progress.listed += page.length;
    report();
    keys.push(...(await mapLimited(page, concurrency, auditOne)));
  }

  const count = (status: RotationAuditStatus) => keys.filter((k) => k.status === status).length;
  return {
    maximumDaysToRotate,
    evaluatedAt: now,
    keys,
    summary: {
      total: keys.length,
      compliant: count('compliant'),
      nonCompliant: count('non-compliant'),
      skipped: count('skipped'),
      errors: count('error'),
      expiringWithoutRotation: keys.filter((k) => k.expiresWithoutRotation && k.status !== 'skipped').length,
    },
  };
}
