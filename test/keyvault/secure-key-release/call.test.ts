/**
 * `SecureKeyRelease.releaseKey`: wrong input, aborted signals, timeouts and use after close fail at once,
 * with their own codes, before any attestation starts, and leave no unhandled rejection behind.
 * Key id format: Microsoft Learn, "About keys, secrets, and certificates", Object identifiers
 * (https://learn.microsoft.com/en-us/azure/key-vault/about-keys-secrets-and-certificates). The rest is this
 * project's own contract: no service artifact applies.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test from 'ava';
import { AbortError, ClosedError, InvalidArgumentError } from '../../../src/errors.js';
import { SecureKeyRelease, type SecureKeyReleaseOptions } from '../../../src/keyvault/secure-key-release.js';
import { CountingPlatform } from '../../helpers/fake-platform.js';

const run = promisify(execFile);

function make(extra: Partial<SecureKeyReleaseOptions> = {}) {
  const platform = new CountingPlatform();
  const skr = new SecureKeyRelease({
    // Port 9 on loopback: nothing listens, so a request that does go out fails fast.
    attestationEndpoint: 'https://127.0.0.1:9',
    platform,
    retry: { maxRetries: 0 },
    ...extra,
  });
  return { skr, platform };
}

test('an already-aborted signal rejects with ERR_ABORTED before any evidence is collected', async (t) => {
  const { skr, platform } = make();
  t.teardown(() => skr.close());
  const error = await t.throwsAsync(
    skr.releaseKey('https://vault.example/keys/k', { signal: AbortSignal.abort() }),
    { instanceOf: AbortError },
  );
  t.is(error?.code, 'ERR_ABORTED');
  await new Promise((resolve) => setImmediate(resolve));
  t.is(platform.evidenceCalls, 0, 'no work started');
});

test('abortSignal (the Azure SDK name) works like signal', async (t) => {
  const { skr, platform } = make();
  t.teardown(() => skr.close());
  await t.throwsAsync(skr.releaseKey('https://vault.example/keys/k', { abortSignal: AbortSignal.abort() }), {
    instanceOf: AbortError,
  });
  t.is(platform.evidenceCalls, 0);
});

const badIds: [string, RegExp][] = [
  ['https://vault.example/secrets/k', /names a secret/],
  ['https://vault.example/keys/k?api-version=7.4', /query or fragment/],
  ['https://vault.example/keys/k#frag', /query or fragment/],
  ['https://vault.example/keys/k?', /query or fragment/],
  ['https://vault.example/keys/', /key names are/],
  ['https://vault.example/keys//0123', /key names are/],
  ['https://vault.example/keys/k/', /names no version/],
  ['https://vault.example/keys/k/v1/extra', /\/keys\/<name>\[\/<version>\]/],
  ['https://vault.example/keys/my_key', /key names are/],
  ['https://user:pw@vault.example/keys/k', /user name or password/],
  ['ftp://vault.example/keys/k', /not https/],
  ['vault.example/keys/k', /not a URL/],
];

for (const [id, why] of badIds) {
  test(`key id ${id} is refused with ERR_INVALID_ARGUMENT before attestation`, async (t) => {
    const { skr, platform } = make();
    t.teardown(() => skr.close());
    const error = await t.throwsAsync(skr.releaseKey(id), { instanceOf: InvalidArgumentError });
    t.is(error?.code, 'ERR_INVALID_ARGUMENT');
    t.regex(error!.message, why);
    t.is(platform.evidenceCalls, 0);
  });
}

test('a plain http key id is refused up front, naming the option that allows it', async (t) => {
  const { skr, platform } = make();
  t.teardown(() => skr.close());
  const error = await t.throwsAsync(skr.releaseKey('http://127.0.0.1:8080/keys/k'), {
    instanceOf: InvalidArgumentError,
  });
  t.regex(error!.message, /allowInsecureConnection/);
  t.is(platform.evidenceCalls, 0);
});

test('constructor options are validated with InvalidArgumentError', (t) => {
  const bad: Partial<SecureKeyReleaseOptions>[] = [
    { timeoutMs: 0 },
    { timeoutMs: -5 },
    { timeoutMs: Number.NaN },
    { timeoutMs: '5000' as unknown as number },
    { enc: 'RSA-OAEP' as 'RSA_AES_KEY_WRAP_256' },
    { retry: { maxRetries: -1 } },
    { retry: { maxRetries: 1.5 } },
    { retry: { baseDelayMs: -1 } },
    { retry: { baseDelayMs: 2000, maxDelayMs: 1000 } },
    { tokenRefreshMarginMs: Number.POSITIVE_INFINITY },
    // A string would be truthy but not `true`: refused rather than silently ignored.
    { prewarm: 'yes' as unknown as boolean },
    // A platform's name from JavaScript (a new user's try) fails here, not as a TypeError at the first release.
    { platform: 'emulated-azure-vtpm' as unknown as 'auto' },
    { platform: {} as unknown as 'auto' },
    { clock: new Date() as unknown as () => Date },
  ];
  for (const options of bad) {
    t.throws(() => make(options), { instanceOf: InvalidArgumentError }, JSON.stringify(options));
  }
  t.throws(() => new SecureKeyRelease({ attestationEndpoint: 'http://maa.example' }), {
    instanceOf: InvalidArgumentError,
  });
});

test('an option SecureKeyRelease does not have is refused by name (a misspelt releaseSignerPins would leave the signer unpinned)', (t) => {
  const error = t.throws(
    () => make({ releaseSignerPin: [{ spkiSha256: 'x' }] } as unknown as Partial<SecureKeyReleaseOptions>),
    { instanceOf: InvalidArgumentError },
  );
  t.regex(error!.message, /^SecureKeyRelease has no option "releaseSignerPin"; its options are .*releaseSignerPins/);
  t.notThrows(() => make({ releaseSignerPins: [], onEvent: () => {}, agent: false }));
});

test('a call after close() rejects with ERR_CLOSED', async (t) => {
  const { skr, platform } = make();
  await skr.close();
  const error = await t.throwsAsync(skr.releaseKey('https://vault.example/keys/k'), {
    instanceOf: ClosedError,
  });
  t.is(error?.code, 'ERR_CLOSED');
  t.is(platform.evidenceCalls, 0);
});

/** Runs a module script in a child node (tsx), returns its last stdout line as JSON. */
async function child(script: string, nodeArgs: string[] = []): Promise<Record<string, unknown>> {
  const { stdout } = await run(
    process.execPath,
    [...nodeArgs, '--import', 'tsx', '--input-type=module', '-e', script],
    { timeout: 100_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

const PRELUDE = `
  const unhandled = [];
  process.on('unhandledRejection', (reason) => unhandled.push(String(reason?.code ?? reason)));
  const { SecureKeyRelease } = await import('./src/keyvault/secure-key-release.ts');
  const { CountingPlatform } = await import('./test/helpers/fake-platform.ts');
  const settle = (p) => p.then(() => 'ok', (e) => e.code ?? String(e));
`;

test('aborted callers leave no unhandled rejection when the shared work fails later', async (t) => {
  const result = await child(`${PRELUDE}
    const platform = new CountingPlatform();
    const skr = new SecureKeyRelease({ attestationEndpoint: 'https://127.0.0.1:9', platform, retry: { maxRetries: 0 } });
    const early = await settle(skr.releaseKey('https://vault.example/keys/a', { signal: AbortSignal.abort() }));
    const controller = new AbortController();
    const mid = skr.releaseKey('https://vault.example/keys/b', { signal: controller.signal });
    controller.abort();
    const midCode = await settle(mid);
    // Let the shared attestation (connection refused on port 9) fail after its caller left.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await skr.close();
    await new Promise((resolve) => setImmediate(resolve));
    console.log(JSON.stringify({ early, midCode, unhandled }));
  `);
  t.is(result.early, 'ERR_ABORTED');
  t.is(result.midCode, 'ERR_ABORTED');
  t.deepEqual(result.unhandled, []);
});

test('timeoutMs bounds the call after garbage collection, against a server that accepts and never answers', async (t) => {
  const result = await child(
    `${PRELUDE}
    const net = await import('node:net');
    const sockets = [];
    const server = net.createServer((s) => sockets.push(s));
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const endpoint = 'https://127.0.0.1:' + server.address().port;
    const skr = new SecureKeyRelease({ attestationEndpoint: endpoint, platform: new CountingPlatform(), timeoutMs: 3000, retry: { maxRetries: 0 } });
    const pending = settle(skr.releaseKey('https://vault.example/keys/k'));
    // Collect garbage while the request waits, as a busy process would.
    const gcs = setInterval(() => globalThis.gc(), 10);
    const code = await pending;
    clearInterval(gcs);
    await skr.close();
    for (const s of sockets) s.destroy();
    server.close();
    console.log(JSON.stringify({ code, accepted: sockets.length, unhandled }));
  `,
    ['--expose-gc'],
  );
  t.is(result.code, 'ERR_TIMEOUT');
  t.is(result.accepted, 1, 'the request reached the silent server');
  t.deepEqual(result.unhandled, []);
});
