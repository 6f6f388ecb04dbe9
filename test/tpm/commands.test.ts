import {
  createHash,
  createPublicKey,
  constants as cryptoConstants,
  publicEncrypt,
  randomBytes,
  verify,
} from 'node:crypto';
import { NvIndexNotDefinedError, TpmError, TpmKeyNotFoundError, TpmPolicyError } from '../../src/errors.js';
import { certify, quote } from '../../src/tpm/commands/attest.js';
import {
  getHandles,
  getPcrBanks,
  getProperties,
  getProperty,
  getRandom,
} from '../../src/tpm/commands/capability.js';
import {
  nvDefineSpace,
  nvRead,
  nvReadAll,
  nvReadPublic,
  nvUndefineSpace,
  nvWrite,
  nvWriteAll,
} from '../../src/tpm/commands/nv.js';
import { createPrimary, evictControl, flushContext, readPublic } from '../../src/tpm/commands/object.js';
import { pcrExtend, pcrRead, readPcrs } from '../../src/tpm/commands/pcr.js';
import { policyGetDigest, policyPcr, startAuthSession } from '../../src/tpm/commands/policy.js';
import { rsaDecrypt, rsaEncrypt } from '../../src/tpm/commands/rsa.js';
import {
  TPM_ALG,
  TPM_ECC_CURVE,
  TPM_HT,
  TPM_PT,
  TPM_RH,
  TPM_SE,
  TPM_ST,
  TPMA_NV,
  TPMA_OBJECT,
} from '../../src/tpm/constants.js';
import { publicToKeyObject } from '../../src/tpm/keys.js';
import { TPM_RC } from '../../src/tpm/rc.js';
import { passwordAuth, policyAuth, policyPcrDigest } from '../../src/tpm/sessions.js';
import { computeName, type EccPublic, rsaTemplate } from '../../src/tpm/structures.js';
import { swtpmTest } from '../helpers/swtpm.js';
import { freshTpm } from '../helpers/swtpm-tpm.js';

const sha256 = (...parts: Uint8Array[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};

const SIGNING_TEMPLATE = rsaTemplate({
  objectAttributes:
    TPMA_OBJECT.fixedTPM |
    TPMA_OBJECT.fixedParent |
    TPMA_OBJECT.sensitiveDataOrigin |
    TPMA_OBJECT.userWithAuth |
    TPMA_OBJECT.restricted |
    TPMA_OBJECT.sign,
  scheme: { scheme: TPM_ALG.RSASSA, hashAlg: TPM_ALG.SHA256 },
});

const DECRYPT_TEMPLATE = rsaTemplate({
  objectAttributes:
    TPMA_OBJECT.fixedTPM |
    TPMA_OBJECT.fixedParent |
    TPMA_OBJECT.sensitiveDataOrigin |
    TPMA_OBJECT.userWithAuth |
    TPMA_OBJECT.decrypt |
    TPMA_OBJECT.noDA,
});

swtpmTest('GetCapability, GetRandom: properties, handles, PCR banks', async (t) => {
  const { tpm } = await freshTpm(t);
  t.is(await getProperty(tpm, TPM_PT.NV_BUFFER_MAX), 1024);
  t.is(await getProperty(tpm, TPM_PT.FAMILY_INDICATOR), 0x322e3000);
  const { properties } = await getProperties(tpm, TPM_PT.INPUT_BUFFER, 4);
  t.true(properties.has(TPM_PT.INPUT_BUFFER));
  t.true(properties.has(TPM_PT.HR_TRANSIENT_MIN));
  t.deepEqual(await getHandles(tpm, TPM_HT.TRANSIENT << 24), []);
  const banks = await getPcrBanks(tpm);
  t.deepEqual(
    banks.find((b) => b.hashAlg === TPM_ALG.SHA256)?.pcrs,
    Array.from({ length: 24 }, (_, i) => i),
  );
  const a = await getRandom(tpm, 32);
  const b = await getRandom(tpm, 32);
  t.is(a.length, 32);
  t.notDeepEqual(a, b);
});

swtpmTest('PCR_Read loops past 8 digests per call; PCR_Extend changes exactly the extended PCR', async (t) => {
  const { tpm } = await freshTpm(t);
  const one = await pcrRead(tpm, [
    { hashAlg: TPM_ALG.SHA256, pcrs: Array.from({ length: 24 }, (_, i) => i) },
  ]);
  t.is(one.digests.length, 8, 'the TPM serves at most 8 digests per call');
  const before = await readPcrs(
    tpm,
    TPM_ALG.SHA256,
    Array.from({ length: 24 }, (_, i) => i),
  );
  t.is(before.length, 24);
  t.deepEqual(
    before.map((p) => p.index),
    Array.from({ length: 24 }, (_, i) => i),
  );
  const digest = sha256(Buffer.from('measured'));
  await pcrExtend(tpm, 7, [{ hashAlg: TPM_ALG.SHA256, digest }]);
  const after = await readPcrs(tpm, TPM_ALG.SHA256, [6, 7]);
  t.deepEqual(Buffer.from(after[0]!.digest), Buffer.from(before[6]!.digest));
  t.deepEqual(Buffer.from(after[1]!.digest), sha256(before[7]!.digest, digest), 'PCR7 = H(old || digest)');
});

swtpmTest('CreatePrimary, ReadPublic, EvictControl, FlushContext; name = nameAlg || H(public)', async (t) => {
  const { tpm } = await freshTpm(t);
  const ak = await createPrimary(tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: SIGNING_TEMPLATE });
  t.is(ak.handle >>> 24, TPM_HT.TRANSIENT);
  t.deepEqual(Buffer.from(ak.name), Buffer.from(computeName(TPM_ALG.SHA256, ak.public2b.subarray(2))));
  const again = await readPublic(tpm, ak.handle);
  t.deepEqual(Buffer.from(again.public2b), Buffer.from(ak.public2b));
  await evictControl(tpm, { objectHandle: ak.handle, persistentHandle: 0x81000003 });
  await flushContext(tpm, ak.handle);
  t.deepEqual(await getHandles(tpm, TPM_HT.TRANSIENT << 24), []);
  t.deepEqual(await getHandles(tpm, TPM_HT.PERSISTENT << 24), [0x81000003]);
  const persisted = await readPublic(tpm, 0x81000003);
  t.deepEqual(Buffer.from(persisted.name), Buffer.from(ak.name));
  await evictControl(tpm, { objectHandle: 0x81000003, persistentHandle: 0x81000003 });
  const missing = await t.throwsAsync(readPublic(tpm, 0x81000003), { instanceOf: TpmKeyNotFoundError });
  t.is(missing?.rcName, 'TPM_RC_HANDLE');
  t.is(missing?.handleIndex, 1);
});

swtpmTest('NV_DefineSpace, NV_Write, NV_Read (2048 bytes in 1024-byte chunks), NV_ReadPublic, NV_UndefineSpace', async (t) => {
  const { tpm, transport } = await freshTpm(t);
  const nvIndex = 0x01400001;
  const attributes =
    TPMA_NV.OWNERWRITE | TPMA_NV.AUTHWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA;
  await nvDefineSpace(tpm, {
    public: { nvIndex, nameAlg: TPM_ALG.SHA256, attributes, authPolicy: new Uint8Array(0), dataSize: 2048 },
  });
  const data = randomBytes(2048);
  await nvWriteAll(tpm, { nvIndex, data, chunkSize: 1024 });
  const info = await nvReadPublic(tpm, nvIndex);
  t.is(info.public.dataSize, 2048);
  t.true((info.public.attributes & TPMA_NV.WRITTEN) !== 0);
  // Count the NV_Read commands that cross the transport.
  let reads = 0;
  const counting = new (await import('../../src/tpm/tpm.js')).Tpm({
    transmit: (cmd) => {
      if (Buffer.from(cmd).readUInt32BE(6) === 0x14e) reads++;
      return transport.transmit(cmd);
    },
    close: async () => {},
  });
  const back = await nvReadAll(counting, { nvIndex, chunkSize: 1024 });
  t.deepEqual(Buffer.from(back), data);
  t.is(reads, 2);
  const part = await nvRead(tpm, {
    nvIndex,
    size: 100,
    offset: 1000,
    auth: { authHandle: TPM_RH.OWNER, session: passwordAuth() },
  });
  t.deepEqual(Buffer.from(part), data.subarray(1000, 1100));
  await nvWrite(tpm, { nvIndex, data: Buffer.from('hello'), offset: 10 });
  t.is(Buffer.from(await nvRead(tpm, { nvIndex, size: 5, offset: 10 })).toString(), 'hello');
  await nvUndefineSpace(tpm, { nvIndex });
  const error = await t.throwsAsync(nvReadPublic(tpm, nvIndex), { instanceOf: NvIndexNotDefinedError });
  t.is(error?.nvIndex, nvIndex);
  t.is(error?.code, 'ERR_TPM_NV_NOT_DEFINED');
  await t.throwsAsync(nvRead(tpm, { nvIndex, size: 1 }), { instanceOf: NvIndexNotDefinedError });
});

swtpmTest('Quote and Certify: signatures verify with node:crypto, certified name matches', async (t) => {
  const { tpm } = await freshTpm(t);
  const ak = await createPrimary(tpm, { hierarchy: TPM_RH.ENDORSEMENT, template: SIGNING_TEMPLATE });
  t.teardown(() => flushContext(tpm, ak.handle).catch(() => {}));
  const akKey = publicToKeyObject(ak.public);
  const selection = [{ hashAlg: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
  const nonce = Buffer.from('nonce-123');
  const q = await quote(tpm, { signHandle: ak.handle, pcrs: selection, qualifyingData: nonce });
  t.is(q.attest.type, TPM_ST.ATTEST_QUOTE);
  t.deepEqual(Buffer.from(q.attest.extraData), nonce);
  t.true(q.signature.sigAlg === TPM_ALG.RSASSA);
  const pcrs = await readPcrs(tpm, TPM_ALG.SHA256, selection[0]!.pcrs);
  if ('quote' in q.attest) {
    t.deepEqual(Buffer.from(q.attest.quote.pcrDigest), sha256(...pcrs.map((p) => p.digest)));
    t.deepEqual(q.attest.quote.pcrSelect, selection);
  } else t.fail('not a quote');
  if ('signature' in q.signature) {
    t.true(
      verify('sha256', q.attestBytes, akKey, q.signature.signature),
      'quote signature verifies under the AK',
    );
  }
  const key = await createPrimary(tpm, { hierarchy: TPM_RH.NULL, template: DECRYPT_TEMPLATE });
  t.teardown(() => flushContext(tpm, key.handle).catch(() => {}));
  const c = await certify(tpm, { objectHandle: key.handle, signHandle: ak.handle });
  t.is(c.attest.type, TPM_ST.ATTEST_CERTIFY);
  if ('certify' in c.attest) t.deepEqual(Buffer.from(c.attest.certify.name), Buffer.from(key.name));
  else t.fail('not a certify');
  if ('signature' in c.signature) {
    t.true(verify('sha256', c.attestBytes, akKey, c.signature.signature));
  }
});

swtpmTest('RSA_Encrypt / RSA_Decrypt with password auth, and node:crypto interop', async (t) => {
  const { tpm } = await freshTpm(t);
  const key = await createPrimary(tpm, { hierarchy: TPM_RH.NULL, template: DECRYPT_TEMPLATE });
  t.teardown(() => flushContext(tpm, key.handle).catch(() => {}));
  const message = Buffer.from('attack at dawn');
  const oaep = { scheme: TPM_ALG.OAEP, hashAlg: TPM_ALG.SHA256 };
  const ct = await rsaEncrypt(tpm, { keyHandle: key.handle, message, scheme: oaep });
  t.is(ct.length, 256);
  const pt = await rsaDecrypt(tpm, {
    keyHandle: key.handle,
    ciphertext: ct,
    scheme: oaep,
    auth: passwordAuth(),
  });
  t.deepEqual(Buffer.from(pt), message);
  const pub = createPublicKey({
    key: publicToKeyObject(key.public).export({ format: 'jwk' }),
    format: 'jwk',
  });
  const nodeCt = publicEncrypt({ key: pub, padding: cryptoConstants.RSA_PKCS1_PADDING }, message);
  const pt2 = await rsaDecrypt(tpm, {
    keyHandle: key.handle,
    ciphertext: nodeCt,
    scheme: { scheme: TPM_ALG.RSAES },
    auth: passwordAuth(),
  });
  t.deepEqual(Buffer.from(pt2), message);
  const bad = await t.throwsAsync(
    rsaDecrypt(tpm, { keyHandle: key.handle, ciphertext: nodeCt, scheme: oaep, auth: passwordAuth() }),
    { instanceOf: TpmError },
  );
  t.is(bad?.code, 'ERR_TPM_RC');
  t.is(bad?.command, 'TPM2_RSA_Decrypt');
});

swtpmTest('StartAuthSession, PolicyPCR, PolicyGetDigest: TPM digest equals the local computation', async (t) => {
  const { tpm } = await freshTpm(t);
  const selection = [{ hashAlg: TPM_ALG.SHA256, pcrs: [0, 1, 2, 3, 4, 5, 6, 7] }];
  const trial = await startAuthSession(tpm, { sessionType: TPM_SE.TRIAL });
  await policyPcr(tpm, trial.handle, selection);
  const digest = await policyGetDigest(tpm, trial.handle);
  await flushContext(tpm, trial.handle);
  const pcrs = await readPcrs(tpm, TPM_ALG.SHA256, selection[0]!.pcrs);
  t.deepEqual(
    Buffer.from(digest),
    Buffer.from(
      policyPcrDigest(
        TPM_ALG.SHA256,
        selection,
        pcrs.map((p) => p.digest),
      ),
    ),
  );
  // A key bound to that policy, without userWithAuth, decrypts only through a policy session.
  const template = rsaTemplate({
    objectAttributes:
      TPMA_OBJECT.fixedTPM |
      TPMA_OBJECT.fixedParent |
      TPMA_OBJECT.sensitiveDataOrigin |
      TPMA_OBJECT.decrypt |
      TPMA_OBJECT.noDA,
    authPolicy: digest,
  });
  const key = await createPrimary(tpm, { hierarchy: TPM_RH.NULL, template });
  t.teardown(() => flushContext(tpm, key.handle).catch(() => {}));
  const ct = await rsaEncrypt(tpm, {
    keyHandle: key.handle,
    message: Buffer.from('x'),
    scheme: { scheme: TPM_ALG.RSAES },
  });
  await t.throwsAsync(
    rsaDecrypt(tpm, {
      keyHandle: key.handle,
      ciphertext: ct,
      scheme: { scheme: TPM_ALG.RSAES },
      auth: passwordAuth(),
    }),
    { instanceOf: TpmError },
  );
  const session = await startAuthSession(tpm, { sessionType: TPM_SE.POLICY });
  await policyPcr(tpm, session.handle, selection);
  const pt = await rsaDecrypt(tpm, {
    keyHandle: key.handle,
    ciphertext: ct,
    scheme: { scheme: TPM_ALG.RSAES },
    auth: policyAuth(session.handle),
  });
  t.is(Buffer.from(pt).toString(), 'x');
  t.deepEqual(
    await getHandles(tpm, TPM_HT.LOADED_SESSION << 24),
    [],
    'session without continueSession is gone',
  );
  await pcrExtend(tpm, 3, [{ hashAlg: TPM_ALG.SHA256, digest: sha256(Buffer.from('boot')) }]);
  const s2 = await startAuthSession(tpm, { sessionType: TPM_SE.POLICY });
  await policyPcr(tpm, s2.handle, selection);
  const e = await t.throwsAsync(
    rsaDecrypt(tpm, {
      keyHandle: key.handle,
      ciphertext: ct,
      scheme: { scheme: TPM_ALG.RSAES },
      auth: policyAuth(s2.handle),
    }),
    { instanceOf: TpmPolicyError },
  );
  t.is(e?.rcName, 'TPM_RC_POLICY_FAIL');
  t.is(e?.sessionIndex, 1);
  t.deepEqual(
    await getHandles(tpm, TPM_HT.LOADED_SESSION << 24),
    [s2.handle],
    'a failed command leaves the session',
  );
  await flushContext(tpm, s2.handle);
  t.is(TPM_RC.POLICY_FAIL, 0x9d);
});

swtpmTest('ECC: a P-256 ECDSA key from CreatePrimary quotes, and node:crypto verifies the r||s signature', async (t) => {
  const { tpm } = await freshTpm(t);
  const template: EccPublic = {
    type: TPM_ALG.ECC,
    nameAlg: TPM_ALG.SHA256,
    objectAttributes:
      TPMA_OBJECT.fixedTPM |
      TPMA_OBJECT.fixedParent |
      TPMA_OBJECT.sensitiveDataOrigin |
      TPMA_OBJECT.userWithAuth |
      TPMA_OBJECT.restricted |
      TPMA_OBJECT.sign,
    authPolicy: new Uint8Array(0),
    symmetric: { algorithm: TPM_ALG.NULL },
    scheme: { scheme: TPM_ALG.ECDSA, hashAlg: TPM_ALG.SHA256 },
    curveId: TPM_ECC_CURVE.NIST_P256,
    kdf: { scheme: TPM_ALG.NULL },
    unique: { x: new Uint8Array(0), y: new Uint8Array(0) },
  };
  const key = await createPrimary(tpm, { hierarchy: TPM_RH.OWNER, template });
  t.teardown(() => flushContext(tpm, key.handle).catch(() => {}));
  if (key.public.type !== TPM_ALG.ECC) return t.fail('not ECC');
  t.is(key.public.unique.x.length, 32);
  const q = await quote(tpm, { signHandle: key.handle, pcrs: [{ hashAlg: TPM_ALG.SHA256, pcrs: [0] }] });
  if (!('r' in q.signature)) return t.fail('not an ECDSA signature');
  t.is(q.signature.sigAlg, TPM_ALG.ECDSA);
  const rs = Buffer.concat([
    Buffer.alloc(32 - q.signature.r.length),
    q.signature.r,
    Buffer.alloc(32 - q.signature.s.length),
    q.signature.s,
  ]);
  t.true(
    verify('sha256', q.attestBytes, { key: publicToKeyObject(key.public), dsaEncoding: 'ieee-p1363' }, rs),
  );
});
