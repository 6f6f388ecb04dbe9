import test from 'ava';
import fc from 'fast-check';
import { RotationPolicyInvalidError } from '../../src/errors.js';
import { addDuration, MS_PER_DAY, parseDuration, subtractDuration } from '../../src/rotation/duration.js';
import type { RotationPolicy } from '../../src/rotation/policy.js';
import {
  assertValidRotationPolicy,
  DEFAULT_NOTIFY_BEFORE_EXPIRY,
  normalizeRotationPolicyForService,
  type RotationPolicyViolation,
  rotationPolicyErrors,
  rotationPolicyWarnings,
  validateRotationPolicy,
} from '../../src/rotation/validate.js';

const documented: RotationPolicy = {
  lifetimeActions: [
    { action: 'Rotate', timeAfterCreate: 'P18M' },
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ],
  expiryTime: 'P2Y',
};

function only(t: import('ava').ExecutionContext, violations: RotationPolicyViolation[]) {
  t.is(violations.length, 1, JSON.stringify(violations));
  return violations[0]!;
}

test('the documented example is valid, with or without a key expiry', (t) => {
  t.deepEqual(validateRotationPolicy(documented), []);
  t.deepEqual(validateRotationPolicy(documented, { keyExpiresOn: new Date('2030-01-01T00:00:00Z') }), []);
  t.notThrows(() => assertValidRotationPolicy(documented));
  t.deepEqual(validateRotationPolicy({ lifetimeActions: [] }), []);
  t.deepEqual(
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }] }),
    [],
  );
});

test('rule: durations must be ISO-8601', (t) => {
  const v = only(
    t,
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: '18 months' }] }),
  );
  t.is(v.code, 'INVALID_DURATION');
  t.is(v.field, 'lifetimeActions[0].trigger.timeAfterCreate');
  t.regex(v.message, /not an ISO-8601 duration/);
  const w = only(t, validateRotationPolicy({ ...documented, expiryTime: '2y' }));
  t.is(w.field, 'attributes.expiryTime');
  t.is(w.code, 'INVALID_DURATION');
});

test('rule: expiryTime at least 28 days (P1M counts as 28)', (t) => {
  const v = only(t, validateRotationPolicy({ lifetimeActions: [], expiryTime: 'P27D' }));
  t.is(v.code, 'EXPIRY_TOO_SHORT');
  t.is(v.field, 'attributes.expiryTime');
  t.regex(v.message, /at least 28 days/);
  t.deepEqual(validateRotationPolicy({ lifetimeActions: [], expiryTime: 'P28D' }), []);
  t.deepEqual(validateRotationPolicy({ lifetimeActions: [], expiryTime: 'P1M' }), []);
  t.deepEqual(validateRotationPolicy({ lifetimeActions: [], expiryTime: 'P4W' }), []);
  t.is(
    only(t, validateRotationPolicy({ lifetimeActions: [], expiryTime: 'PT671H' })).code,
    'EXPIRY_TOO_SHORT',
  );
});

test('rule: rotation no earlier than 7 days after creation', (t) => {
  const v = only(
    t,
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P6D' }] }),
  );
  t.is(v.code, 'ROTATION_TOO_EARLY');
  t.is(v.field, 'lifetimeActions[0].trigger.timeAfterCreate');
  t.regex(v.message, /at least 7 days after creation/);
  t.deepEqual(
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P7D' }] }),
    [],
  );
  t.deepEqual(
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P1W' }] }),
    [],
  );
  // timeBeforeExpiry so large that rotation would come right after creation
  const w = only(
    t,
    validateRotationPolicy({
      lifetimeActions: [
        { action: 'Rotate', timeBeforeExpiry: 'P25D' },
        { action: 'Notify', timeBeforeExpiry: 'P10D' },
      ],
      expiryTime: 'P30D',
    }),
  );
  t.is(w.code, 'ROTATION_TOO_EARLY');
  t.is(w.field, 'lifetimeActions[0].trigger.timeBeforeExpiry');
  t.regex(w.message, /as early as 5 days after creation/);
});

test('rule: rotation no later than 7 days before expiry', (t) => {
  const v = only(
    t,
    validateRotationPolicy({
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P725D' }],
      expiryTime: 'P2Y',
    }),
  );
  t.is(v.code, 'ROTATION_TOO_LATE');
  t.is(v.field, 'lifetimeActions[0].trigger.timeAfterCreate');
  t.regex(v.message, /at least 7 days before expiry/);
  t.deepEqual(
    validateRotationPolicy({
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P723D' }],
      expiryTime: 'P2Y',
    }),
    [],
  );
  // P1M vs P35D: from Feb 1 the expiry comes after 28 days, before the rotation
  t.is(
    only(
      t,
      validateRotationPolicy({
        lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P22D' }],
        expiryTime: 'P1M',
      }),
    ).code,
    'ROTATION_TOO_LATE',
  );
  t.deepEqual(
    validateRotationPolicy({
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P21D' }],
      expiryTime: 'P1M',
    }),
    [],
  );
  // timeBeforeExpiry under 7 days
  const w = validateRotationPolicy({
    lifetimeActions: [
      { action: 'Rotate', timeBeforeExpiry: 'P6D' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
    expiryTime: 'P1Y',
  });
  t.is(only(t, w).code, 'TRIGGER_TOO_CLOSE_TO_EXPIRY');
  t.is(w[0]?.field, 'lifetimeActions[0].trigger.timeBeforeExpiry');
});

test('rule: rotate-before-expiry and Notify need expiryTime in the policy', (t) => {
  const v = only(
    t,
    validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P30D' }] }),
  );
  t.is(v.code, 'EXPIRY_TIME_REQUIRED');
  t.is(v.field, 'attributes.expiryTime');
  t.regex(v.message, /needs attributes\.expiryTime/);
  const w = only(
    t,
    validateRotationPolicy({ lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P30D' }] }),
  );
  t.is(w.code, 'EXPIRY_TIME_REQUIRED');
  t.regex(w.message, /Notify/);
  // reported once even when two actions need it
  const both = validateRotationPolicy({
    lifetimeActions: [
      { action: 'Rotate', timeBeforeExpiry: 'P60D' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
  });
  t.is(only(t, both).code, 'EXPIRY_TIME_REQUIRED');
});

test('a before-expiry trigger on a key without expiry is a warning, not an error: the service stores it', (t) => {
  // Recorded: the service answers 200 to PUT {Rotate timeBeforeExpiry P30D, expiryTime P90D} on a key created
  // without exp (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/node/
  // keys_client__create_read_update_and_delete_operations_key_rotation/
  // recording_updatekeyrotationpolicy_supports_creating_a_new_rotation_policy_and_fetching_it.json, commit
  // 49291321dd372ffcc17dad690b7a6dc21769ac43).
  const violations = validateRotationPolicy(documented, { keyExpiresOn: null });
  const v = only(t, violations);
  t.is(v.code, 'KEY_EXPIRY_REQUIRED');
  t.is(v.severity, 'warning');
  t.is(v.field, 'lifetimeActions[1].trigger.timeBeforeExpiry');
  t.regex(v.message, /until the key has an expiry date/);
  t.deepEqual(rotationPolicyErrors(violations), []);
  t.deepEqual(rotationPolicyWarnings(violations), [v]);
  t.notThrows(() => assertValidRotationPolicy(documented, { keyExpiresOn: null }));
  t.deepEqual(
    validateRotationPolicy(
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }] },
      { keyExpiresOn: null },
    ),
    [],
  );
});

test('rule: Notify only with timeBeforeExpiry', (t) => {
  const v = validateRotationPolicy({
    lifetimeActions: [{ action: 'Notify', timeAfterCreate: 'P30D' }],
    expiryTime: 'P1Y',
  });
  const n = only(t, v);
  t.is(n.code, 'NOTIFY_AFTER_CREATE');
  t.is(n.field, 'lifetimeActions[0].trigger.timeAfterCreate');
  t.regex(n.message, /Notify actions only take timeBeforeExpiry/);
});

test('rule: at most one action per type', (t) => {
  const v = only(
    t,
    validateRotationPolicy({
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P90D' },
        { action: 'Rotate', timeAfterCreate: 'P180D' },
      ],
    }),
  );
  t.is(v.code, 'DUPLICATE_ACTION');
  t.is(v.field, 'lifetimeActions[1].action.type');
  t.regex(v.message, /only one Rotate action/);
});

test('rule: exactly one trigger per action', (t) => {
  const none = only(t, validateRotationPolicy({ lifetimeActions: [{ action: 'Rotate' }] }));
  t.is(none.code, 'TRIGGER_MISSING');
  t.is(none.field, 'lifetimeActions[0].trigger');
  const both = validateRotationPolicy({
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D', timeBeforeExpiry: 'P30D' }],
    expiryTime: 'P1Y',
  });
  t.is(only(t, both).code, 'TRIGGER_AMBIGUOUS');
});

test('every violation is reported, not just the first', (t) => {
  const violations = validateRotationPolicy(
    {
      lifetimeActions: [
        { action: 'Rotate', timeAfterCreate: 'P3D' },
        { action: 'Notify', timeAfterCreate: 'P30D' },
        { action: 'Rotate', timeAfterCreate: 'nope' },
      ],
      expiryTime: 'P9D',
    },
    { keyExpiresOn: null },
  );
  t.deepEqual(
    violations.map((v) => [v.code, v.field]),
    [
      ['EXPIRY_TOO_SHORT', 'attributes.expiryTime'],
      ['ROTATION_TOO_EARLY', 'lifetimeActions[0].trigger.timeAfterCreate'],
      ['ROTATION_TOO_LATE', 'lifetimeActions[0].trigger.timeAfterCreate'],
      ['NOTIFY_AFTER_CREATE', 'lifetimeActions[1].trigger.timeAfterCreate'],
      ['DUPLICATE_ACTION', 'lifetimeActions[2].action.type'],
      ['INVALID_DURATION', 'lifetimeActions[2].trigger.timeAfterCreate'],
    ],
  );
  const error = t.throws(
    () => assertValidRotationPolicy({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P3D' }] }),
    { instanceOf: RotationPolicyInvalidError },
  );
  t.is(error?.code, 'ERR_ROTATION_POLICY_INVALID');
  t.is(error?.violations.length, 1);
  t.regex(
    error?.message ?? '',
    /lifetimeActions\[0\]\.trigger\.timeAfterCreate: rotation must be at least 7 days/,
  );
});

test('normalize: the service adds Notify P30D when no Notify is given', (t) => {
  const rotateOnly: RotationPolicy = {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P18M' }],
    expiryTime: 'P2Y',
  };
  const normalized = normalizeRotationPolicyForService(rotateOnly);
  t.deepEqual(normalized, {
    lifetimeActions: [
      { action: 'Rotate', timeAfterCreate: 'P18M' },
      { action: 'Notify', timeBeforeExpiry: DEFAULT_NOTIFY_BEFORE_EXPIRY },
    ],
    expiryTime: 'P2Y',
  });
  t.deepEqual(validateRotationPolicy(normalized), []);
  t.is(rotateOnly.lifetimeActions.length, 1, 'input untouched');
  // an existing Notify is kept as is
  t.is(normalizeRotationPolicyForService(documented), documented);
  // empty resets to the default policy: Notify P30D
  t.deepEqual(normalizeRotationPolicyForService({ lifetimeActions: [] }).lifetimeActions, [
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ]);
  // added even without expiryTime, like the service's own default policy
  t.is(
    normalizeRotationPolicyForService({ lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }] })
      .lifetimeActions.length,
    2,
  );
});

const unitDuration = fc
  .tuple(fc.constantFrom('Y', 'M', 'W', 'D'), fc.integer({ min: 1, max: 40 }))
  .map(([unit, n]) => (unit === 'Y' ? `P${Math.ceil(n / 10)}Y` : `P${n}${unit}`));
const compound = fc
  .tuple(unitDuration, unitDuration)
  .map(([a, b]) => (a.endsWith('Y') && !b.endsWith('Y') ? `${a}${b.slice(1)}` : a));
const startDate = fc
  .date({ min: new Date('1990-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true })
  .map((x) => new Date(Math.floor(x.getTime() / 60_000) * 60_000));

test('property: a policy that passes validation keeps its margins from every creation date', (t) => {
  const sevenDays = 7 * MS_PER_DAY;
  fc.assert(
    fc.property(compound, compound, fc.boolean(), startDate, (expiry, trigger, beforeExpiry, s) => {
      const policy: RotationPolicy = {
        lifetimeActions: [
          beforeExpiry
            ? { action: 'Rotate', timeBeforeExpiry: trigger }
            : { action: 'Rotate', timeAfterCreate: trigger },
        ],
        expiryTime: expiry,
      };
      if (validateRotationPolicy(policy).length > 0) return true;
      const expiresOn = addDuration(s, parseDuration(expiry));
      const rotatesOn = beforeExpiry
        ? subtractDuration(expiresOn, parseDuration(trigger))
        : addDuration(s, parseDuration(trigger));
      return (
        expiresOn.getTime() - s.getTime() >= 28 * MS_PER_DAY &&
        rotatesOn.getTime() - s.getTime() >= sevenDays &&
        expiresOn.getTime() - rotatesOn.getTime() >= sevenDays
      );
    }),
    { numRuns: 400 },
  );
  t.pass();
});

test('property: validation is tight: a rejected margin fails for some real creation date', (t) => {
  // P1M expiry with a P22D rotation is refused because from any Feb 1st only 6 days remain.
  const s = new Date('2025-02-01T00:00:00Z');
  const gap =
    addDuration(s, parseDuration('P1M')).getTime() - addDuration(s, parseDuration('P22D')).getTime();
  t.is(gap, 6 * MS_PER_DAY);
  t.true(
    validateRotationPolicy({
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P22D' }],
      expiryTime: 'P1M',
    }).length > 0,
  );
});
