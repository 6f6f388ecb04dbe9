import { request } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { InvalidArgumentError } from '../../src/errors.js';
import {
  createEventGridHandler,
  EVENT_GRID_VALIDATION_EVENT,
  type KeyVersionNotice,
  watchKeyVersions,
} from '../../src/rotation/events.js';

const KID = 'https://v.vault.azure.net/keys/data/0123456789abcdef0123456789abcdef';

function keyEvent(type = 'Microsoft.KeyVault.KeyNewVersionCreated', id = 'e1', kid = KID) {
  const version = kid.split('/').at(-1)!;
  return {
    id,
    topic: '/subscriptions/x/resourceGroups/y/providers/Microsoft.KeyVault/vaults/v',
    subject: 'data',
    eventType: type,
    eventTime: '2026-01-01T00:00:00Z',
    data: {
      Id: kid,
      VaultName: 'v',
      ObjectType: 'Key',
      ObjectName: 'data',
      Version: version,
      NBF: null,
      EXP: 1800000000,
    },
    dataVersion: '1',
    metadataVersion: '1',
  };
}

function cloud(event: ReturnType<typeof keyEvent>) {
  return {
    id: event.id,
    source: event.topic,
    subject: event.subject,
    type: event.eventType,
    time: event.eventTime,
    data: event.data,
    specversion: '1.0',
  };
}

class Cache {
  readonly calls: string[] = [];
  invalidateCurrentVersion(keyId: string) {
    this.calls.push(keyId);
    return true;
  }
}

test('Event Grid subscription validation handshake answers {validationResponse}', async (t) => {
  const handler = createEventGridHandler();
  const res = await handler.handle({
    headers: { 'aeg-event-type': 'SubscriptionValidation' },
    body: JSON.stringify([
      {
        id: 'v',
        eventType: EVENT_GRID_VALIDATION_EVENT,
        data: { validationCode: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6', validationUrl: 'https://x' },
      },
    ]),
  });
  t.is(res.status, 200);
  t.deepEqual(res.body, { validationResponse: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6' });
});

test('CloudEvents abuse-protection OPTIONS handshake allows only the configured origin', async (t) => {
  const handler = createEventGridHandler();
  const ok = await handler.handle({
    method: 'OPTIONS',
    headers: { 'webhook-request-origin': 'eventgrid.azure.net' },
  });
  t.is(ok.status, 200);
  t.is(ok.headers['webhook-allowed-origin'], 'eventgrid.azure.net');
  t.is(
    (await handler.handle({ method: 'OPTIONS', headers: { 'webhook-request-origin': 'evil.example' } }))
      .status,
    403,
  );
  t.is((await handler.handle({ method: 'OPTIONS', headers: {} })).status, 400);
  const any = createEventGridHandler({ allowedOrigins: '*' });
  t.is((await any.handle({ method: 'OPTIONS', headers: { 'webhook-request-origin': 'other' } })).status, 200);
});

test('new versions in every schema: skr invalidated first, onNewVersion once per version', async (t) => {
  const cache = new Cache();
  const seen: KeyVersionNotice[] = [];
  const handler = createEventGridHandler({
    skr: cache,
    onNewVersion: (n) => {
      t.is(cache.calls.length, seen.length + 1, 'invalidated before the listener runs');
      seen.push(n);
    },
  });
  const event = keyEvent();
  t.is((await handler.handle({ body: [event] })).status, 200);
  // Redelivery (Event Grid is at least once) and the same version in the other schemas: no news.
  t.is((await handler.handle({ body: [event] })).status, 200);
  t.is(
    (
      await handler.handle({
        headers: { 'content-type': 'application/cloudevents+json' },
        body: cloud(event),
      })
    ).status,
    200,
  );
  t.is(seen.length, 1);
  t.like(seen[0], {
    type: 'KeyNewVersionCreated',
    kid: KID,
    keyId: 'https://v.vault.azure.net/keys/data',
    name: 'data',
    version: '0123456789abcdef0123456789abcdef',
    vaultName: 'v',
    source: 'EventGrid',
  });
  t.deepEqual(seen[0]?.expiresOn, new Date(1800000000 * 1000));

  const kid2 = KID.replace(/[0-9a-f]{32}$/, 'f'.repeat(32));
  const batch = [cloud(keyEvent(undefined, 'e2', kid2))];
  const res = await handler.handle({
    headers: { 'content-type': 'application/cloudevents-batch+json' },
    body: JSON.stringify(batch),
  });
  t.is(res.status, 200);
  t.is(seen[1]?.source, 'CloudEvents');
  t.is(seen[1]?.kid, kid2);
  // Binary-mode CloudEvents: attributes in ce-* headers, data as the body.
  const kid3 = KID.replace(/[0-9a-f]{32}$/, 'e'.repeat(32));
  const binary = await handler.handle({
    headers: { 'ce-specversion': '1.0', 'ce-type': 'Microsoft.KeyVault.KeyNewVersionCreated', 'ce-id': 'e3' },
    body: Buffer.from(JSON.stringify(keyEvent(undefined, 'e3', kid3).data)),
  });
  t.is(binary.status, 200);
  t.is(seen[2]?.kid, kid3);
  t.deepEqual(cache.calls, [KID, kid2, kid3]);
});

test('near-expiry and expired events reach their listeners; other events are acknowledged and ignored', async (t) => {
  const got: string[] = [];
  const handler = createEventGridHandler({
    onNearExpiry: (n) => void got.push(`near ${n.version}`),
    onExpired: (n) => void got.push(`expired ${n.version}`),
    onNewVersion: () => void got.push('new'),
  });
  const secret = {
    ...keyEvent('Microsoft.KeyVault.SecretNewVersionCreated', 's1'),
    data: { ObjectType: 'Secret' },
  };
  const res = await handler.handle({
    body: [
      keyEvent('Microsoft.KeyVault.KeyNearExpiry', 'n1'),
      keyEvent('Microsoft.KeyVault.KeyExpired', 'x1'),
      secret,
      { id: 'o', eventType: 'Microsoft.Storage.BlobCreated', data: {} },
    ],
  });
  t.is(res.status, 200);
  t.deepEqual(got, ['near 0123456789abcdef0123456789abcdef', 'expired 0123456789abcdef0123456789abcdef']);
});

test('keyIds filters by vault host and key name', async (t) => {
  const seen: string[] = [];
  const handler = createEventGridHandler({
    keyIds: ['https://V.vault.azure.net/keys/Other'],
    onNewVersion: (n) => void seen.push(n.kid),
  });
  await handler.handle({ body: [keyEvent()] });
  t.deepEqual(seen, []);
  const other = KID.replace('/keys/data/', '/keys/other/');
  await handler.handle({ body: [keyEvent(undefined, 'e9', other)] });
  t.deepEqual(seen, [other]);
  t.throws(() => createEventGridHandler({ keyIds: ['not a url'] }), { instanceOf: InvalidArgumentError });
});

test('bad deliveries get 4xx; a failing listener gets 500 and the redelivery is handled', async (t) => {
  let fail = true;
  const seen: string[] = [];
  const handler = createEventGridHandler({
    onNewVersion: (n) => {
      if (fail) throw new Error('database down');
      seen.push(n.kid);
    },
  });
  t.is((await handler.handle({ body: '{not json' })).status, 400);
  t.is((await handler.handle({ body: '42' })).status, 400);
  t.is((await handler.handle({ body: [7] })).status, 400);
  t.is((await handler.handle({ method: 'GET', body: '' })).status, 405);
  const malformed = {
    ...keyEvent(),
    data: { ...keyEvent().data, Id: 'https://v.vault.azure.net/keys/data' },
  };
  t.is((await handler.handle({ body: [malformed] })).status, 400);
  const failed = await handler.handle({ body: [keyEvent()] });
  t.is(failed.status, 500);
  t.notRegex(JSON.stringify(failed.body), /database/);
  fail = false;
  t.is((await handler.handle({ body: [keyEvent()] })).status, 200);
  t.deepEqual(seen, [KID]);
});

test('shared secret in ?code= is required when configured, for handshakes too', async (t) => {
  const secret = 'a-long-shared-secret-value';
  const handler = createEventGridHandler({ sharedSecret: secret });
  const validation = [{ id: 'v', eventType: EVENT_GRID_VALIDATION_EVENT, data: { validationCode: 'c' } }];
  t.is((await handler.handle({ url: '/hook', body: validation })).status, 401);
  t.is((await handler.handle({ url: '/hook?code=wrong', body: validation })).status, 401);
  t.is((await handler.handle({ url: `/hook?code=${secret}`, body: validation })).status, 200);
  t.throws(() => createEventGridHandler({ sharedSecret: 'short' }), { instanceOf: InvalidArgumentError });
});

test('as a Node http listener: JSON answers, 413 for oversized bodies', async (t) => {
  const seen: string[] = [];
  const server = createServer(
    createEventGridHandler({ maxBodyBytes: 4096, onNewVersion: (n) => void seen.push(n.kid) }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const post = (body: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'POST',
          path: '/',
          headers: { 'content-type': 'application/json', ...headers },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const validation = await post(
    JSON.stringify([{ id: 'v', eventType: EVENT_GRID_VALIDATION_EVENT, data: { validationCode: 'xyz' } }]),
  );
  t.deepEqual(
    { status: validation.status, body: JSON.parse(validation.body) },
    { status: 200, body: { validationResponse: 'xyz' } },
  );
  t.is((await post(JSON.stringify([keyEvent()]))).status, 200);
  t.deepEqual(seen, [KID]);
  t.is((await post('x'.repeat(5000))).status, 413);
});

test('watchKeyVersions: baseline first, then new versions oldest first, errors reported and polling goes on', async (t) => {
  const versions: { id: string; name: string; version: string; vaultUrl: string; createdOn: Date }[] = [];
  const add = (v: string, at: number) =>
    versions.push({
      id: `https://v.vault.azure.net/keys/data/${v}`,
      name: 'data',
      version: v,
      vaultUrl: 'https://v.vault.azure.net',
      createdOn: new Date(at),
    });
  add('aaa1', 1000);
  let failNext = false;
  const client = {
    listPropertiesOfKeyVersions: async function* () {
      if (failNext) {
        failNext = false;
        throw Object.assign(new Error('throttled'), { statusCode: 429 });
      }
      yield* [...versions];
    },
  };
  const cache = new Cache();
  const seen: string[] = [];
  const errors: unknown[] = [];
  const watcher = await watchKeyVersions(client, 'data', {
    intervalMs: 60_000,
    skr: cache,
    onNewVersion: (n) => void seen.push(n.version),
    onError: (e) => errors.push(e),
  });
  t.teardown(() => watcher.stop());
  t.deepEqual([...watcher.versions], ['https://v.vault.azure.net/keys/data/aaa1']);
  t.deepEqual(await watcher.poll(), []);
  add('ccc3', 3000);
  add('bbb2', 2000);
  const found = await watcher.poll();
  t.deepEqual(
    found.map((n) => n.version),
    ['bbb2', 'ccc3'],
  );
  t.deepEqual(seen, ['bbb2', 'ccc3']);
  t.deepEqual(cache.calls, [
    'https://v.vault.azure.net/keys/data/bbb2',
    'https://v.vault.azure.net/keys/data/ccc3',
  ]);
  failNext = true;
  await t.throwsAsync(watcher.poll(), { message: 'throttled' });
  t.deepEqual(await watcher.poll(), []);
  watcher.stop();
  add('ddd4', 4000);
  t.deepEqual(await watcher.poll(), [], 'a stopped watcher does not poll');
  await t.throwsAsync(watchKeyVersions(client, 'data', { intervalMs: 0 }), {
    instanceOf: InvalidArgumentError,
  });
  t.deepEqual(errors, []);
});

test('watchKeyVersions polls on its interval until the signal aborts', async (t) => {
  let lists = 0;
  const versions = [
    { id: 'https://v.vault.azure.net/keys/data/aaa1', name: 'data', vaultUrl: 'https://v.vault.azure.net' },
  ];
  const client = {
    listPropertiesOfKeyVersions: async function* () {
      lists++;
      yield* [...versions];
    },
  };
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  let resolveFound!: (n: KeyVersionNotice) => void;
  const found = new Promise<KeyVersionNotice>((resolve) => {
    resolveFound = resolve;
  });
  await watchKeyVersions(client, 'data', {
    intervalMs: 5,
    signal: controller.signal,
    onNewVersion: resolveFound,
  });
  versions.push({
    id: 'https://v.vault.azure.net/keys/data/bbb2',
    name: 'data',
    vaultUrl: 'https://v.vault.azure.net',
  });
  t.is((await found).version, 'bbb2');
  controller.abort();
  const after = lists;
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.true(lists <= after + 1, 'at most the poll in flight finishes after abort');
});
