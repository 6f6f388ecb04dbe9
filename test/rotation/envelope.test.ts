/**
 * EnvelopeCipher against a structural stand-in for SecureKeyRelease (versions held in memory), so the format,
 * the bounds checks and the failure modes are tested without a vault. test/rotation/envelope-emulator.test.ts runs
 * the same cipher on the emulator.
 */
import { createSecretKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import {
  EnvelopeAuthenticationError,
  EnvelopeKeyError,
  InvalidArgumentError,
  KeyVersionUnavailableError,
  MalformedDataError,
  ReleaseDeniedError,
} from '../../src/errors.js';
import type { ReleasedKey } from '../../src/keyvault/secure-key-release.js';
import {
  EnvelopeCipher,
  envelopeKeyId,
  MAX_ENVELOPE_HEADER_BYTES,
  parseEnvelope,
  parseEnvelopeHeader,
} from '../../src/rotation/envelope.js';

const VAULT = 'https://unit.vault.azure.net';

class FakeReleaser {
  readonly versions = new Map<string, ReleasedKey>();
  readonly calls: string[] = [];
  current = '';
  refuse = new Map<string, Error>();

  add(name: string, version: string, key: KeyObject, keyType: string): string {
    const kid = `${VAULT}/keys/${name}/${version}`;
    this.versions.set(version, {
      kid,
      name,
      version,
      keyType,
      key,
      attributes: { enabled: true },
      releasedAt: new Date(),
    });
    this.current = version;
    return kid;
  }

  async releaseKey(keyId: string): Promise<ReleasedKey> {
    this.calls.push(keyId);
    const version = /\/keys\/[^/]+\/([^/]+)$/.exec(keyId)?.[1] ?? this.current;
    const refusal = this.refuse.get(version);
    if (refusal) throw refusal;
    const released = this.versions.get(version);
    if (!released) throw new Error(`no version ${version}`);
    return released;
  }
}

const oct = () => createSecretKey(randomBytes(32));
const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

function setup(kind: 'oct' | 'rsa' = 'oct') {
  const skr = new FakeReleaser();
  skr.add('data', 'v1', kind === 'oct' ? oct() : rsa(), kind === 'oct' ? 'oct-HSM' : 'RSA-HSM');
  const cipher = new EnvelopeCipher({ skr, keyId: `${VAULT}/keys/data` });
  return { skr, cipher };
}

for (const kind of ['oct', 'rsa'] as const) {
  test(`${kind}: round trip, the envelope names the versioned kid, aad is bound`, async (t) => {
    const { skr, cipher } = setup(kind);
    const plaintext = Buffer.from('rotation never breaks decryption');
    const envelope = await cipher.encrypt(plaintext, { aad: Buffer.from('row 7') });
    const parsed = parseEnvelope(envelope);
    t.is(parsed.kid, `${VAULT}/keys/data/v1`);
    t.is(parsed.keyWrapping, kind === 'oct' ? 'AES-KWP' : 'RSA-OAEP-256');
    t.is(parsed.wrappedKey.length, kind === 'oct' ? 40 : 256);
    t.is(parsed.ciphertext.length, plaintext.length);
    t.false(envelope.includes(plaintext));
    t.deepEqual(await cipher.decrypt(envelope, { aad: Buffer.from('row 7') }), plaintext);
    await t.throwsAsync(cipher.decrypt(envelope, { aad: Buffer.from('row 8') }), {
      instanceOf: EnvelopeAuthenticationError,
      message: /aad differs/,
    });
    await t.throwsAsync(cipher.decrypt(envelope), { instanceOf: EnvelopeAuthenticationError });
    t.deepEqual(skr.calls.slice(0, 2), [`${VAULT}/keys/data`, `${VAULT}/keys/data/v1`]);
  });
}

test('empty and large plaintexts', async (t) => {
  const { cipher } = setup();
  t.deepEqual(await cipher.decrypt(await cipher.encrypt(new Uint8Array(0))), Buffer.alloc(0));
  const big = randomBytes(1 << 20);
  t.deepEqual(await cipher.decrypt(await cipher.encrypt(big)), big);
});

test('each envelope has its own data key and iv', async (t) => {
  const { cipher } = setup();
  const a = parseEnvelope(await cipher.encrypt(Buffer.from('same')));
  const b = parseEnvelope(await cipher.encrypt(Buffer.from('same')));
  t.notDeepEqual(Buffer.from(a.wrappedKey), Buffer.from(b.wrappedKey));
  t.notDeepEqual(Buffer.from(a.iv), Buffer.from(b.iv));
  t.notDeepEqual(Buffer.from(a.ciphertext), Buffer.from(b.ciphertext));
});

test('rotation: old envelopes decrypt with their version; rewrap moves them without touching the data', async (t) => {
  const { skr, cipher } = setup();
  const v1 = await cipher.encrypt(Buffer.from('written under v1'));
  skr.add('data', 'v2', oct(), 'oct-HSM');
  const v2 = await cipher.encrypt(Buffer.from('written under v2'));
  t.is(envelopeKeyId(v1), `${VAULT}/keys/data/v1`);
  t.is(envelopeKeyId(v2), `${VAULT}/keys/data/v2`);
  t.is((await cipher.decrypt(v1)).toString(), 'written under v1');
  t.is((await cipher.decrypt(v2)).toString(), 'written under v2');

  const moved = await cipher.rewrap(v1);
  t.true(moved.changed);
  t.is(moved.from, `${VAULT}/keys/data/v1`);
  t.is(moved.to, `${VAULT}/keys/data/v2`);
  const before = parseEnvelope(v1);
  const after = parseEnvelope(moved.envelope);
  t.deepEqual(Buffer.from(after.ciphertext), Buffer.from(before.ciphertext));
  t.deepEqual(Buffer.from(after.tag), Buffer.from(before.tag));
  // v1 may now be disabled: the rewrapped envelope only needs v2.
  skr.refuse.set('v1', new Error('v1 is gone'));
  t.is((await cipher.decrypt(moved.envelope)).toString(), 'written under v1');
  const again = await cipher.rewrap(moved.envelope);
  t.false(again.changed);
  t.deepEqual(again.envelope, moved.envelope);
});

test('rewrap across key types (oct -> RSA) when migrating to another key', async (t) => {
  const skr = new FakeReleaser();
  skr.add('data', 'v1', oct(), 'oct-HSM');
  const old = new EnvelopeCipher({ skr, keyId: `${VAULT}/keys/data` });
  const envelope = await old.encrypt(Buffer.from('migrating'));
  skr.add('next', 'n1', rsa(), 'RSA-HSM');
  const cipher = new EnvelopeCipher({
    skr,
    keyId: `${VAULT}/keys/next`,
    decryptKeyIds: [`${VAULT}/keys/data`],
  });
  const moved = await cipher.rewrap(envelope);
  t.is(parseEnvelope(moved.envelope).keyWrapping, 'RSA-OAEP-256');
  t.is((await cipher.decrypt(moved.envelope)).toString(), 'migrating');
});

test('tampering anywhere in the envelope is detected, never silently decrypted', async (t) => {
  const { cipher } = setup();
  const envelope = await cipher.encrypt(Buffer.from('integrity matters'));
  const parsed = parseEnvelope(envelope);
  const kidEnd = 10 + Buffer.byteLength(parsed.kid);
  // Positions past the key id: wrapped key, iv, ciphertext and tag.
  for (let i = kidEnd; i < envelope.length; i++) {
    const bad = Buffer.from(envelope);
    bad[i]! ^= 0x01;
    const error = await t.throwsAsync(cipher.decrypt(bad));
    t.true(
      error instanceof EnvelopeAuthenticationError || (error instanceof MalformedDataError && error.code === 'ERR_ENVELOPE_FORMAT'),
      `byte ${i}: ${error?.constructor.name}`,
    );
  }
  // Header bytes in the GCM aad: a flipped content byte is refused at parse, not decrypted.
  const badMagic = Buffer.from(envelope);
  badMagic[0] = 0x44;
  await t.throwsAsync(cipher.decrypt(badMagic), {
    instanceOf: MalformedDataError,
    code: 'ERR_ENVELOPE_FORMAT',
    message: /CSKE/,
  });
  const newer = Buffer.from(envelope);
  newer[4] = 2;
  await t.throwsAsync(cipher.decrypt(newer), {
    instanceOf: MalformedDataError, code: 'ERR_ENVELOPE_FORMAT',
    message: /format version 2/,
  });
});

test('envelopes of other keys are refused before anything is released', async (t) => {
  const { skr, cipher } = setup();
  const other = new FakeReleaser();
  other.add('elsewhere', 'x1', oct(), 'oct-HSM');
  const foreign = await new EnvelopeCipher({ skr: other, keyId: `${VAULT}/keys/elsewhere` }).encrypt(
    Buffer.from('x'),
  );
  const calls = skr.calls.length;
  await t.throwsAsync(cipher.decrypt(foreign), { instanceOf: EnvelopeKeyError, message: /decryptKeyIds/ });
  t.is(skr.calls.length, calls);
});

test('the release goes to the configured vault address, not the one the envelope names', async (t) => {
  const { skr, cipher } = setup();
  const envelope = await cipher.encrypt(Buffer.from('steer'));
  const parsed = parseEnvelope(envelope);
  // Same host and key, another port: the release still uses the configured origin.
  const kid = parsed.kid.replace('unit.vault.azure.net', 'unit.vault.azure.net:8443');
  const swapped = Buffer.concat([
    envelope.subarray(0, 8),
    Buffer.from([0, Buffer.byteLength(kid)]),
    Buffer.from(kid),
    envelope.subarray(10 + Buffer.byteLength(parsed.kid)),
  ]);
  t.is((await cipher.decrypt(swapped)).toString(), 'steer');
  t.is(skr.calls.at(-1), `${VAULT}/keys/data/v1`);
});

test('EC keys are refused with a typed error that says what to use', async (t) => {
  const skr = new FakeReleaser();
  skr.add('sig', 'e1', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'EC-HSM');
  const cipher = new EnvelopeCipher({ skr, keyId: `${VAULT}/keys/sig` });
  const error = await t.throwsAsync(cipher.encrypt(Buffer.from('x')), { instanceOf: EnvelopeKeyError });
  t.is(error?.reason, 'unsupported-key-type');
  t.regex(error?.message ?? '', /EC key.*oct-HSM.*RSA-HSM/);
});

test('a disabled or missing old version gives an error naming the version and the fix', async (t) => {
  const { skr, cipher } = setup();
  const envelope = await cipher.encrypt(Buffer.from('old data'));
  const denied = new ReleaseDeniedError(
    'Key Vault refused to release data',
    { statusCode: 403 },
    { cause: new Error('Operation release is not allowed on a disabled key.') },
  );
  skr.refuse.set('v1', denied);
  const disabled = await t.throwsAsync(cipher.decrypt(envelope), { instanceOf: KeyVersionUnavailableError });
  t.is(disabled?.reason, 'disabled');
  t.is(disabled?.version, 'v1');
  t.regex(disabled?.message ?? '', /version v1 of key data .* is disabled.*--version v1 --enabled true/);

  // With a key client the vault's own attributes decide.
  const inspected = new EnvelopeCipher({
    skr,
    keyId: `${VAULT}/keys/data`,
    keyClient: {
      getKey: async () => {
        throw Object.assign(new Error('A key with (name/id) data/v1 was not found'), { statusCode: 404 });
      },
    },
  });
  skr.refuse.set('v1', new ReleaseDeniedError('refused', { statusCode: 404 }));
  const gone = await t.throwsAsync(inspected.decrypt(envelope), { instanceOf: KeyVersionUnavailableError });
  t.is(gone?.reason, 'not-found');
  t.regex(gone?.message ?? '', /does not exist.*az keyvault key recover/);

  // A refusal that is not about the version (policy) passes through unchanged.
  const policy = new ReleaseDeniedError('policy not satisfied', { statusCode: 403 });
  skr.refuse.set('v1', policy);
  t.is(await t.throwsAsync(cipher.decrypt(envelope)), policy);
});

test('constructor checks its key ids', (t) => {
  const skr = new FakeReleaser();
  for (const keyId of [
    'data',
    'https://v.vault.azure.net/secrets/x',
    'ftp://v/keys/x',
    'https://v/keys/x?y=1',
  ]) {
    t.throws(() => new EnvelopeCipher({ skr, keyId }), { instanceOf: InvalidArgumentError }, keyId);
  }
});

test('parseEnvelope: any byte string either parses within bounds or throws ERR_ENVELOPE_FORMAT', async (t) => {
  const { cipher } = setup();
  const good = await cipher.encrypt(Buffer.from('fuzz me'));
  t.throws(() => parseEnvelope(good.subarray(0, 7)), {
    instanceOf: MalformedDataError,
    code: 'ERR_ENVELOPE_FORMAT',
    message: /8-byte/,
  });
  for (let cut = 0; cut < good.length - 28; cut++) {
    t.throws(() => parseEnvelope(good.subarray(0, cut)), {
      instanceOf: MalformedDataError,
      code: 'ERR_ENVELOPE_FORMAT',
    }, `cut ${cut}`);
  }
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 300 }),
      fc.nat({ max: good.length }),
      fc.uint8Array({ minLength: 1, maxLength: 8 }),
      (noise, at, patch) => {
        for (const input of [
          noise,
          Buffer.concat([good.subarray(0, at), patch, good.subarray(at + patch.length)]),
        ]) {
          try {
            const p = parseEnvelope(input);
            const end = p.tag.byteOffset + p.tag.length - input.byteOffset;
            if (end !== input.length || p.iv.length !== 12 || p.tag.length !== 16) return false;
          } catch (error) {
            if (!(error instanceof MalformedDataError && error.code === 'ERR_ENVELOPE_FORMAT')) return false;
          }
        }
        return true;
      },
    ),
    { numRuns: 2000 },
  );
  t.pass();
});

test('parseEnvelopeHeader reads the key version from the first bytes of a large envelope', async (t) => {
  const { cipher } = setup('rsa');
  const envelope = await cipher.encrypt(randomBytes(100_000));
  const head = envelope.subarray(0, MAX_ENVELOPE_HEADER_BYTES);
  const header = parseEnvelopeHeader(head, envelope.length);
  const { wrappedKey, iv, ciphertext, tag, ...full } = parseEnvelope(envelope);
  t.deepEqual(header, full);
  t.is(header.dataLength, 100_000);
  t.is(ciphertext.length, 100_000);
  // Without the total length the head alone is a (short) envelope; a total below the head is refused.
  t.is(parseEnvelopeHeader(head).dataLength, MAX_ENVELOPE_HEADER_BYTES - (envelope.length - 100_000));
  t.throws(() => parseEnvelopeHeader(head, 10), { instanceOf: InvalidArgumentError });
  t.throws(() => parseEnvelopeHeader(head.subarray(0, 20), envelope.length), {
    instanceOf: MalformedDataError, code: 'ERR_ENVELOPE_FORMAT',
  });
  t.true(wrappedKey.length > 0 && iv.length === 12 && tag.length === 16);
});
