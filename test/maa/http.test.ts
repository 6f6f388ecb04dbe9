/**
 * Each attestation request has its own bound for the whole exchange, not only an idle timeout: a server
 * that keeps sending a byte now and then must not hold the call open. (Local property of this client; no
 * service artifact applies.)
 */
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { EmulatorCa } from '../../src/emulator/ca.js';
import { AttestationRequestError } from '../../src/errors.js';
import { httpsRequest } from '../../src/maa/http.js';

test('an attestation endpoint that trickles its answer fails at the per-request timeout', async (t) => {
  t.timeout(60_000, 'without a whole-exchange bound the request never ends');
  const ca = await EmulatorCa.create();
  const tls = await ca.issueServerCertificate();
  const timers = new Set<NodeJS.Timeout>();
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{');
    // One byte every 20 ms, forever: never idle for the request's idle timeout.
    const timer = setInterval(() => res.write(' '), 20);
    timers.add(timer);
    res.on('close', () => clearInterval(timer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const timer of timers) clearInterval(timer);
    server.closeAllConnections();
    server.close();
  });
  const url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  const error = await t.throwsAsync(httpsRequest(url, { method: 'GET', ca: ca.certPem, timeoutMs: 300 }), {
    instanceOf: AttestationRequestError,
  });
  t.regex(error!.message, /no complete answer from 127\.0\.0\.1:\d+ within 300 ms/);
});
