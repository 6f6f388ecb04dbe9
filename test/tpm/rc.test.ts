import test from 'ava';
import { MalformedDataError, TpmError, TpmPolicyError } from '../../src/errors.js';
import type { TpmTransport } from '../../src/hal/types.js';
import { getRandom } from '../../src/tpm/commands/capability.js';
import { decodeRc, tpmErrorFor } from '../../src/tpm/rc.js';
import { Tpm } from '../../src/tpm/tpm.js';

test('decodeRc: format-1 handle, parameter and session indices; warnings; format-0 names', (t) => {
  t.like(decodeRc(0x18b), { rcName: 'TPM_RC_HANDLE', baseRc: 0x8b, handleIndex: 1, warning: false });
  t.like(decodeRc(0x28b), { rcName: 'TPM_RC_HANDLE', handleIndex: 2 });
  t.like(decodeRc(0x1c4), { rcName: 'TPM_RC_VALUE', parameterIndex: 1 });
  t.like(decodeRc(0x5d5), { rcName: 'TPM_RC_SIZE', parameterIndex: 5 });
  t.like(decodeRc(0x99d), { rcName: 'TPM_RC_POLICY_FAIL', sessionIndex: 1 });
  t.like(decodeRc(0x98e), { rcName: 'TPM_RC_AUTH_FAIL', sessionIndex: 1 });
  t.like(decodeRc(0x922), { rcName: 'TPM_RC_RETRY', warning: true });
  t.like(decodeRc(0x908), { rcName: 'TPM_RC_YIELDED', warning: true });
  t.like(decodeRc(0x90a), { rcName: 'TPM_RC_TESTING', warning: true });
  t.like(decodeRc(0x902), { rcName: 'TPM_RC_OBJECT_MEMORY', warning: true });
  t.like(decodeRc(0x14c), { rcName: 'TPM_RC_NV_DEFINED', warning: false });
  t.like(decodeRc(0x128), { rcName: 'TPM_RC_PCR_CHANGED' });
  t.like(decodeRc(0x01e), { rcName: 'TPM_RC_BAD_TAG' });
  t.like(decodeRc(0x0b0143), { rcName: 'TPM_RC_LAYER11_COMMAND_CODE' });
  t.is(decodeRc(0x18b).parameterIndex, undefined);
  t.is(decodeRc(0x08b).handleIndex, undefined, 'index 0 means unspecified');
});

test('tpmErrorFor: policy failures are TpmPolicyError, others TpmError with code ERR_TPM_RC', (t) => {
  const policy = tpmErrorFor(0x99d, 'TPM2_RSA_Decrypt');
  t.true(policy instanceof TpmPolicyError);
  t.is(policy.code, 'ERR_TPM_POLICY');
  t.true(tpmErrorFor(0x128, 'TPM2_RSA_Decrypt') instanceof TpmPolicyError);
  const handle = tpmErrorFor(0x28b, 'TPM2_NV_Read');
  t.false(handle instanceof TpmPolicyError);
  t.is(handle.code, 'ERR_TPM_RC');
  t.regex(handle.message, /TPM2_NV_Read failed with TPM_RC_HANDLE \(0x28b\) \(handle 2\)/);
});

function frame(rc: number, body: number[] = []): Uint8Array {
  const b = Buffer.alloc(10 + body.length);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(b.length, 2);
  b.writeUInt32BE(rc, 6);
  Buffer.from(body).copy(b, 10);
  return b;
}

function scripted(responses: Uint8Array[]): TpmTransport & { calls: number } {
  const transport = {
    calls: 0,
    async transmit(): Promise<Uint8Array> {
      const r = responses[Math.min(transport.calls, responses.length - 1)]!;
      transport.calls++;
      return r;
    },
    async close() {},
  };
  return transport;
}

test('TPM_RC_RETRY, YIELDED and TESTING are retried with backoff; the answer after them is used', async (t) => {
  const transport = scripted([frame(0x922), frame(0x908), frame(0x90a), frame(0, [0, 2, 0xaa, 0xbb])]);
  const bytes = await getRandom(new Tpm(transport, { initialDelayMs: 1 }), 2);
  t.deepEqual(Buffer.from(bytes), Buffer.from([0xaa, 0xbb]));
  t.is(transport.calls, 4);
});

test('retries are bounded: a TPM that keeps answering RETRY ends in a TpmError', async (t) => {
  const transport = scripted([frame(0x922)]);
  const error = await t.throwsAsync(getRandom(new Tpm(transport, { attempts: 5, initialDelayMs: 1 }), 2), {
    instanceOf: TpmError,
  });
  t.is(error?.rcName, 'TPM_RC_RETRY');
  t.true(error?.warning);
  t.is(transport.calls, 5);
});

test('other warnings and errors are not retried', async (t) => {
  const transport = scripted([frame(0x902)]);
  await t.throwsAsync(getRandom(new Tpm(transport), 2), { instanceOf: TpmError, message: /OBJECT_MEMORY/ });
  t.is(transport.calls, 1);
});

test('malformed responses: wrong size, truncated parameters, trailing bytes, bad tag', async (t) => {
  const wrongSize = Buffer.from(frame(0, [0, 1, 0xaa]));
  wrongSize.writeUInt32BE(99, 2);
  await t.throwsAsync(getRandom(new Tpm(scripted([wrongSize])), 1), {
    instanceOf: MalformedDataError,
    code: 'ERR_TPM_MALFORMED',
  });
  await t.throwsAsync(getRandom(new Tpm(scripted([frame(0, [0, 5, 1])])), 5), {
    instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
  });
  await t.throwsAsync(getRandom(new Tpm(scripted([frame(0, [0, 1, 1, 9])])), 1), {
    instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
  });
  await t.throwsAsync(getRandom(new Tpm(scripted([frame(0, [0, 2, 1, 2])])), 1), {
    instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
    message: /2 bytes for 1 requested/,
  });
  const badTag = Buffer.from(frame(0, [0, 1, 1]));
  badTag.writeUInt16BE(0x1234, 0);
  await t.throwsAsync(getRandom(new Tpm(scripted([badTag])), 1), {
    instanceOf: MalformedDataError,
    code: 'ERR_TPM_MALFORMED',
  });
  await t.throwsAsync(getRandom(new Tpm(scripted([new Uint8Array(3)])), 1), {
    instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
  });
});

test('a created handle whose response cannot be parsed is flushed, not leaked', async (t) => {
  const { createPrimary } = await import('../../src/tpm/commands/object.js');
  const { startAuthSession } = await import('../../src/tpm/commands/policy.js');
  const { rsaTemplate } = await import('../../src/tpm/structures.js');
  const flushed: number[] = [];
  const answer = (body: number[], tag = 0x8001) => {
    const f = Buffer.from(frame(0, body));
    f.writeUInt16BE(tag, 0);
    return f;
  };
  const transport: TpmTransport = {
    async transmit(cmd) {
      const c = Buffer.from(cmd);
      const cc = c.readUInt32BE(6);
      if (cc === 0x165) {
        flushed.push(c.readUInt32BE(10));
        return frame(0);
      }
      // CreatePrimary: a handle, then a session area that is cut short. StartAuthSession: handle, bad nonce.
      if (cc === 0x131) return answer([0x80, 0, 0, 1, 0, 0, 0, 9, 1, 2], 0x8002);
      return answer([0x03, 0, 0, 7, 0, 40, 1]);
    },
    async close() {},
  };
  const tpm = new Tpm(transport);
  await t.throwsAsync(
    createPrimary(tpm, { hierarchy: 0x40000007, template: rsaTemplate({ objectAttributes: 0 }) }),
    {
      instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED',
    },
  );
  await t.throwsAsync(startAuthSession(tpm), { instanceOf: MalformedDataError, code: 'ERR_TPM_MALFORMED' });
  t.deepEqual(flushed, [0x80000001, 0x03000007]);
});
