import { constants, createHash, createPublicKey, publicEncrypt, randomBytes, verify } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import {
  type CvmSkrError,
  DeviceNotFoundError,
  DevicePermissionError,
  HclUserDataTimeoutError,
  InvalidArgumentError,
  NvIndexNotDefinedError,
  PlatformClosedError,
  TpmKeyNotFoundError,
  TpmPolicyError,
} from '../../../src/errors.js';
import { AzureVtpmPlatform, derPrefix, explainOpenError } from '../../../src/hal/platforms/azure-vtpm.js';
import type { DecryptScheme, TpmTransport } from '../../../src/hal/types.js';
import { x509 } from '../../../src/emulator/x509.js';
import { AZURE_VTPM } from '../../../src/tpm/azure-layout.js';
import { getHandles } from '../../../src/tpm/commands/capability.js';
import { nvRead } from '../../../src/tpm/commands/nv.js';
import { pcrExtend } from '../../../src/tpm/commands/pcr.js';
import { TPM_ALG, TPM_CC, TPM_ST, TPMA_OBJECT } from '../../../src/tpm/constants.js';
import { TpmReader } from '../../../src/tpm/marshal.js';
import { provisionAzureVtpmLayout, storeNvBlob } from '../../../src/tpm/provision.js';
import { policyPcrDigest } from '../../../src/tpm/sessions.js';
import { computeName, parseAttest, readTpm2bPublic } from '../../../src/tpm/structures.js';
import { Tpm } from '../../../src/tpm/tpm.js';
import { startSwtpm, swtpmAddonTest, swtpmTest } from '../../helpers/swtpm.js';
import { connectSwtpm } from '../../helpers/transport.js';
import { swtpmSizedHclReport } from '../../helpers/azure-vtpm-fixture.js';
import { provisioned } from '../../helpers/azure-vtpm-setup.js';

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

function commandCode(cmd: Uint8Array): number {
  return Buffer.from(cmd.buffer, cmd.byteOffset, cmd.length).readUInt32BE(6);
}

swtpmTest('HCL report (2048-byte index, read in 1024-byte chunks), AK certificate and AK public area', async (t) => {
  const nvReads: number[] = [];
  const { platform, layout } = await provisioned(t, {
    wrap: (inner) => ({
      transmit: (cmd) => {
        if (commandCode(cmd) === TPM_CC.NV_Read) nvReads.push(Buffer.from(cmd).readUInt16BE(cmd.length - 4));
        return inner.transmit(cmd);
      },
      close: () => inner.close(),
    }),
  });
  const report = await platform.readHclReport();
  t.deepEqual(Buffer.from(report), swtpmSizedHclReport());
  t.deepEqual(nvReads, [1024, 1024], 'two NV_Read chunks of TPM_PT_NV_BUFFER_MAX');
  const cert = new x509.X509Certificate(Buffer.from(await platform.readAkCertificate()));
  t.deepEqual(Buffer.from(cert.rawData), Buffer.from(layout.akCertDer));
  const certKey = createPublicKey({ key: Buffer.from(cert.publicKey.rawData), format: 'der', type: 'spki' });
  const ak = await platform.readAkPublic();
  t.true(certKey.equals(layout.ak.publicKey), 'the AK certificate certifies the AK');
  t.deepEqual(Buffer.from(ak.name), Buffer.from(layout.ak.public.name));
  if (ak.public.type !== TPM_ALG.RSA) return t.fail('AK must be RSA');
  t.is(ak.public.keyBits, 2048);
  t.deepEqual(ak.public.scheme, { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 });
  t.truthy(
    ak.public.objectAttributes & TPMA_OBJECT.restricted && ak.public.objectAttributes & TPMA_OBJECT.sign,
  );
});

swtpmTest('a second HCL report read sends only the NV_Read chunks: size and NV_BUFFER_MAX are read once per platform', async (t) => {
  const codes: number[] = [];
  const { platform, tpm } = await provisioned(t, {
    wrap: (inner) => ({
      transmit: (cmd) => {
        codes.push(commandCode(cmd));
        return inner.transmit(cmd);
      },
      close: () => inner.close(),
    }),
  });
  const first = await platform.readHclReport();
  t.deepEqual(
    [...codes].sort(),
    [TPM_CC.NV_Read, TPM_CC.NV_Read, TPM_CC.NV_ReadPublic, TPM_CC.GetCapability].sort(),
    'first read: NV_ReadPublic, GetCapability(TPM_PT_NV_BUFFER_MAX) and two chunks',
  );
  codes.length = 0;
  // The paravisor rewrites the contents in place (same size): the next read sees the new bytes.
  const rewritten = swtpmSizedHclReport({ userDataHex: 'ab'.repeat(64) });
  await storeNvBlob(tpm, AZURE_VTPM.HCL_REPORT_INDEX, rewritten);
  const second = await platform.readHclReport();
  t.deepEqual(codes, [TPM_CC.NV_Read, TPM_CC.NV_Read], 'second read: the two chunks only');
  t.notDeepEqual(Buffer.from(second), Buffer.from(first));
  t.deepEqual(Buffer.from(second), rewritten);
});

swtpmTest('a failed HCL report read caches nothing: once the index exists, the next read finds it', async (t) => {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const platform = await AzureVtpmPlatform.open({ transport });
  t.teardown(() => platform.close());
  await t.throwsAsync(platform.readHclReport(), { instanceOf: NvIndexNotDefinedError });
  await storeNvBlob(new Tpm(transport), AZURE_VTPM.HCL_REPORT_INDEX, swtpmSizedHclReport());
  t.deepEqual(Buffer.from(await platform.readHclReport()), swtpmSizedHclReport());
});

swtpmTest('PCRs 0-7 and a quote with a nonce: extraData, pcrDigest and signature under the AK', async (t) => {
  const { platform, layout } = await provisioned(t);
  const pcrs = await platform.readPcrs();
  t.deepEqual(
    pcrs.map((p) => p.index),
    [0, 1, 2, 3, 4, 5, 6, 7],
  );
  const all = await platform.readPcrs(Array.from({ length: 24 }, (_, i) => i));
  t.is(all.length, 24);
  const nonce = randomBytes(32);
  const q = await platform.quote({ nonce });
  t.deepEqual(Buffer.from(q.attest.extraData), nonce);
  if (!('quote' in q.attest)) return t.fail('not a quote');
  t.deepEqual(Buffer.from(q.attest.quote.pcrDigest), sha256(...pcrs.map((p) => p.digest)));
  if (!('signature' in q.signature)) return t.fail('not an RSA signature');
  t.true(verify('sha256', q.attestBytes, layout.ak.publicKey, q.signature.signature));
  const empty = await platform.quote();
  t.is(empty.attest.extraData.length, 0, 'the reference client sends empty qualifying data');
  await t.throwsAsync(platform.quote({ nonce: new Uint8Array(65) }), { instanceOf: InvalidArgumentError });
});

swtpmTest('collectEvidence: every field, certify verifies under the AK and names the transfer key', async (t) => {
  const { platform, layout } = await provisioned(t);
  const nonce = Buffer.from('maa-nonce');
  const ev = await platform.collectEvidence({ nonce });
  t.is(ev.kind, 'azure-vtpm');
  t.deepEqual(Buffer.from(ev.hclReport), swtpmSizedHclReport());
  t.deepEqual(Buffer.from(ev.akCert), Buffer.from(layout.akCertDer));
  t.deepEqual(Buffer.from(ev.akPub), Buffer.from(layout.ak.public.public2b));
  t.is(ev.pcrs.length, 8);
  t.is(ev.tcgLog.length, 0);
  const quote = parseAttest(ev.quote);
  t.deepEqual(Buffer.from(quote.extraData), nonce);
  if (!('quote' in quote)) return t.fail('not a quote');
  t.deepEqual(Buffer.from(quote.quote.pcrDigest), sha256(...ev.pcrs.map((p) => p.digest)));
  t.true(verify('sha256', ev.quote, layout.ak.publicKey, ev.quoteSignature));

  // Certify: signed by the AK, and the certified name is nameAlg || sha256(the transfer key's public area).
  t.true(verify('sha256', ev.encKeyCertifyInfo, layout.ak.publicKey, ev.encKeyCertifyInfoSignature));
  const info = parseAttest(ev.encKeyCertifyInfo);
  t.is(info.type, TPM_ST.ATTEST_CERTIFY);
  t.deepEqual(Buffer.from(info.extraData), Buffer.alloc(0));
  if (!('certify' in info)) return t.fail('not a certify');
  t.deepEqual(
    Buffer.from(info.certify.name),
    Buffer.from(computeName(TPM_ALG.SHA256, ev.encKeyPub.subarray(2))),
  );
  // The signer is the AK, named by its qualified name: nameAlg || sha256(endorsement hierarchy handle || AK name).
  const qualified = Buffer.concat([
    Buffer.from([0, TPM_ALG.SHA256]),
    sha256(Buffer.from([0x40, 0, 0, 0x0b]), layout.ak.public.name),
  ]);
  t.deepEqual(Buffer.from(info.qualifiedSigner), qualified);

  // The transfer key is exactly the DESIGN.md template.
  const encPub = readTpm2bPublic(new TpmReader(ev.encKeyPub));
  if (encPub.type !== TPM_ALG.RSA) return t.fail('transfer key must be RSA');
  t.is(encPub.keyBits, 2048);
  t.is(encPub.exponent, 0);
  t.is(encPub.nameAlg, TPM_ALG.SHA256);
  t.is(
    encPub.objectAttributes,
    TPMA_OBJECT.decrypt |
      TPMA_OBJECT.fixedTPM |
      TPMA_OBJECT.fixedParent |
      TPMA_OBJECT.sensitiveDataOrigin |
      TPMA_OBJECT.noDA,
  );
  t.is(
    encPub.objectAttributes & TPMA_OBJECT.userWithAuth,
    0,
    'no userWithAuth: only the PCR policy authorizes use',
  );
  t.deepEqual(encPub.scheme, { scheme: TPM_ALG.NULL });
  t.deepEqual(encPub.symmetric, { algorithm: TPM_ALG.NULL });
  const selection = [{ hashAlg: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
  t.deepEqual(
    Buffer.from(encPub.authPolicy),
    Buffer.from(
      policyPcrDigest(
        TPM_ALG.SHA256,
        selection,
        ev.pcrs.map((p) => p.digest),
      ),
    ),
  );
  // The JWK is that key; a second collection reuses the same loaded key.
  const key = await platform.transferKey();
  t.is(key.jwk.n, Buffer.from(encPub.unique).toString('base64url'));
  t.is(key.jwk.e, 'AQAB');
  t.is(key.jwk.kid, 'TpmEphemeralEncryptionKey');
  const again = await platform.collectEvidence();
  t.deepEqual(Buffer.from(again.encKeyPub), Buffer.from(ev.encKeyPub));
});

swtpmTest('decrypt in the TPM: node:crypto RSAES and OAEP with SHA-1, SHA-256 and SHA-384', async (t) => {
  const { platform, tpm } = await provisioned(t);
  const key = await platform.transferKey();
  const pub = createPublicKey({ key: key.jwk, format: 'jwk' });
  const cases: [DecryptScheme, number, string | undefined][] = [
    ['rsaes', constants.RSA_PKCS1_PADDING, undefined],
    ['oaep-sha1', constants.RSA_PKCS1_OAEP_PADDING, 'sha1'],
    ['oaep-sha256', constants.RSA_PKCS1_OAEP_PADDING, 'sha256'],
    ['oaep-sha384', constants.RSA_PKCS1_OAEP_PADDING, 'sha384'],
  ];
  for (const [scheme, padding, oaepHash] of cases) {
    const secret = randomBytes(32);
    const ct = publicEncrypt({ key: pub, padding, ...(oaepHash ? { oaepHash } : {}) }, secret);
    t.deepEqual(await key.decrypt(ct, scheme), secret, scheme);
  }
  // Concurrent decrypts share the TPM's few session slots without running out.
  const secrets = Array.from({ length: 12 }, () => randomBytes(32));
  const outs = await Promise.all(
    secrets.map((s) =>
      platform.decrypt(
        publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, s),
        'oaep-sha256',
      ),
    ),
  );
  t.deepEqual(outs, secrets);
  // A ciphertext for another scheme fails in the TPM, typed, and leaves no session behind.
  const wrong = publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, Buffer.from('x'));
  const error = await t.throwsAsync(platform.decrypt(wrong, 'oaep-sha256'));
  t.is(error?.name, 'TpmError');
  await t.throwsAsync(platform.decrypt(Buffer.alloc(10), 'rsaes'), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(platform.decrypt(wrong, 'oaep-md5' as DecryptScheme), {
    instanceOf: InvalidArgumentError,
  });
  t.deepEqual(await getHandles(tpm, 0x02000000), []);
  t.is((await getHandles(tpm, 0x80000000)).length, 1, 'only the transfer key stays loaded');
});

swtpmTest('after PCR_Extend of a bound PCR, decrypt fails with the typed policy error; unbound PCRs do not matter', async (t) => {
  const { platform, tpm } = await provisioned(t);
  const key = await platform.transferKey();
  const pub = createPublicKey({ key: key.jwk, format: 'jwk' });
  const ct = () => publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_PADDING }, Buffer.from('secret'));
  await pcrExtend(tpm, 16, [{ hashAlg: TPM_ALG.SHA256, digest: sha256(Buffer.from('debug pcr')) }]);
  t.is((await key.decrypt(ct(), 'rsaes')).toString(), 'secret');
  await pcrExtend(tpm, 7, [{ hashAlg: TPM_ALG.SHA256, digest: sha256(Buffer.from('secure boot changed')) }]);
  const error = await t.throwsAsync(key.decrypt(ct(), 'rsaes'), { instanceOf: TpmPolicyError });
  t.is(error?.code, 'ERR_TPM_POLICY');
  t.is(error?.rcName, 'TPM_RC_POLICY_FAIL');
  t.regex(error?.message ?? '', /PCRs 0,1,2,3,4,5,6,7 changed since the key was made/);
  t.deepEqual(await getHandles(tpm, 0x02000000), [], 'the failed policy session was flushed');
});

swtpmTest('writeUserData: without a paravisor the report never changes, so it times out (typed), after writing the index', async (t) => {
  const { platform, tpm } = await provisioned(t);
  const data = Buffer.from('user data for the report');
  const error = await t.throwsAsync(platform.writeUserData(data, { timeoutMs: 150 }), {
    instanceOf: HclUserDataTimeoutError,
  });
  t.is(error?.code, 'ERR_HCL_USER_DATA_TIMEOUT');
  t.regex(error?.message ?? '', /within 150 ms/);
  const stored = await nvRead(tpm, { nvIndex: AZURE_VTPM.USER_DATA_INDEX, size: 64 });
  t.deepEqual(Buffer.from(stored).subarray(0, data.length), data);
  t.deepEqual(Buffer.from(stored).subarray(data.length), Buffer.alloc(64 - data.length));
  await t.throwsAsync(platform.writeUserData(new Uint8Array(65)), { instanceOf: InvalidArgumentError });
  const controller = new AbortController();
  const aborted = platform.writeUserData(data, { timeoutMs: 10_000, signal: controller.signal });
  setTimeout(() => controller.abort(), 20);
  await t.throwsAsync(aborted, { code: 'ERR_ABORTED' });
});

swtpmTest('writeUserData: resolves once an emulated paravisor rewrites the report with the user data', async (t) => {
  const data = randomBytes(64);
  let reportReads = 0;
  let rewritten = false;
  let written = false;
  let side: Tpm | undefined;
  const { platform } = await provisioned(t, {
    wrap: (inner) => {
      side = new Tpm(inner);
      return {
        async transmit(cmd) {
          const code = commandCode(cmd);
          const view = Buffer.from(cmd.buffer, cmd.byteOffset, cmd.length);
          // Like the paravisor, regenerate the report some time after the user data was written: here when the
          // platform starts its third read of the report.
          if (
            code === TPM_CC.NV_Read &&
            view.readUInt32BE(14) === AZURE_VTPM.HCL_REPORT_INDEX &&
            written &&
            !rewritten
          ) {
            if (view.readUInt16BE(cmd.length - 2) === 0 && ++reportReads === 3) {
              await storeNvBlob(
                side!,
                AZURE_VTPM.HCL_REPORT_INDEX,
                swtpmSizedHclReport({ userDataHex: data.toString('hex').toUpperCase() }),
              );
              rewritten = true;
            }
          }
          const response = await inner.transmit(cmd);
          if (code === TPM_CC.NV_Write && view.readUInt32BE(14) === AZURE_VTPM.USER_DATA_INDEX)
            written = true;
          return response;
        },
        close: () => inner.close(),
      };
    },
  });
  const report = await platform.writeUserData(data, { timeoutMs: 10_000 });
  t.true(rewritten);
  t.is(reportReads, 3, 'it polled until the report changed, then stopped');
  const rd = JSON.parse(
    Buffer.from(report)
      .subarray(0x4d4, 0x4d4 + Buffer.from(report).readUInt32LE(0x4d0))
      .toString(),
  );
  t.is(rd['user-data'].toLowerCase(), data.toString('hex'));
});

swtpmTest('a TPM that is not an Azure vTPM: typed errors that say what to check', async (t) => {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  const platform = await AzureVtpmPlatform.open({ transport });
  t.teardown(() => platform.close());
  const report = await t.throwsAsync(platform.readHclReport(), { instanceOf: NvIndexNotDefinedError });
  t.is(report?.nvIndex, 0x01400001);
  t.regex(report?.message ?? '', /0x01400001 is not defined: not an Azure confidential VM/);
  const cert = await t.throwsAsync(platform.readAkCertificate(), { instanceOf: NvIndexNotDefinedError });
  t.regex(cert?.message ?? '', /not a confidential VM, or the AK certificate is not provisioned yet/);
  const ak = await t.throwsAsync(platform.readAkPublic(), { instanceOf: TpmKeyNotFoundError });
  t.regex(ak?.message ?? '', /0x81000003.*AK is not provisioned yet/);
  await t.throwsAsync(platform.quote(), { instanceOf: TpmKeyNotFoundError });
  await t.throwsAsync(platform.collectEvidence(), { instanceOf: NvIndexNotDefinedError });
  // Certify without an AK fails, and the transfer key made on the way is still released by close().
  await t.throwsAsync(platform.certifyTransferKey(), { instanceOf: TpmKeyNotFoundError });
  const tpm = new Tpm(transport);
  t.is((await getHandles(tpm, 0x80000000)).length, 1);
  await platform.close();
  t.deepEqual(await getHandles(tpm, 0x80000000), []);
});

test('open by path: a missing device says it is not a confidential VM (or the addon is not built)', async (t) => {
  const error = await t.throwsAsync<CvmSkrError>(
    AzureVtpmPlatform.open({ path: '/nonexistent/cvm-skr/tpm.sock' }),
  );
  if (error?.code === 'ERR_DEVICE_NOT_FOUND') {
    t.regex(error.message, /not a confidential VM with a vTPM/);
  } else {
    // Until the native addon is built openTpm cannot reach device paths at all.
    t.true(['ERR_UNSUPPORTED_PLATFORM', 'ERR_ADDON_LOAD'].includes(error?.code ?? ''), error?.code);
    t.log(`native transport unavailable: ${error?.message}`);
  }
  await t.throwsAsync(AzureVtpmPlatform.open({ path: '/x', transport: {} as TpmTransport }), {
    instanceOf: InvalidArgumentError,
  });
  await t.throwsAsync(AzureVtpmPlatform.open({ pcrs: [24] }), { instanceOf: InvalidArgumentError });
});

swtpmTest('close flushes the transfer key, is idempotent, keeps a caller transport open; later use is PlatformClosedError', async (t) => {
  const { platform, tpm } = await provisioned(t);
  await platform.transferKey();
  t.is((await getHandles(tpm, 0x80000000)).length, 1);
  await platform.close();
  await platform.close();
  t.deepEqual(await getHandles(tpm, 0x80000000), []);
  await t.throwsAsync(platform.readHclReport(), { instanceOf: PlatformClosedError });
  await t.throwsAsync(platform.transferKey(), { instanceOf: PlatformClosedError });
  await t.throwsAsync(platform.collectEvidence(), { instanceOf: PlatformClosedError });
  t.is((await tpm.execute({ cc: TPM_CC.GetRandom, params: (w) => w.u16(4) })).params.remaining, 6);
});

test('device errors are rewritten to say what to check (permission, missing device)', (t) => {
  const details = { systemCode: 'EACCES', errno: 13, syscall: 'open', path: '/dev/tpmrm0' };
  const denied = explainOpenError(new DevicePermissionError('EACCES', details), '/dev/tpmrm0');
  t.true(denied instanceof DevicePermissionError);
  t.regex(
    (denied as Error).message,
    /permission denied opening the vTPM at \/dev\/tpmrm0: run as root, or add the user to the group/,
  );
  t.is((denied as DevicePermissionError).systemCode, 'EACCES');
  const missing = explainOpenError(
    new DeviceNotFoundError('ENOENT', { ...details, systemCode: 'ENOENT' }),
    '/dev/tpmrm0',
  );
  t.true(missing instanceof DeviceNotFoundError);
  t.regex((missing as Error).message, /not a confidential VM with a vTPM/);
  const other = new Error('x');
  t.is(explainOpenError(other, '/dev/tpmrm0'), other);
});

test('derPrefix: an AK certificate in a larger NV index is cut to its DER length', (t) => {
  const der = Buffer.from([0x30, 0x82, 0x00, 0x03, 1, 2, 3]);
  t.deepEqual(Buffer.from(derPrefix(Buffer.concat([der, Buffer.alloc(20)]))), der);
  t.deepEqual(Buffer.from(derPrefix(Buffer.from([0x30, 0x02, 9, 9, 0, 0]))), Buffer.from([0x30, 0x02, 9, 9]));
  const notDer = Buffer.from([0xff, 1, 2]);
  t.is(derPrefix(notDer), notDer);
  const tooShort = Buffer.from([0x30, 0x82, 0x10, 0x00, 1]);
  t.is(derPrefix(tooShort), tooShort);
});

swtpmAddonTest('the whole sequence through AzureVtpmPlatform.open({ path }) on the swtpm Unix socket (native transport)', async (t) => {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const setup = await connectSwtpm(swtpm);
  const layout = await provisionAzureVtpmLayout(setup, { hclReport: swtpmSizedHclReport() });
  await setup.close();
  const eventLogPath = path.join(swtpm.dir, 'event-log.bin');
  await writeFile(eventLogPath, Buffer.from('fake TCG log'));
  const platform = await AzureVtpmPlatform.open({ path: swtpm.socketPath, eventLogPath });
  t.teardown(() => platform.close());
  const ev = await platform.collectEvidence({ nonce: Buffer.from('n') });
  t.deepEqual(Buffer.from(ev.tcgLog).toString(), 'fake TCG log');
  t.true(verify('sha256', ev.quote, layout.ak.publicKey, ev.quoteSignature));
  t.true(verify('sha256', ev.encKeyCertifyInfo, layout.ak.publicKey, ev.encKeyCertifyInfoSignature));
  const key = await platform.transferKey();
  const secret = randomBytes(32);
  const ct = publicEncrypt(
    { key: createPublicKey({ key: key.jwk, format: 'jwk' }), padding: constants.RSA_PKCS1_PADDING },
    secret,
  );
  t.deepEqual(await key.decrypt(ct, 'rsaes'), secret);
  await platform.close();
  // close() flushed the key and closed the transport it opened, so the socket takes a new client with no objects.
  const check = await connectSwtpm(swtpm);
  t.teardown(() => check.close());
  t.deepEqual(await getHandles(new Tpm(check), 0x80000000), []);
});

swtpmTest('concurrent evidence collection and decrypts on one platform fit swtpm’s 3 object and 3 session slots', async (t) => {
  const { platform, tpm, layout } = await provisioned(t);
  // Concurrent first use creates one transfer key, not one per caller.
  const first = await Promise.all(Array.from({ length: 8 }, () => platform.collectEvidence()));
  t.is(new Set(first.map((ev) => Buffer.from(ev.encKeyPub).toString('hex'))).size, 1);
  t.is((await getHandles(tpm, 0x80000000)).length, 1);
  const key = await platform.transferKey();
  const pub = createPublicKey({ key: key.jwk, format: 'jwk' });
  const secrets = Array.from({ length: 16 }, () => randomBytes(32));
  const [evidence, plaintexts] = await Promise.all([
    Promise.all(Array.from({ length: 16 }, (_, i) => platform.collectEvidence({ nonce: Buffer.from([i]) }))),
    Promise.all(
      secrets.map((s) =>
        key.decrypt(
          publicEncrypt({ key: pub, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha384' }, s),
          'oaep-sha384',
        ),
      ),
    ),
  ]);
  t.deepEqual(plaintexts, secrets);
  for (const [i, ev] of evidence.entries()) {
    t.deepEqual(Buffer.from(parseAttest(ev.quote).extraData), Buffer.from([i]));
    t.true(verify('sha256', ev.quote, layout.ak.publicKey, ev.quoteSignature));
  }
  t.deepEqual(await getHandles(tpm, 0x02000000), []);
  t.is((await getHandles(tpm, 0x80000000)).length, 1);
});
