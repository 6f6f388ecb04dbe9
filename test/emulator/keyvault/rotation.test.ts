import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { KeyRotationPolicyProperties } from '@azure/keyvault-keys';
import test from 'ava';
import { type EventGridEvent, KEY_VAULT_EVENT_TYPES } from '../../../src/emulator/keyvault/index.js';
import { addDuration, parseDuration, subtractDuration } from '../../../src/rotation/duration.js';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { startVault } from '../../helpers/vault-setup.js';

const SEED: KeyRotationPolicyProperties = {
  lifetimeActions: [
    { action: 'Rotate', timeAfterCreate: 'P18M' },
    { action: 'Notify', timeBeforeExpiry: 'P30D' },
  ],
  expiresIn: 'P2Y',
};

const START = new Date('2030-01-15T10:00:00Z');

function plus(date: Date, d: string): Date {
  return addDuration(date, parseDuration(d));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

type ServiceError = { statusCode?: number; code?: string; message: string };

test('the seed policy is accepted and read back; a key without a policy shows the default', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  await client.createRsaKey('k', { expiresOn: plus(START, 'P2Y') });
  const before = await client.getKeyRotationPolicy('k');
  t.deepEqual(before.lifetimeActions, [
    { action: 'Notify', timeBeforeExpiry: 'P30D', timeAfterCreate: undefined },
  ]);
  const set = await client.updateKeyRotationPolicy('k', SEED);
  t.is(set.id, `${emu.vaultUrl}/keys/k/rotationpolicy`);
  t.is(set.expiresIn, 'P2Y');
  t.deepEqual(
    set.lifetimeActions?.map((a) => [a.action, a.timeAfterCreate, a.timeBeforeExpiry]),
    [
      ['Rotate', 'P18M', undefined],
      ['Notify', undefined, 'P30D'],
    ],
  );
  t.is(set.createdOn?.getTime(), START.getTime());
  const got = await client.getKeyRotationPolicy('k');
  t.deepEqual(got.lifetimeActions, set.lifetimeActions);
});

test("a policy with only Rotate gets the service's Notify P30D added", async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  await client.createEcKey('k');
  const set = await client.updateKeyRotationPolicy('k', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }],
    expiresIn: 'P1Y',
  });
  t.deepEqual(
    set.lifetimeActions?.map((a) => [a.action, a.timeAfterCreate ?? a.timeBeforeExpiry]),
    [
      ['Rotate', 'P90D'],
      ['Notify', 'P30D'],
    ],
  );
});

test('invalid rotation policies are rejected with a message naming the field', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  await client.createRsaKey('k', { expiresOn: plus(START, 'P2Y') });
  await client.createRsaKey('no-exp');
  const cases: [string, string, KeyRotationPolicyProperties][] = [
    [
      'k',
      'expiryTime',
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P7D' }], expiresIn: 'P20D' },
    ],
    [
      'k',
      'timeAfterCreate',
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P3D' }], expiresIn: 'P1Y' },
    ],
    [
      'k',
      'lifetimeActions[0]',
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P360D' }], expiresIn: 'P1Y' },
    ],
    [
      'k',
      'lifetimeActions[0]',
      { lifetimeActions: [{ action: 'Notify', timeAfterCreate: 'P30D' }], expiresIn: 'P1Y' },
    ],
    [
      'k',
      'lifetimeActions[1]',
      {
        lifetimeActions: [
          { action: 'Rotate', timeAfterCreate: 'P30D' },
          { action: 'Rotate', timeAfterCreate: 'P60D' },
        ],
        expiresIn: 'P1Y',
      },
    ],
    [
      'k',
      'timeAfterCreate',
      { lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P1X' }], expiresIn: 'P1Y' },
    ],
    ['k', 'expiryTime', { lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P30D' }] }],
  ];
  for (const [name, field, policy] of cases) {
    const err = (await t.throwsAsync(
      client.updateKeyRotationPolicy(name, policy),
    )) as unknown as ServiceError;
    t.is(err.statusCode, 400, JSON.stringify(policy));
    t.is(err.code, 'BadParameter');
    t.true(err.message.includes(field), `${err.message} should name ${field}`);
  }
  // Nothing was stored by the refused PUTs.
  t.deepEqual(
    (await client.getKeyRotationPolicy('k')).lifetimeActions?.map((a) => a.action),
    ['Notify'],
  );
});

test('on-demand rotate makes a new version with the same properties and expiry from expiryTime', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  const first = await client.createRsaKey('r', {
    hsm: true,
    keySize: 3072,
    keyOps: ['wrapKey', 'unwrapKey'],
    tags: { app: 'x' },
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes('https://a.attest.azure.net') },
    expiresOn: plus(START, 'P1Y'),
  });
  await client.updateKeyRotationPolicy('r', SEED);
  await emu.clock.advance('P10D');
  const rotated = await client.rotateKey('r');
  t.not(rotated.properties.version, first.properties.version);
  t.is(rotated.keyType, 'RSA-HSM');
  t.is(rotated.key?.n?.length, 384);
  t.notDeepEqual(rotated.key?.n, first.key?.n);
  t.deepEqual(rotated.keyOperations, ['wrapKey', 'unwrapKey']);
  t.deepEqual(rotated.properties.tags, { app: 'x' });
  t.true(rotated.properties.exportable);
  t.deepEqual(rotated.properties.releasePolicy?.encodedPolicy, first.properties.releasePolicy?.encodedPolicy);
  t.is(rotated.properties.createdOn?.getTime(), plus(START, 'P10D').getTime());
  t.is(rotated.properties.expiresOn?.getTime(), plus(plus(START, 'P10D'), 'P2Y').getTime());
  t.is((await client.getKey('r')).properties.version, rotated.properties.version);
  t.is(
    (await client.getKey('r', { version: first.properties.version! })).properties.version,
    first.properties.version,
  );
});

test('the virtual clock rotates once at timeAfterCreate, with events once each', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  const seen: EventGridEvent[] = [];
  emu.events.on((e) => seen.push(e));
  await client.createRsaKey('auto', { expiresOn: plus(START, 'P2Y') });
  await client.updateKeyRotationPolicy('auto', SEED);

  await emu.clock.advance('P17M');
  let versions = await collect(client.listPropertiesOfKeyVersions('auto'));
  t.is(versions.length, 1, 'nothing before P18M');
  await emu.clock.advance('P2M');
  versions = await collect(client.listPropertiesOfKeyVersions('auto'));
  t.is(versions.length, 2, 'exactly one rotation');
  const rotated = versions.at(-1)!;
  t.is(rotated.createdOn?.getTime(), plus(START, 'P18M').getTime(), 'rotated at exactly created + P18M');
  t.is(rotated.expiresOn?.getTime(), plus(plus(START, 'P18M'), 'P2Y').getTime());

  // Two more years: the new version rotates at its own +18M, once.
  await emu.clock.advance('P2Y');
  versions = await collect(client.listPropertiesOfKeyVersions('auto'));
  t.is(versions.length, 3);
  t.is(versions.at(-1)!.createdOn?.getTime(), plus(plus(START, 'P18M'), 'P18M').getTime());

  const created = seen.filter((e) => e.eventType === KEY_VAULT_EVENT_TYPES.newVersionCreated);
  t.is(created.length, 3, 'create + two rotations');
  t.deepEqual(
    created.map((e) => e.data.Version),
    versions.map((v) => v.version),
  );
  t.is(created[1]!.eventTime, plus(START, 'P18M').toISOString());
  t.is(created[1]!.data.ObjectName, 'auto');
  t.is(created[1]!.data.ObjectType, 'Key');
  t.is(created[1]!.data.VaultName, 'emulator');
  t.is(created[1]!.data.Id, `${emu.vaultUrl}/keys/auto/${versions[1]!.version}`);
  t.is(created[1]!.data.EXP, Math.floor(plus(plus(START, 'P18M'), 'P2Y').getTime() / 1000));
  t.is(created[1]!.dataVersion, '1');
  t.is(created[1]!.subject, 'auto');
  // Rotation kept every version current before its near-expiry: no notifications.
  t.is(seen.filter((e) => e.eventType !== KEY_VAULT_EVENT_TYPES.newVersionCreated).length, 0);
});

test('near-expiry and expired events fire once each, to listeners and to a webhook that retries', async (t) => {
  let calls = 0;
  const received: EventGridEvent[] = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      calls++;
      // Fail the first delivery attempt: the emulator must retry.
      if (calls === 1) {
        res.statusCode = 503;
        res.end();
        return;
      }
      t.is(req.headers['aeg-event-type'], 'Notification');
      received.push(...(JSON.parse(body) as EventGridEvent[]));
      res.end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => hook.close(() => resolve())));
  const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/events`;
  const emu = await startVault(t, {
    clock: { start: START, frozen: true },
    webhooks: [{ url, retryDelayMs: 5, maxAttempts: 3 }],
  });
  const client = emu.keyClient();
  const seen: EventGridEvent[] = [];
  emu.events.on((e) => seen.push(e));
  const exp = plus(START, 'P60D');
  const key = await client.createEcKey('exp', { expiresOn: exp });
  await emu.clock.advance('P29D');
  t.is(seen.length, 1, 'only the creation so far');
  await emu.clock.advance('P2D');
  await emu.clock.advance('P1Y');
  await emu.clock.advance('P1Y');
  const near = seen.filter((e) => e.eventType === KEY_VAULT_EVENT_TYPES.nearExpiry);
  const expired = seen.filter((e) => e.eventType === KEY_VAULT_EVENT_TYPES.expired);
  t.is(near.length, 1);
  t.is(expired.length, 1);
  t.is(near[0]!.eventTime, subtractDuration(exp, parseDuration('P30D')).toISOString());
  t.is(expired[0]!.eventTime, exp.toISOString());
  t.is(near[0]!.data.Version, key.properties.version as string);
  t.is(near[0]!.data.EXP, Math.floor(exp.getTime() / 1000));
  t.is(near[0]!.data.NBF, null);
  await emu.flush();
  // The creation event's first attempt failed, so it may arrive after the others.
  t.deepEqual(
    received.map((e) => e.eventType).sort(),
    [
      KEY_VAULT_EVENT_TYPES.newVersionCreated,
      KEY_VAULT_EVENT_TYPES.nearExpiry,
      KEY_VAULT_EVENT_TYPES.expired,
    ].sort(),
  );
  t.deepEqual(received.map((e) => e.id).sort(), seen.map((e) => e.id).sort());
  const stats = emu.events.webhookStats()[0]!;
  t.is(stats.retries, 1);
  t.is(stats.dropped, 0);
  t.is(stats.delivered, 3);
});

test('a webhook that never answers 2xx is dropped after the bounded attempts', async (t) => {
  let calls = 0;
  const hook = createServer((req, res) => {
    req.resume();
    calls++;
    res.statusCode = 500;
    res.end();
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => hook.close(() => resolve())));
  const emu = await startVault(t, {
    webhooks: [
      { url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/`, retryDelayMs: 1, maxAttempts: 3 },
    ],
  });
  await emu.keyClient().createEcKey('x');
  await emu.flush();
  t.is(calls, 3);
  t.deepEqual(emu.events.webhookStats()[0], {
    url: emu.events.webhookStats()[0]!.url,
    delivered: 0,
    retries: 2,
    dropped: 1,
  });
});

test('rotation permissions: rotate, getrotationpolicy and setrotationpolicy are separate', async (t) => {
  const emu = await startVault(t, {
    principals: [
      { id: 'admin', permissions: 'all' },
      { id: 'auditor', permissions: ['get', 'getrotationpolicy'] },
    ],
  });
  await emu.keyClient().createEcKey('k');
  const auditor = emu.keyClient({ clientId: 'auditor' });
  t.truthy(await auditor.getKeyRotationPolicy('k'));
  const setErr = (await t.throwsAsync(
    auditor.updateKeyRotationPolicy('k', {
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P30D' }],
      expiresIn: 'P1Y',
    }),
  )) as unknown as ServiceError;
  t.is(setErr.statusCode, 403);
  t.regex(setErr.message, /setrotationpolicy/);
  const rotErr = (await t.throwsAsync(auditor.rotateKey('k'))) as unknown as ServiceError;
  t.is(rotErr.statusCode, 403);
  t.regex(rotErr.message, /keys rotate permission/);
});

test('a CloudEvents webhook gets one CloudEvents 1.0 event per request', async (t) => {
  const received: { contentType: string | undefined; body: Record<string, unknown> }[] = [];
  const hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      received.push({
        contentType: req.headers['content-type'],
        body: JSON.parse(body) as Record<string, unknown>,
      });
      res.end();
    });
  });
  await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => hook.close(() => resolve())));
  const emu = await startVault(t, {
    webhooks: [{ url: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/`, schema: 'CloudEvents' }],
  });
  const key = await emu.keyClient().createEcKey('ce');
  await emu.flush();
  t.is(received.length, 1);
  t.is(received[0]!.contentType, 'application/cloudevents+json; charset=utf-8');
  const ev = received[0]!.body;
  t.is(ev.specversion, '1.0');
  t.is(ev.type, KEY_VAULT_EVENT_TYPES.newVersionCreated);
  t.is(ev.subject, 'ce');
  t.is(ev.source, emu.events.topic);
  t.is((ev.data as { Id: string }).Id, key.id as string);
});

test('the virtual clock rotates at timeBeforeExpiry; rotation without a policy sets no expiry', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  const seen: EventGridEvent[] = [];
  emu.events.on((e) => seen.push(e));
  const exp = plus(START, 'P1Y');
  await client.createEcKey('tbe', { expiresOn: exp });
  await client.updateKeyRotationPolicy('tbe', {
    lifetimeActions: [{ action: 'Rotate', timeBeforeExpiry: 'P60D' }],
    expiresIn: 'P1Y',
  });
  await emu.clock.advance('P6M');
  t.is((await collect(client.listPropertiesOfKeyVersions('tbe'))).length, 1);
  await emu.clock.advance('P6M');
  const versions = await collect(client.listPropertiesOfKeyVersions('tbe'));
  t.is(versions.length, 2);
  const due = subtractDuration(exp, parseDuration('P60D'));
  t.is(versions[1]!.createdOn?.getTime(), due.getTime());
  t.is(versions[1]!.expiresOn?.getTime(), plus(due, 'P1Y').getTime());
  // The service's added Notify P30D never fired: the version it would warn about was rotated first.
  t.is(seen.filter((e) => e.eventType === KEY_VAULT_EVENT_TYPES.nearExpiry).length, 0);

  await client.createEcKey('plain');
  const rotated = await client.rotateKey('plain');
  t.is(rotated.properties.expiresOn, undefined);
});

test('a before-expiry trigger on a key without expiry is stored, and fires once the key gets an expiry', async (t) => {
  // The service stores it: PUT {Rotate timeBeforeExpiry P30D, expiryTime P90D} on a key created without exp
  // answers 200 (Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/node/
  // keys_client__create_read_update_and_delete_operations_key_rotation/
  // recording_updatekeyrotationpolicy_supports_creating_a_new_rotation_policy_and_fetching_it.json, commit
  // 49291321dd372ffcc17dad690b7a6dc21769ac43). That it fires once the version has an expiry follows from the
  // trigger's definition (relative to the version's exp); no recording shows the timing.
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  await client.createEcKey('fresh');
  const seen: EventGridEvent[] = [];
  emu.events.on((e) => seen.push(e));
  const stored = await client.updateKeyRotationPolicy('fresh', {
    lifetimeActions: [
      { action: 'Rotate', timeBeforeExpiry: 'P30D' },
      { action: 'Notify', timeBeforeExpiry: 'P10D' },
    ],
    expiresIn: 'P90D',
  });
  t.truthy(stored.updatedOn);
  // Without an expiry nothing is due, however long the clock runs.
  await emu.clock.advance('P1Y');
  t.is(seen.length, 0);
  t.is((await collect(client.listPropertiesOfKeyVersions('fresh'))).length, 1);
  // Give the current version an expiry 60 days out: the rotation is due 30 days before it.
  const exp = plus(emu.clock.now(), 'P60D');
  await client.updateKeyProperties('fresh', { expiresOn: exp });
  await emu.clock.advance('P29D');
  t.is((await collect(client.listPropertiesOfKeyVersions('fresh'))).length, 1);
  await emu.clock.advance('P2D');
  t.is((await collect(client.listPropertiesOfKeyVersions('fresh'))).length, 2);
  t.true(seen.some((e) => e.eventType === KEY_VAULT_EVENT_TYPES.newVersionCreated));
});

test('the README rotation policy is accepted on a freshly created key (no expiry)', async (t) => {
  const emu = await startVault(t, { clock: { start: START, frozen: true } });
  const client = emu.keyClient();
  await client.createRsaKey('readme');
  const set = await client.updateKeyRotationPolicy('readme', SEED);
  t.is(set.expiresIn, 'P2Y');
  t.deepEqual(
    set.lifetimeActions?.map((a) => a.action),
    ['Rotate', 'Notify'],
  );
});
