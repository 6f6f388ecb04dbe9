/**
 * TPM faults under a whole release: the real SecureKeyRelease and AzureVtpmPlatform on a swtpm provisioned as
 * an Azure vTPM, with the fault transport between the platform and swtpm. A failed attempt caches nothing:
 * no token after a failed attestation, no key after a failed unwrap; and nothing stays loaded in the TPM.
 */
import type { ExecutionContext } from 'ava';
import { provisionSwtpmAsAzureVtpm } from '../../../src/emulator/hardware/provision-swtpm.js';
import { CvmSkrError, TpmError, TransportError, UnwrapFailedError } from '../../../src/errors.js';
import { AzureVtpmPlatform } from '../../../src/hal/platforms/azure-vtpm.js';
import { SecureKeyRelease } from '../../../src/keyvault/secure-key-release.js';
import { getHandles } from '../../../src/tpm/commands/capability.js';
import { TPM_CC } from '../../../src/tpm/constants.js';
import { TPM_RC } from '../../../src/tpm/rc.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { emulator, exportableKey } from '../../helpers/e2e-emulator.js';
import { FaultTransport, onCommand } from '../../helpers/fault-transport.js';
import { startSwtpm, swtpmTest as test } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';

const RETRY = { attempts: 3, initialDelayMs: 1, maxDelayMs: 4 };

async function rig(t: ExecutionContext, retry = RETRY) {
  const e = await emulator(t);
  const policy = e.releasePolicy('emulated-azure-vtpm');
  await Promise.all(['a', 'b'].map((name) => exportableKey(e, name, 'RSA-HSM', policy)));
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  await provisionSwtpmAsAzureVtpm(transport, { amd: e.amd, akCa: e.akCa });
  const faulty = new FaultTransport(transport);
  const platform = await AzureVtpmPlatform.open({ transport: faulty, retry, imdsUrl: e.imdsUrl });
  const skr = new SecureKeyRelease({
    attestationEndpoint: e.attestationUrl,
    attestationCa: e.caPem,
    credential: e.credential,
    platform,
    releaseSigningRoots: [e.caPem],
    vaultOptions: { disableChallengeResourceVerification: true, tlsOptions: { ca: e.caPem } },
    retry: { maxRetries: 1, baseDelayMs: 10, maxDelayMs: 50 },
  });
  t.teardown(() => skr.close());
  t.teardown(() => platform.close());
  const tpm = new Tpm(transport);
  return {
    e,
    faulty,
    platform,
    skr,
    id: (name: string) => `${e.vaultUrl}/keys/${name}`,
    attestations: () => e.attestation.counters.attestations,
    releases: () => e.vault.releaseDecisions().length,
    loaded: async () => ({
      transient: (await getHandles(tpm, 0x80000000)).length,
      sessions: (await getHandles(tpm, 0x02000000)).length + (await getHandles(tpm, 0x03000000)).length,
    }),
  };
}

test('a TPM fault during attestation: typed error, no token cached, the next call attests and releases', async (t) => {
  const r = await rig(t);
  r.faulty.script = onCommand(TPM_CC.Quote, { drop: 'before' }, 1);
  const error = await t.throwsAsync(r.skr.releaseKey(r.id('a')));
  t.true(error instanceof CvmSkrError, String(error));
  t.true(error instanceof TransportError || error?.cause instanceof TransportError, String(error));
  t.is(r.attestations(), 0);
  t.is(r.releases(), 0);
  const released = await r.skr.releaseKey(r.id('a'));
  t.is(released.key.type, 'private');
  t.is(r.attestations(), 1, 'attested afresh: the failed attempt left no token');
  await r.platform.close();
  t.deepEqual(await r.loaded(), { transient: 0, sessions: 0 });
});

test('TPM_RC_RETRY forever on the unwrap: bounded retries, typed error, token kept, key not cached', async (t) => {
  const r = await rig(t);
  await r.skr.releaseKey(r.id('a'));
  t.is(r.attestations(), 1);
  const decrypts = r.faulty.count(TPM_CC.RSA_Decrypt);
  r.faulty.script = onCommand(TPM_CC.RSA_Decrypt, { warning: 'RETRY' });
  const error = await t.throwsAsync(r.skr.releaseKey(r.id('b')), { instanceOf: UnwrapFailedError });
  t.true(error?.cause instanceof TpmError, 'the TPM error is the cause');
  t.is((error?.cause as TpmError).rc, TPM_RC.RETRY);
  t.is(r.faulty.count(TPM_CC.RSA_Decrypt) - decrypts, RETRY.attempts, 'bounded retries in the TPM layer');
  t.is(r.releases(), 2, 'the vault released b once; the unwrap failed');
  t.deepEqual(await r.loaded(), { transient: 1, sessions: 0 }, 'only the transfer key: no session left');
  r.faulty.script = () => 'pass';
  const b = await r.skr.releaseKey(r.id('b'));
  t.is(b.name, 'b');
  t.is(r.releases(), 3, 'b was not cached from the failed attempt');
  t.is(r.attestations(), 1, 'the token was good and is reused');
  await r.platform.close();
  t.deepEqual(await r.loaded(), { transient: 0, sessions: 0 });
});

test('every other transmit of each command answered TPM_RC_YIELDED: the release still succeeds', async (t) => {
  const r = await rig(t, { attempts: 8, initialDelayMs: 1, maxDelayMs: 4 });
  const seen = new Map<number, number>();
  r.faulty.script = (_index, cc) => {
    const n = seen.get(cc) ?? 0;
    seen.set(cc, n + 1);
    return n % 2 === 0 ? { warning: 'YIELDED' } : 'pass';
  };
  const released = await r.skr.releaseKey(r.id('a'));
  t.is(released.key.type, 'private');
  const warned = r.faulty.faults.length;
  t.true(warned > 10, `${warned} transmits were warned`);
  t.is(r.faulty.log.length, r.faulty.delivered + warned, 'a warned command never reached the TPM');
  t.is(r.attestations(), 1);
  await r.platform.close();
  t.deepEqual(await r.loaded(), { transient: 0, sessions: 0 });
});
