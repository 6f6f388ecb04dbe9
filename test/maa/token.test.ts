import { X509Certificate } from 'node:crypto';
import { type AddressInfo, createServer } from 'node:net';
import test from 'ava';
import { decodeProtectedHeader, SignJWT } from 'jose';
import { EmulatedSevGuestPlatform } from '../../src/emulator/hardware/emulated-sev-guest.js';
import { AttestationTokenError, InvalidArgumentError } from '../../src/errors.js';
import { AttestationClient, attest } from '../../src/maa/client.js';
import { AttestationTokenVerifier } from '../../src/maa/token.js';
import { hardware, maa } from '../helpers/emulated-hardware.js';

/** What `t.throwsAsync` expects of a token refused for `code`. */
const refusal = (code: AttestationTokenError['code']) => ({ instanceOf: AttestationTokenError, code });

const { amd, akCa } = await hardware();
const platform = await EmulatedSevGuestPlatform.create({ amd });

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const parts = (token: string) => token.split('.') as [string, string, string];

async function tokenFrom(t: Parameters<typeof maa>[0], options: Parameters<typeof maa>[1] = {}) {
  const server = await maa(t, { amd, akCa, ...options });
  const verifier = new AttestationTokenVerifier({ endpoint: server.url, ca: server.caPem });
  const client = new AttestationClient({ endpoint: server.url, ca: server.caPem });
  const { token } = await client.attest(platform);
  return { server, verifier, token };
}

test('a genuine token verifies and its claims come back', async (t) => {
  const { server, verifier, token } = await tokenFrom(t);
  const claims = await verifier.verify(token);
  t.is(claims.iss, server.url);
  t.is(claims['x-ms-attestation-type'], 'sevsnpvm');
});

test('a changed signature or payload is rejected (signature)', async (t) => {
  const { verifier, token } = await tokenFrom(t);
  const [h, p, s] = parts(token);
  const sig = Buffer.from(s, 'base64url');
  sig[10] = (sig[10] ?? 0) ^ 0xff;
  await t.throwsAsync(verifier.verify(`${h}.${p}.${sig.toString('base64url')}`), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_SIGNATURE',
  });
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  claims['x-ms-sevsnpvm-is-debuggable'] = false;
  claims['x-ms-compliance-status'] = 'azure-compliant-uvm';
  claims['x-ms-sevsnpvm-vmpl'] = 1;
  await t.throwsAsync(verifier.verify(`${h}.${b64(claims)}.${s}`), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_SIGNATURE',
  });
});

test('a token whose iss is not the configured endpoint is rejected (issuer)', async (t) => {
  // Same host (so jku and keys pass), another issuer: another attestation provider path on that host.
  const port = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const server = await maa(t, { amd, akCa, port, issuer: `https://127.0.0.1:${port}/other-provider` });
  const error = await t.throwsAsync(attest(platform, { endpoint: server.url, ca: server.caPem }), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_ISSUER',
  });
  t.regex(error?.message ?? '', /issuer/);
});

test('expired and not-yet-valid tokens are rejected beyond the skew (exp, nbf)', async (t) => {
  const { server, token } = await tokenFrom(t, { tokenLifetimeSeconds: 300 });
  const at = (ms: number) =>
    new AttestationTokenVerifier({
      endpoint: server.url,
      ca: server.caPem,
      now: () => new Date(Date.now() + ms),
    });
  await t.notThrowsAsync(at(300_000 + 30_000).verify(token), 'within the 60 s skew');
  await t.throwsAsync(at(300_000 + 120_000).verify(token), {
    ...refusal('ERR_ATTESTATION_TOKEN_EXPIRED'),
    message: /has expired by this client's clock: check .*`clock` option/,
  });
  await t.throwsAsync(at(-120_000).verify(token), {
    ...refusal('ERR_ATTESTATION_TOKEN_EXPIRED'),
    message: /not valid yet \(nbf\) by this client's clock/,
  });
});

test('a kid the configured host does not serve is rejected after exactly one refetch', async (t) => {
  const a = await tokenFrom(t);
  const b = await tokenFrom(t);
  t.not(decodeProtectedHeader(a.token).kid, decodeProtectedHeader(b.token).kid);
  await a.verifier.verify(a.token);
  const before = a.server.counters.keyRequests;
  // B's token pretending to come from A: A's jku, B's kid.
  const [, p, s] = parts(b.token);
  const header = { ...decodeProtectedHeader(b.token), jku: `${a.server.url}/certs` };
  await t.throwsAsync(a.verifier.verify(`${b64(header)}.${p}.${s}`), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_KEY',
  });
  t.is(a.server.counters.keyRequests - before, 2, 'one refetch: OpenID metadata + JWKS');
});

test('a jku on another host is refused before any key is fetched from it', async (t) => {
  const a = await tokenFrom(t);
  const b = await tokenFrom(t);
  const [, p, s] = parts(a.token);
  const header = { ...decodeProtectedHeader(a.token), jku: `${b.server.url}/certs` };
  const keyFetchesAtB = b.server.counters.keyRequests;
  await t.throwsAsync(a.verifier.verify(`${b64(header)}.${p}.${s}`), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_KEY',
  });
  t.is(b.server.counters.keyRequests, keyFetchesAtB);
});

test('alg none and HS256 (keyed with the public certificate) are refused', async (t) => {
  const { server, verifier, token } = await tokenFrom(t);
  const [, p] = parts(token);
  const header = decodeProtectedHeader(token);
  await t.throwsAsync(verifier.verify(`${b64({ ...header, alg: 'none' })}.${p}.`), {
    instanceOf: AttestationTokenError,
    code: 'ERR_ATTESTATION_TOKEN_ALGORITHM',
  });
  const cert = new X509Certificate(server.signingCertificatePem);
  const secret = new Uint8Array(cert.publicKey.export({ format: 'der', type: 'spki' }));
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
  const hs = await new SignJWT(claims).setProtectedHeader({ ...header, alg: 'HS256' }).sign(secret);
  await t.throwsAsync(verifier.verify(hs), refusal('ERR_ATTESTATION_TOKEN_ALGORITHM'));
});

test('garbage is malformed; an http endpoint is refused outright', async (t) => {
  const { verifier } = await tokenFrom(t);
  await t.throwsAsync(verifier.verify('not-a-token'), refusal('ERR_ATTESTATION_TOKEN_MALFORMED'));
  await t.throwsAsync(verifier.verify('e30.e30.'), refusal('ERR_ATTESTATION_TOKEN_ALGORITHM'));
  t.throws(() => new AttestationTokenVerifier({ endpoint: 'http://127.0.0.1:1' }), {
    instanceOf: InvalidArgumentError,
  });
});
