/**
 * Envelopes across rotations on the emulated vault, with the official SDK client: encrypt under v1, rotate on
 * demand and on the virtual clock, encrypt under the new versions, decrypt everything, rewrap, disable an old
 * version, and count releases (at the vault) and attestations (at the attestation service).
 */
import test from 'ava';
import { KEY_VAULT_EVENT_TYPES } from '../../src/emulator/keyvault/events.js';
import { EnvelopeKeyError, KeyVersionUnavailableError } from '../../src/errors.js';
import { envelopeKeyId, parseEnvelope } from '../../src/rotation/envelope.js';
import { createEventGridHandler } from '../../src/rotation/events.js';
import {
  attestations,
  attestNow,
  cipherFor,
  releasableKey,
  releasesOf,
  rotationEmulator,
  skrFor,
} from '../helpers/rotation-emulator.js';

for (const type of ['oct-HSM', 'RSA-HSM'] as const) {
  test(`${type}: envelopes survive on-demand and automatic rotation; KeyNewVersionCreated moves encryption to the new version without re-attesting`, async (t) => {
    const e = await rotationEmulator(t);
    const client = e.keyClient();
    const created = await releasableKey(e, client, 'data', type);
    const v1 = created.properties.version!;
    await client.updateKeyRotationPolicy('data', {
      lifetimeActions: [{ action: 'Rotate', timeAfterCreate: 'P18M' }],
      expiresIn: 'P2Y',
    });
    const skr = await skrFor(t, e);
    // Machines that come later, attested before the clock moves (see attestNow).
    const [late, lateBlind] = [await skrFor(t, e), await skrFor(t, e)];
    await Promise.all([attestNow(e, late), attestNow(e, lateBlind)]);
    // Event Grid events in-process, through the same handler a webhook would use.
    const handler = createEventGridHandler({ skr });
    const handled: Promise<unknown>[] = [];
    const off = e.events.on((event) => handled.push(handler.handle({ body: [event] })));
    t.teardown(off);
    const cipher = cipherFor(e, skr, 'data', client);

    const first = await cipher.encrypt(Buffer.from('written under v1'));
    t.is(envelopeKeyId(first), `${e.vaultUrl}/keys/data/${v1}`);
    const attested = attestations(e);
    t.is(attested, 3);
    t.deepEqual(releasesOf(e, 'data'), [v1]);

    // On demand.
    const rotated = await client.rotateKey('data');
    const v2 = rotated.properties.version!;
    t.not(v2, v1);
    await Promise.all(handled);
    const second = await cipher.encrypt(Buffer.from('written under v2'));
    t.is(parseEnvelope(second).version, v2);

    // Automatically, on the virtual clock: 18 months after v2 was created.
    await e.clock.advance('P18M');
    const auto = e.events
      .history(KEY_VAULT_EVENT_TYPES.newVersionCreated)
      .filter((x) => x.data.ObjectName === 'data');
    // Creation, the on-demand rotation, and the automatic one.
    t.deepEqual(
      auto.slice(0, 2).map((x) => x.data.Version),
      [v1, v2],
    );
    t.is(auto.length, 3);
    const v3 = auto[2]!.data.Version;
    await Promise.all(handled);
    const third = await cipher.encrypt(Buffer.from('written under v3'));
    t.is(parseEnvelope(third).version, v3);

    t.is((await cipher.decrypt(first)).toString(), 'written under v1');
    t.is((await cipher.decrypt(second)).toString(), 'written under v2');
    t.is((await cipher.decrypt(third)).toString(), 'written under v3');
    // One release per version, and the first attestation served all of them.
    t.deepEqual(releasesOf(e, 'data'), [v1, v2, v3]);
    t.is(attestations(e), attested);

    // Rewrap the v1 envelope to the newest version: the data key moves, the data does not change.
    const moved = await cipher.rewrap(first);
    t.true(moved.changed);
    t.is(parseEnvelope(moved.envelope).version, v3);
    t.deepEqual(
      Buffer.from(parseEnvelope(moved.envelope).ciphertext),
      Buffer.from(parseEnvelope(first).ciphertext),
    );
    t.is((await cipher.decrypt(moved.envelope)).toString(), 'written under v1');
    t.deepEqual(releasesOf(e, 'data'), [v1, v2, v3]);

    // Disable v1: a machine that never released it gets an error naming the version and what to do.
    await client.updateKeyProperties('data', v1, { enabled: false });
    const fresh = cipherFor(e, late, 'data', client);
    const error = await t.throwsAsync(fresh.decrypt(first), { instanceOf: KeyVersionUnavailableError });
    t.is(error?.reason, 'disabled');
    t.is(error?.version, v1);
    t.true(error?.message.includes(`version ${v1} of key data`));
    t.regex(error?.message ?? '', /--enabled true.*rewrap/);
    // ... while the rewrapped envelope only needs v3.
    t.is((await fresh.decrypt(moved.envelope)).toString(), 'written under v1');
    // The same explanation without keys/get rights, from the service's own refusal.
    const blind = cipherFor(e, lateBlind, 'data');
    t.is(
      (await t.throwsAsync(blind.decrypt(first), { instanceOf: KeyVersionUnavailableError }))?.reason,
      'disabled',
    );
  });
}

test('an expired old version is named as expired, with the fix', async (t) => {
  const e = await rotationEmulator(t);
  const client = e.keyClient();
  const v1 = (await releasableKey(e, client, 'old')).properties.version!;
  const skr = await skrFor(t, e);
  const envelope = await cipherFor(e, skr, 'old').encrypt(Buffer.from('x'));
  const late = await skrFor(t, e);
  await attestNow(e, late);
  await e.clock.advance('P2Y1D');
  const error = await t.throwsAsync(cipherFor(e, late, 'old', client).decrypt(envelope), {
    instanceOf: KeyVersionUnavailableError,
  });
  t.is(error?.reason, 'expired');
  t.regex(error?.message ?? '', new RegExp(`version ${v1} of key old .* expired on \\d{4}-.*--expires`));
});

test('concurrent decrypts of many envelopes release each version exactly once', async (t) => {
  const e = await rotationEmulator(t);
  const client = e.keyClient();
  await releasableKey(e, client, 'bulk');
  const writer = await skrFor(t, e);
  const envelopes: { envelope: Buffer; text: string }[] = [];
  for (let round = 0; round < 3; round++) {
    if (round > 0) {
      await client.rotateKey('bulk');
      writer.invalidateCurrentVersion(`${e.vaultUrl}/keys/bulk`);
    }
    const cipher = cipherFor(e, writer, 'bulk');
    for (let i = 0; i < 40; i++) {
      const text = `round ${round} item ${i}`;
      envelopes.push({ envelope: await cipher.encrypt(Buffer.from(text)), text });
    }
  }
  const versions = new Set(envelopes.map((x) => parseEnvelope(x.envelope).version));
  t.is(versions.size, 3);

  const reader = await skrFor(t, e);
  const before = releasesOf(e, 'bulk').length;
  const attestedBefore = attestations(e);
  const cipher = cipherFor(e, reader, 'bulk');
  const shuffled = [...envelopes].sort(() => Math.random() - 0.5);
  const results = await Promise.all(shuffled.map((x) => cipher.decrypt(x.envelope)));
  t.deepEqual(
    results.map((r) => r.toString()),
    shuffled.map((x) => x.text),
  );
  const released = releasesOf(e, 'bulk').slice(before);
  t.is(released.length, 3);
  t.deepEqual([...released].sort(), [...versions].sort());
  t.is(attestations(e), attestedBefore + 1);
});

test('EC keys cannot protect envelopes', async (t) => {
  const e = await rotationEmulator(t);
  const client = e.keyClient();
  await releasableKey(e, client, 'signing', 'EC-HSM');
  const cipher = cipherFor(e, await skrFor(t, e), 'signing');
  const error = await t.throwsAsync(cipher.encrypt(Buffer.from('x')), { instanceOf: EnvelopeKeyError });
  t.is(error?.reason, 'unsupported-key-type');
});
