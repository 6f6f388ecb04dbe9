import test from 'ava';
import fc from 'fast-check';
import { MalformedDataError, TpmError } from '../../src/errors.js';
import type { TpmTransport } from '../../src/hal/types.js';
import { certify, quote } from '../../src/tpm/commands/attest.js';
import { getHandles, getPcrBanks, getProperties } from '../../src/tpm/commands/capability.js';
import { nvReadPublic } from '../../src/tpm/commands/nv.js';
import { createPrimary, readPublic } from '../../src/tpm/commands/object.js';
import { pcrRead } from '../../src/tpm/commands/pcr.js';
import { startAuthSession } from '../../src/tpm/commands/policy.js';
import { TPM_ALG, TPM_ECC_CURVE, TPM_RH, TPM_ST } from '../../src/tpm/constants.js';
import { TpmReader, TpmWriter, unmarshal } from '../../src/tpm/marshal.js';
import {
  type PcrSelection,
  readAttest,
  readDigestList,
  readNvPublic2b,
  readPcrSelection,
  readSignature,
  readTpm2bPublic,
  readTpmtPublic,
  rsaTemplate,
  type TpmsAttest,
  type TpmsNvPublic,
  type TpmtPublic,
  type TpmtSignature,
  writeAttest,
  writeDigestList,
  writeNvPublic2b,
  writePcrSelection,
  writeSignature,
  writeTpm2bPublic,
  writeTpmtPublic,
} from '../../src/tpm/structures.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (max: number) => fc.uint8Array({ maxLength: max });
const hashAlg = fc.constantFrom(TPM_ALG.SHA1, TPM_ALG.SHA256, TPM_ALG.SHA384, TPM_ALG.SHA512);
const sym = fc.oneof(
  fc.constant({ algorithm: TPM_ALG.NULL }),
  fc.record({
    algorithm: fc.constant(TPM_ALG.AES),
    keyBits: fc.constantFrom(128, 256),
    mode: fc.constant(TPM_ALG.CFB),
  }),
);
const rsaScheme = fc.oneof(
  fc.constant({ scheme: TPM_ALG.NULL }),
  fc.constant({ scheme: TPM_ALG.RSAES }),
  fc.record({ scheme: fc.constantFrom(TPM_ALG.RSASSA, TPM_ALG.RSAPSS, TPM_ALG.OAEP), hashAlg }),
);
const eccScheme = fc.oneof(
  fc.constant({ scheme: TPM_ALG.NULL }),
  fc.record({ scheme: fc.constantFrom(TPM_ALG.ECDSA, TPM_ALG.ECDH, TPM_ALG.ECSCHNORR), hashAlg }),
  fc.record({ scheme: fc.constant(TPM_ALG.ECDAA), hashAlg, count: u16 }),
);
const common = {
  nameAlg: hashAlg,
  objectAttributes: u32,
  authPolicy: bytes(64),
  symmetric: sym,
};
const rsaPublic: fc.Arbitrary<TpmtPublic> = fc.record({
  type: fc.constant(TPM_ALG.RSA),
  ...common,
  scheme: rsaScheme,
  keyBits: fc.constantFrom(1024, 2048, 3072, 4096),
  exponent: u32,
  unique: bytes(512),
});
const eccPublic: fc.Arbitrary<TpmtPublic> = fc.record({
  type: fc.constant(TPM_ALG.ECC),
  ...common,
  scheme: eccScheme,
  curveId: fc.constantFrom(TPM_ECC_CURVE.NIST_P256, TPM_ECC_CURVE.NIST_P384),
  kdf: fc.oneof(
    fc.constant({ scheme: TPM_ALG.NULL }),
    fc.record({ scheme: fc.constant(TPM_ALG.KDF2), hashAlg }),
  ),
  unique: fc.record({ x: bytes(66), y: bytes(66) }),
});
const anyPublic = fc.oneof(rsaPublic, eccPublic);
const pcrSelection: fc.Arbitrary<PcrSelection[]> = fc.array(
  fc.record({
    hashAlg,
    pcrs: fc
      .uniqueArray(fc.integer({ min: 0, max: 23 }), { maxLength: 24 })
      .map((a) => a.sort((x, y) => x - y)),
  }),
  { maxLength: 4 },
);
const attestCommon = {
  qualifiedSigner: bytes(66),
  extraData: bytes(64),
  clockInfo: fc.record({
    clock: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
    resetCount: u32,
    restartCount: u32,
    safe: fc.boolean(),
  }),
  firmwareVersion: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
};
const attest: fc.Arbitrary<TpmsAttest> = fc.oneof(
  fc.record({
    type: fc.constant(TPM_ST.ATTEST_QUOTE),
    ...attestCommon,
    quote: fc.record({ pcrSelect: pcrSelection, pcrDigest: bytes(64) }),
  }),
  fc.record({
    type: fc.constant(TPM_ST.ATTEST_CERTIFY),
    ...attestCommon,
    certify: fc.record({ name: bytes(66), qualifiedName: bytes(66) }),
  }),
  fc.record({ type: fc.constant(0x8016), ...attestCommon, attested: bytes(100) }),
);
const signature: fc.Arbitrary<TpmtSignature> = fc.oneof(
  fc.record({ sigAlg: fc.constantFrom(TPM_ALG.RSASSA, TPM_ALG.RSAPSS), hashAlg, signature: bytes(512) }),
  fc.record({
    sigAlg: fc.constantFrom(TPM_ALG.ECDSA, TPM_ALG.ECSCHNORR),
    hashAlg,
    r: bytes(66),
    s: bytes(66),
  }),
  fc.constant({ sigAlg: TPM_ALG.HMAC, hashAlg: TPM_ALG.SHA256, digest: new Uint8Array(32).fill(7) }),
  fc.constant({ sigAlg: TPM_ALG.NULL }),
);
const nvPublic: fc.Arbitrary<TpmsNvPublic> = fc.record({
  nvIndex: u32,
  nameAlg: hashAlg,
  attributes: u32,
  authPolicy: bytes(64),
  dataSize: u16,
});

interface Codec<T> {
  name: string;
  arb: fc.Arbitrary<T>;
  write: (w: TpmWriter, v: T) => void;
  read: (r: TpmReader) => T;
}

const codecs: Codec<never>[] = [
  { name: 'TPMT_PUBLIC', arb: anyPublic, write: writeTpmtPublic, read: readTpmtPublic },
  { name: 'TPM2B_PUBLIC', arb: anyPublic, write: writeTpm2bPublic, read: readTpm2bPublic },
  { name: 'TPM2B_NV_PUBLIC', arb: nvPublic, write: writeNvPublic2b, read: readNvPublic2b },
  { name: 'TPML_PCR_SELECTION', arb: pcrSelection, write: writePcrSelection, read: readPcrSelection },
  { name: 'TPMS_ATTEST', arb: attest, write: writeAttest, read: readAttest },
  { name: 'TPMT_SIGNATURE', arb: signature, write: writeSignature, read: readSignature },
  {
    name: 'TPML_DIGEST',
    arb: fc.array(bytes(64), { maxLength: 8 }),
    write: writeDigestList,
    read: readDigestList,
  },
] as unknown as Codec<never>[];

function encode<T>(c: Codec<T>, v: T): Uint8Array {
  const w = new TpmWriter(8);
  c.write(w, v);
  return w.finish();
}

/** Structural equality that treats Uint8Array by content. */
function normalise(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(normalise);
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalise(x)]));
  return v;
}

for (const codec of codecs) {
  test(`${codec.name}: marshal -> unmarshal -> marshal is the identity`, (t) => {
    fc.assert(
      fc.property(codec.arb, (value) => {
        const encoded = encode(codec, value);
        const decoded = unmarshal(codec.read, encoded, codec.name);
        t.deepEqual(normalise(decoded), normalise(value));
        t.deepEqual(Buffer.from(encode(codec, decoded)), Buffer.from(encoded));
      }),
      { numRuns: 200 },
    );
  });

  test(`${codec.name}: random bytes and truncations raise only ERR_TPM_MALFORMED`, (t) => {
    const onlyTyped = (input: Uint8Array) => {
      try {
        unmarshal(codec.read, input, codec.name);
      } catch (error) {
        if (!(error instanceof MalformedDataError && error.code === 'ERR_TPM_MALFORMED')) throw error;
      }
    };
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (input) => onlyTyped(input)),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(codec.arb, fc.nat(), (value, cut) => {
        const encoded = encode(codec, value);
        if (encoded.length === 0) return;
        const prefix = encoded.subarray(0, cut % encoded.length);
        const isOther = codec.name === 'TPMS_ATTEST' && 'attested' in (value as TpmsAttest);
        if (isOther) return onlyTyped(prefix);
        t.throws(() => unmarshal(codec.read, prefix, codec.name), {
          instanceOf: MalformedDataError,
          code: 'ERR_TPM_MALFORMED',
        });
      }),
      { numRuns: 300 },
    );
    t.pass();
  });
}

test('a template marshals like the TPM spec example: RSA-2048 NULL scheme, exponent 0', (t) => {
  const w = new TpmWriter();
  writeTpmtPublic(w, rsaTemplate({ objectAttributes: 0x00020072 }));
  t.is(
    Buffer.from(w.finish()).toString('hex'),
    '0001000b00020072' + '0000' + '0010' + '0010' + '0800' + '00000000' + '0000',
  );
});

function frame(body: Uint8Array, tag = 0x8001): Uint8Array {
  const b = Buffer.alloc(10 + body.length);
  b.writeUInt16BE(tag, 0);
  b.writeUInt32BE(b.length, 2);
  b.set(body, 10);
  return b;
}

test('command response parsers on random bodies: only typed errors, never a crash or a hang', async (t) => {
  const commands: ((tpm: import('../../src/tpm/tpm.js').Tpm) => Promise<unknown>)[] = [
    (tpm) => readPublic(tpm, 0x81000003),
    (tpm) => nvReadPublic(tpm, 0x01400001),
    (tpm) => pcrRead(tpm, [{ hashAlg: TPM_ALG.SHA256, pcrs: [0] }]),
    (tpm) => getHandles(tpm, 0x80000000),
    (tpm) => getProperties(tpm, 0x100, 10),
    (tpm) => getPcrBanks(tpm),
    (tpm) => quote(tpm, { signHandle: 0x81000003, pcrs: [] }),
    (tpm) => certify(tpm, { objectHandle: 0x80000000, signHandle: 0x81000003 }),
    (tpm) => createPrimary(tpm, { hierarchy: TPM_RH.NULL, template: rsaTemplate({ objectAttributes: 0 }) }),
    (tpm) => startAuthSession(tpm),
  ];
  const { Tpm } = await import('../../src/tpm/tpm.js');
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: commands.length - 1 }),
      fc.uint8Array({ maxLength: 400 }),
      fc.constantFrom(0x8001, 0x8002),
      async (which, body, tag) => {
        const transport: TpmTransport = {
          // FlushContext after a CreatePrimary parse failure gets a well-formed success.
          transmit: async (cmd) =>
            Buffer.from(cmd).readUInt32BE(6) === 0x165 ? frame(new Uint8Array(0)) : frame(body, tag),
          close: async () => {},
        };
        try {
          await commands[which]!(new Tpm(transport));
        } catch (error) {
          if (!(error instanceof MalformedDataError && error.code === 'ERR_TPM_MALFORMED') && !(error instanceof TpmError)) throw error;
        }
      },
    ),
    { numRuns: 2000 },
  );
  t.pass();
});

test('TpmReader never reads past its end, TpmWriter grows as needed', (t) => {
  const r = new TpmReader(Uint8Array.from([0, 3, 1, 2]), 'x');
  t.throws(() => r.tpm2b('f'), {
    instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
    message: /f needs 3 bytes at offset 2, 2 left/,
  });
  const w = new TpmWriter(1);
  for (let i = 0; i < 1000; i++)
    w.u32(i)
      .u16(i)
      .u8(i & 0xff)
      .u64(BigInt(i));
  t.is(w.length, 15_000);
  const back = new TpmReader(w.finish());
  for (let i = 0; i < 1000; i++) {
    t.is(back.u32(), i);
    back.u16();
    back.u8();
    t.is(back.u64(), BigInt(i));
  }
  back.expectEnd();
});
