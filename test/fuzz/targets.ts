/**
 * Fuzz targets: every parser of untrusted bytes, each fed random input and mutations of real captures. The
 * property is the same everywhere: the parser returns, or throws a `CvmSkrError` (a typed error); anything
 * else (TypeError, RangeError, a hang) is a finding.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { CvmSkrError } from '../../src/errors.js';
import type { TpmTransport } from '../../src/hal/types.js';
import { parseHclReport } from '../../src/hcl/report.js';
import { parseHclRuntimeData } from '../../src/hcl/runtime-data.js';
import { encryptForTransferKey } from '../../src/emulator/maa/server.js';
import { InMemoryTransferKey } from '../../src/hal/memory-transfer-key.js';
import { parseReleasePolicy } from '../../src/keyvault/release-policy.js';
import { parseReleasePayload } from '../../src/keyvault/release-response.js';
import { openAzureGuestToken } from '../../src/maa/response.js';
import { unwrapReleasedKey } from '../../src/keyvault/unwrap.js';
import { parseDuration } from '../../src/rotation/duration.js';
import { parseEnvelope, parseEnvelopeHeader } from '../../src/rotation/envelope.js';
import { parseRotationPolicy } from '../../src/rotation/policy.js';
import { parseCertTable } from '../../src/snp/cert-table.js';
import { parseSnpReport } from '../../src/snp/report.js';
import { getProperties, nvReadPublic, pcrRead, readPublic } from '../../src/tpm/index.js';
import { parseAttest, parseSignature } from '../../src/tpm/structures.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { parseEventLog, replaySha256, secureBootState } from '../../src/tpm/event-log.js';
import { emulatedBoot } from '../../src/emulator/hardware/tcg-log.js';
import { memoryTransferKey } from '../helpers/transfer-key.js';

const fixture = (path: string) =>
  new Uint8Array(readFileSync(new URL(`../fixtures/${path}`, import.meta.url)));

/** Random bytes, and mutations of a seed: bit flips, truncation, extension, and random splices. */
export function bytesAround(seeds: Uint8Array[], maxLength = 4096): fc.Arbitrary<Uint8Array> {
  const random = fc.uint8Array({ maxLength });
  if (seeds.length === 0) return random;
  const seed = fc.constantFrom(...seeds);
  const flipped = fc
    .tuple(seed, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 7 })), { minLength: 1, maxLength: 8 }))
    .map(([s, flips]) => {
      const out = Uint8Array.from(s);
      for (const [at, bit] of flips) out[at % out.length]! ^= 1 << bit;
      return out;
    });
  const truncated = fc.tuple(seed, fc.nat()).map(([s, n]) => s.subarray(0, n % (s.length + 1)));
  const extended = fc.tuple(seed, fc.uint8Array({ minLength: 1, maxLength: 64 })).map(([s, tail]) => {
    const out = new Uint8Array(s.length + tail.length);
    out.set(s);
    out.set(tail, s.length);
    return out;
  });
  const spliced = fc
    .tuple(seed, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 32 }))
    .map(([s, at, patch]) => {
      const out = Uint8Array.from(s);
      out.set(patch.subarray(0, Math.max(0, out.length - (at % out.length))), at % out.length);
      return out;
    });
  return fc.oneof({ weight: 1, arbitrary: random }, flipped, truncated, extended, spliced);
}

/** JSON values shaped like the documents a parser expects, and arbitrary ones. */
function jsonAround(seeds: unknown[]): fc.Arbitrary<unknown> {
  const mutate = (value: unknown, key: string, replacement: unknown): unknown => {
    if (Array.isArray(value))
      return value.map((v, i) => (i === 0 ? replacement : mutate(v, key, replacement)));
    if (value && typeof value === 'object') {
      const entries = Object.entries(value as Record<string, unknown>);
      return Object.fromEntries(
        entries.map(([k, v]) => [k, k === key ? replacement : mutate(v, key, replacement)]),
      );
    }
    return value;
  };
  const keys = new Set<string>();
  const collect = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(collect);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        keys.add(k);
        collect(x);
      }
    }
  };
  seeds.forEach(collect);
  const mutated = fc
    .tuple(fc.constantFrom(...seeds), fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 3 }))
    .map(([seed, key, replacement]) => mutate(seed, key, replacement));
  return fc.oneof(fc.jsonValue({ maxDepth: 4 }), mutated, fc.constantFrom(...seeds));
}

/** A transport that answers every command with the given bytes. */
function answering(response: Uint8Array): TpmTransport {
  return { transmit: async () => response, close: async () => {} };
}

/** TPM responses: a success header of the right or a wrong size over random parameter bytes. */
const tpmResponse = fc
  .tuple(
    fc.uint8Array({ maxLength: 600 }),
    fc.boolean(),
    fc.constantFrom(0x8001, 0x8002),
    fc.integer({ min: -4, max: 4 }),
  )
  .map(([body, goodSize, tag, skew]) => {
    const out = new Uint8Array(10 + body.length);
    const view = new DataView(out.buffer);
    view.setUint16(0, tag);
    view.setUint32(2, goodSize ? out.length : Math.max(0, out.length + skew));
    view.setUint32(6, 0);
    out.set(body, 10);
    return out;
  });

export interface FuzzTarget {
  name: string;
  arbitrary: fc.Arbitrary<unknown>;
  run(input: unknown): unknown;
}

const quote = JSON.parse(
  readFileSync(new URL('../fixtures/azure-vtpm/milan/tpm-quote.json', import.meta.url), 'utf8'),
);
const hcl = fixture('azure-vtpm/milan/hcl-report.bin');
const transferKey = memoryTransferKey();
const examplePolicy = {
  version: '1.0.0',
  anyOf: [
    {
      authority: 'https://sharedeus.eus.attest.azure.net',
      allOf: [
        { claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' },
        { claim: 'x-ms-isolation-tee.x-ms-compliance-status', equals: 'azure-compliant-cvm' },
        {
          anyOf: [
            { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 2 },
            { claim: 'x', exists: true },
          ],
        },
      ],
    },
  ],
};
// The AzureGuest answer is sealed to the transfer key with RSAES-PKCS1-v1_5, which the in-memory key supports.
const guestKey = InMemoryTransferKey.generate('TpmEphemeralEncryptionKey');
const sealedToken = encryptForTransferKey('eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln', guestKey.publicKey);
const sealedEnvelope = JSON.parse(Buffer.from(sealedToken, 'base64url').toString('utf8')) as unknown;
const rotationPolicy = {
  lifetimeActions: [
    { trigger: { timeAfterCreate: 'P18M' }, action: { type: 'Rotate' } },
    { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } },
  ],
  attributes: { expiryTime: 'P2Y' },
};
const releasePayload = {
  request: { 'api-version': '7.4', enc: 'RSA_AES_KEY_WRAP_256', kid: 'https://v.vault.azure.net/keys/k' },
  response: {
    key: {
      key: {
        kid: 'https://v.vault.azure.net/keys/k/1',
        kty: 'oct-HSM',
        key_ops: ['encrypt'],
        key_hsm: 'e30',
      },
      attributes: { enabled: true, exportable: true },
      release_policy: { data: 'e30' },
    },
  },
};
const keyHsm = {
  schema_version: '1.0',
  header: { kid: transferKey.jwk.kid, alg: 'dir', enc: 'RSA_AES_KEY_WRAP_256' },
  ciphertext: Buffer.alloc(300, 1).toString('base64url'),
};

/** A well-formed format-1 envelope (AES-KWP wrapping), as the seed for envelope mutations. */
function envelopeSeed(): Uint8Array {
  const kid = Buffer.from('https://v.vault.azure.net/keys/data/0123456789abcdef');
  const wrapped = Buffer.alloc(40, 7);
  const head = Buffer.from([0x43, 0x53, 0x4b, 0x45, 1, 1, 1, 0]);
  const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
  return new Uint8Array(
    Buffer.concat([
      head,
      u16(kid.length),
      kid,
      u16(wrapped.length),
      wrapped,
      Buffer.alloc(12, 1),
      Buffer.alloc(20, 2),
      Buffer.alloc(16, 3),
    ]),
  );
}

export const targets: FuzzTarget[] = [
  {
    name: 'snp-report',
    arbitrary: bytesAround(
      [
        fixture('snp/aci-milan/report.bin'),
        fixture('snp/milan-debug/report.bin'),
        hcl.subarray(0x20, 0x20 + 1184),
      ],
      1400,
    ),
    run: (input) => parseSnpReport(input as Uint8Array),
  },
  {
    // No real log is in the fixtures; the seeds are the emulated vTPM's logs (src/emulator/hardware/tcg-log.ts).
    name: 'tcg-event-log',
    arbitrary: bytesAround([emulatedBoot([]).tcgLog, emulatedBoot([], { secureBoot: false }).tcgLog], 4096),
    run: (input) => {
      const log = parseEventLog(input as Uint8Array);
      replaySha256(log);
      return secureBootState(log);
    },
  },
  {
    name: 'hcl-report',
    arbitrary: bytesAround([hcl], 3000),
    run: (input) => parseHclReport(input as Uint8Array),
  },
  {
    name: 'hcl-runtime-data',
    arbitrary: bytesAround([hcl.subarray(0x4d4, 0x4d4 + 1110)], 1400),
    run: (input) => parseHclRuntimeData(input as Uint8Array),
  },
  {
    name: 'snp-cert-table',
    arbitrary: bytesAround([], 512),
    run: (input) => parseCertTable(input as Uint8Array),
  },
  {
    name: 'tpms-attest',
    arbitrary: bytesAround([Buffer.from(quote.message, 'hex')], 800),
    run: (input) => parseAttest(input as Uint8Array),
  },
  {
    name: 'tpmt-signature',
    arbitrary: bytesAround(
      [Uint8Array.from([0, 0x14, 0, 0x0b, 1, 0, ...Buffer.from(quote.signature, 'hex')])],
      600,
    ),
    run: (input) => parseSignature(input as Uint8Array),
  },
  {
    name: 'tpm-responses',
    arbitrary: tpmResponse,
    run: async (input) => {
      const tpm = new Tpm(answering(input as Uint8Array), { attempts: 2, initialDelayMs: 0 });
      for (const call of [
        () => readPublic(tpm, 0x81000003),
        () => nvReadPublic(tpm, 0x01400001),
        () => pcrRead(tpm, [{ hashAlg: 0x0b, pcrs: [0, 1, 2] }]),
        () => getProperties(tpm, 0x100, 8),
      ]) {
        try {
          await call();
        } catch (error) {
          if (!(error instanceof CvmSkrError)) throw error;
        }
      }
    },
  },
  {
    name: 'release-payload',
    arbitrary: fc.oneof(
      jsonAround([releasePayload]).map((v) => new Uint8Array(Buffer.from(JSON.stringify(v) ?? 'null'))),
      bytesAround([new Uint8Array(Buffer.from(JSON.stringify(releasePayload)))], 800),
    ),
    run: (input) => parseReleasePayload(input as Uint8Array),
  },
  {
    name: 'key-hsm',
    arbitrary: fc.oneof(
      jsonAround([keyHsm]).map((v) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url')),
      fc.string({ maxLength: 600 }),
    ),
    run: (input) =>
      unwrapReleasedKey(
        { kid: 'k', kty: 'oct-HSM', key_hsm: input as string },
        { transferKey, enc: 'RSA_AES_KEY_WRAP_256' },
      ),
  },
  {
    name: 'maa-azureguest-token',
    arbitrary: fc.oneof(
      jsonAround([sealedEnvelope]).map((v) => Buffer.from(JSON.stringify(v) ?? 'null').toString('base64url')),
      bytesAround([new Uint8Array(Buffer.from(JSON.stringify(sealedEnvelope)))], 1200).map((b) =>
        Buffer.from(b).toString('base64url'),
      ),
      fc.constantFrom(sealedToken),
      fc.string({ maxLength: 600 }),
    ),
    run: (input) => openAzureGuestToken(input as string, guestKey),
  },
  {
    name: 'release-policy',
    arbitrary: fc.oneof(jsonAround([examplePolicy]), fc.string({ maxLength: 300 })),
    run: (input) => parseReleasePolicy(typeof input === 'string' ? input : (JSON.stringify(input) ?? 'null')),
  },
  {
    name: 'rotation-policy',
    arbitrary: jsonAround([rotationPolicy]),
    run: (input) => parseRotationPolicy(input),
  },
  {
    name: 'iso-duration',
    arbitrary: fc.oneof(
      fc.string({ maxLength: 30 }),
      fc.stringMatching(
        /^P(\d{1,12}Y)?(\d{1,12}M)?(\d{1,12}W)?(\d{1,12}D)?(T(\d{1,12}H)?(\d{1,12}M)?(\d{1,12}S)?)?$/,
      ),
    ),
    run: (input) => parseDuration(input as string),
  },
  {
    name: 'envelope',
    arbitrary: bytesAround([envelopeSeed()], 400),
    run: (input) => {
      parseEnvelopeHeader(input as Uint8Array);
      return parseEnvelope(input as Uint8Array);
    },
  },
];

/** Runs a target on one input; resolves when the outcome is acceptable, rejects with the finding otherwise. */
export async function checkOne(target: FuzzTarget, input: unknown): Promise<void> {
  try {
    await target.run(input);
  } catch (error) {
    if (error instanceof CvmSkrError) return;
    throw error;
  }
}
