/**
 * Version awareness against the emulated vault: its Event Grid webhooks (both delivery schemas) reach
 * `createEventGridHandler` over loopback HTTP, and `watchKeyVersions` polls the vault with the SDK client.
 * Either way the next encryption uses the new version, and the attestation service sees no new attestation.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { parseEnvelope } from '../../src/rotation/envelope.js';
import {
  createEventGridHandler,
  type KeyVersionNotice,
  watchKeyVersions,
} from '../../src/rotation/events.js';
import { attestations, cipherFor, releasableKey, releasesOf, rotationEmulator, skrFor } from '../helpers/rotation-emulator.js';

test('emulator webhooks (Event Grid schema and CloudEvents) drop the versionless mapping once per version', async (t) => {
  const e = await rotationEmulator(t);
  const client = e.keyClient();
  const v1 = (await releasableKey(e, client, 'hooked')).properties.version!;
  const skr = await skrFor(t, e);
  const notices: KeyVersionNotice[] = [];
  const secret = 'emulator-webhook-secret-0123456789';
  const handler = createEventGridHandler({
    skr,
    sharedSecret: secret,
    keyIds: [`${e.vaultUrl}/keys/hooked`],
    onNewVersion: (n) => void notices.push(n),
  });
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/events?code=${secret}`;
  e.events.addWebhook(url, { schema: 'EventGrid', retryDelayMs: 10 });
  e.events.addWebhook(`${url}&copy=cloud`, { schema: 'CloudEvents', retryDelayMs: 10 });

  const cipher = cipherFor(e, skr, 'hooked');
  const before = await cipher.encrypt(Buffer.from('before'));
  t.is(parseEnvelope(before).version, v1);
  const attested = attestations(e);

  const v2 = (await client.rotateKey('hooked')).properties.version!;
  await e.vault.flush();
  const stats = e.events.webhookStats();
  t.true(
    stats.length === 2 && stats.every((s) => s.dropped === 0 && s.delivered === 1),
    JSON.stringify(stats),
  );
  // Creation (before the hooks existed) is not seen; the rotation arrives twice and is news once.
  t.deepEqual(
    notices.map((n) => n.version),
    [v2],
  );
  const after = await cipher.encrypt(Buffer.from('after'));
  t.is(parseEnvelope(after).version, v2);
  t.is((await cipher.decrypt(before)).toString(), 'before');
  t.deepEqual(releasesOf(e, 'hooked'), [v1, v2]);
  t.is(attestations(e), attested, 'learning about v2 needed no attestation');

  // A late event for the version already in use changes nothing; one for an older version (order is not
  // knowable from ids) costs one release of the versionless id, never an attestation.
  t.false(skr.invalidateCurrentVersion(`${e.vaultUrl}/keys/hooked/${v2}`));
  await cipher.encrypt(Buffer.from('again'));
  t.deepEqual(releasesOf(e, 'hooked'), [v1, v2]);
  t.true(skr.invalidateCurrentVersion(`${e.vaultUrl}/keys/hooked/${v1}`));
  t.is(parseEnvelope(await cipher.encrypt(Buffer.from('again'))).version, v2);
  t.deepEqual(releasesOf(e, 'hooked'), [v1, v2, v2]);
  t.is(attestations(e), attested);
});

test('watchKeyVersions polls the vault and moves encryption to the new version, without re-attesting', async (t) => {
  const e = await rotationEmulator(t);
  const client = e.keyClient();
  const created = await releasableKey(e, client, 'polled');
  const v1 = created.properties.version!;
  await client.updateKeyRotationPolicy('polled', {
    lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P90D' }],
    expiresIn: 'P1Y',
  });
  const skr = await skrFor(t, e);
  const cipher = cipherFor(e, skr, 'polled');
  t.is(parseEnvelope(await cipher.encrypt(Buffer.from('v1'))).version, v1);
  const attested = attestations(e);

  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const seen: KeyVersionNotice[] = [];
  let next: ((n: KeyVersionNotice) => void) | undefined;
  const watcher = await watchKeyVersions(client, 'polled', {
    intervalMs: 10,
    skr,
    signal: controller.signal,
    onNewVersion: (n) => {
      seen.push(n);
      next?.(n);
    },
  });
  t.is(watcher.versions.size, 1);
  const rotation = new Promise<KeyVersionNotice>((resolve) => {
    next = resolve;
  });
  // The policy rotates 90 days after creation: the watcher learns it from the version list.
  await e.clock.advance('P90D');
  const notice = await rotation;
  t.not(notice.version, v1);
  t.is(notice.enabled, true);
  // Rotated exactly 90 days after v1 was created.
  t.is(notice.createdOn?.getTime(), created.properties.createdOn!.getTime() + 90 * 86_400_000);
  t.is(parseEnvelope(await cipher.encrypt(Buffer.from('v2'))).version, notice.version);
  t.deepEqual(releasesOf(e, 'polled'), [v1, notice.version]);
  t.is(attestations(e), attested);
  t.is(seen.length, 1);
});
