import test from 'ava';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { rawRequest, startVault, startVaultWithIssuer } from '../../helpers/vault-setup.js';

const raw = (url: string, caPem: string, token: string, method = 'GET', body?: string) =>
  rawRequest(url, caPem, { method, token, ...(body !== undefined ? { body } : {}) });

test('malformed requests get service-shaped errors and the server keeps serving', async (t) => {
  const emu = await startVault(t);
  const { token } = await emu.credential.getToken('https://vault.azure.net/.default');
  const badPath = await raw(`${emu.vaultUrl}/keys/%E0%A4%A?api-version=7.4`, emu.caPem, token);
  t.is(badPath.status, 400);
  t.is(JSON.parse(badPath.body).error.code, 'BadParameter');
  const noVersion = await raw(`${emu.vaultUrl}/keys`, emu.caPem, token);
  t.is(noVersion.status, 400);
  t.regex(JSON.parse(noVersion.body).error.message, /api-version/);
  const unknown = await raw(`${emu.vaultUrl}/secrets/x?api-version=7.4`, emu.caPem, token);
  t.is(unknown.status, 404);
  const badJson = await raw(
    `${emu.vaultUrl}/keys/k/create?api-version=7.4`,
    emu.caPem,
    token,
    'POST',
    '{nope',
  );
  t.is(badJson.status, 400);
  t.regex(JSON.parse(badJson.body).error.message, /not valid JSON/);
  const notObject = await raw(
    `${emu.vaultUrl}/keys/k/create?api-version=7.4`,
    emu.caPem,
    token,
    'POST',
    '[1]',
  );
  t.is(notObject.status, 400);
  const badKty = await raw(
    `${emu.vaultUrl}/keys/k/create?api-version=7.4`,
    emu.caPem,
    token,
    'POST',
    '{"kty":"DSA"}',
  );
  t.is(badKty.status, 400);
  const badSkip = await raw(`${emu.vaultUrl}/keys?api-version=7.4&$skiptoken=%%%`, emu.caPem, token);
  t.is(badSkip.status, 400);
  const badMax = await raw(`${emu.vaultUrl}/keys?api-version=7.4&maxresults=26`, emu.caPem, token);
  t.is(badMax.status, 400);
  const tooBig = await raw(
    `${emu.vaultUrl}/keys/k/create?api-version=7.4`,
    emu.caPem,
    token,
    'POST',
    JSON.stringify({ kty: 'EC', tags: { a: 'x'.repeat(2 * 1024 * 1024) } }),
  );
  t.is(tooBig.status, 413);
  t.is((await emu.keyClient().createEcKey('still-alive')).name, 'still-alive');
});

test('plain http only when asked, with allowInsecureConnection', async (t) => {
  const emu = await startVault(t, { insecureHttp: true });
  t.regex(emu.vaultUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  const k = await emu.keyClient().createEcKey('http-key');
  t.true(k.id?.startsWith(emu.vaultUrl));
});

test('the token endpoint speaks the App Service managed identity protocol', async (t) => {
  const emu = await startVault(t);
  const url = new URL(emu.tokenUrl);
  url.searchParams.set('api-version', '2019-08-01');
  url.searchParams.set('resource', 'https://vault.azure.net');
  const ok = await fetch(url, { headers: { 'X-IDENTITY-HEADER': emu.identityHeader } });
  t.is(ok.status, 200);
  const body = (await ok.json()) as Record<string, unknown>;
  t.is(body.token_type, 'Bearer');
  t.is(body.resource, 'https://vault.azure.net');
  t.is(typeof body.access_token, 'string');
  t.true(Number(body.expires_on) > Date.now() / 1000);
  const noHeader = await fetch(url);
  t.is(noHeader.status, 401);
  url.searchParams.delete('resource');
  const noResource = await fetch(url, { headers: { 'X-IDENTITY-HEADER': emu.identityHeader } });
  t.is(noResource.status, 400);
});

test('EmulatorCredential caches tokens per resource and acts as the principal it names', async (t) => {
  const emu = await startVault(t, { principals: [{ id: 'a' }, { id: 'b', permissions: ['list'] }] });
  const first = await emu.credential.getToken('https://vault.azure.net/.default');
  const second = await emu.credential.getToken(['https://vault.azure.net/.default']);
  t.is(second.token, first.token, 'served from the cache');
  t.true(first.expiresOnTimestamp > Date.now() + 30 * 60_000);
  const b = await emu.credentialFor('b').getToken('https://vault.azure.net/.default');
  const claims = JSON.parse(Buffer.from(b.token.split('.')[1]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  t.is(claims.oid, 'b');
  t.is(claims.aud, 'https://vault.azure.net');
  t.is(claims.tid, emu.tenantId);
});

test('an unknown api-version is refused like the service: 400 BadParameter naming the version and the latest', async (t) => {
  // The service's answer, quoted in Azure/azure-sdk-for-python issue 28595: "(BadParameter) The specified
  // version (7.3) is not recognized. Consider using the latest supported version (7.1)."
  const emu = await startVault(t);
  const { token } = await emu.credential.getToken('https://vault.azure.net/.default');
  const res = await raw(`${emu.vaultUrl}/keys?api-version=7.9`, emu.caPem, token);
  t.is(res.status, 400);
  const error = JSON.parse(res.body).error as { code: string; message: string };
  t.is(error.code, 'BadParameter');
  t.is(
    error.message,
    'The specified version (7.9) is not recognized. Consider using the latest supported version (2025-07-01).',
  );
  for (const v of ['7.3', '7.4-preview.1', '7.5', '7.6', '2025-07-01']) {
    t.is((await raw(`${emu.vaultUrl}/keys?api-version=${v}`, emu.caPem, token)).status, 200, v);
  }
});

test('a release with an empty version segment (/keys/{name}//release, as the Python SDK sends) is a versionless release', async (t) => {
  // Azure/azure-sdk-for-python sdk/keyvault/azure-keyvault-keys/azure/keyvault/keys/_client.py (release_key:
  // key_version=version or ""); the real service answered 200 to it in Azure/azure-sdk-for-js
  // recordings/node/keys_client__create_read_update_and_delete_operations_releasekey/
  // recording_can_create_an_exportable_key_and_release_it.json (replayed in replay.test.ts).
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  await client.createRsaKey('rel', {
    hsm: true,
    exportable: true,
    releasePolicy: { encodedPolicy: policyBytes(issuer.url) },
  });
  const { token } = await emu.credential.getToken('https://vault.azure.net/.default');
  const res = await raw(
    `${emu.vaultUrl}/keys/rel//release?api-version=7.4`,
    emu.caPem,
    token,
    'POST',
    JSON.stringify({ target: await issuer.token() }),
  );
  t.is(res.status, 200, res.body);
  t.is(typeof JSON.parse(res.body).value, 'string');
  const other = await raw(`${emu.vaultUrl}/keys/rel//rotate?api-version=7.4`, emu.caPem, token, 'POST');
  t.is(other.status, 404);
});
