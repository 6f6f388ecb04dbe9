/**
 * Where the agent may put its socket: a folder the operator named is never created (a mistyped --socket leaves
 * nothing behind), and a socket that cannot be created is a coded error that says what to check. No artifact:
 * the agent's socket handling is this project's own.
 */
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { AgentRules } from '../../src/agent/rules.js';
import { startAgentServer } from '../../src/agent/server.js';
import { InvalidArgumentError } from '../../src/errors.js';
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
