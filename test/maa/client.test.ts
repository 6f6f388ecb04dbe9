/**
 * AttestationClient: the token must be the one issued for this request (nonce echoed where the service puts
 * it) and must name the platform's transfer key as the key Key Vault wraps to.
 *
 * Where the nonce lands: AzureGuest echoes the ClientPayload under `x-ms-runtime.client-payload` (sample token
 * in Azure/confidential-computing-cvm-guest-attestation aks-linux-sample/README.md, commit 2b515e50dca7:
 * `"client-payload": {"nonce": "MTIzNA=="}`); SevSnpVm copies the request's `nonce` into the top-level `nonce`
 * claim (MicrosoftDocs/azure-security-docs articles/attestation/claim-sets.md, commit 0e19f847341f:
 * "Nonce claim (nonce) - An untransformed direct copy of an optional nonce value provided by a client").
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { decodeJwt, SignJWT } from 'jose';
import { EmulatorCa } from '../../src/emulator/ca.js';
import { EmulatedSevGuestPlatform } from '../../src/emulator/hardware/emulated-sev-guest.js';
import { EmulatedAzureVtpmPlatform } from '../../src/emulator/hardware/emulated-vtpm.js';
import { AttestationResponseError } from '../../src/errors.js';
import type { AttestationPlatform } from '../../src/hal/types.js';
import { AttestationClient } from '../../src/maa/client.js';
import { httpsRequest } from '../../src/maa/http.js';
import { buildSevSnpVmRequest } from '../../src/maa/requests.js';
import { hardware, maa } from '../helpers/emulated-hardware.js';
import { startFaultProxy } from '../helpers/fault-proxy.js';
import { memoryTransferKey } from '../helpers/transfer-key.js';

const { amd, akCa } = await hardware();

/** The emulated MAA behind a proxy that can record an answer and later replay it. */
async function replayingService(t: ExecutionContext) {
  const ca = await EmulatorCa.create();
  const proxy = await startFaultProxy(ca);
  t.teardown(() => proxy.close());
  const server = await maa(t, { amd, akCa, ca, issuer: proxy.url });
  proxy.target = server.url;
  let recorded: Buffer | undefined;
  let replay = false;
  proxy.plan = (r) =>
    r.path.startsWith('/attest/')
      ? {
          rewrite: (body) => {
            if (replay && recorded) return recorded;
            recorded = body;
            return body;
          },
        }
      : 'pass';
  const client = new AttestationClient({ endpoint: proxy.url, ca: ca.certPem });
  return { client, replayNext: () => (replay = true) };
}

const platforms: ['AzureGuest' | 'SevSnpVm', () => Promise<AttestationPlatform>][] = [
  ['AzureGuest', () => EmulatedAzureVtpmPlatform.create({ amd, akCa })],
  ['SevSnpVm', () => EmulatedSevGuestPlatform.create({ amd })],
];

for (const [protocol, open] of platforms) {
  test(`${protocol}: an older token for the same platform, replayed for a new nonce, is refused`, async (t) => {
    const platform = await open();
    t.teardown(() => platform.close());
    const { client, replayNext } = await replayingService(t);
    const first = await client.attest(platform, { nonce: randomBytes(32) });
    t.is(first.protocol, protocol);
    replayNext();
    const error = await t.throwsAsync(client.attest(platform, { nonce: randomBytes(32) }), {
      instanceOf: AttestationResponseError,
    });
    t.regex(error!.message, /nonce is not the one this request sent/);
  });

  test(`${protocol}: a token issued for this request's nonce is accepted`, async (t) => {
    const platform = await open();
    t.teardown(() => platform.close());
    const { client } = await replayingService(t);
    const nonce = randomBytes(32);
    const result = await client.attest(platform, { nonce });
    const claims = result.claims as Record<string, Record<string, Record<string, unknown>>>;
    if (protocol === 'AzureGuest')
      t.is(claims['x-ms-runtime']!['client-payload']!.nonce, nonce.toString('base64'));
    else t.is(result.claims.nonce, nonce.toString('base64url'));
  });
}

/**
 * A stand-in attestation service that signs whatever claims the test hands it (the nonce echoed), to check
 * the client's reading of `x-ms-runtime.keys` independently of the emulator.
 */
async function signingService(
  t: ExecutionContext,
  runtime: () => Record<string, unknown>,
  { echoNonce = true } = {},
) {
  const ca = await EmulatorCa.create();
  const [tls, signer] = await Promise.all([
    ca.issueServerCertificate(),
    ca.issueSigningCertificate({ commonName: 'test token signing' }),
  ]);
  let url = '';
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: unknown = { keys: [{ kid: signer.x5t, kty: 'RSA', x5c: signer.x5c }] };
    if (req.url?.startsWith('/attest/SevSnpVm')) {
      const request = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { nonce?: string };
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({
        ...(echoNonce ? { nonce: request.nonce } : {}),
        'x-ms-attestation-type': 'sevsnpvm',
        'x-ms-runtime': runtime(),
      })
        .setProtectedHeader({ alg: 'RS256', kid: signer.x5t, jku: `${url}/certs` })
        .setIssuer(url)
        .setIssuedAt(now)
        .setExpirationTime(now + 600)
        .sign(signer.privateKey);
      body = { token };
    } else if (!req.url?.startsWith('/certs')) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    handle(req, res).catch(() => res.writeHead(500).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return new AttestationClient({ endpoint: url, ca: ca.certPem });
}

function fakeSevGuest(transferKey = memoryTransferKey()): AttestationPlatform {
  return {
    kind: 'sev-guest',
    collectEvidence: async () => ({
      kind: 'sev-guest',
      report: new Uint8Array(1184),
      runtimeData: new Uint8Array(2),
      vcekCertChain: '',
    }),
    transferKey: async () => transferKey,
    close: async () => {},
  };
}

const rsaJwk = (key: ReturnType<typeof memoryTransferKey>, extra: Record<string, unknown> = {}) => ({
  kty: 'RSA',
  n: key.jwk.n,
  e: key.jwk.e,
  kid: 'k',
  key_ops: ['encrypt'],
  ...extra,
});

test('the transfer key must be the first encryption key of top-level x-ms-runtime.keys, not any key with its n', async (t) => {
  const mine = memoryTransferKey();
  const other = memoryTransferKey();
  const client = await signingService(t, () => ({ keys: [rsaJwk(other), rsaJwk(mine)] }));
  const error = await t.throwsAsync(client.attest(fakeSevGuest(mine), { nonce: randomBytes(8) }), {
    instanceOf: AttestationResponseError,
  });
  t.regex(error!.message, /first encryption key .* is not this platform's transfer key/);
});

test('keys that cannot encrypt are skipped; key_use "enc" counts; the exponent is compared as an integer', async (t) => {
  const mine = memoryTransferKey();
  const other = memoryTransferKey();
  const client = await signingService(t, () => ({
    keys: [
      rsaJwk(other, { key_ops: ['verify'] }),
      { kty: 'EC', crv: 'P-256', key_ops: ['encrypt'] },
      { ...rsaJwk(mine, { e: 'AAEAAQ' }), key_ops: undefined, key_use: 'enc' },
    ],
  }));
  const result = await client.attest(fakeSevGuest(mine), { nonce: randomBytes(8) });
  t.is(result.transferKey, mine);
});

test('the platform key only under x-ms-isolation-tee (not top level) does not count', async (t) => {
  const mine = memoryTransferKey();
  const client = await signingService(t, () => ({ 'vm-configuration': {}, keys: [] }));
  const error = await t.throwsAsync(client.attest(fakeSevGuest(mine), { nonce: randomBytes(8) }), {
    instanceOf: AttestationResponseError,
  });
  t.regex(error!.message, /no RSA encryption key in top-level x-ms-runtime.keys/);
});

test('a token that carries no nonce although one was sent is refused; without a nonce nothing is checked', async (t) => {
  const mine = memoryTransferKey();
  const client = await signingService(t, () => ({ keys: [rsaJwk(mine)] }), { echoNonce: false });
  const error = await t.throwsAsync(client.attest(fakeSevGuest(mine), { nonce: randomBytes(8) }), {
    instanceOf: AttestationResponseError,
  });
  t.regex(error!.message, /carries no nonce although one was sent/);
  t.is((await client.attest(fakeSevGuest(mine))).protocol, 'SevSnpVm');
});

test('the emulated SevSnpVm endpoint gives the request nonce back as a string: a text nonce as is, a number (as confidential-sidecar-containers sends it) as its decimal digits', async (t) => {
  // microsoft/confidential-sidecar-containers pkg/attest/maa.go (commit 322bc6b24837): `Nonce uint64 json:"nonce"`;
  // the service answers it as a string of digits (test/fixtures/maa-samples/sevsnpvm-aci-docs-sample.json).
  const server = await maa(t, { amd, akCa });
  const platform = await EmulatedSevGuestPlatform.create({ amd });
  t.teardown(() => platform.close());
  const evidence = await platform.collectEvidence();
  if (evidence.kind !== 'sev-guest') throw new Error('expected SNP guest evidence');
  for (const nonce of [123456789, 'AQID']) {
    const body = { ...buildSevSnpVmRequest(evidence), nonce };
    const res = await httpsRequest(new URL(`${server.url}/attest/SevSnpVm?api-version=2022-08-01`), {
      method: 'POST',
      body: JSON.stringify(body),
      ca: server.caPem,
    });
    const { token } = JSON.parse(res.body.toString()) as { token: string };
    t.is(decodeJwt(token).nonce, String(nonce));
  }
});

test("AzureGuest: the nonce goes in ClientPayload and the quote has empty qualifying data, as Microsoft's client sends it", async (t) => {
  // Azure/confidential-computing-cvm-guest-attestation @990f662,
  // client-library/src/Attestation/LinuxTpm/lib/Tss2Wrapper.cpp GetPCRQuote: `TPM2B_DATA inData = {0}`.
  const ca = await EmulatorCa.create();
  const server = await maa(t, { amd, akCa, ca });
  const inner = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
  const quoteNonces: (Uint8Array | undefined)[] = [];
  const platform: AttestationPlatform = {
    kind: inner.kind,
    collectEvidence: (options) => {
      quoteNonces.push(options?.nonce);
      return inner.collectEvidence(options);
    },
    transferKey: () => inner.transferKey(),
    close: () => inner.close(),
  };
  const client = new AttestationClient({ endpoint: server.url, ca: ca.certPem });
  const nonce = randomBytes(32);
  const plain = await client.attest(platform, { nonce });
  t.is(quoteNonces[0], undefined, 'no nonce reaches the quote');
  t.is(
    (plain.claims['x-ms-runtime'] as { 'client-payload'?: { nonce?: string } })['client-payload']?.nonce,
    nonce.toString('base64'),
  );
  await client.attest(platform, { nonce, nonceInQuote: true });
  t.deepEqual(quoteNonces[1], nonce, 'nonceInQuote puts it in the quote too');
});
