import {
  constants,
  createCipheriv,
  createDecipheriv,
  publicEncrypt,
  privateDecrypt,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import test, { type ExecutionContext } from 'ava';
import { provisionSwtpmAsAzureVtpm } from '../../../src/emulator/hardware/provision-swtpm.js';
import type { Emulator } from '../../../src/emulator/start.js';
import { AzureVtpmPlatform } from '../../../src/hal/platforms/azure-vtpm.js';
import type { AttestationPlatform } from '../../../src/hal/types.js';
import { RELEASE_ENCRYPTIONS } from '../../../src/keyvault/key-wrap.js';
import type { ReleasedKey } from '../../../src/keyvault/secure-key-release.js';
import { startSwtpm, swtpmTest } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';
import { emulator, exportableKey, releaseClient, vaultPublicKey } from '../../helpers/e2e-emulator.js';

type PlatformName = 'emulated-azure-vtpm' | 'emulated-sev-guest' | 'swtpm-azure-vtpm';

async function platformFor(
  t: ExecutionContext,
  e: Emulator,
  name: PlatformName,
): Promise<AttestationPlatform> {
  if (name !== 'swtpm-azure-vtpm') {
    const platform = await e.platform(name);
    t.teardown(() => platform.close());
    return platform;
  }
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  await provisionSwtpmAsAzureVtpm(transport, { amd: e.amd, akCa: e.akCa });
  // The VCEK chain comes from the emulator's IMDS (THIM), as on Azure from the real one.
  const platform = await AzureVtpmPlatform.open({ transport, imdsUrl: e.imdsUrl });
  t.teardown(() => platform.close());
  return platform;
}

/** The released key does what its type is for, checked against the public key the vault publishes. */
async function assertWorks(t: ExecutionContext, e: Emulator, released: ReleasedKey) {
  const data = Buffer.from(`cvm-skr released ${released.name}`);
  const client = e.keyClient();
  const publicKey = await vaultPublicKey(client, released.name, released.version);
  if (released.keyType === 'oct-HSM') {
    t.is(released.key.type, 'secret');
    t.is(released.key.symmetricKeySize, 32);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', released.key, iv);
    const sealed = Buffer.concat([cipher.update(data), cipher.final()]);
    const decipher = createDecipheriv('aes-256-gcm', released.key, iv).setAuthTag(cipher.getAuthTag());
    t.deepEqual(Buffer.concat([decipher.update(sealed), decipher.final()]), data);
    return;
  }
  t.is(released.key.type, 'private');
  t.truthy(publicKey);
  t.true(
    verify('sha256', data, publicKey!, sign('sha256', data, released.key)),
    'signature verifies with the vault key',
  );
  if (released.keyType === 'RSA-HSM') {
    const sealed = publicEncrypt(
      { key: publicKey!, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      data,
    );
    t.deepEqual(
      privateDecrypt(
        { key: released.key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        sealed,
      ),
      data,
    );
  }
}

for (const platformName of ['emulated-azure-vtpm', 'emulated-sev-guest', 'swtpm-azure-vtpm'] as const) {
  (platformName === 'swtpm-azure-vtpm' ? swtpmTest : test)(`release through ${platformName}: RSA-HSM, EC-HSM and oct-HSM keys with every enc, keys that work`, async (t) => {
    const e = await emulator(t);
    const kind = platformName === 'emulated-sev-guest' ? 'emulated-sev-guest' : 'emulated-azure-vtpm';
    const policy = e.releasePolicy(kind);
    await Promise.all([
      exportableKey(e, 'rsa', 'RSA-HSM', policy),
      exportableKey(e, 'ec', 'EC-HSM', policy),
      exportableKey(e, 'oct', 'oct-HSM', policy),
    ]);
    const platform = await platformFor(t, e, platformName);
    for (const enc of RELEASE_ENCRYPTIONS) {
      const skr = releaseClient(t, e, platform, { enc });
      for (const name of ['rsa', 'ec', 'oct']) {
        const released = await skr.releaseKey(`${e.vaultUrl}/keys/${name}`);
        t.is(released.name, name);
        t.regex(released.kid, new RegExp(`/keys/${name}/[0-9a-f]+$`));
        t.true(released.attributes.exportable);
        t.is(released.releasePolicy?.authorities[0]?.authority, e.attestationUrl);
        await assertWorks(t, e, released);
      }
    }
    // One attestation per SecureKeyRelease (one per enc), however many keys it released.
    t.is(e.attestation.counters.attestations, RELEASE_ENCRYPTIONS.length);
  });
}
