import test from 'ava';
import type { Emulator } from '../../../src/emulator/start.js';
import {
  AbortError,
  AttestationRejectedError,
  AttestationRequestError,
  KeyVaultRequestError,
  KeyVersionUnavailableError,
  ReleaseDeniedError,
  ReleaseResponseInvalidError,
} from '../../../src/errors.js';
import type { AttestationPlatform, DecryptScheme, TransferKey } from '../../../src/hal/types.js';
import type { FaultProxy } from '../../helpers/fault-proxy.js';
import { MAX_NETWORK_RETRIES } from '../../../src/keyvault/throttle-policy.js';
import { emulator, exportableKey, proxiedEmulator, releaseClient } from '../../helpers/e2e-emulator.js';

/** Wraps a platform and counts every call that would reach hardware (TPM commands on a real vTPM). */
function counting(platform: AttestationPlatform) {
  const calls = { collectEvidence: 0, transferKey: 0, decrypt: 0 };
  const wrapped: AttestationPlatform = {
    kind: platform.kind,
    collectEvidence: (options) => {
      calls.collectEvidence++;
      return platform.collectEvidence(options);
    },
    transferKey: async (): Promise<TransferKey> => {
      calls.transferKey++;
      const key = await platform.transferKey();
      return {
        jwk: key.jwk,
        decrypt: (ciphertext: Uint8Array, scheme: DecryptScheme) => {
          calls.decrypt++;
          return key.decrypt(ciphertext, scheme);
        },
      };
    },
    close: () => platform.close(),
  };
  return { platform: wrapped, calls };
}

const releases = (e: Emulator) => e.vault.releaseDecisions().length;

test('1,000 concurrent calls for one key make one attestation and one release; warm calls touch nothing', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'hot', 'RSA-HSM');
  const { platform, calls } = counting(await e.platform('emulated-azure-vtpm'));
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const id = `${e.vaultUrl}/keys/hot`;
  const results = await Promise.all(Array.from({ length: 1000 }, () => s.releaseKey(id)));
  t.is(e.attestation.counters.attestations, 1);
  t.is(releases(e), 1);
  t.true(
    results.every((r) => r === results[0]),
    'every caller gets the same released key',
  );

  const before = {
    ...calls,
    attestations: e.attestation.counters.attestations,
    releases: releases(e),
  };
  const warm = await s.releaseKey(`${e.vaultUrl}/keys/hot/${results[0]!.version}`);
  const warmVersionless = await s.releaseKey(id);
  t.is(warm, results[0]!);
  t.is(warmVersionless, results[0]!);
  t.deepEqual(
    {
      ...calls,
      attestations: e.attestation.counters.attestations,
      releases: releases(e),
    },
    before,
  );
});

test('different keys share one attestation; each key is released once', async (t) => {
  const e = await emulator(t);
  const policy = e.releasePolicy('emulated-sev-guest');
  await Promise.all([
    exportableKey(e, 'a', 'oct-HSM', policy),
    exportableKey(e, 'b', 'EC-HSM', policy),
    exportableKey(e, 'c', 'RSA-HSM', policy),
  ]);
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  await Promise.all(['a', 'b', 'c', 'a', 'b', 'c'].map((n) => s.releaseKey(`${e.vaultUrl}/keys/${n}`)));
  t.is(e.attestation.counters.attestations, 1);
  t.is(releases(e), 3);
});

test('a policy this machine does not meet is ERR_RELEASE_DENIED naming the failing clause', async (t) => {
  const e = await emulator(t);
  const policy = e.releasePolicy();
  policy.anyOf[0]!.allOf.push({
    claim: 'x-ms-isolation-tee.x-ms-sevsnpvm-launchmeasurement',
    equals: 'ab'.repeat(48),
  });
  await exportableKey(e, 'strict', 'RSA-HSM', policy);
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const error = await t.throwsAsync(s.releaseKey(`${e.vaultUrl}/keys/strict`), {
    instanceOf: ReleaseDeniedError,
  });
  t.is(error?.code, 'ERR_RELEASE_DENIED');
  t.is(error?.reason, 'policy');
  t.is(error?.statusCode, 403);
  t.regex(error?.message ?? '', /\$\.anyOf\[0\]\.allOf\[2\]/);
  t.regex(error?.message ?? '', /x-ms-sevsnpvm-launchmeasurement/);
  t.false(error?.evaluation?.allowed);
  t.truthy(error?.releasePolicy);
  t.notRegex(error?.message ?? '', /eyJ/, 'no token in the message');
});

test('a principal without the release permission is ERR_RELEASE_DENIED for permission', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  e.vault.addPrincipal({ id: 'reader', permissions: ['get', 'list'] });
  const platform = await e.platform('emulated-sev-guest');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, {
    credential: e.vault.credentialFor('reader'),
  });
  const error = await t.throwsAsync(s.releaseKey(`${e.vaultUrl}/keys/k`), {
    instanceOf: ReleaseDeniedError,
  });
  t.is(error?.reason, 'permission');
  t.regex(error?.message ?? '', /release permission/);
});

test('evidence the attestation service refuses is ERR_ATTESTATION_REJECTED with its message, and nothing is cached', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const platform = await e.platform('emulated-sev-guest', {
    knobs: { debug: true },
  });
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const error = await t.throwsAsync(s.releaseKey(`${e.vaultUrl}/keys/k`), {
    instanceOf: AttestationRejectedError,
  });
  t.is(error?.code, 'ERR_ATTESTATION_REJECTED');
  t.regex(error?.message ?? '', /debug/i);
  await t.throwsAsync(s.releaseKey(`${e.vaultUrl}/keys/k`), {
    instanceOf: AttestationRejectedError,
  });
  t.is(e.attestation.counters.rejected, 2, 'the failed attempt was not cached');
  t.is(releases(e), 0);
});

const proxied = proxiedEmulator;

const authorizedReleases = (proxy: FaultProxy) =>
  proxy.requests.filter((r) => r.method === 'POST' && r.path.includes('/release') && r.headers.authorization);

test('Key Vault answering 429 with Retry-After, then 200: released after the wait', async (t) => {
  const { e, vault, maa } = await proxied(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy());
  let throttled = 0;
  vault.plan = (r) => {
    if (r.method === 'POST' && r.path.includes('/release') && r.headers.authorization && throttled === 0) {
      throttled++;
      return {
        status: 429,
        headers: { 'retry-after': '1' },
        body: '{"error":{"code":"Throttled","message":"slow down"}}',
      };
    }
    return 'pass';
  };
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  const released = await s.releaseKey(`${vault.url}/keys/k`);
  t.is(released.name, 'k');
  const [throttledAttempt, retry] = authorizedReleases(vault);
  t.is(authorizedReleases(vault).length, 2, 'one throttled attempt, one that succeeded');
  // Behaviour, not speed: the retry did not come before the one second Retry-After asked for.
  t.true(retry!.at - throttledAttempt!.at >= 950, 'Retry-After was honoured');
});

test('Key Vault failing with 500 forever: bounded retries, then a typed error', async (t) => {
  const { e, vault, maa } = await proxied(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy());
  vault.plan = (r) =>
    r.method === 'POST' && r.path.includes('/release') && r.headers.authorization
      ? {
          status: 500,
          body: '{"error":{"code":"InternalError","message":"boom"}}',
        }
      : 'pass';
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  const error = await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
    instanceOf: KeyVaultRequestError,
  });
  t.is(error?.statusCode, 500);
  t.is(authorizedReleases(vault).length, 3, 'the first attempt and maxRetries=2 retries');
});

test('attestation service down: typed error after bounded retries, nothing cached, works once it is back', async (t) => {
  const { e, vault, maa } = await proxied(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy());
  maa.plan = (r) => (r.path.startsWith('/attest/') ? 'reset' : 'pass');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
    instanceOf: AttestationRequestError,
  });
  t.is(
    maa.requests.filter((r) => r.path.startsWith('/attest/')).length,
    1 + MAX_NETWORK_RETRIES,
    'dropped connections have their own budget (an overloaded service drops them), apart from maxRetries',
  );
  t.is(e.attestation.counters.attestations, 0);
  maa.plan = () => 'pass';
  const released = await s.releaseKey(`${vault.url}/keys/k`);
  t.is(released.name, 'k');
  t.is(e.attestation.counters.attestations, 1);
});

test('a tampered release answer is refused and no key is returned', async (t) => {
  const { e, vault, maa } = await proxied(t);
  await exportableKey(e, 'k', 'oct-HSM', e.releasePolicy());
  vault.plan = (r) =>
    r.method === 'POST' && r.path.includes('/release') && r.headers.authorization
      ? {
          rewrite: (body) => {
            const json = JSON.parse(body.toString()) as { value: string };
            const [h, p, sig] = json.value.split('.');
            const flipped = Buffer.from(sig!, 'base64url');
            flipped[10]! ^= 0x40;
            return Buffer.from(
              JSON.stringify({
                value: `${h}.${p}.${flipped.toString('base64url')}`,
              }),
            );
          },
        }
      : 'pass';
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform, { attestationEndpoint: maa.url });
  await t.throwsAsync(s.releaseKey(`${vault.url}/keys/k`), {
    instanceOf: ReleaseResponseInvalidError,
    message: /signature/,
  });
});

test('a release signer outside the trusted roots, or not naming the host asked, is refused', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const systemRootsOnly = releaseClient(t, e, platform, {
    releaseSigningRoots: undefined,
  });
  await t.throwsAsync(systemRootsOnly.releaseKey(`${e.vaultUrl}/keys/k`), {
    instanceOf: ReleaseResponseInvalidError,
    message: /not a trusted root/,
  });
  // The vault's TLS certificate names localhost too, but its release signer names only 127.0.0.1.
  const viaLocalhost = releaseClient(t, e, platform);
  await t.throwsAsync(viaLocalhost.releaseKey(`${e.vaultUrl.replace('127.0.0.1', 'localhost')}/keys/k`), {
    instanceOf: ReleaseResponseInvalidError,
    message: /does not name the vault host localhost/,
  });
});

test('an aborted caller gets AbortError while others sharing the release still get the key', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'RSA-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const controller = new AbortController();
  const aborted = s.releaseKey(`${e.vaultUrl}/keys/k`, {
    signal: controller.signal,
  });
  const other = s.releaseKey(`${e.vaultUrl}/keys/k`);
  controller.abort();
  await t.throwsAsync(aborted, { instanceOf: AbortError });
  t.is((await other).name, 'k');
  t.is(releases(e), 1);
});

test('a disabled key version is ERR_KEY_VERSION_UNAVAILABLE, not a policy refusal', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const client = e.keyClient();
  const key = await client.getKey('k');
  await client.updateKeyProperties('k', key.properties.version!, {
    enabled: false,
  });
  const version = key.properties.version!;
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const error = await t.throwsAsync(s.releaseKey(`${e.vaultUrl}/keys/k/${version}`), {
    instanceOf: KeyVersionUnavailableError,
  });
  t.is(error?.reason, 'disabled');
  t.is(error?.version, version);
  t.regex(error?.message ?? '', /disabled/);
});

test('a new version announced while a versionless release is in flight does not leave the old one as current', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'k', 'oct-HSM');
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const s = releaseClient(t, e, platform);
  const id = `${e.vaultUrl}/keys/k`;
  const inFlight = s.releaseKey(id);
  // The announcement (event or poll) arrives before that release answers.
  s.invalidateCurrentVersion(id);
  const first = await inFlight;
  t.is(releases(e), 1);
  // The answer was not installed as "current": the next versionless call asks the vault again...
  const second = await s.releaseKey(id);
  t.is(releases(e), 2);
  t.is(second.version, first.version, 'no rotation happened in the vault, so the same version comes back');
  // ... and that answer, made after the announcement, is current from now on.
  t.is(await s.releaseKey(id), second);
  t.is(releases(e), 2);
  t.is(e.attestation.counters.attestations, 1, 'no re-attestation for any of it');
});
