/**
 * Audit against a structural fake of the two KeyClient methods it uses. Stand-in until the emulated Key
 * Vault exists; the emulator-backed audit test will live beside this one.
 */
import type { KeyProperties, KeyRotationPolicy } from '@azure/keyvault-keys';
import test from 'ava';
import { AbortError, InvalidArgumentError } from '../../src/errors.js';
import {
  auditKey,
  auditRotation,
  type RotationAuditClient,
  type RotationAuditProgress,
} from '../../src/rotation/audit.js';

const created = new Date('2025-01-01T00:00:00Z');
const now = new Date('2025-03-01T00:00:00Z');
const set = { createdOn: new Date('2025-01-02T00:00:00Z'), updatedOn: new Date('2025-01-02T00:00:00Z') };

function key(name: string, extra: Partial<KeyProperties> = {}): KeyProperties {
  return {
    name,
    id: `https://fake.vault.azure.net/keys/${name}/0123456789abcdef`,
    vaultUrl: 'https://fake.vault.azure.net',
    enabled: true,
    createdOn: created,
    ...extra,
  };
}

class FakeKeyClient implements RotationAuditClient {
  calls: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  constructor(
    private readonly pages: KeyProperties[][],
    private readonly policies: Record<string, KeyRotationPolicy | Error>,
  ) {}

  listPropertiesOfKeys() {
    const pages = this.pages;
    return {
      async *[Symbol.asyncIterator]() {
        for (const page of pages) yield* page;
      },
      byPage() {
        return (async function* () {
          for (const page of pages) yield page;
        })();
      },
    };
  }

  async getKeyRotationPolicy(name: string): Promise<KeyRotationPolicy> {
    this.calls.push(name);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await new Promise((resolve) => setImmediate(resolve));
    this.inFlight--;
    const policy = this.policies[name];
    if (policy instanceof Error) throw policy;
    // the service's default when nothing was set: Notify P30D, no timestamps
    return policy ?? { lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P30D' }] };
  }
}

function httpError(statusCode: number, code: string, message: string): Error {
  return Object.assign(new Error(message), { statusCode, code });
}

test('mixed vault: the verdicts the issue asks for', async (t) => {
  const client = new FakeKeyClient(
    [
      [key('no-policy'), key('notify-only', { expiresOn: new Date('2026-01-01T00:00:00Z') })],
      [key('rotate-18m'), key('rotate-3y'), key('rotate-before-expiry-no-exp')],
      [
        key('rotate-before-expiry', { expiresOn: new Date('2026-01-01T00:00:00Z') }),
        key('cert-backed', { managed: true }),
        key('forbidden'),
        key('gone'),
      ],
    ],
    {
      'notify-only': {
        ...set,
        lifetimeActions: [{ action: 'Notify', timeBeforeExpiry: 'P30D' }],
        expiresIn: 'P1Y',
      },
      'rotate-18m': {
        ...set,
        lifetimeActions: [
          { action: 'Rotate', timeAfterCreate: 'P18M' },
          { action: 'Notify', timeBeforeExpiry: 'P30D' },
        ],
        expiresIn: 'P2Y',
      },
      'rotate-3y': { ...set, lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P3Y' }] },
      'rotate-before-expiry-no-exp': {
        ...set,
        lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P30D' }],
        expiresIn: 'P1Y',
      },
      'rotate-before-expiry': {
        ...set,
        lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P30D' }],
        expiresIn: 'P1Y',
      },
      forbidden: httpError(403, 'Forbidden', 'Caller is not authorized to perform action on resource.\nmore'),
      gone: httpError(404, 'KeyNotFound', 'no policy'),
    },
  );
  const progress: RotationAuditProgress[] = [];
  const report = await auditRotation(client, {
    maximumDaysToRotate: 730,
    now,
    onProgress: (p) => progress.push(p),
  });
  const verdicts = Object.fromEntries(report.keys.map((k) => [k.name, [k.status, k.reason]]));
  t.deepEqual(verdicts, {
    'no-policy': ['non-compliant', 'NO_POLICY'],
    'notify-only': ['non-compliant', 'ONLY_NOTIFY'],
    'rotate-18m': ['compliant', undefined],
    'rotate-3y': ['non-compliant', 'ROTATION_TOO_LATE'],
    'rotate-before-expiry-no-exp': ['non-compliant', 'NO_KEY_EXPIRY'],
    'rotate-before-expiry': ['compliant', undefined],
    'cert-backed': ['skipped', 'MANAGED_KEY'],
    forbidden: ['error', 'POLICY_UNREADABLE'],
    gone: ['non-compliant', 'NO_POLICY'],
  });
  t.deepEqual(report.summary, {
    total: 9,
    compliant: 2,
    nonCompliant: 5,
    skipped: 1,
    errors: 1,
    expiringWithoutRotation: 1,
  });
  const byName = new Map(report.keys.map((k) => [k.name, k]));
  t.is(byName.get('rotate-18m')?.scheduledRotationOn?.toISOString(), '2026-07-01T00:00:00.000Z');
  t.is(byName.get('rotate-18m')?.rotationDeadline?.toISOString(), '2027-01-01T00:00:00.000Z');
  t.regex(byName.get('rotate-3y')?.message ?? '', /1095 days after creation .*later than the 730 allowed/);
  t.is(byName.get('rotate-before-expiry')?.scheduledRotationOn?.toISOString(), '2025-12-02T00:00:00.000Z');
  t.true(byName.get('notify-only')?.expiresWithoutRotation);
  t.regex(
    byName.get('forbidden')?.message ?? '',
    /getrotationpolicy permission.*403 Forbidden: Caller is not authorized/,
  );
  t.false((byName.get('forbidden')?.message ?? '').includes('more'));
  // managed keys are never asked for a policy; every other key once
  t.false(client.calls.includes('cert-backed'));
  t.is(client.calls.length, 8);
  // progress: one report per page and per audited key, ending with everything counted
  t.is(progress.length, 3 + 9);
  t.deepEqual(progress.at(-1), { pages: 3, listed: 9, audited: 9 });
  t.deepEqual(progress[0], { pages: 1, listed: 2, audited: 0 });
});

test('policy fetches are bounded by concurrency and keep listing order', async (t) => {
  const keys = Array.from({ length: 40 }, (_, i) => key(`k${String(i).padStart(2, '0')}`));
  const client = new FakeKeyClient([keys.slice(0, 25), keys.slice(25)], {});
  const report = await auditRotation(client, { maximumDaysToRotate: 90, now, concurrency: 3 });
  t.is(client.maxInFlight, 3);
  t.deepEqual(
    report.keys.map((k) => k.name),
    keys.map((k) => k.name),
  );
});

test('the deadline is inclusive: rotating exactly N days after creation is compliant', (t) => {
  const rotate90 = { lifetimeActions: [{ action: 'Rotate' as const, timeAfterCreate: 'P90D' }] };
  t.is(auditKey(key('a'), rotate90, 90, now).status, 'compliant');
  const late = auditKey(key('b'), rotate90, 89, now);
  t.is(late.status, 'non-compliant');
  t.is(late.reason, 'ROTATION_TOO_LATE');
  // P3M from Jan 1 is 90 days: compliant at 90; from Mar 1 it is 92 days
  const rotate3m = { lifetimeActions: [{ action: 'Rotate' as const, timeAfterCreate: 'P3M' }] };
  t.is(auditKey(key('c'), rotate3m, 90, now).status, 'compliant');
  t.is(
    auditKey(key('d', { createdOn: new Date('2025-03-01T00:00:00Z') }), rotate3m, 90, now).status,
    'non-compliant',
  );
  // an empty explicit policy has no Rotate action
  t.is(auditKey(key('e'), { lifetimeActions: [] }, 90, now).reason, 'ROTATE_ACTION_MISSING');
  // an unusable duration is reported, not thrown
  const bad = auditKey(
    key('f'),
    { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'soon' }] },
    90,
    now,
  );
  t.is(bad.reason, 'INVALID_POLICY');
  t.is(bad.status, 'non-compliant');
  // dates the vault should never report (expiry before creation) are an error, not a verdict
  const odd = auditKey(
    key('g', { expiresOn: new Date('2024-01-01T00:00:00Z') }),
    { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }] },
    90,
    now,
  );
  t.is(odd.status, 'error');
  t.regex(odd.message, /before createdOn/);
});

test('listing without byPage still works', async (t) => {
  const client: RotationAuditClient = {
    listPropertiesOfKeys: () => ({
      async *[Symbol.asyncIterator]() {
        yield key('only');
      },
    }),
    getKeyRotationPolicy: async () => ({
      ...set,
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }],
    }),
  };
  const report = await auditRotation(client, { maximumDaysToRotate: 30, now });
  t.is(report.keys[0]?.status, 'compliant');
});

test('bad options and aborts', async (t) => {
  const client = new FakeKeyClient([[key('a')]], {});
  await t.throwsAsync(auditRotation(client, { maximumDaysToRotate: 0 }), {
    instanceOf: InvalidArgumentError,
  });
  await t.throwsAsync(auditRotation(client, { maximumDaysToRotate: 1.5 }), {
    instanceOf: InvalidArgumentError,
  });
  await t.throwsAsync(auditRotation(client, { maximumDaysToRotate: 30, concurrency: 0 }), {
    instanceOf: InvalidArgumentError,
  });
  const controller = new AbortController();
  controller.abort();
  await t.throwsAsync(auditRotation(client, { maximumDaysToRotate: 30, signal: controller.signal }), {
    instanceOf: AbortError,
  });
});
