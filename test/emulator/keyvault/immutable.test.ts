/**
 * An immutable release policy binds every later version of the key. The service's rule (AKV.SKR.1020,
 * recorded answer "AKV.SKR.1020: Immutable Key Release Policy cannot be modified." in Azure/azure-sdk-for-js
 * sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_releasekey/
 * recording_errors_when_updating_an_immutable_release_policy.json, commit
 * a7834e34228065ccd4b84914570c127294f02e8e) is recorded only for an update; that new versions (create, import,
 * rotate) cannot drop or replace it either follows from "immutable" and has no recording: no artifact.
 */
import { generateKeyPairSync } from 'node:crypto';
import test from 'ava';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { startVault } from '../../helpers/vault-setup.js';

const POLICY = { encodedPolicy: policyBytes('https://sharedeus.eus.attest.azure.net'), immutable: true };
const OTHER = { encodedPolicy: policyBytes('https://other.attest.azure.net') };

async function immutableKey(t: import('ava').ExecutionContext) {
  const emu = await startVault(t);
  const client = emu.keyClient();
  await client.createRsaKey('imm', { hsm: true, exportable: true, releasePolicy: POLICY });
  return { emu, client };
}

async function message(t: import('ava').ExecutionContext, p: Promise<unknown>): Promise<string> {
  return ((await t.throwsAsync(p)) as Error).message;
}

test('a new version cannot make an immutable policy mutable, even with the same policy data', async (t) => {
  const { client } = await immutableKey(t);
  const text = await message(
    t,
    client.createRsaKey('imm', {
      hsm: true,
      exportable: true,
      releasePolicy: { encodedPolicy: POLICY.encodedPolicy },
    }),
  );
  t.regex(text, /^AKV\.SKR\.1020:/);
  t.is((await client.getKey('imm')).properties.releasePolicy?.immutable, true);
});

test('a new non-exportable version cannot drop an immutable policy', async (t) => {
  const { client } = await immutableKey(t);
  t.regex(await message(t, client.createRsaKey('imm', { hsm: true })), /^AKV\.SKR\.1020:/);
});

test('an import cannot replace an immutable policy; an import restating it is accepted', async (t) => {
  const { client } = await immutableKey(t);
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const key = {
    kty: 'RSA-HSM' as const,
    n: Buffer.from(jwk.n!, 'base64url'),
    e: Buffer.from(jwk.e!, 'base64url'),
    d: Buffer.from(jwk.d!, 'base64url'),
    p: Buffer.from(jwk.p!, 'base64url'),
    q: Buffer.from(jwk.q!, 'base64url'),
    dp: Buffer.from(jwk.dp!, 'base64url'),
    dq: Buffer.from(jwk.dq!, 'base64url'),
    qi: Buffer.from(jwk.qi!, 'base64url'),
  };
  const text = await message(
    t,
    client.importKey('imm', key, { hardwareProtected: true, exportable: true, releasePolicy: OTHER }),
  );
  t.regex(text, /^AKV\.SKR\.1020:/);
  const ok = await client.importKey('imm', key, {
    hardwareProtected: true,
    exportable: true,
    releasePolicy: POLICY,
  });
  t.is(ok.properties.releasePolicy?.immutable, true);
});

test('a version created without a policy and a rotated version keep the immutable policy', async (t) => {
  const { client } = await immutableKey(t);
  const v2 = await client.createRsaKey('imm', { hsm: true, exportable: true });
  t.is(v2.properties.releasePolicy?.immutable, true);
  const v3 = await client.rotateKey('imm');
  t.is(v3.properties.releasePolicy?.immutable, true);
  t.deepEqual(
    Buffer.from(v3.properties.releasePolicy?.encodedPolicy ?? []),
    Buffer.from(POLICY.encodedPolicy),
  );
});
