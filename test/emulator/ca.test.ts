import { X509Certificate } from 'node:crypto';
import { createServer, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import { EMULATOR_ORGANIZATION, EmulatorCa } from '../../src/emulator/ca.js';
import { EmulatorError } from '../../src/emulator/errors.js';

test('every certificate is marked as an emulator certificate and chains to the CA', async (t) => {
  const ca = await EmulatorCa.create();
  const root = new X509Certificate(ca.certPem);
  t.true(root.subject.includes(`O=${EMULATOR_ORGANIZATION}`));
  t.true(root.ca);
  const server = await ca.issueServerCertificate({ dnsNames: ['vault.emulator.test'] });
  const leaf = new X509Certificate(server.certPem);
  t.true(leaf.subject.includes(`O=${EMULATOR_ORGANIZATION}`));
  t.false(leaf.ca);
  t.true(leaf.checkIssued(root) && leaf.verify(root.publicKey));
  t.truthy(leaf.checkHost('localhost'));
  t.truthy(leaf.checkHost('vault.emulator.test'));
  t.truthy(leaf.checkIP('127.0.0.1'));
  t.truthy(leaf.checkIP('::1'));
  for (const keyType of ['rsa', 'ec'] as const) {
    const signer = await ca.issueSigningCertificate({ commonName: 'test signer', keyType });
    const cert = new X509Certificate(Buffer.from(signer.x5c[0]!, 'base64'));
    t.true(cert.subject.includes('cvm-skr emulator test signer'));
    t.true(cert.verify(root.publicKey));
    t.is(signer.x5c[1], ca.certDer.toString('base64'));
    t.is(signer.privateKey.asymmetricKeyType, keyType);
  }
});

test('a saved CA loads back and keeps issuing certificates clients already trust', async (t) => {
  const ca = await EmulatorCa.create();
  const loaded = await EmulatorCa.load(ca.toJSON());
  t.is(loaded.certPem, ca.certPem);
  const tls = await loaded.issueServerCertificate();
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (_req, res) => res.end('ok'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(
      `https://127.0.0.1:${(server.address() as AddressInfo).port}/`,
      { ca: ca.certPem },
      (res) => {
        let out = '';
        res.on('data', (c) => {
          out += c;
        });
        res.on('end', () => resolve(out));
      },
    );
    req.on('error', reject);
    req.end();
  });
  t.is(body, 'ok');
});

test('loading something that is not an emulator CA fails with EmulatorError', async (t) => {
  const ca = await EmulatorCa.create();
  await t.throwsAsync(EmulatorCa.load({ certPem: 'junk', keyPem: ca.toJSON().keyPem }), {
    instanceOf: EmulatorError,
  });
  await t.throwsAsync(EmulatorCa.load({ certPem: ca.certPem, keyPem: 'junk' }), {
    instanceOf: EmulatorError,
  });
});
