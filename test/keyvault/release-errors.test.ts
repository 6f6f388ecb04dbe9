/**
 * The refusal explanation of `releaseKey`, without a vault: Key Vault's error answers as the Azure SDK throws
 * them (a core-rest-pipeline `RestError` with the body's `error.code` as `code`), the key's state, the claims.
 *
 * Bodies, from recorded answers of the real service (test/fixtures/kv-recordings/, provenance in its README):
 * - 400 `BadParameter` "AKV.SKR.1004: Exportable keys must have release policy." — Azure/azure-sdk-for-js
 *   sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_releasekey/
 *   recording_errors_when_key_is_exportable_without_a_release_policy.json (release-exportable-without-policy.json)
 * - 404 `KeyNotFound` — .../keys_client__restore_keys_and_recover_backups/
 *   recording_fails_to_generate_a_backup_of_a_nonexisting_key.json (backup-missing-key.json)
 * - 403 `Forbidden` "Target environment attestation statement cannot be verified." for a failed release: no
 *   recording in the JS SDK; the wording is the one Azure/azure-sdk-for-net's Key Vault key live tests expect of
 *   a refused release (`KeyClientLiveTests`: `IgnoreServiceError(403, "Forbidden", Message = "Target environment
 *   attestation statement cannot be verified.")`, tracked in Azure/azure-sdk-for-net issue 27957).
 * - 403 for a missing `keys/release` permission: no recorded release answer exists; the wording follows the
 *   service's access-policy refusal "... does not have <kind> <operation> permission on key vault ..." that the
 *   emulated vault sends too (src/emulator/keyvault/auth.ts).
 */
import { readFileSync } from 'node:fs';
import { RestError } from '@azure/core-rest-pipeline';
import test from 'ava';
import { KeyVaultRequestError, KeyVersionUnavailableError, ReleaseDeniedError } from '../../src/errors.js';
import { parseKeyRef } from '../../src/keyvault/key-id.js';
import {
  keyVersionUnavailable,
  refusalNeedsKeyState,
  refusedKeyState,
  releaseRefusalError,
} from '../../src/keyvault/release-errors.js';
import { parseReleasePolicy } from '../../src/keyvault/release-policy.js';

const MAA = 'https://sharedeus.eus.attest.azure.net';
const VERSION = '6f2568cdf24349ad8d6547b43c3c73ac';
const ref = parseKeyRef('https://myvault.vault.azure.net/keys/app-key');
const versioned = parseKeyRef(`https://myvault.vault.azure.net/keys/app-key/${VERSION}`);
const NOW = new Date('2025-06-01T00:00:00Z');
const CLAIMS = { iss: MAA, 'x-ms-attestation-type': 'sevsnpvm', 'x-ms-sevsnpvm-is-debuggable': true };

function recorded(name: string, status: number): RestError {
  const entries = (
    JSON.parse(readFileSync(new URL(`../fixtures/kv-recordings/${name}.json`, import.meta.url), 'utf8')) as {
      Entries: { StatusCode: number; ResponseBody: { error: { code: string; message: string } } }[];
    }
  ).Entries;
  const body = entries.find((e) => e.StatusCode === status)!.ResponseBody.error;
  return new RestError(body.message, { code: body.code, statusCode: status });
}

const attestationRefused = () =>
  new RestError('Target environment attestation statement cannot be verified.', {
    code: 'Forbidden',
    statusCode: 403,
  });

const permissionRefused = () =>
  new RestError(
    "The user, group or application 'appid=x;oid=x;iss=https://sts.windows.net/t/' does not have keys release permission on key vault 'myvault;location=westeurope'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
    { code: 'Forbidden', statusCode: 403 },
  );

const DEBUG_POLICY_JSON = JSON.stringify({
  version: '1.0.0',
  anyOf: [{ authority: MAA, allOf: [{ claim: 'x-ms-sevsnpvm-is-debuggable', equals: false }] }],
});
const debugPolicy = parseReleasePolicy(DEBUG_POLICY_JSON);

test('a 403 about the attestation, with the policy readable, names the failing clause and its claim', (t) => {
  const error = attestationRefused();
  t.true(refusalNeedsKeyState(error));
  const denied = releaseRefusalError(error, ref, {
    claims: CLAIMS,
    keyState: { policy: debugPolicy, properties: { enabled: true, version: VERSION }, kid: `${ref.vaultUrl}/keys/app-key/${VERSION}` },
    now: NOW,
  });
  t.true(denied instanceof ReleaseDeniedError);
  const d = denied as ReleaseDeniedError;
  t.is(d.code, 'ERR_RELEASE_DENIED');
  t.is(d.reason, 'policy');
  t.is(d.statusCode, 403);
  t.is(d.serviceCode, 'Forbidden');
  t.is(d.cause, error);
  t.deepEqual(d.releasePolicy, debugPolicy);
  t.false(d.evaluation?.allowed);
  t.regex(d.message, /Failing clause: \$\.anyOf\[0\]\.allOf\[0\] \(x-ms-sevsnpvm-is-debuggable\)/);
});

test('a 403 about the attestation whose policy passes locally points at the authority and token freshness', (t) => {
  const denied = releaseRefusalError(attestationRefused(), ref, {
    claims: { ...CLAIMS, 'x-ms-sevsnpvm-is-debuggable': false },
    keyState: { policy: debugPolicy, properties: {}, kid: 'k' },
    now: NOW,
  });
  t.regex(denied.message, /Locally the policy passes on these claims: check the authority/);
});

test('a 403 about the attestation from a token whose issuer is not the policy\'s authority says so, not the claim clauses', (t) => {
  const other = 'https://127.0.0.1:1';
  const policy = parseReleasePolicy(DEBUG_POLICY_JSON.replace(MAA, other));
  const denied = releaseRefusalError(attestationRefused(), ref, {
    claims: CLAIMS, // debuggable: the claim clause fails too, but it is not why
    keyState: { policy, properties: {}, kid: 'k' },
    now: NOW,
  });
  t.regex(denied.message, new RegExp(`issuer "${MAA}" is not the policy's authority \\(${other}\\)`));
  t.regex(denied.message, /attestationEndpoint/);
  t.notRegex(denied.message, /Failing clause/);
  // With two authorities, only the clauses under the token's own issuer are named.
  const two = parseReleasePolicy({
    version: '1.0.0',
    anyOf: [
      { authority: other, allOf: [{ claim: 'x-ms-attestation-type', equals: 'azurevm' }] },
      { authority: `${MAA}/`, allOf: [{ claim: 'x-ms-sevsnpvm-is-debuggable', equals: false }] },
    ],
  });
  const named = releaseRefusalError(attestationRefused(), ref, { claims: CLAIMS, keyState: { policy: two, properties: {}, kid: 'k' }, now: NOW });
  t.regex(named.message, /Failing clause: \$\.anyOf\[1\]\.allOf\[0\] \(x-ms-sevsnpvm-is-debuggable\):/);
  t.notRegex(named.message, /x-ms-attestation-type/);
});

test('a 403 about the attestation without the key state says the policy could not be read', (t) => {
  const denied = releaseRefusalError(attestationRefused(), ref, { claims: CLAIMS, now: NOW }) as ReleaseDeniedError;
  t.is(denied.reason, 'policy');
  t.is(denied.evaluation, undefined);
  t.regex(denied.message, /could not be read to explain which clause failed; grant keys\/get/);
});

test('a 403 naming a missing permission is a permission refusal, and needs no key state', (t) => {
  const error = permissionRefused();
  t.false(refusalNeedsKeyState(error));
  const denied = releaseRefusalError(error, ref, { claims: CLAIMS, now: NOW }) as ReleaseDeniedError;
  t.true(denied instanceof ReleaseDeniedError);
  t.is(denied.reason, 'permission');
  t.regex(denied.message, /Key Vault Crypto Service Release User/);
});

test('a 403 for a disabled, expired or not yet valid version is KeyVersionUnavailableError with its reason', (t) => {
  const cases = [
    [{ enabled: false }, 'disabled'],
    [{ expiresOn: new Date('2025-05-31T00:00:00Z') }, 'expired'],
    [{ expiresOn: NOW }, 'expired'],
    [{ notBefore: new Date('2025-06-02T00:00:00Z') }, 'not-yet-valid'],
  ] as const;
  for (const [properties, reason] of cases) {
    const error = releaseRefusalError(attestationRefused(), versioned, {
      claims: CLAIMS,
      keyState: { policy: debugPolicy, properties: { ...properties, version: VERSION }, kid: 'kid' },
      now: NOW,
    });
    t.true(error instanceof KeyVersionUnavailableError, reason);
    const e = error as KeyVersionUnavailableError;
    t.is(e.code, 'ERR_KEY_VERSION_UNAVAILABLE');
    t.is(e.reason, reason);
    t.is(e.version, VERSION);
    t.is(e.kid, 'kid');
  }
});

test('a version valid at the given time is not unavailable: the clock passed in decides, not the system clock', (t) => {
  const state = { properties: { expiresOn: new Date('2025-07-01T00:00:00Z') }, kid: 'kid' };
  t.is(keyVersionUnavailable(state, ref, undefined, NOW), undefined);
  t.is(keyVersionUnavailable(state, ref, undefined, new Date('2025-07-02T00:00:00Z'))?.reason, 'expired');
});

test('the recorded 404 KeyNotFound becomes KeyVaultRequestError with status, service code and advice', (t) => {
  const error = recorded('backup-missing-key', 404);
  t.false(refusalNeedsKeyState(error));
  const e = releaseRefusalError(error, ref, { claims: CLAIMS, now: NOW }) as KeyVaultRequestError;
  t.true(e instanceof KeyVaultRequestError);
  t.is(e.statusCode, 404);
  t.is(e.serviceCode, 'KeyNotFound');
  t.regex(e.message, /HTTP 404 to the release of app-key \(check the key name and version\)/);
});

test('the recorded 400 AKV.SKR.1004 asks whether the key is exportable with a release policy', (t) => {
  const e = releaseRefusalError(recorded('release-exportable-without-policy', 400), ref, {
    claims: CLAIMS,
    now: NOW,
  }) as KeyVaultRequestError;
  t.is(e.statusCode, 400);
  t.is(e.serviceCode, 'BadParameter');
  t.regex(e.message, /is the key exportable, with a release policy\?\): AKV\.SKR\.1004/);
});

test('an error without an HTTP status says the vault could not be reached', (t) => {
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED' });
  const e = releaseRefusalError(cause, ref, { claims: CLAIMS, now: NOW }) as KeyVaultRequestError;
  t.true(e instanceof KeyVaultRequestError);
  t.is(e.statusCode, undefined);
  t.is(e.cause, cause);
  t.regex(e.message, /cannot reach Key Vault at https:\/\/myvault\.vault\.azure\.net: connect ECONNREFUSED/);
});

test('the key state drops a release policy that does not parse and falls back to the versionless kid', (t) => {
  const state = refusedKeyState(
    { properties: { enabled: true, releasePolicy: { encodedPolicy: new TextEncoder().encode('{not json') } } },
    ref,
  );
  t.is(state.policy, undefined);
  t.is(state.kid, 'https://myvault.vault.azure.net/keys/app-key');
  const parsed = refusedKeyState(
    {
      id: `https://myvault.vault.azure.net/keys/app-key/${VERSION}`,
      properties: { releasePolicy: { encodedPolicy: new TextEncoder().encode(DEBUG_POLICY_JSON) } },
    },
    ref,
  );
  t.deepEqual(parsed.policy, debugPolicy);
  t.is(parsed.kid, `https://myvault.vault.azure.net/keys/app-key/${VERSION}`);
});
