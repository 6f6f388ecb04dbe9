/**
 * The TCG log through the emulated attestation service: the emulated vTPM's log replays to its quote, the
 * service derives the `x-ms-azurevm-*` boot claims from it (names and values of Microsoft's Linux AzureGuest
 * sample, test/fixtures/maa-samples/azureguest-linux-aks-sample.json from Azure/confidential-computing-cvm-guest-attestation
 * aks-linux-sample/README.md, commit 2b515e50dca73465e7f677e96adda60aea053594), and refuses a log that does not
 * replay. No public artifact shows the real service's answer to such a log; the emulator's 400 `tcg-log` is its
 * own.
 */
import test from 'ava';
import { EmulatedAzureVtpmPlatform } from '../../../src/emulator/hardware/emulated-vtpm.js';
import { emulatedBoot } from '../../../src/emulator/hardware/tcg-log.js';
import { AttestationRequestError } from '../../../src/errors.js';
import type { AttestationPlatform, AzureVtpmEvidence, CollectEvidenceOptions } from '../../../src/hal/types.js';
import { evaluateReleasePolicy, parseReleasePolicy } from '../../../src/keyvault/release-policy.js';
import { attest } from '../../../src/maa/client.js';
import { parseEventLog, replaySha256 } from '../../../src/tpm/event-log.js';
import { hardware, maa } from '../../helpers/emulated-hardware.js';

const { amd, akCa } = await hardware();

/** The platform, with its evidence's TCG log replaced. */
function withLog(platform: EmulatedAzureVtpmPlatform, tcgLog: Uint8Array): AttestationPlatform {
  return new Proxy(platform, {
    get(target, prop, receiver) {
      if (prop === 'collectEvidence') {
        return async (options?: CollectEvidenceOptions) => {
          const evidence = (await target.collectEvidence(options)) as AzureVtpmEvidence;
          return { ...evidence, tcgLog };
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** A release policy on the boot claims: secure boot with validated keys. */
const secureBootPolicy = (authority: string) =>
  parseReleasePolicy({
    version: '1.0.0',
    anyOf: [
      {
        authority,
        allOf: [
          { claim: 'x-ms-azurevm-default-securebootkeysvalidated', equals: true },
          { claim: 'x-ms-azurevm-dbvalidated', equals: true },
        ],
      },
    ],
  });

test('the emulated vTPM quotes the replay of the TCG log it sends', async (t) => {
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa, pcrs: [0, 4, 7, 8, 9, 12] });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence();
  t.true(evidence.tcgLog.length > 0);
  const replay = replaySha256(parseEventLog(evidence.tcgLog));
  for (const p of evidence.pcrs) t.deepEqual(p.digest, replay.get(p.index) ?? new Uint8Array(32), `PCR ${p.index}`);
});

test('secure boot on: the boot claims are true and a policy requiring validated secure-boot keys passes', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  t.teardown(() => platform.close());
  const { claims } = await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(claims['x-ms-azurevm-dbvalidated'], true);
  t.is(claims['x-ms-azurevm-dbxvalidated'], true);
  t.is(claims['x-ms-azurevm-default-securebootkeysvalidated'], true);
  t.is(claims.secureboot, true);
  t.true(evaluateReleasePolicy(secureBootPolicy(server.url), claims).allowed);
});

test('knob secureBootOff: the log and PCR 7 change, the token says so and a policy requiring secure boot fails', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa, knobs: { secureBootOff: true } });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence();
  const onBoot = emulatedBoot([0, 1, 2, 3, 4, 5, 6, 7]);
  t.notDeepEqual(evidence.tcgLog, onBoot.tcgLog);
  t.notDeepEqual(evidence.pcrs[7]!.digest, onBoot.pcrs[7]!.digest);
  t.deepEqual(evidence.pcrs[4]!.digest, onBoot.pcrs[4]!.digest);

  const { claims } = await attest(platform, { endpoint: server.url, ca: server.caPem });
  t.is(claims['x-ms-azurevm-dbvalidated'], false);
  t.is(claims['x-ms-azurevm-dbxvalidated'], false);
  t.is(claims['x-ms-azurevm-default-securebootkeysvalidated'], false);
  t.is(claims.secureboot, false);
  const tee = claims['x-ms-isolation-tee'] as Record<string, unknown>;
  t.is(tee['x-ms-compliance-status'], undefined, 'secure boot off is not azure-compliant-cvm');
  t.false(evaluateReleasePolicy(secureBootPolicy(server.url), claims).allowed);
});

test('a TCG log of another boot than the quote is refused: 400 naming check tcg-log', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  t.teardown(() => platform.close());
  // A well-formed log, but of a secure-boot-off boot: PCR 7 does not replay to the quoted value.
  const other = withLog(platform, emulatedBoot([], { secureBoot: false }).tcgLog);
  const error = await t.throwsAsync(attest(other, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationRequestError,
  });
  t.is(error?.statusCode, 400);
  t.is(error?.check, 'tcg-log');
  t.regex(error?.message ?? '', /PCR 7/);
  t.is(server.counters.attestations, 0);
});

test('a malformed TCG log is refused (tcg-log); an empty one gives a token without the boot claims', async (t) => {
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  t.teardown(() => platform.close());
  const log = emulatedBoot([]).tcgLog;
  const error = await t.throwsAsync(
    attest(withLog(platform, log.subarray(0, log.length - 3)), { endpoint: server.url, ca: server.caPem }),
    { instanceOf: AttestationRequestError },
  );
  t.is(error?.check, 'tcg-log');
  t.regex(error?.message ?? '', /truncated/);

  const { claims } = await attest(withLog(platform, new Uint8Array(0)), { endpoint: server.url, ca: server.caPem });
  t.is(claims['x-ms-azurevm-dbvalidated'], undefined);
  t.is(claims['x-ms-azurevm-attested-pcrs'] instanceof Array, true);
});
