import { constants, createHash, createPublicKey, publicEncrypt, randomBytes, verify } from 'node:crypto';
import {
  CvmSkrError,
  PlatformClosedError,
  TpmError,
  TpmPolicyError,
  TransportError,
} from '../../../src/errors.js';
import { AzureVtpmPlatform } from '../../../src/hal/platforms/azure-vtpm.js';
import type { TpmTransport } from '../../../src/hal/types.js';
import { getHandles } from '../../../src/tpm/commands/capability.js';
import { pcrExtend } from '../../../src/tpm/commands/pcr.js';
import { TPM_ALG, TPM_CC } from '../../../src/tpm/constants.js';
import { provisionAzureVtpmLayout } from '../../../src/tpm/provision.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { startSwtpm, swtpmTest } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';
import { swtpmSizedHclReport } from '../../helpers/azure-vtpm-fixture.js';

/** Passes commands through, except that it can drop one chosen command before it reaches the TPM. */
class FaultyTransport implements TpmTransport {
  #failCc: number | undefined;
  constructor(readonly inner: TpmTransport) {}
  failNext(cc: number): void {
    this.#failCc = cc;
  }
  transmit(command: Uint8Array): Promise<Uint8Array> {
    const cc = Buffer.from(command.buffer, command.byteOffset, command.length).readUInt32BE(6);
    if (cc === this.#failCc) {
      this.#failCc = undefined;
      return Promise.reject(new TransportError('injected fault: command dropped before the TPM'));
    }
    return this.inner.transmit(command);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const CYCLES = 500;

swtpmTest(`no leaks: ${CYCLES} create/certify/decrypt/close cycles, some failing on purpose midway`, async (t) => {
  t.timeout(600_000);
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const tpm = new Tpm(transport);
  const layout = await provisionAzureVtpmLayout(tpm, { hclReport: swtpmSizedHclReport() });
  const faulty = new FaultyTransport(transport);
  const loaded = async () => ({
    transient: await getHandles(tpm, 0x80000000),
    sessions: await getHandles(tpm, 0x02000000),
    saved: await getHandles(tpm, 0x03000000),
  });
  const failures = new Map<string, number>();
  const count = (what: string) => failures.set(what, (failures.get(what) ?? 0) + 1);
  const started = process.hrtime.bigint();

  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const platform = await AzureVtpmPlatform.open({ transport: faulty });
    const mode = cycle % 10;
    try {
      if (mode === 1) faulty.failNext(TPM_CC.CreatePrimary);
      const key = await platform.transferKey();
      if (mode === 2) faulty.failNext(TPM_CC.Certify);
      const certified = await platform.certifyTransferKey();
      if (cycle % 25 === 0) {
        t.true(
          verify(
            'sha256',
            certified.attestBytes,
            layout.ak.publicKey,
            Buffer.from(certified.signatureBytes.subarray(6)),
          ),
        );
      }
      const pub = createPublicKey({ key: key.jwk, format: 'jwk' });
      const secret = randomBytes(32);
      let ct = publicEncrypt(
        { key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        secret,
      );
      if (mode === 3) ct = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, secret);
      if (mode === 4) faulty.failNext(TPM_CC.PolicyPCR);
      if (mode === 5) faulty.failNext(TPM_CC.RSA_Decrypt);
      if (mode === 6) faulty.failNext(TPM_CC.StartAuthSession);
      if (cycle % 50 === 20) {
        await pcrExtend(tpm, 7, [
          { hashAlg: TPM_ALG.SHA256, digest: createHash('sha256').update(`c${cycle}`).digest() },
        ]);
      }
      if (mode === 9) {
        // close() while a decrypt is queued: the decrypt either finishes first or sees the closed platform.
        const pending = key.decrypt(ct, 'oaep-sha256');
        await platform.close();
        try {
          t.deepEqual(await pending, secret);
        } catch (error) {
          t.true(error instanceof PlatformClosedError);
          count('closed');
        }
        continue;
      }
      t.deepEqual(await key.decrypt(ct, 'oaep-sha256'), secret);
      t.true(mode === 0 || mode === 7 || mode === 8 || mode === 9, `cycle ${cycle} should have failed`);
    } catch (error) {
      if (!(error instanceof CvmSkrError)) throw error;
      if (error instanceof TpmPolicyError) count('policy');
      else if (error instanceof TransportError) count('transport');
      else if (error instanceof TpmError) count('tpm');
      else throw error;
    } finally {
      await platform.close();
    }
    if (cycle % 100 === 99)
      t.deepEqual(await loaded(), { transient: [], sessions: [], saved: [] }, `after ${cycle + 1}`);
  }
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.deepEqual(await loaded(), { transient: [], sessions: [], saved: [] });
  t.is(failures.get('transport'), (CYCLES / 10) * 5, 'every injected fault surfaced as a TransportError');
  t.is(failures.get('policy'), CYCLES / 50, 'PCR changes broke the policy of the key made before them');
  // libtpms answers a padding error with TPM_RC_FAILURE (without entering failure mode), real TPMs TPM_RC_VALUE.
  t.is(failures.get('tpm'), CYCLES / 10, 'each wrong-padding ciphertext failed in the TPM');
  t.is(failures.get('closed'), CYCLES / 10);
  t.log(
    `${CYCLES} cycles in ${elapsedMs.toFixed(0)} ms (${(elapsedMs / CYCLES).toFixed(1)} ms/cycle); failures: ${JSON.stringify(Object.fromEntries(failures))}`,
  );
});
