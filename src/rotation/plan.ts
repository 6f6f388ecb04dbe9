/**
 * Offline rotation planning: given a policy and the dates of a key's current version, when will the service
 * rotate it, when will it send the near-expiry notification, and when will the new version expire.
 *
 * The timing model (Key Vault auto-rotation: MicrosoftDocs/azure-docs
 * articles/key-vault/keys/how-to-configure-key-rotation.md):
 * - Rotate `timeAfterCreate` T fires at `createdOn + T`; Rotate `timeBeforeExpiry` B at `expiresOn - B`
 *   (never without an expiry on the key);
 * - rotation creates a version with `createdOn` = rotation time and, when the policy has `expiryTime` E,
 *   `expiresOn` = rotation time + E (no expiry otherwise);
 * - Notify `timeBeforeExpiry` B fires at `expiresOn - B` of the current version. If a rotation comes first,
 *   the current version stops being current and the next notification is the new version's.
 * Times in the past are reported as `due` rather than projected forward: a due rotation means the service
 * should already have rotated (or the dates given are stale).
 */
import { InvalidArgumentError } from '../errors.js';
import { addDuration, parseDuration, subtractDuration } from './duration.js';
import type { RotationPolicy } from './policy.js';

export interface KeyVersionDates {
  /** Creation of the key's current version. */
  createdOn: Date;
  /** Expiry of the key's current version, if it has one. */
  expiresOn?: Date | undefined;
}

export interface PlanRotationOptions {
  /** The instant the plan is made for (defaults to the current time). */
  now?: Date;
}

export interface PlannedRotation {
  at: Date;
  trigger: 'timeAfterCreate' | 'timeBeforeExpiry';
  /** The trigger's duration as written in the policy. */
  duration: string;
  /** `at` is not after `now`: the service should rotate at once (or already did). */
  due: boolean;
}

export interface PlannedNotification {
  at: Date;
  duration: string;
  /**
   * Which version the notification is about: the current one, or one that rotation creates (the first new
   * version, or a later one when calendar months put earlier ones' rotation before their notification).
   */
  version: 'current' | 'next';
  due: boolean;
}

export interface RotationPlan {
  now: Date;
  rotation?: PlannedRotation;
  /** Why nothing is scheduled when `rotation` is absent. */
  rotationReason?: string;
  notification?: PlannedNotification;
  notificationReason?: string;
  /** Expiry of the version the planned rotation creates (rotation time + policy expiryTime). */
  newVersionExpiresOn?: Date;
  newVersionExpiresReason?: string;
  /** The current version expires before (or without) a rotation replacing it. */
  expiresBeforeRotation: boolean;
  /** The current version's expiry is already past. */
  expired: boolean;
}

/**
 * Versions looked ahead for the next notification when month lengths can change the timing from one version
 * to the next (decades for any realistic policy; month-end clamping settles within a few versions).
 */
const MAX_PLANNED_VERSIONS = 48;

function checkDate(value: unknown, what: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) {
    throw new InvalidArgumentError(`${what} must be a valid Date`);
  }
  return value;
}

/**
 * Plans the next rotation and notification of one key. `policy` may be `undefined` (no policy set).
 * Durations are parsed strictly: an invalid one throws `InvalidDurationError` naming its field; validate the
 * policy first (`validateRotationPolicy`) to get every problem at once.
 */
export function planRotation(
  policy: RotationPolicy | undefined,
  key: KeyVersionDates,
  options: PlanRotationOptions = {},
): RotationPlan {
  const now = checkDate(options.now ?? new Date(), 'now');
  const createdOn = checkDate(key.createdOn, 'createdOn');
  const expiresOn = key.expiresOn === undefined ? undefined : checkDate(key.expiresOn, 'expiresOn');
  if (expiresOn !== undefined && expiresOn.getTime() < createdOn.getTime()) {
    throw new InvalidArgumentError('expiresOn is before createdOn; check the key dates');
  }

  const plan: RotationPlan = {
    now,
    expiresBeforeRotation: false,
    expired: expiresOn !== undefined && expiresOn.getTime() <= now.getTime(),
  };
  const actions = policy?.lifetimeActions ?? [];
  const rotateIndex = actions.findIndex((a) => a.action === 'Rotate');
  const rotate = actions[rotateIndex];
  const notifyIndex = actions.findIndex((a) => a.action === 'Notify');
  const notify = actions[notifyIndex];
  const expiryTime =
    policy?.expiryTime === undefined ? undefined : parseDuration(policy.expiryTime, 'attributes.expiryTime');

  if (policy === undefined) {
    plan.rotationReason = 'the key has no rotation policy';
  } else if (rotate === undefined) {
    plan.rotationReason = 'the rotation policy has no Rotate action';
  } else if (rotate.timeAfterCreate !== undefined) {
    const field = `lifetimeActions[${rotateIndex}].trigger.timeAfterCreate`;
    const at = addDuration(createdOn, parseDuration(rotate.timeAfterCreate, field));
    plan.rotation = { at, trigger: 'timeAfterCreate', duration: rotate.timeAfterCreate, due: at <= now };
  } else if (rotate.timeBeforeExpiry !== undefined) {
    if (expiresOn === undefined) {
      plan.rotationReason = `Rotate is timed ${rotate.timeBeforeExpiry} before expiry, but the key has no expiry date`;
    } else {
      const field = `lifetimeActions[${rotateIndex}].trigger.timeBeforeExpiry`;
      const at = subtractDuration(expiresOn, parseDuration(rotate.timeBeforeExpiry, field));
      plan.rotation = { at, trigger: 'timeBeforeExpiry', duration: rotate.timeBeforeExpiry, due: at <= now };
    }
  } else {
    plan.rotationReason = 'the Rotate action has no trigger';
  }

  const rotation = plan.rotation;
  if (rotation !== undefined) {
    if (expiryTime === undefined) {
      plan.newVersionExpiresReason = 'the policy has no expiryTime, so the new version will not expire';
    } else {
      plan.newVersionExpiresOn = addDuration(rotation.at, expiryTime);
    }
  } else {
    plan.newVersionExpiresReason = 'no rotation is scheduled';
  }
  plan.expiresBeforeRotation =
    expiresOn !== undefined && (rotation === undefined || expiresOn.getTime() <= rotation.at.getTime());

  if (notify === undefined) {
    plan.notificationReason = 'the rotation policy has no Notify action';
  } else if (notify.timeBeforeExpiry === undefined) {
    plan.notificationReason = 'the Notify action has no timeBeforeExpiry trigger';
  } else {
    const before = parseDuration(
      notify.timeBeforeExpiry,
      `lifetimeActions[${notifyIndex}].trigger.timeBeforeExpiry`,
    );
    const current = expiresOn === undefined ? undefined : subtractDuration(expiresOn, before);
    // At the same instant the service notifies first, then rotates.
    if (current !== undefined && (rotation === undefined || current.getTime() <= rotation.at.getTime())) {
      plan.notification = {
        at: current,
        duration: notify.timeBeforeExpiry,
        version: 'current',
        due: current <= now,
      };
    } else if (rotation !== undefined && rotate !== undefined && plan.newVersionExpiresOn !== undefined) {
      // Versions the rotations create get the same lifetime actions. A version rotated before its own
      // notification time is never notified about; calendar months make that vary from one version to the
      // next, so walk the versions until one is notified about (at a tie the service notifies first).
      const afterCreate =
        rotate.timeAfterCreate === undefined ? undefined : parseDuration(rotate.timeAfterCreate);
      const rotateBefore = parseDuration(rotate.timeBeforeExpiry ?? 'PT0S');
      const calendar = [expiryTime!, before, afterCreate ?? rotateBefore].some(
        (d) => d.years !== 0 || d.months !== 0,
      );
      // Without months or years every version has the same timing: the first one decides.
      const lookahead = calendar ? MAX_PLANNED_VERSIONS : 1;
      let created = rotation.at;
      let found: Date | undefined;
      for (let version = 0; version < lookahead && found === undefined; version++) {
        const expires = addDuration(created, expiryTime!);
        const notifyAt = subtractDuration(expires, before);
        const rotateAt = afterCreate
          ? addDuration(created, afterCreate)
          : subtractDuration(expires, rotateBefore);
        if (notifyAt.getTime() <= rotateAt.getTime()) found = notifyAt;
        else created = rotateAt;
      }
      if (found !== undefined) {
        plan.notification = {
          at: found,
          duration: notify.timeBeforeExpiry,
          version: 'next',
          due: found <= now,
        };
      } else {
        plan.notificationReason = `every version is rotated (${rotation.trigger} ${rotation.duration}) before its notification time (${notify.timeBeforeExpiry} before expiry), so no near-expiry notification is sent while this policy stays`;
      }
    } else if (expiresOn === undefined) {
      plan.notificationReason =
        rotation === undefined
          ? 'the key has no expiry date, so there is nothing to notify about'
          : 'neither the key nor the version the rotation creates has an expiry date (the policy has no expiryTime)';
    } else {
      plan.notificationReason =
        'the current version is rotated before its notification time, and the new version will not expire (the policy has no expiryTime)';
    }
  }
  return plan;
}
