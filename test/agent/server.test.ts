/**
 * Where the agent may put its socket: a folder the operator named is never created (a mistyped --socket leaves
 * nothing behind), the path is checked before any device is opened, and a socket that cannot be set up is a
 * coded runtime error that says what to check. No artifact: the agent's socket handling is this project's own.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AgentRules } from '../../src/agent/rules.js';
import { agentSocketError, startAgentServer } from '../../src/agent/server.js';
import { exitCodeOf } from '../../src/cli/exit.js';
import { runCli } from '../helpers/cli-process.js';
import { AgentSocketError, InvalidArgumentError } from '../../src/errors.js';
import type { SecureKeyRelease } from '../../src/keyvault/secure-key-release.js';

// The server only holds the release client until a request comes; none comes in these tests.
const skr = { close: async () => {} } as unknown as SecureKeyRelease;

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-agent-server-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function start(socket: string) {
  return startAgentServer({
    skr,
    attestationEndpoint: 'https://sharedeus.eus.attest.azure.net',
    rules: AgentRules.parse('{"rules":[]}'),
    socket,
    log: () => {},
  });
}

test('a socket in a folder that does not exist is refused with InvalidArgumentError, and the folder is not created', async (t) => {
  const dir = await tempDir(t);
  const socket = path.join(dir, 'typo', 'agent.sock');
  const error = await t.throwsAsync(start(socket), { instanceOf: InvalidArgumentError });
  t.regex(error!.message, /the folder .*typo does not exist \(only the default \/run\/cvm-skr is created\)/);
  t.false(existsSync(path.join(dir, 'typo')));
});

test('a socket path too long for a Unix socket is refused before anything is bound (libuv would bind it cut short)', async (t) => {
  const dir = await tempDir(t);
  const error = await t.throwsAsync(start(path.join(dir, `${'s'.repeat(120)}.sock`)), {
    instanceOf: InvalidArgumentError,
  });
  t.is(error!.code, 'ERR_INVALID_ARGUMENT');
  t.regex(error!.message, /must be under 108 bytes/);
  t.deepEqual(readdirSync(dir), [], 'no socket file under a shortened name');
});

test('a socket whose folder is a regular file is refused like a missing folder', async (t) => {
  const dir = await tempDir(t);
  await writeFile(path.join(dir, 'file'), 'x');
  const error = await t.throwsAsync(start(path.join(dir, 'file', 'agent.sock')), {
    instanceOf: InvalidArgumentError,
  });
  t.regex(error!.message, /the folder .*file does not exist/);
});

test('a socket in a folder reached through a symbolic link (as /var/run is on Debian) is served', async (t) => {
  const dir = await tempDir(t);
  await symlink(dir, path.join(dir, 'link'));
  const server = await start(path.join(dir, 'link', 'agent.sock'));
  t.teardown(() => server.close());
  t.true(existsSync(path.join(dir, 'agent.sock')));
});

test('a socket the system will not create is AgentSocketError (a runtime failure, exit 3) with the system error as cause', (t) => {
  const denied = Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
  const error = agentSocketError('/srv/agent.sock', denied);
  t.true(error instanceof AgentSocketError);
  t.is(error.code, 'ERR_AGENT_SOCKET');
  t.is(error.socket, '/srv/agent.sock');
  t.is(error.cause, denied);
  t.regex(error.message, /permission denied; run the agent as a user that may write to \/srv/);
  t.is(exitCodeOf(error), 3);
  t.regex(agentSocketError('/srv/a.sock', Object.assign(new Error(), { code: 'EADDRINUSE' })).message, /in use/);
});

/** Runs `cvm-skr agent` against a stand-in TPM socket that counts connections (the agent must not reach it). */
async function agentCliWithStandInTpm(t: ExecutionContext, dir: string, socket: string) {
  let connections = 0;
  const tpm = createServer((s) => {
    connections++;
    s.destroy();
  });
  const tpmSocket = path.join(dir, 'tpm.sock');
  await new Promise<void>((resolve) => tpm.listen(tpmSocket, resolve));
  t.teardown(() => new Promise<void>((resolve) => tpm.close(() => resolve())));
  const rules = path.join(dir, 'rules.json');
  await writeFile(rules, '{"rules":[]}');
  const result = await runCli(
    ['agent', '--tpm', tpmSocket, '--prewarm', '--endpoint', 'https://sharedeus.eus.attest.azure.net',
      '--rules', rules, '--socket', socket],
    { timeoutMs: 60_000 },
  );
  return { ...result, connections };
}

test('cvm-skr agent with a --socket in a missing folder exits 2 before it opens the TPM or creates anything', async (t) => {
  const dir = await tempDir(t);
  const result = await agentCliWithStandInTpm(t, dir, path.join(dir, 'typo', 'agent.sock'));
  t.is(result.code, 2, result.stderr);
  t.regex(result.stderr, /the folder .*typo does not exist .*\[ERR_INVALID_ARGUMENT\]/);
  t.is(result.connections, 0, 'the TPM was not opened');
  t.false(existsSync(path.join(dir, 'typo')));
});

test('cvm-skr agent on a socket another process listens on exits 3 (ERR_AGENT_SOCKET) before it opens the TPM, and leaves that socket alone', async (t) => {
  const dir = await tempDir(t);
  const socket = path.join(dir, 'agent.sock');
  const other = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => other.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => other.close(() => resolve())));
  const result = await agentCliWithStandInTpm(t, dir, socket);
  t.is(result.code, 3, result.stderr);
  t.regex(result.stderr, /already listens on it; stop it or choose another --socket \[ERR_AGENT_SOCKET\]/);
  t.is(result.connections, 0, 'the TPM was not opened');
  t.true(existsSync(socket), 'the other process keeps its socket');
});
