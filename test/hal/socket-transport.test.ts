import { DeviceNotFoundError, TpmCommandRejectedError, TransportClosedError } from '../../src/errors.js';
import { SocketTpmTransport } from '../../src/hal/socket-transport.js';
import { startSwtpm, swtpmTest } from '../helpers/swtpm.js';

// TPM2_GetRandom(16): tag NO_SESSIONS, size 12, code 0x17B, bytesRequested 16.
const getRandom16 = Uint8Array.from([0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16]);

swtpmTest('TCP transport: GetRandom round trip against swtpm', async (t) => {
  const tpm = await startSwtpm({ tcp: true });
  t.teardown(tpm.stop);
  const transport = await SocketTpmTransport.connect({ tcp: tpm.tcp! });
  t.teardown(() => transport.close());
  const response = await transport.transmit(getRandom16);
  t.is(response.length, 10 + 2 + 16);
  t.is(Buffer.from(response).readUInt32BE(6), 0, 'TPM_RC_SUCCESS');
  t.is(Buffer.from(response).readUInt16BE(10), 16);
});

swtpmTest('Unix socket transport: concurrent commands are answered one by one', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await SocketTpmTransport.connect({ socketPath: tpm.socketPath });
  t.teardown(() => transport.close());
  const responses = await Promise.all(Array.from({ length: 64 }, () => transport.transmit(getRandom16)));
  for (const r of responses) {
    t.is(r.length, 28);
    t.is(Buffer.from(r).readUInt32BE(6), 0);
  }
  t.is(new Set(responses.map((r) => Buffer.from(r).toString('hex'))).size, 64, 'random bytes differ');
});

swtpmTest('socket transport: malformed command rejected, closed transport refuses, bad path is DeviceNotFound', async (t) => {
  const tpm = await startSwtpm();
  t.teardown(tpm.stop);
  const transport = await SocketTpmTransport.connect({ socketPath: tpm.socketPath });
  const bad = Uint8Array.from(getRandom16);
  bad[5] = 13;
  await t.throwsAsync(transport.transmit(bad), { instanceOf: TpmCommandRejectedError });
  await transport.close();
  await transport.close();
  await t.throwsAsync(transport.transmit(getRandom16), { instanceOf: TransportClosedError });
  const error = await t.throwsAsync(SocketTpmTransport.connect({ socketPath: `${tpm.dir}/missing.sock` }), {
    instanceOf: DeviceNotFoundError,
  });
  t.is(error?.systemCode, 'ENOENT');
});
