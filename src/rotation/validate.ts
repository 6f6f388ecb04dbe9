/**
 * The service's rotation-policy rules, checked before a policy is sent (and by the emulated Key Vault when
 * one arrives), reporting every violation with the field at fault in the service JSON shape.
 *
 * Rules (Microsoft Learn "Configure cryptographic key auto-rotation in Azure Key Vault",
 * MicrosoftDocs/azure-docs articles/key-vault/keys/how-to-configure-key-rotation.md; recorded service answers in
 * test/fixtures/kv-recordings/):
 * - every duration is ISO-8601;
 * - `attributes.expiryTime` is at least 28 days;
 * - a Rotate action happens no earlier than 7 days after creation and no later than 7 days before expiry;
 * - a `timeBeforeExpiry` trigger (any action) is at least 7 days and needs `attributes.expiryTime` in the
 *   policy;
 * - on a key without an expiry date a `timeBeforeExpiry` trigger is only a **warning**: the service stores
 *   such a policy (recorded answer: PUT `{Rotate timeBeforeExpiry P30D, expiryTime P90D}` on a key created
 *   without `exp` answers 200 in Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/node/
 *   keys_client__create_read_update_and_delete_operations_key_rotation/
 *   recording_updatekeyrotationpolicy_supports_creating_a_new_rotation_policy_and_fetching_it.json; likewise
 *   `test_key_rotation_policy[7.3_vault]` in Azure/azure-sdk-for-python sdk/keyvault/azure-keyvault-keys/
 *   tests/recordings), and the trigger fires once the key version gets an expiry;
 * - Notify only with `timeBeforeExpiry`;
 * - each action has exactly one trigger, and there is at most one action per type.
 *
 * Calendar durations meet a day threshold only if they meet it from every start date (see duration.ts):
 * P1M passes ">= 28 days"; a rotation P23M against an expiry P2Y passes "7 days before expiry" because the
 * gap is at least 28 days from any creation date.
 */
import { RotationPolicyInvalidError, type RotationPolicyViolationDetail } from '../errors.js';
import {
  type Duration,
  durationBoundsMs,
  durationGapBoundsMs,
  durationRemainderBoundsMs,
  MS_PER_DAY,
  parseDuration,
} from './duration.js';
import type { RotationLifetimeAction, RotationPolicy } from './policy.js';

export const MIN_EXPIRY_DAYS = 28;
export const MIN_ROTATION_MARGIN_DAYS = 7;
/** What the service adds when a policy has no Notify action. */
export const DEFAULT_NOTIFY_BEFORE_EXPIRY = 'P30D';

export type RotationPolicyViolationCode =
  | 'INVALID_DURATION'
  | 'EXPIRY_TOO_SHORT'
  | 'TRIGGER_MISSING'
  | 'TRIGGER_AMBIGUOUS'
  | 'DUPLICATE_ACTION'
  | 'NOTIFY_AFTER_CREATE'
  | 'EXPIRY_TIME_REQUIRED'
  | 'KEY_EXPIRY_REQUIRED'
  | 'ROTATION_TOO_EARLY'
  | 'ROTATION_TOO_LATE'
  | 'TRIGGER_TOO_CLOSE_TO_EXPIRY';

/** `error`: the service refuses the policy. `warning`: the service stores it, but part of it is inert. */
export type RotationPolicySeverity = 'error' | 'warning';

/** Codes reported as warnings: the service accepts the policy. */
const WARNING_CODES: ReadonlySet<RotationPolicyViolationCode> = new Set(['KEY_EXPIRY_REQUIRED']);

export interface RotationPolicyViolation extends RotationPolicyViolationDetail {
  /** Service JSON path, e.g. `lifetimeActions[0].trigger.timeAfterCreate` or `attributes.expiryTime`. */
  field: string;
  message: string;
  code: RotationPolicyViolationCode;
  severity: RotationPolicySeverity;
}

/** The findings the service refuses a policy for (severity `error`). */
export function rotationPolicyErrors(
  violations: readonly RotationPolicyViolation[],
): RotationPolicyViolation[] {
  return violations.filter((v) => v.severity === 'error');
}

/** The findings the service accepts but that make part of the policy inert (severity `warning`). */
export function rotationPolicyWarnings(
  violations: readonly RotationPolicyViolation[],
): RotationPolicyViolation[] {
  return violations.filter((v) => v.severity === 'warning');
}

export interface ValidateRotationPolicyOptions {
  /**
   * Expiry of the key's current version. `null` states the key has no expiry (then each `timeBeforeExpiry`
   * trigger gets a `KEY_EXPIRY_REQUIRED` warning: the service stores it, it fires once the key has an
   * expiry); `undefined` means unknown and skips that check. From the SDK pass
   * `key.properties.expiresOn ?? null`.
   */
  keyExpiresOn?: Date | null;
}

function days(ms: number): string {
  const value = ms / MS_PER_DAY;
  return Number.isInteger(value) ? `${value} days` : `${value.toFixed(2)} days`;
}

/**
 * Every finding against the service's rules: `severity: 'error'` ones make the service refuse the policy,
 * `severity: 'warning'` ones do not (see `rotationPolicyErrors`). An empty array means a clean policy.
 */
export function validateRotationPolicy(
  policy: RotationPolicy,
  options: ValidateRotationPolicyOptions = {},
): RotationPolicyViolation[] {
  const violations: RotationPolicyViolation[] = [];
  const add = (field: string, code: RotationPolicyViolationCode, message: string) => {
    violations.push({ field, code, message, severity: WARNING_CODES.has(code) ? 'warning' : 'error' });
  };
  const tryParse = (text: string, field: string): Duration | undefined => {
    try {
      return parseDuration(text, field);
    } catch (error) {
      add(field, 'INVALID_DURATION', (error as Error).message);
      return undefined;
    }
  };

  const expiryField = 'attributes.expiryTime';
  const expiry = policy.expiryTime === undefined ? undefined : tryParse(policy.expiryTime, expiryField);
  if (expiry !== undefined) {
    const shortest = durationBoundsMs(expiry).minMs;
    if (shortest < MIN_EXPIRY_DAYS * MS_PER_DAY) {
      add(
        expiryField,
        'EXPIRY_TOO_SHORT',
        `expiryTime ${policy.expiryTime} must be at least ${MIN_EXPIRY_DAYS} days (it can be as short as ${days(shortest)})`,
      );
    }
  }

  const seen = new Map<string, number>();
  policy.lifetimeActions.forEach((entry: RotationLifetimeAction, index) => {
    const base = `lifetimeActions[${index}]`;
    const previous = seen.get(entry.action);
    if (previous !== undefined) {
      add(
        `${base}.action.type`,
        'DUPLICATE_ACTION',
        `only one ${entry.action} action is allowed; lifetimeActions[${previous}] is already ${entry.action}`,
      );
    } else {
      seen.set(entry.action, index);
    }

    const afterField = `${base}.trigger.timeAfterCreate`;
    const beforeField = `${base}.trigger.timeBeforeExpiry`;
    if (entry.timeAfterCreate === undefined && entry.timeBeforeExpiry === undefined) {
      add(
        `${base}.trigger`,
        'TRIGGER_MISSING',
        `${entry.action} action needs timeAfterCreate or timeBeforeExpiry`,
      );
      return;
    }
    if (entry.timeAfterCreate !== undefined && entry.timeBeforeExpiry !== undefined) {
      add(
        `${base}.trigger`,
        'TRIGGER_AMBIGUOUS',
        `${entry.action} action must have either timeAfterCreate or timeBeforeExpiry, not both`,
      );
    }

    if (entry.timeAfterCreate !== undefined) {
      const after = tryParse(entry.timeAfterCreate, afterField);
      if (entry.action === 'Notify') {
        add(
          afterField,
          'NOTIFY_AFTER_CREATE',
          'Notify actions only take timeBeforeExpiry, not timeAfterCreate',
        );
      } else if (after !== undefined) {
        const earliest = durationBoundsMs(after).minMs;
        if (earliest < MIN_ROTATION_MARGIN_DAYS * MS_PER_DAY) {
          add(
            afterField,
            'ROTATION_TOO_EARLY',
            `rotation must be at least ${MIN_ROTATION_MARGIN_DAYS} days after creation (timeAfterCreate ${entry.timeAfterCreate})`,
          );
        }
        if (expiry !== undefined) {
          const margin = durationGapBoundsMs(expiry, after).minMs;
          if (margin < MIN_ROTATION_MARGIN_DAYS * MS_PER_DAY) {
            add(
              afterField,
              'ROTATION_TOO_LATE',
              `rotation must be at least ${MIN_ROTATION_MARGIN_DAYS} days before expiry: timeAfterCreate ${entry.timeAfterCreate} leaves as little as ${days(margin)} before expiryTime ${policy.expiryTime}`,
            );
          }
        }
      }
    }

    if (
      (entry.action === 'Notify' || entry.timeBeforeExpiry !== undefined) &&
      policy.expiryTime === undefined
    ) {
      add(
        expiryField,
        'EXPIRY_TIME_REQUIRED',
        entry.action === 'Notify'
          ? `a Notify action (${base}) needs attributes.expiryTime in the policy`
          : `Rotate with timeBeforeExpiry (${base}) needs attributes.expiryTime in the policy`,
      );
    }

    if (entry.timeBeforeExpiry !== undefined) {
      const before = tryParse(entry.timeBeforeExpiry, beforeField);
      if (options.keyExpiresOn === null) {
        add(
          beforeField,
          'KEY_EXPIRY_REQUIRED',
          `${entry.action} with timeBeforeExpiry does nothing until the key has an expiry date; the service stores the policy, set an expiry on the key for the trigger to fire`,
        );
      }
      if (before !== undefined) {
        const shortest = durationBoundsMs(before).minMs;
        if (shortest < MIN_ROTATION_MARGIN_DAYS * MS_PER_DAY) {
          add(
            beforeField,
            'TRIGGER_TOO_CLOSE_TO_EXPIRY',
            `timeBeforeExpiry ${entry.timeBeforeExpiry} must be at least ${MIN_ROTATION_MARGIN_DAYS} days`,
          );
        }
        if (entry.action === 'Rotate' && expiry !== undefined) {
          const afterCreation = durationRemainderBoundsMs(expiry, before).minMs;
          if (afterCreation < MIN_ROTATION_MARGIN_DAYS * MS_PER_DAY) {
            add(
              beforeField,
              'ROTATION_TOO_EARLY',
              `rotation must be at least ${MIN_ROTATION_MARGIN_DAYS} days after creation: timeBeforeExpiry ${entry.timeBeforeExpiry} against expiryTime ${policy.expiryTime} rotates as early as ${days(afterCreation)} after creation`,
            );
          }
        }
      }
    }
  });

  // One report per policy is enough for the missing expiryTime, however many actions need it.
  return violations.filter(
    (v, i) =>
      v.code !== 'EXPIRY_TIME_REQUIRED' ||
      violations.findIndex((w) => w.code === 'EXPIRY_TIME_REQUIRED') === i,
  );
}

/** Throws `RotationPolicyInvalidError` listing every error (warnings do not throw), if there is any. */
export function assertValidRotationPolicy(
  policy: RotationPolicy,
  options: ValidateRotationPolicyOptions = {},
): void {
  const errors = rotationPolicyErrors(validateRotationPolicy(policy, options));
  if (errors.length > 0) throw new RotationPolicyInvalidError(errors);
}

/**
 * What the service stores for a PUT: the policy as given, plus a Notify action `timeBeforeExpiry: P30D`
 * when the policy has no Notify action (only Rotate, or no action at all, which resets to the default
 * policy: Notify P30D only).
 *
 * The Notify is added whether or not the policy has an `expiryTime`: the service's own default policy is
 * exactly that Notify with no `expiryTime`, and a Notify fires relative to the key version's `exp`, so it
 * is inert for versions without one. The rule "timeBeforeExpiry needs expiryTime" applies to what a caller
 * sends, so validate the caller's policy, then normalise it. Pure: returns a new object.
 */
export function normalizeRotationPolicyForService(policy: RotationPolicy): RotationPolicy {
  if (policy.lifetimeActions.some((entry) => entry.action === 'Notify')) return policy;
  return {
    ...policy,
    lifetimeActions: [
      ...policy.lifetimeActions,
      { action: 'Notify', timeBeforeExpiry: DEFAULT_NOTIFY_BEFORE_EXPIRY },
    ],
  };
}
