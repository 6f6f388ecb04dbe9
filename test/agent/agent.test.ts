/**
 * `cvm-skr agent` end to end: the agent runs as its own process on an emulated platform against the emulator,
 * clients are other processes (or this one) on its Unix socket. Attestations and releases are counted where
 * they happen, at the emulated attestation service and vault.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, createPublicKey } from 'node:crypto';
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { request } from 'node:http';
import test, { type ExecutionContext } from 'ava';
import { AgentBusyError, AgentForbiddenError, AgentUnavailableError, ReleaseDeniedError } from '../../src/errors.js';
import { AgentClient } from '../../src/agent/client.js';
import { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';
import { emulator, exportableKey, proxiedEmulator, releaseClient } from '../helpers/e2e-emulator.js';
import { gatedTest } from '../helpers/swtpm.js';
import { agentFixture } from '../helpers/agent-fixture.js';
import { runCli } from '../helpers/cli-process.js';

const uid = process.getuid!();
const gid = process.getgid!();

function unixRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      { socketPath, method, path, agent: false, headers: text ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let out = '';
        res.on('data', (d) => (out += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: out }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

function releases(e: Awaited<ReturnType<typeof emulator>>, name: string): number {
  return e.vault.releaseDecisions().filter((d) => d.key === name && d.allowed).length;
}

test('16 client processes releasing concurrently through one agent cause one attestation and one release per key, counted at the emulator', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'shared-rsa', 'RSA-HSM');
  await exportableKey(e, 'shared-oct', 'oct-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: [`${e.vaultUrl}/keys/shared-*`] }]);
  await agent.start();
  const attestationsBefore = e.attestation.counters.attestations;
  const keyIds = [`${e.vaultUrl}/keys/shared-rsa`, `${e.vaultUrl}/keys/shared-oct`];
  const children: ChildProcess[] = [];
  t.teardown(() => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));
  const outputs = await (async () => {
    const ready: Promise<void>[] = [];
    const done: Promise<string>[] = [];
    for (let i = 0; i < 16; i++) {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'test/helpers/agent-client-process.ts', agent.socket, ...keyIds],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      children.push(child);
      let out = '';
      ready.push(
        new Promise((resolve) =>
          child.stdout!.on('data', (d: Buffer) => {
            out += d.toString();
            if (out.startsWith('ready\n')) resolve();
          }),
        ),
      );
      done.push(new Promise((resolve) => child.once('exit', () => resolve(out.slice('ready\n'.length)))));
    }
    await Promise.all(ready);
    // All 16 processes are up before any asks: their requests reach the agent together.
    for (const child of children) child.stdin!.end('go\n');
    return Promise.all(done);
  })();
  const results = outputs.map((o) => JSON.parse(o) as { kid?: string; sha256?: string; error?: string }[]);
  t.is(results.length, 16);
  for (const [i, keyId] of keyIds.entries()) {
    const answers = results.map((r) => r[i]!);
    t.deepEqual(answers.filter((a) => a.error), [], 'no process got an error');
    t.is(new Set(answers.map((a) => a.sha256)).size, 1, `all 16 processes got the same ${keyId}`);
  }
  t.is(e.attestation.counters.attestations - attestationsBefore, 1, 'one attestation for all processes and keys');
  t.is(releases(e, 'shared-rsa'), 1, 'one release of shared-rsa');
  t.is(releases(e, 'shared-oct'), 1, 'one release of shared-oct');
});

test('a peer without a rule for a key is refused with AgentForbiddenError, a rule for its uid or gid gives it the key, and every decision is logged without key material', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'mine', 'RSA-HSM');
  await exportableKey(e, 'by-group', 'oct-HSM');
  await exportableKey(e, 'theirs', 'oct-HSM');
  // The rule for "theirs" names another uid than this test's: SO_PEERCRED says who this process is.
  const agent = await agentFixture(t, e, [
    { uid, keys: [`${e.vaultUrl}/keys/mine`] },
    { gid, keys: [`${e.vaultUrl}/keys/by-group`] },
    { uid: uid + 4242, keys: [`${e.vaultUrl}/keys/theirs`] },
  ]);
  const running = await agent.start();
  const skr = new SecureKeyRelease({ agent: { socket: agent.socket } });
  t.teardown(() => skr.close());

  const refused = await t.throwsAsync(skr.releaseKey(`${e.vaultUrl}/keys/theirs`), { instanceOf: AgentForbiddenError });
  t.is(refused?.code, 'ERR_AGENT_FORBIDDEN');
  t.is(releases(e, 'theirs'), 0, 'nothing was released for a refused peer');

  const mine = await skr.releaseKey(`${e.vaultUrl}/keys/mine`);
  t.is(mine.key.type, 'private');
  t.is(mine.name, 'mine');
  const group = await skr.releaseKey(`${e.vaultUrl}/keys/by-group`);
  t.is(group.key.type, 'secret');

  const decisions = running
    .log()
    .split('\n')
    .filter((l) => l.includes('"decision"'))
    .map((l) => JSON.parse(l) as { keyId?: string; allowed: boolean; uid?: number; pid?: number });
  t.like(decisions.find((d) => d.keyId?.endsWith('/theirs')), { allowed: false, uid });
  t.like(decisions.find((d) => d.keyId?.endsWith('/mine')), { allowed: true, uid, pid: process.pid });
  t.like(decisions.find((d) => d.keyId?.endsWith('/by-group')), { allowed: true });
  const jwk = mine.key.export({ format: 'jwk' });
  t.false(running.log().includes(jwk.d!), 'the private exponent is not in the log');
  t.false(running.log().includes(group.key.export().toString('base64url')), 'the secret is not in the log');
});

test('errors through the agent are the in-process classes and codes (a release policy the machine does not meet)', async (t) => {
  const e = await emulator(t);
  const policy = {
    version: '1.0.0',
    anyOf: [{ authority: e.attestationUrl, allOf: [{ claim: 'x-ms-attestation-type', equals: 'not-this-machine' }] }],
  };
  await exportableKey(e, 'strict', 'RSA-HSM', policy);
  const keyId = `${e.vaultUrl}/keys/strict`;
  const platform = await e.platform('emulated-azure-vtpm');
  t.teardown(() => platform.close());
  const local = await releaseClient(t, e, platform)
    .releaseKey(keyId)
    .then(() => undefined, (error: unknown) => error as ReleaseDeniedError);
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  await agent.start();
  const skr = new SecureKeyRelease({ agent: { socket: agent.socket } });
  t.teardown(() => skr.close());
  const remote = await skr.releaseKey(keyId).then(
    () => undefined,
    (error: unknown) => error as ReleaseDeniedError,
  );
  t.true(local instanceof ReleaseDeniedError);
  t.true(remote instanceof ReleaseDeniedError, 'rebuilt as the same class');
  t.is(remote?.code, local?.code);
  t.is(remote?.name, 'ReleaseDeniedError');
  t.is(remote?.reason, local?.reason);
  t.is(remote?.statusCode, 403);
  t.deepEqual(remote?.evaluation, local?.evaluation, 'the policy evaluation comes along');
});

test('a killed agent gives clients AgentUnavailableError, and the same client recovers once the agent is back', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'phoenix', 'EC-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  const first = await agent.start();
  const skr = new SecureKeyRelease({ agent: { socket: agent.socket } });
  t.teardown(() => skr.close());
  const keyId = `${e.vaultUrl}/keys/phoenix`;
  const before = await skr.releaseKey(keyId);
  first.child.kill('SIGKILL');
  await first.exited;
  const down = await t.throwsAsync(skr.releaseKey(keyId), { instanceOf: AgentUnavailableError });
  t.is(down?.code, 'ERR_AGENT_UNAVAILABLE');
  t.is(down?.socket, agent.socket);
  // The dead agent's socket file is left behind; the new agent replaces it.
  await agent.start();
  const after = await skr.releaseKey(keyId);
  t.is(after.kid, before.kid);
  t.deepEqual(after.key.export({ format: 'jwk' }), before.key.export({ format: 'jwk' }));
});

test('cvm-skr release --agent releases through the agent with no endpoint, TPM or CA of its own; a flag that picks a local setting is a usage error', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'cli-through-agent', 'EC-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  await agent.start();
  const keyId = `${e.vaultUrl}/keys/cli-through-agent`;
  const attestationsBefore = e.attestation.counters.attestations;
  // Only the agent's socket: none of the emulator's environment reaches this process. Asynchronous, since the
  // emulator answering the agent runs in this test's process.
  const run = async (args: string[]) => {
    const { code, stdout, stderr } = await runCli(['release', keyId, ...args], {
      env: { PATH: process.env.PATH ?? '' },
      timeoutMs: 60_000,
    });
    return { status: code, stdout, stderr };
  };
  const result = await run(['--agent', agent.socket, '--json']);
  t.is(result.status, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as { kid: string; publicKeySha256: string };
  t.regex(summary.kid, new RegExp(`^${e.vaultUrl}/keys/cli-through-agent/[0-9a-f]{32}$`));
  const skr = new SecureKeyRelease({ agent: { socket: agent.socket } });
  t.teardown(() => skr.close());
  const released = await skr.releaseKey(keyId);
  const spki = createPublicKey(released.key).export({ format: 'der', type: 'spki' });
  t.is(summary.publicKeySha256, createHash('sha256').update(spki).digest('hex'));
  t.is(e.attestation.counters.attestations - attestationsBefore, 1, 'the agent attested once for both');
  t.is(releases(e, 'cli-through-agent'), 1, 'one release, kept by the agent for the second caller');

  const mixed = await run(['--agent', agent.socket, '--endpoint', 'https://sharedeus.eus.attest.azure.net']);
  t.is(mixed.status, 2);
  t.regex(mixed.stderr, /--agent releases with the agent's own settings; drop --endpoint .*\[ERR_INVALID_ARGUMENT\]/);
  const down = await run(['--agent', path.join(agent.dir, 'none.sock')]);
  t.is(down.status, 3);
  t.regex(down.stderr, /\[ERR_AGENT_UNAVAILABLE\]/);
});

test('SIGTERM lets a release in flight finish, then the agent exits 0 and removes its socket', async (t) => {
  // The attestation service is behind a proxy that holds the agent's attestation request until SIGTERM has
  // been handled, so the release is certainly in flight when the signal arrives.
  const { e, maa } = await proxiedEmulator(t);
  await exportableKey(e, 'last-one', 'RSA-HSM');
  let letThrough!: () => void;
  const gate = new Promise<void>((resolve) => (letThrough = resolve));
  maa.plan = async (r) => {
    if (r.path.startsWith('/attest/')) await gate;
    return 'pass' as const;
  };
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }], { CVM_SKR_ATTESTATION_URL: maa.url });
  const running = await agent.start();
  const client = new AgentClient({ socket: agent.socket });
  const inFlight = client.releaseKey(`${e.vaultUrl}/keys/last-one`);
  while (!maa.requests.some((r) => r.path.startsWith('/attest/'))) await new Promise((r) => setTimeout(r, 5));
  running.child.kill('SIGTERM');
  while (!running.log().includes('"event":"shutdown"')) await new Promise((r) => setTimeout(r, 5));
  t.is(running.child.exitCode, null, 'still running while the release waits');
  // No new connections once shutting down: the socket file is gone at once.
  await t.throwsAsync(client.status(), { instanceOf: AgentUnavailableError });
  letThrough();
  const released = await inFlight;
  t.is(released.name, 'last-one');
  t.is(await running.exited, 0);
  t.false(existsSync(agent.socket), 'the socket file is gone');
  await t.throwsAsync(client.status(), { instanceOf: AgentUnavailableError });
});

test('past --max-pending the agent answers AgentBusyError (HTTP 503) at once', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'busy-a', 'oct-HSM');
  await exportableKey(e, 'busy-b', 'oct-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  await agent.start(['--max-pending', '1']);
  const client = new AgentClient({ socket: agent.socket });
  // Both arrive while the first still attests: one is served, one refused.
  const results = await Promise.allSettled([
    client.releaseKey(`${e.vaultUrl}/keys/busy-a`),
    client.releaseKey(`${e.vaultUrl}/keys/busy-b`),
  ]);
  const rejected = results.filter((r) => r.status === 'rejected');
  t.is(rejected.length, 1);
  t.true((rejected[0] as PromiseRejectedResult).reason instanceof AgentBusyError);
  t.is(results.filter((r) => r.status === 'fulfilled').length, 1);
});

async function sidecarAgent(t: ExecutionContext) {
  const e = await emulator(t);
  await exportableKey(e, 'sidecar-key', 'RSA-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  return { e, agent, running: await agent.start() };
}

test('the confidential sidecar\'s documented /key/release request gets its documented answer: 200 {"key": "<JWK as JSON>"}', async (t) => {
  const { e, agent } = await sidecarAgent(t);
  // The request body of microsoft/confidential-sidecar-containers cmd/skr/README.md (commit 0bb29ae26cc9):
  // {"maa_endpoint": "<maa endpoint>", "akv_endpoint": "<akv endpoint>", "kid": "<key identifier>"}, endpoints
  // without scheme as examples/skr/aci/README.md (commit 56c97c1168dc) tells ("WITHOUT https://",
  // "<VAULT_NAME>.vault.azure.net"), kid the key name (pkg/common/akv.go @fa8df58aa090:
  // "https://%s/keys/%s/release?%s").
  const body = {
    maa_endpoint: new URL(e.attestationUrl).host,
    akv_endpoint: new URL(e.vaultUrl).host,
    kid: 'sidecar-key',
  };
  const answer = await unixRequest(agent.socket, 'POST', '/key/release', body);
  t.is(answer.status, 200);
  const outer = JSON.parse(answer.body) as { key: unknown };
  t.deepEqual(Object.keys(outer), ['key']);
  t.is(typeof outer.key, 'string', 'the JWK comes as a JSON string (httpginendpoints.go: gin.H{"key": string(jwkJSONBytes)})');
  const jwk = JSON.parse(outer.key as string) as Record<string, string>;
  t.is(jwk.kty, 'RSA');
  for (const field of ['n', 'e', 'd', 'p', 'q', 'dp', 'dq', 'qi']) t.is(typeof jwk[field], 'string', field);

  const status = await unixRequest(agent.socket, 'GET', '/status');
  t.is(status.status, 200);
  t.deepEqual(JSON.parse(status.body), { message: 'Status OK' });
});

test('sidecar API errors have the sidecar\'s status and {"error"} shape: 400 for a request that does not bind, 403 for a failed release, 501 for attest routes', async (t) => {
  const { e, agent } = await sidecarAgent(t);
  const base = { maa_endpoint: new URL(e.attestationUrl).host, akv_endpoint: new URL(e.vaultUrl).host };
  // The sidecar's statuses (internal/httpginendpoints/httpginendpoints.go @fa8df58aa090): a body that does not
  // bind is 400 {"error": "invalid request format ..."}, a failed release 403 {"error": "secure key release
  // failed ..."}. The last two are this agent's own choices, not the sidecar's: `access_token` (the sidecar
  // uses it as the vault token) is refused with 400, since the agent uses its own identity; and /attest/*
  // (served by the sidecar) answers 501, since the agent does not hand out raw attestation.
  const missing = await unixRequest(agent.socket, 'POST', '/key/release', base);
  t.is(missing.status, 400);
  t.regex((JSON.parse(missing.body) as { error: string }).error, /kid/);
  const unknownKey = await unixRequest(agent.socket, 'POST', '/key/release', { ...base, kid: 'no-such-key' });
  t.is(unknownKey.status, 403);
  t.regex((JSON.parse(unknownKey.body) as { error: string }).error, /secure key release failed/);
  const otherMaa = await unixRequest(agent.socket, 'POST', '/key/release', {
    ...base,
    maa_endpoint: 'sharedeus.eus.attest.azure.net',
    kid: 'sidecar-key',
  });
  t.is(otherMaa.status, 403);
  const token = await unixRequest(agent.socket, 'POST', '/key/release', {
    ...base,
    kid: 'sidecar-key',
    access_token: 'eyJ.not.used',
  });
  t.is(token.status, 400);
  const maa = await unixRequest(agent.socket, 'POST', '/attest/maa', { maa_endpoint: base.maa_endpoint, runtime_data: 'e30=' });
  t.is(maa.status, 501);
  t.truthy((JSON.parse(maa.body) as { error?: string }).error);
});

test('loopback HTTP is opt-in and needs the token: 401 without it, the key with it', async (t) => {
  const e = await emulator(t);
  await exportableKey(e, 'over-http', 'oct-HSM');
  const agent = await agentFixture(t, e, [{ http: true, keys: [`${e.vaultUrl}/keys/over-http`] }]);
  const { writeFile } = await import('node:fs/promises');
  const tokenFile = `${agent.dir}/token`;
  const secret = 'a-long-random-agent-token-0123456789';
  await writeFile(tokenFile, secret, { mode: 0o600 });
  const running = await agent.start(['--http', '0', '--token-file', tokenFile]);
  const port = Number(/"httpPort":(\d+)/.exec(running.log())?.[1]);
  const post = (headers: Record<string, string>) =>
    fetch(`http://127.0.0.1:${port}/v1/keys/release`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ keyId: `${e.vaultUrl}/keys/over-http` }),
    });
  const without = await post({});
  t.is(without.status, 401);
  t.is(((await without.json()) as { error: { code: string } }).error.code, 'ERR_AGENT_FORBIDDEN');
  const wrong = await post({ authorization: 'Bearer not-the-token-at-all-xxxxxxx' });
  t.is(wrong.status, 401);
  const ok = await post({ authorization: `Bearer ${secret}` });
  t.is(ok.status, 200);
  t.is(((await ok.json()) as { key: { jwk: { kty: string } } }).key.jwk.kty, 'oct');
  t.false(running.log().includes(secret), 'the token is never logged');
});

const haveActivator = spawnSync('sh', ['-c', 'command -v systemd-socket-activate'], { stdio: 'ignore' }).status === 0;

// systemd-socket-activate comes with the systemd package (.ci/run installs it).
gatedTest(haveActivator)('socket activation: under systemd-socket-activate the agent serves the socket systemd passes as fd 3', async (t) => {
  // systemd-socket-activate(1) binds the socket, then execs the service with LISTEN_FDS=1, LISTEN_PID and the
  // socket as fd 3: the protocol sd_listen_fds(3) reads, as a .socket unit gives it.
  const e = await emulator(t);
  await exportableKey(e, 'activated', 'oct-HSM');
  const agent = await agentFixture(t, e, [{ uid, keys: ['*'] }]);
  const rulesFile = path.join(agent.dir, 'rules.json');
  const child = spawn(
    'systemd-socket-activate',
    // The activator passes on only the variables named with -E.
    ['-l', agent.socket, ...Object.keys(agent.env).flatMap((name) => ['-E', name]), process.execPath, '--import', 'tsx', 'src/cli/main.ts', 'agent', '--emulator', '--rules', rulesFile],
    { env: { ...process.env, ...agent.env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = once(child, 'exit');
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // The activator listens before the agent starts: the first connection starts it (with --accept unset, one
  // instance gets the listening socket).
  while (!existsSync(agent.socket)) {
    if (child.exitCode !== null) return t.fail(`systemd-socket-activate exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  // The path appears at bind(2), a moment before listen(2): a connection in between is refused. Retry only
  // that (bounded), as a client started with the unit would.
  const client = new AgentClient({ socket: agent.socket });
  const release = async (attempt: number): Promise<Awaited<ReturnType<AgentClient['releaseKey']>>> => {
    try {
      return await client.releaseKey(`${e.vaultUrl}/keys/activated`);
    } catch (error) {
      if (error instanceof AgentUnavailableError && attempt < 50 && child.exitCode === null) {
        await new Promise((r) => setTimeout(r, 20));
        return release(attempt + 1);
      }
      t.log(stderr);
      throw error;
    }
  };
  const released = await release(0);
  t.is(released.name, 'activated');
  t.regex(stderr, /"event":"listening","fd":3/, 'the agent served the inherited fd, not a socket of its own');
});
