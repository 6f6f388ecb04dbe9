/**
 * The CLI behaves like a Unix tool: coded one-line errors without stack traces, `--json` errors as JSON,
 * exit codes 0 / 1 (negative verdict) / 2 (usage or input) / 3 (runtime), `--version`, flags checked before
 * any device, network or key release. This is the project's own interface; no service artifact applies.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { EmulatorCa } from '../../src/emulator/ca.js';
import { type CliRun, runCli } from '../helpers/cli-process.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

function cli(args: string[], env: NodeJS.ProcessEnv = {}, cwd = ROOT): Promise<CliRun> {
  return runCli(args, { env: { ...process.env, ...env }, cwd, timeoutMs: 100_000 });
}

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-cli-safety-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** One line on stderr, coded, no stack frame. */
function assertOneCodedLine(t: ExecutionContext, stderr: string, code: string): void {
  const lines = stderr.trimEnd().split('\n');
  t.is(lines.length, 1, stderr);
  t.regex(lines[0]!, new RegExp(`^cvm-skr: .*\\[${code}\\]$`));
  t.notRegex(stderr, /\n\s+at /);
}

test('--version prints the package version and exits 0', async (t) => {
  const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  const result = await cli(['--version']);
  t.is(result.code, 0);
  t.is(result.stdout.trim(), version);
});

test('an unknown option is a coded usage error with exit code 2', async (t) => {
  const result = await cli(['doctor', '--bogus']);
  t.is(result.code, 2);
  t.regex(result.stderr, /^cvm-skr: unknown option '--bogus' \[ERR_USAGE\]/);
});

test('a missing input file is one coded line naming the flag, exit 2', async (t) => {
  const dir = await tempDir(t);
  const result = await cli(['policy', 'check', '--policy', path.join(dir, 'none.json'), '--claims', 'x']);
  t.is(result.code, 2);
  assertOneCodedLine(t, result.stderr, 'ERR_INVALID_ARGUMENT');
  t.regex(result.stderr, /--policy .*none\.json: no such file/);
});

test('invalid JSON in --claims is one coded line, exit 2; --verbose adds the cause', async (t) => {
  const dir = await tempDir(t);
  const policy = path.join(dir, 'policy.json');
  const claims = path.join(dir, 'claims.json');
  await writeFile(
    policy,
    JSON.stringify({ version: '1.0.0', anyOf: [{ authority: 'https://a', allOf: [{ claim: 'x', equals: 1 }] }] }),
  );
  await writeFile(claims, '{ not json');
  const plain = await cli(['policy', 'check', '--policy', policy, '--claims', claims]);
  t.is(plain.code, 2);
  assertOneCodedLine(t, plain.stderr, 'ERR_INVALID_ARGUMENT');
  t.regex(plain.stderr, /--claims .* is not valid JSON/);
  const verbose = await cli(['policy', 'check', '--policy', policy, '--claims', claims, '--verbose']);
  t.regex(verbose.stderr, /\n {2}caused by: /);
  t.notRegex(verbose.stderr, /\n\s+at /);
});

test('policy check --token takes a file whose name has dots (maa.token.jwt) or the JWT itself, with the same verdict, and never echoes a token it cannot read', async (t) => {
  // Claims of Microsoft's AKS Linux AzureGuest sample token (test/fixtures/maa-samples, provenance there),
  // carried in an unsigned compact JWS: policy check decodes, it does not verify.
  const claims = readFileSync(path.join(ROOT, 'test/fixtures/maa-samples/azureguest-linux-aks-sample.json'), 'utf8');
  const part = (value: string) => Buffer.from(value).toString('base64url');
  const jwt = `${part('{"alg":"RS256","typ":"JWT"}')}.${part(claims)}.${part('signature')}`;
  const dir = await tempDir(t);
  const policy = path.join(dir, 'policy.json');
  const tokenFile = path.join(dir, 'maa.token.jwt');
  await writeFile(
    policy,
    JSON.stringify({
      version: '1.0.0',
      anyOf: [
        {
          authority: 'https://sharedeus2.eus2.attest.azure.net',
          allOf: [{ claim: 'x-ms-attestation-type', equals: 'azurevm' }],
        },
      ],
    }),
  );
  await writeFile(tokenFile, `${jwt}\n`);
  const fromFile = await cli(['policy', 'check', '--policy', policy, '--token', tokenFile]);
  t.is(fromFile.code, 0, fromFile.stderr);
  t.regex(fromFile.stdout, /^ALLOWED/m);
  const inline = await cli(['policy', 'check', '--policy', policy, '--token', jwt]);
  t.is(inline.code, 0, inline.stderr);
  t.is(inline.stdout, fromFile.stdout);
  const fromAttestOutput = path.join(dir, 'attest.json');
  await writeFile(fromAttestOutput, JSON.stringify({ claims: JSON.parse(claims) as unknown }));
  const nested = await cli(['policy', 'check', '--policy', policy, '--claims', fromAttestOutput]);
  t.is(nested.code, 0, nested.stderr);
  t.is(nested.stdout, fromFile.stdout, 'the claims of `attest --json` output are found under "claims"');
  // Neither a file nor a compact JWS (five parts, as an encrypted token has): refused without repeating it.
  const fiveParts = `${jwt}.${part('iv')}.${part('tag')}`;
  for (const flags of [[], ['--json'], ['--verbose']]) {
    const broken = await cli(['policy', 'check', '--policy', policy, '--token', fiveParts, ...flags]);
    t.is(broken.code, 2);
    t.regex(broken.stdout + broken.stderr, /--token is neither a readable file nor a JWT/);
    t.false((broken.stdout + broken.stderr).includes(part(claims)), 'the token is not echoed');
  }
  const notAToken = path.join(dir, 'notes.txt');
  await writeFile(notAToken, 'hello');
  const wrongFile = await cli(['policy', 'check', '--policy', policy, '--token', notAToken]);
  t.is(wrongFile.code, 2);
  t.true(wrongFile.stderr.includes(`--token ${notAToken} does not hold a JWT`), wrongFile.stderr);
});

test('release --agent followed by the key id reads it as the key id and uses the default agent socket; no key id is a usage error', async (t) => {
  const dir = await tempDir(t);
  const socket = path.join(dir, 'none.sock');
  const result = await cli(['release', '--agent', 'https://myvault.vault.azure.net/keys/app'], {
    CVM_SKR_AGENT_SOCKET: socket,
  });
  t.is(result.code, 3);
  t.true(result.stderr.includes(`the cvm-skr agent at ${socket} does not exist`), result.stderr);
  t.regex(result.stderr, /\[ERR_AGENT_UNAVAILABLE\]\n$/);
  const none = await cli(['release']);
  t.is(none.code, 2);
  t.regex(none.stderr, /^cvm-skr: missing required argument 'keyId' \[ERR_USAGE\]\n/, 'as commander reports a missing argument');
});

test('with --json a usage error is one JSON document on stdout', async (t) => {
  const result = await cli(['doctor', '--json', '--bogus']);
  t.is(result.code, 2);
  t.is(result.stderr, '');
  const body = JSON.parse(result.stdout) as { error: { code: string; exitCode: number } };
  t.deepEqual([body.error.code, body.error.exitCode], ['ERR_USAGE', 2]);
});

test('with --json an error is printed as JSON on stdout and nothing on stderr', async (t) => {
  const dir = await tempDir(t);
  const result = await cli(['policy', 'check', '--policy', path.join(dir, 'none'), '--claims', 'x', '--json']);
  t.is(result.code, 2);
  t.is(result.stderr, '');
  const body = JSON.parse(result.stdout) as { error: { code: string; message: string; exitCode: number } };
  t.is(body.error.code, 'ERR_INVALID_ARGUMENT');
  t.is(body.error.exitCode, 2);
  t.regex(body.error.message, /--policy/);
});

test('verify-report --product Rome is refused before the report is read', async (t) => {
  const result = await cli(['verify-report', '/nonexistent/report.bin', '--fetch', '--product', 'Rome']);
  t.is(result.code, 2);
  assertOneCodedLine(t, result.stderr, 'ERR_INVALID_ARGUMENT');
  t.regex(result.stderr, /--product must be Milan, Genoa or Turin, not Rome/);
});

test('release refuses a key id that is not /keys/<name>[/<version>] before anything else, exit 2', async (t) => {
  for (const id of ['https://v.example/secrets/s', 'https://v.example/keys/k?x=1', 'https://v.example/keys/']) {
    const result = await cli(['release', id, '--endpoint', 'https://127.0.0.1:9']);
    t.is(result.code, 2, id);
    assertOneCodedLine(t, result.stderr, 'ERR_INVALID_ARGUMENT');
  }
});

test('release checks --out before any release: a missing directory, an existing file', async (t) => {
  const dir = await tempDir(t);
  const existing = path.join(dir, 'key.pem');
  await writeFile(existing, 'keep me');
  // No platform and an unreachable endpoint: had the release started, the error would be about those.
  const missingDir = await cli([
    'release',
    'https://v.example/keys/k',
    '--endpoint',
    'https://127.0.0.1:9',
    '--out',
    path.join(dir, 'nope', 'key.pem'),
  ]);
  t.is(missingDir.code, 2);
  assertOneCodedLine(t, missingDir.stderr, 'ERR_INVALID_ARGUMENT');
  t.regex(missingDir.stderr, /--out .*: the directory .* does not exist/);
  const exists = await cli([
    'release',
    'https://v.example/keys/k',
    '--endpoint',
    'https://127.0.0.1:9',
    '--out',
    existing,
  ]);
  t.is(exists.code, 2);
  t.regex(exists.stderr, /--out .* already exists/);
  t.is(await readFile(existing, 'utf8'), 'keep me');
});

test('--timeout takes a positive number of seconds', async (t) => {
  const result = await cli(['release', 'https://v.example/keys/k', '--endpoint', 'https://127.0.0.1:9', '--timeout', 'soon']);
  t.is(result.code, 2);
  t.regex(result.stderr, /--timeout must be a number of seconds/);
});

test('a runtime failure (nothing listening at the TPM address) exits 3 with one coded line', async (t) => {
  const result = await cli(['attest', '--endpoint', 'https://127.0.0.1:9', '--tpm', '127.0.0.1:9']);
  t.is(result.code, 3);
  assertOneCodedLine(t, result.stderr, 'ERR_DEVICE_NOT_FOUND');
});

test('first-run key generation shows progress on stderr, silenced by --quiet, -q and --json', async (t) => {
  const noisy = await cli(['attest', '--emulator', '--no-cache', '--platform', 'sev-guest']);
  t.is(noisy.code, 0, noisy.stderr);
  t.regex(noisy.stderr, /generating in-memory emulator root keys/);
  t.regex(noisy.stderr, /attesting emulated-sev-guest with https:/);
  for (const flag of ['--quiet', '-q']) {
    const quiet = await cli(['attest', '--emulator', '--no-cache', '--platform', 'sev-guest', flag]);
    t.is(quiet.code, 0, quiet.stderr);
    t.is(quiet.stderr, '', `${flag} silences progress`);
  }
  const json = await cli(['attest', '--emulator', '--no-cache', '--platform', 'sev-guest', '--json']);
  t.is(json.code, 0, json.stderr);
  t.is(json.stderr, '');
  t.truthy((JSON.parse(json.stdout) as { claims: unknown }).claims);
});

test('first run with an empty key cache says it is generating the emulated AMD root keys', async (t) => {
  const dir = await tempDir(t);
  const result = await cli(['attest', '--emulator', '--platform', 'sev-guest'], { CVM_SKR_EMULATOR_CACHE: dir });
  t.is(result.code, 0, result.stderr);
  t.regex(result.stderr, /first run: generating emulated AMD root keys for Milan/);
});

test('the README command examples that need no network or vault run as written and exit 0', async (t) => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const commands = [...readme.matchAll(/```sh\n([\s\S]*?)```/g)]
    .flatMap((m) => m[1]!.replace(/\\\n\s*/g, ' ').split('\n'))
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line.startsWith('npx cvm-skr '));
  const offline = commands.filter((c) =>
    /^npx cvm-skr (doctor|verify-report|rotation validate|rotation plan --policy)/.test(c),
  );
  t.true(offline.length >= 5, offline.join('\n'));
  // Run where the README's policy.json exists and its fixture paths resolve.
  const dir = await tempDir(t);
  const policy = /as `policy.json`:\n\n```json\n([\s\S]*?)```/.exec(readme)![1]!;
  await writeFile(path.join(dir, 'policy.json'), policy);
  await symlink(path.join(ROOT, 'test'), path.join(dir, 'test'));
  for (const command of offline) {
    const result = await cli(command.split(/\s+/).slice(2), {}, dir);
    t.is(result.code, 0, `${command}\n${result.stderr}`);
  }
});

test('release --timeout ends a call to an attestation endpoint that accepts and never answers, exit 3', async (t) => {
  const sockets: Socket[] = [];
  const server = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const dir = await tempDir(t);
  const caFile = path.join(dir, 'ca.pem');
  await writeFile(caFile, (await EmulatorCa.create()).certPem);
  const port = (server.address() as { port: number }).port;
  const result = await cli(['release', 'https://v.example/keys/k', '--emulator', '--timeout', '1'], {
    CVM_SKR_ATTESTATION_URL: `https://127.0.0.1:${port}`,
    CVM_SKR_CA_FILE: caFile,
    IDENTITY_ENDPOINT: 'http://127.0.0.1:9/msi/token',
    IDENTITY_HEADER: 'unused',
  });
  t.is(result.code, 3, result.stderr);
  t.true(sockets.length >= 1, 'the attestation request reached the silent server');
  t.regex(result.stderr, /^cvm-skr: releasing k from https:\/\/v\.example/m, 'progress before the long step');
  t.regex(result.stderr, /^cvm-skr: no key within 1 s \(--timeout\).*\[ERR_TIMEOUT\]$/m);
  t.notRegex(result.stderr, /timeoutMs/, 'the message names the CLI flag, not the API option');
});
