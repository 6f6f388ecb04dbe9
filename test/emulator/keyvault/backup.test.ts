/**
 * Key backup/restore, random bytes and the two flavours (regular vault, Managed HSM), with the real SDK.
 * Recorded answers: Azure/azure-sdk-for-js `sdk/keyvault/keyvault-keys/recordings/node/`
 * keys_client__restore_keys_and_recover_backups/ and
 * keys_client__create_read_update_and_delete_operations_for_managed_hsm_getrandombytes/.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CryptographyClient, KeyClient } from '@azure/keyvault-keys';
import test from 'ava';
import { EmulatorStateError } from '../../../src/emulator/errors.js';
import type { KeyVaultEmulator } from '../../../src/emulator/keyvault/index.js';
import { rawRequest, startVault, testCa } from '../../helpers/vault-setup.js';

type ServiceError = { statusCode?: number; code?: string; message: string };

function crypto(emu: KeyVaultEmulator, id: string): CryptographyClient {
  return new CryptographyClient(id, emu.credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: emu.caPem },
  });
}

async function post(emu: KeyVaultEmulator, p: string, body: unknown) {
  const tok = (await emu.credential.getToken(`${emu.flavour.resource}/.default`))!.token;
  const res = await rawRequest(`${emu.vaultUrl}${p}?api-version=7.5`, emu.caPem, {
    method: 'POST',
    token: tok,
    body: JSON.stringify(body),
  });
  return { status: res.status, body: JSON.parse(res.body || 'null') as Record<string, unknown> };
}

async function deleteAndPurge(client: KeyClient, name: string): Promise<void> {
  await (await client.beginDeleteKey(name)).pollUntilDone();
  await client.purgeDeletedKey(name);
}

test('backup, purge and restore bring every version back under the same ids, and the material still decrypts', async (t) => {
  const emu = await startVault(t, { flavour: 'vault' });
  const client = emu.keyClient();
  const v1 = await client.createRsaKey('k', { keySize: 2048, tags: { a: 'b' } });
  const v2 = await client.rotateKey('k');
  const enc = await crypto(emu, v1.id!).encrypt({ algorithm: 'RSA-OAEP', plaintext: Buffer.from('kept') });
  const blob = await client.backupKey('k');
  t.true(blob instanceof Uint8Array && blob.length > 100);
  await deleteAndPurge(client, 'k');
  const restored = await client.restoreKeyBackup(blob!);
  t.is(restored.id, v2.id, 'the current version is the current one again');
  t.deepEqual(restored.properties.tags, { a: 'b' });
  const versions: string[] = [];
  for await (const p of client.listPropertiesOfKeyVersions('k')) versions.push(p.version!);
  t.deepEqual(versions.sort(), [v1.properties.version!, v2.properties.version!].sort());
  const dec = await crypto(emu, v1.id!).decrypt({ algorithm: 'RSA-OAEP', ciphertext: enc.result });
  t.is(Buffer.from(dec.result).toString(), 'kept');
});

test('restore while the name is in use answers the recorded 409 Conflict and changes nothing', async (t) => {
  // recording_can_restore_a_key_with_a_given_backup.js: 409 {"code":"Conflict","message":"There was a conflict
  // restoring the key '<kid>'. This can happen if either: ..."} while the deleted key is not yet purged.
  const emu = await startVault(t, { flavour: 'vault' });
  const client = emu.keyClient();
  const key = await client.createEcKey('k', { curve: 'P-256' });
  const blob = await client.backupKey('k');
  const live = (await t.throwsAsync(client.restoreKeyBackup(blob!))) as unknown as ServiceError;
  t.is(live.statusCode, 409);
  t.is(live.code, 'Conflict');
  t.true(
    live.message.startsWith(
      `There was a conflict restoring the key '${key.id}'. This can happen if either: a second key with the same name was created after the first key was deleted`,
    ),
  );
  await (await client.beginDeleteKey('k')).pollUntilDone();
  const deleted = (await t.throwsAsync(client.restoreKeyBackup(blob!))) as unknown as ServiceError;
  t.is(deleted.statusCode, 409, 'a soft-deleted key still holds its name');
  t.is((await client.getDeletedKey('k')).id, key.id);
});

test('a blob that is not a backup answers the recorded 400 "Malformed backup blob"', async (t) => {
  // recording_fails_to_restore_a_key_with_a_malformed_backup.js posts a value of only "A"s and gets
  // 400 {"error":{"code":"Malformed backup blob","message":"Backup blob contains invalid or corrupt version."}}.
  const emu = await startVault(t);
  for (const value of ['A'.repeat(4000), 'AAAA', '', 'not base64url!', 42]) {
    const r = await post(emu, '/keys/restore', { value });
    t.is(r.status, 400, JSON.stringify(value).slice(0, 20));
    t.deepEqual(r.body, {
      error: { code: 'Malformed backup blob', message: 'Backup blob contains invalid or corrupt version.' },
    });
  }
});

test('a backup restores only into an emulator of the same identity and flavour; a changed byte is refused', async (t) => {
  const secret = randomBytes(32).toString('base64url');
  const a = await startVault(t, { flavour: 'managedhsm', identitySecret: secret });
  const key = await a.keyClient().createOctKey('oct', { hsm: true, keySize: 256 });
  const blob = (await a.keyClient().backupKey('oct'))!;

  const stranger = await startVault(t, { flavour: 'managedhsm' });
  const err = (await t.throwsAsync(stranger.keyClient().restoreKeyBackup(blob))) as unknown as ServiceError;
  t.is(err.statusCode, 400);
  t.is(err.code, 'Malformed backup blob');

  const vault = await startVault(t, { flavour: 'vault', identitySecret: secret });
  const cross = (await t.throwsAsync(vault.keyClient().restoreKeyBackup(blob))) as unknown as ServiceError;
  t.is(cross.statusCode, 400, 'a Managed HSM backup does not restore into a vault');

  const tampered = Buffer.from(blob);
  tampered[tampered.length - 20]! ^= 1;
  const sibling = await startVault(t, { flavour: 'managedhsm', identitySecret: secret });
  const bad = (await t.throwsAsync(sibling.keyClient().restoreKeyBackup(tampered))) as unknown as ServiceError;
  t.is(bad.statusCode, 400);
  const restored = await sibling.keyClient().restoreKeyBackup(blob);
  t.is(restored.id, key.id!.replace(a.vaultUrl, sibling.vaultUrl), 'same name and version, this vault');
});

test('a restarted emulator with the same state file restores its earlier backups', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-backup-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const statePath = path.join(dir, 'state.json');
  const ca = await testCa();
  const first = await startVault(t, { statePath, ca, flavour: 'vault' });
  await first.keyClient().createRsaKey('k', { keySize: 2048 });
  const blob = (await first.keyClient().backupKey('k'))!;
  await deleteAndPurge(first.keyClient(), 'k');
  await first.close();
  const second = await startVault(t, { statePath, ca, flavour: 'vault' });
  const restored = await second.keyClient().restoreKeyBackup(blob);
  t.is(restored.name, 'k');
});

test('backup of a missing key answers 404 KeyNotFound as recorded', async (t) => {
  // recording_fails_to_generate_a_backup_of_a_nonexisting_key.json: 404 KeyNotFound.
  const emu = await startVault(t);
  const err = (await t.throwsAsync(emu.keyClient().backupKey('nope'))) as unknown as ServiceError;
  t.is(err.statusCode, 404);
  t.is(err.code, 'KeyNotFound');
});

test('Managed HSM: getRandomBytes answers count bytes; counts outside 1..128 get the recorded 400', async (t) => {
  // recording_returns_an_error_when_bytes_is_out_of_range.json: counts -1, 0 and 129 answer 400 BadParameter
  // "GetRandomBytesRequest: count cannot be greater than 128 or less than 1 ...".
  const emu = await startVault(t, { flavour: 'managedhsm' });
  const client = emu.keyClient();
  for (const n of [1, 16, 128]) t.is((await client.getRandomBytes(n)).length, n);
  const a = await client.getRandomBytes(32);
  const b = await client.getRandomBytes(32);
  t.notDeepEqual(a, b);
  for (const n of [-1, 0, 129]) {
    const err = (await t.throwsAsync(client.getRandomBytes(n))) as unknown as ServiceError;
    t.is(err.statusCode, 400);
    t.is(err.code, 'BadParameter');
    t.true(err.message.startsWith('GetRandomBytesRequest: count cannot be greater than 128 or less than 1'));
  }
});

test('a regular vault has no /rng', async (t) => {
  const emu = await startVault(t, { flavour: 'vault' });
  const err = (await t.throwsAsync(emu.keyClient().getRandomBytes(8))) as unknown as ServiceError;
  t.is(err.statusCode, 404);
});

test('flavours: a vault refuses oct-HSM keys, a Managed HSM refuses software keys and imports as HSM', async (t) => {
  const vault = await startVault(t, { flavour: 'vault' });
  const hsm = await startVault(t, { flavour: 'managedhsm' });
  const flavourless = await startVault(t);
  const vaultErr = (await t.throwsAsync(
    vault.keyClient().createOctKey('oct', { hsm: true }),
  )) as unknown as ServiceError;
  t.is(vaultErr.statusCode, 400);
  t.regex(vaultErr.message, /oct-HSM is not supported by a key vault/);
  const importErr = (await t.throwsAsync(
    vault.keyClient().importKey('oct', { kty: 'oct', k: randomBytes(32) }),
  )) as unknown as ServiceError;
  t.is(importErr.statusCode, 400);
  for (const kty of ['RSA', 'RSA-HSM', 'EC', 'EC-HSM'] as const) {
    t.is((await vault.keyClient().createKey(`k-${kty}`, kty)).keyType, kty);
  }
  const softErr = (await t.throwsAsync(hsm.keyClient().createKey('rsa', 'RSA'))) as unknown as ServiceError;
  t.is(softErr.statusCode, 400);
  t.regex(softErr.message, /not supported by a managed HSM/);
  const { privateKey } = await import('node:crypto').then((c) => c.generateKeyPairSync('ec', { namedCurve: 'P-256' }));
  const jwk = privateKey.export({ format: 'jwk' });
  const imported = await hsm.keyClient().importKey('ec', {
    kty: 'EC',
    crv: 'P-256',
    x: Buffer.from(jwk.x!, 'base64url'),
    y: Buffer.from(jwk.y!, 'base64url'),
    d: Buffer.from(jwk.d!, 'base64url'),
  });
  t.is(imported.keyType, 'EC-HSM');
  t.is((await hsm.keyClient().createKey('oct', 'oct-HSM')).keyType, 'oct-HSM');
  t.is((await flavourless.keyClient().createKey('oct', 'oct-HSM')).keyType, 'oct-HSM', 'no flavour keeps oct-HSM');
});

test('flavours: the Managed HSM challenge names https://managedhsm.azure.net, as recorded', async (t) => {
  // cryptographyclient_for_managed_hsm_all_decrypts_happen_remotely_with_aes_crypto_algorithms/
  // recording_encrypts_and_decrypts_using_aesgcm.js: WWW-Authenticate ... resource="https://managedhsm.azure.net".
  const hsm = await startVault(t, { flavour: 'managedhsm' });
  const res = await rawRequest(`${hsm.vaultUrl}/keys?api-version=7.5`, hsm.caPem);
  t.is(res.status, 401);
  t.regex(String(res.headers['www-authenticate']), /resource="https:\/\/managedhsm\.azure\.net"$/);
  const vaultToken = (await hsm.credential.getToken('https://vault.azure.net/.default'))!.token;
  const wrongAudience = await rawRequest(`${hsm.vaultUrl}/keys?api-version=7.5`, hsm.caPem, { token: vaultToken });
  t.is(wrongAudience.status, 401, 'a token for the vault resource is not accepted by the HSM');
});

test('a Managed HSM sharing a vault identity takes that vault token endpoint\'s tokens for its own resource', async (t) => {
  const vault = await startVault(t, { flavour: 'vault' });
  const hsm = await startVault(t, { flavour: 'managedhsm', shareIdentityWith: vault });
  t.is(hsm.tokenUrl, vault.tokenUrl);
  const client = new KeyClient(hsm.vaultUrl, vault.credential, {
    disableChallengeResourceVerification: true,
    tlsOptions: { ca: hsm.caPem },
  });
  const key = await client.createKey('k', 'EC-HSM');
  const digest = createHash('sha256').update('x').digest();
  const signed = await crypto(hsm, key.id!).sign('ES256', digest);
  t.true((await crypto(hsm, key.id!).verify('ES256', digest, signed.result)).result);
});

test('the identity secret is kept in the state file; an unreadable one is reported and the file left as it is', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-secret-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const statePath = path.join(dir, 'state.json');
  const emu = await startVault(t, { statePath });
  await emu.flush();
  const saved = JSON.parse(await readFile(statePath, 'utf8')) as { secret?: string };
  t.regex(saved.secret ?? '', /^[A-Za-z0-9_-]{43}$/);
  await emu.close();
  const broken = JSON.stringify({ ...saved, secret: 'short' });
  await writeFile(statePath, broken);
  await t.throwsAsync(startVault(t, { statePath }), { instanceOf: EmulatorStateError, message: /secret/ });
  t.is(await readFile(statePath, 'utf8'), broken);
});
