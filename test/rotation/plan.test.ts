import test from 'ava';
import { InvalidArgumentError, InvalidDurationError } from '../../src/errors.js';
import { planRotation } from '../../src/rotation/plan.js';
import type { RotationPolicy } from '../../src/rotation/policy.js';

const d = (iso: string) => new Date(iso);
const iso = (date: Date | undefined) => date?.toISOString();

const documented: RotationPolicy = {
  lifetimeActions: [
    { action: 'Rotate', timeAfterCreate: 'P18M' },
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ],
  expiryTime: 'P2Y',
};

test('documented policy on a key created with the policy expiry', (t) => {
  const plan = planRotation(
    documented,
    { createdOn: d('2025-01-31T08:00:00Z'), expiresOn: d('2027-01-31T08:00:00Z') },
    { now: d('2025-02-01T00:00:00Z') },
  );
  t.deepEqual(plan.rotation, {
    at: d('2026-07-31T08:00:00Z'),
    trigger: 'timeAfterCreate',
    duration: 'P18M',
    due: false,
  });
  // the rotation (Jul 2026) comes before the current version's notification (Jan 1 2027), and the new
  // version is rotated (Jan 31 2028) before its own (Jul 1 2028): the service never notifies
  t.is(iso(plan.newVersionExpiresOn), '2028-07-31T08:00:00.000Z');
  t.is(plan.notification, undefined);
  t.regex(plan.notificationReason ?? '', /every version is rotated .*before its notification time/);
  t.false(plan.expiresBeforeRotation);
  t.false(plan.expired);
  t.is(plan.rotationReason, undefined);
});

test('the new version is notified about when it nears expiry before its own rotation', (t) => {
  const policy: RotationPolicy = {
    lifetimeActions: [
      { action: 'Rotate', timeAfterCreate: 'P18M' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
    expiryTime: 'P19M',
  };
  const plan = planRotation(
    policy,
    { createdOn: d('2025-01-31T08:00:00Z'), expiresOn: d('2027-01-31T08:00:00Z') },
    { now: d('2025-02-01T00:00:00Z') },
  );
  t.is(iso(plan.rotation?.at), '2026-07-31T08:00:00.000Z');
  // new version: expires Feb 29 2028 (Jul 31 2026 + 19M, clamped), notified Jan 30 2028, rotated Jan 31 2028
  t.is(iso(plan.newVersionExpiresOn), '2028-02-29T08:00:00.000Z');
  t.deepEqual(plan.notification, {
    at: d('2028-01-30T08:00:00Z'),
    duration: 'P30D',
    version: 'next',
    due: false,
  });
});

test("a notification at the rotation instant is the current version's (the service notifies, then rotates)", (t) => {
  const policy: RotationPolicy = {
    lifetimeActions: [
      { action: 'Rotate', timeAfterCreate: 'P90D' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
    expiryTime: 'P1Y',
  };
  const plan = planRotation(
    policy,
    { createdOn: d('2025-01-01T00:00:00Z'), expiresOn: d('2025-05-01T00:00:00Z') },
    { now: d('2025-01-02T00:00:00Z') },
  );
  t.is(iso(plan.rotation?.at), '2025-04-01T00:00:00.000Z');
  t.is(iso(plan.notification?.at), '2025-04-01T00:00:00.000Z');
  t.is(plan.notification?.version, 'current');
});

test('month-end clamping can make a later version the first one notified about', (t) => {
  const policy: RotationPolicy = {
    lifetimeActions: [
      { action: 'Rotate', timeAfterCreate: 'P18M' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
    expiryTime: 'P19M',
  };
  // v2 (Sep 30 2027) expires Apr 30 2029, notify Mar 31 2029, but is rotated Mar 30 2029;
  // v3 (Mar 30 2029) expires Oct 30 2030, notify Sep 30 2030, the same instant it is rotated: notified
  const plan = planRotation(
    policy,
    { createdOn: d('2026-03-31T10:15:30Z'), expiresOn: d('2028-03-31T10:15:30Z') },
    { now: d('2026-04-01T00:00:00Z') },
  );
  t.is(iso(plan.rotation?.at), '2027-09-30T10:15:30.000Z');
  t.deepEqual(plan.notification, {
    at: d('2030-09-30T10:15:30Z'),
    duration: 'P30D',
    version: 'next',
    due: false,
  });
});

test('month-end creation clamps the rotation date', (t) => {
  const plan = planRotation(
    documented,
    { createdOn: d('2024-08-31T00:00:00Z') },
    { now: d('2024-09-01T00:00:00Z') },
  );
  t.is(iso(plan.rotation?.at), '2026-02-28T00:00:00.000Z');
  t.is(iso(plan.newVersionExpiresOn), '2028-02-28T00:00:00.000Z');
});

test('rotation before expiry needs a key expiry', (t) => {
  const policy: RotationPolicy = {
    lifetimeActions: [
      { action: 'Rotate', timeBeforeExpiry: 'P60D' },
      { action: 'Notify', timeBeforeExpiry: 'P30D' },
    ],
    expiryTime: 'P1Y',
  };
  const withExpiry = planRotation(
    policy,
    { createdOn: d('2025-01-01T00:00:00Z'), expiresOn: d('2026-01-01T00:00:00Z') },
    { now: d('2025-06-01T00:00:00Z') },
  );
  t.is(iso(withExpiry.rotation?.at), '2025-11-02T00:00:00.000Z');
  t.is(withExpiry.rotation?.trigger, 'timeBeforeExpiry');
  t.is(iso(withExpiry.newVersionExpiresOn), '2026-11-02T00:00:00.000Z');
  // 60 days before expiry always comes before 30 days before it: no version lives to be notified about
  t.is(withExpiry.notification, undefined);
  t.regex(withExpiry.notificationReason ?? '', /every version is rotated \(timeBeforeExpiry P60D\)/);

  const without = planRotation(
    policy,
    { createdOn: d('2025-01-01T00:00:00Z') },
    { now: d('2025-06-01T00:00:00Z') },
  );
  t.is(without.rotation, undefined);
  t.regex(without.rotationReason ?? '', /no expiry date/);
  t.is(without.notification, undefined);
  t.regex(without.notificationReason ?? '', /no expiry date/);
  t.false(without.expiresBeforeRotation);
});

test('notify before the rotation concerns the current version', (t) => {
  const plan = planRotation(
    documented,
    { createdOn: d('2025-01-01T00:00:00Z'), expiresOn: d('2025-06-01T00:00:00Z') },
    { now: d('2025-05-10T00:00:00Z') },
  );
  t.deepEqual(plan.notification, {
    at: d('2025-05-02T00:00:00Z'),
    duration: 'P30D',
    version: 'current',
    due: true,
  });
  // rotation at 2026-07-01 is after the key expires
  t.true(plan.expiresBeforeRotation);
  t.false(plan.expired);
});

test('due rotation and expired key', (t) => {
  const plan = planRotation(
    documented,
    { createdOn: d('2023-01-01T00:00:00Z'), expiresOn: d('2024-01-01T00:00:00Z') },
    { now: d('2025-01-01T00:00:00Z') },
  );
  t.true(plan.rotation?.due);
  t.true(plan.expired);
  t.true(plan.expiresBeforeRotation);
  // exactly at the planned time counts as due
  const atTime = planRotation(
    documented,
    { createdOn: d('2025-01-01T00:00:00Z') },
    { now: d('2026-07-01T00:00:00Z') },
  );
  t.true(atTime.rotation?.due);
  const minuteBefore = planRotation(
    documented,
    { createdOn: d('2025-01-01T00:00:00Z') },
    { now: d('2026-06-30T23:59:00Z') },
  );
  t.false(minuteBefore.rotation?.due);
});

test('reasons when nothing is scheduled', (t) => {
  const none = planRotation(undefined, {
    createdOn: d('2025-01-01T00:00:00Z'),
    expiresOn: d('2026-01-01T00:00:00Z'),
  });
  t.is(none.rotation, undefined);
  t.is(none.rotationReason, 'the key has no rotation policy');
  t.is(none.newVersionExpiresReason, 'no rotation is scheduled');
  t.regex(none.notificationReason ?? '', /no Notify action/);
  t.true(none.expiresBeforeRotation);

  const notifyOnly = planRotation(
    { lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P30D' }], expiryTime: 'P1Y' },
    { createdOn: d('2025-01-01T00:00:00Z'), expiresOn: d('2026-01-01T00:00:00Z') },
    { now: d('2025-01-02T00:00:00Z') },
  );
  t.is(notifyOnly.rotationReason, 'the rotation policy has no Rotate action');
  t.is(iso(notifyOnly.notification?.at), '2025-12-02T00:00:00.000Z');
  t.true(notifyOnly.expiresBeforeRotation);

  const noExpiryTime = planRotation(
    { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }] },
    { createdOn: d('2025-01-01T00:00:00Z') },
    { now: d('2025-01-02T00:00:00Z') },
  );
  t.is(iso(noExpiryTime.rotation?.at), '2025-04-01T00:00:00.000Z');
  t.is(noExpiryTime.newVersionExpiresOn, undefined);
  t.regex(noExpiryTime.newVersionExpiresReason ?? '', /no expiryTime/);
});

test('bad inputs are typed errors', (t) => {
  t.throws(
    () =>
      planRotation(
        { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P1.5Y' }] },
        { createdOn: new Date() },
      ),
    { instanceOf: InvalidDurationError, message: /lifetimeActions\[0\]\.trigger\.timeAfterCreate/ },
  );
  t.throws(() => planRotation(documented, { createdOn: new Date(Number.NaN) }), {
    instanceOf: InvalidArgumentError,
  });
  t.throws(
    () =>
      planRotation(documented, {
        createdOn: d('2025-01-02T00:00:00Z'),
        expiresOn: d('2025-01-01T00:00:00Z'),
      }),
    { instanceOf: InvalidArgumentError, message: /before createdOn/ },
  );
});
