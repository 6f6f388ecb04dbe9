/**
 * The end-to-end flow on a real Azure confidential VM (DCasv5/ECasv5): /dev/tpmrm0, a real MAA endpoint and
 * a real vault (or Managed HSM) key. Run with `npm run test:hardware`, which refuses to start without the
 * environment below; never part of `npm test` or CI. It goes through exactly the code the swtpm-backed tests
 * use: SecureKeyRelease -> detectPlatform -> AzureVtpmPlatform over the native transport -> AttestationClient
 * (AzureGuest) -> KeyClient.releaseKey -> JWS verification -> RSA-OAEP inside the TPM -> AES key unwrap.
 */
import {
  constants,
  createPublicKey,
  privateDecrypt,
  publicEncrypt,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { DefaultAzureCredential } from '@azure/identity';
import { KeyClient, parseKeyVaultKeyIdentifier } from '@azure/keyvault-keys';
import test from 'ava';
import { detectPlatform } from '../../src/hal/detect.js';
import { AzureVtpmPlatform } from '../../src/hal/platforms/azure-vtpm.js';
import { verifyAzureVtpmEvidence } from '../../src/hcl/verify.js';
import { isReleaseEncryption } from '../../src/keyvault/key-wrap.js';
import { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';
import { AttestationClient } from '../../src/maa/client.js';

const endpoint = process.env.CVM_SKR_HW_ATTESTATION_URL!;
const keyId = process.env.CVM_SKR_HW_KEY_ID!;
const enc = process.env.CVM_SKR_HW_ENC;

test('this machine is an Azure confidential VM with a vTPM', async (t) => {
  const detection = await detectPlatform();
  t.is(detection.selected, 'azure-vtpm', detection.backends.map((b) => `${b.kind}: ${b.reason}`).join('\n'));
});

test('the vTPM evidence verifies locally like the attestation service verifies it', async (t) => {
  const platform = await AzureVtpmPlatform.open();
  t.teardown(() => platform.close());
  const nonce = randomBytes(32);
  const evidence = await platform.collectEvidence({ nonce });
  if (evidence.kind !== 'azure-vtpm') return t.fail('not vTPM evidence');
  // On Azure the platform fetches the chain from THIM (or fails with ERR_VCEK_FETCH): it is always there.
  if (!evidence.vcekCertChain) return t.fail('no VCEK chain in the evidence');
  for (const line of evidence.diagnostics ?? []) t.log(line);
  const result = verifyAzureVtpmEvidence({
    hclReport: evidence.hclReport,
    certificates: evidence.vcekCertChain,
    quote: evidence.quote,
    signature: evidence.quoteSignature,
    pcrs: evidence.pcrs,
    nonce,
    akPub: evidence.akPub,
  });
  t.true(result.ok);
});

test('attest with MAA and release the key to this VM; the released key works', async (t) => {
  const platform = await AzureVtpmPlatform.open();
  t.teardown(() => platform.close());
  const attestation = await new AttestationClient({ endpoint }).attest(platform);
  t.is(attestation.protocol, 'AzureGuest');
  const skr = new SecureKeyRelease({
    attestationEndpoint: endpoint,
    platform: 'auto',
    ...(enc && isReleaseEncryption(enc) ? { enc } : {}),
  });
  t.teardown(() => skr.close());
  const released = await skr.releaseKey(keyId);
  t.log(`released ${released.kid} (${released.keyType})`);
  const { vaultUrl, name } = parseKeyVaultKeyIdentifier(keyId);
  const vaultKey = await new KeyClient(vaultUrl, new DefaultAzureCredential()).getKey(name, {
    version: released.version,
  });
  const data = randomBytes(32);
  if (released.keyType.startsWith('oct')) {
    t.is(released.key.type, 'secret');
    return;
  }
  const jwk = vaultKey.key!;
  const b64 = (v?: Uint8Array) => (v ? Buffer.from(v).toString('base64url') : undefined);
  const publicKey = createPublicKey({
    key: released.keyType.startsWith('RSA')
      ? { kty: 'RSA', n: b64(jwk.n), e: b64(jwk.e) }
      : { kty: 'EC', crv: jwk.crv, x: b64(jwk.x), y: b64(jwk.y) },
    format: 'jwk',
  });
  t.true(verify('sha256', data, publicKey, sign('sha256', data, released.key)));
  if (released.keyType.startsWith('RSA')) {
    const sealed = publicEncrypt(
      { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
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
  // A second release in the same process is served from cache: no TPM command, no request.
  t.is(await skr.releaseKey(`${vaultUrl}/keys/${name}/${released.version}`), released);
});
