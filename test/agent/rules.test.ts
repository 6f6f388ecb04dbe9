/**
 * The agent's rules file: default deny, exact uid/gid/http match, `*` patterns over key ids with and without
 * version, and a strict parser (a typo must never widen access). No artifact: the format is this project's own.
 */
import { existsSync } from 'node:fs';
import test from 'ava';
import { AgentRules } from '../../src/agent/rules.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { errorFromWire, errorToWire } from '../../src/agent/wire.js';
import { EvidenceVerificationError, KeyVersionUnavailableError, ReleaseDeniedError, TimeoutError } from '../../src/errors.js';

const vault = 'https://myvault.vault.azure.net';
const peer = (uid: number, gid = 100) => ({ kind: 'unix' as const, pid: 1, uid, gid });

test('no rule means no key (default deny), also for an empty rules list', (t) => {
  const rules = AgentRules.parse('{"rules": []}');
  t.false(rules.allows(peer(0), `${vault}/keys/a`));
  t.false(rules.knows(peer(0)));
  t.false(rules.allows({ kind: 'http' }, `${vault}/keys/a`));
});

test('a uid rule gives its patterns to that uid only; a gid rule to that primary group; http rules to token callers', (t) => {
  const rules = new AgentRules([
    { uid: 1001, keys: [`${vault}/keys/app-*`] },
    { gid: 2000, keys: [`${vault}/keys/shared`] },
    { http: true, keys: [`${vault}/keys/web`] },
  ]);
  t.true(rules.allows(peer(1001), `${vault}/keys/app-db`));
  t.true(rules.allows(peer(1001), `${vault}/keys/APP-db/0123abcd`), 'with a version, case-insensitively');
  t.false(rules.allows(peer(1002), `${vault}/keys/app-db`));
  t.false(rules.allows(peer(1001), `${vault}/keys/other`));
  t.false(rules.allows(peer(1001), `https://othervault.vault.azure.net/keys/app-db`));
  t.true(rules.allows(peer(5, 2000), `${vault}/keys/shared`));
  t.false(rules.allows(peer(5, 2001), `${vault}/keys/shared`));
  t.true(rules.allows({ kind: 'http' }, `${vault}/keys/web`));
  t.false(rules.allows({ kind: 'http' }, `${vault}/keys/app-db`));
  t.false(rules.allows(peer(1001), 'not a key id'));
  t.false(rules.allowsAll(peer(1001)));
});

test('a rules file that cannot be read says why (no such file: where the format is described)', async (t) => {
  const error = await t.throwsAsync(AgentRules.load('/nonexistent/agent-rules.json'), { instanceOf: InvalidArgumentError });
  t.regex(error!.message, /^agent rules file \/nonexistent\/agent-rules\.json: no such file \(write one, see the README "Agent" section/);
});

test('a pattern is not a regular expression: dots and other characters match themselves', (t) => {
  const rules = new AgentRules([{ uid: 1, keys: ['https://my.vault.azure.net/keys/a'] }]);
  t.false(rules.allows(peer(1), 'https://myXvault.azure.net/keys/a'));
});

test('a rules file with an unknown field, no identity, two identities or bad keys is refused', (t) => {
  for (const bad of [
    '{"rules": [{"uid": 1, "key": ["*"]}]}',
    '{"rules": [{"keys": ["*"]}]}',
    '{"rules": [{"uid": 1, "gid": 2, "keys": ["*"]}]}',
    '{"rules": [{"uid": -1, "keys": ["*"]}]}',
    '{"rules": [{"uid": 1, "keys": "*"}]}',
    '{"rules": [{"http": false, "keys": ["*"]}]}',
    '{"rule": []}',
    'not json',
  ]) {
    t.throws(() => AgentRules.parse(bad), { instanceOf: InvalidArgumentError }, bad);
  }
});

test('an error crosses the wire as the same class with its code and fields, and never with its cause', (t) => {
  const denied = new ReleaseDeniedError(
    'refused',
    { statusCode: 403, reason: 'policy', evaluation: { allowed: false, clauses: [] } },
    { cause: new Error('secret detail') },
  );
  const back = errorFromWire(JSON.parse(JSON.stringify(errorToWire(denied))), 'sock');
  t.true(back instanceof ReleaseDeniedError);
  t.is(back.code, 'ERR_RELEASE_DENIED');
  t.is(back.name, 'ReleaseDeniedError');
  t.is(back.message, 'refused');
  t.like(back, { statusCode: 403, reason: 'policy' });
  t.is(back.cause, undefined);
  const timeout = errorFromWire(errorToWire(new TimeoutError('slow', { timeoutMs: 5 })), 'sock');
  t.true(timeout instanceof TimeoutError);
  t.is((timeout as TimeoutError).timeoutMs, 5);
  const version = errorFromWire(
    errorToWire(new KeyVersionUnavailableError('off', { kid: 'k', version: 'v', reason: 'disabled' })),
    'sock',
  );
  t.true(version instanceof KeyVersionUnavailableError);
  // One class, many codes: the class comes back by name and keeps the instance's own code.
  const evidence = errorFromWire(
    errorToWire(new EvidenceVerificationError('ERR_SNP_SIGNATURE', 'bad signature', 'report-signature')),
    'sock',
  );
  t.true(evidence instanceof EvidenceVerificationError);
  t.is(evidence.code, 'ERR_SNP_SIGNATURE');
  t.is((evidence as EvidenceVerificationError).check, 'report-signature');
  t.is(errorToWire(new Error('internal path /x')).message.includes('/x'), false, 'foreign errors are not passed on');
});

test('socket activation: fd 3 only when LISTEN_PID is this process and LISTEN_FDS ≥ 1, and the variables are then cleared (sd_listen_fds(3))', async (t) => {
  const { socketActivationFd } = await import('../../src/cli/agent.js');
  t.is(socketActivationFd({ LISTEN_PID: '1', LISTEN_FDS: '1' }, 2), undefined, 'meant for another process');
  t.is(socketActivationFd({ LISTEN_PID: '2', LISTEN_FDS: '0' }, 2), undefined);
  t.is(socketActivationFd({}, 2), undefined);
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '2', LISTEN_FDS: '1', LISTEN_FDNAMES: 'agent' };
  t.is(socketActivationFd(env, 2), 3);
  t.deepEqual(env, {}, 'children do not inherit them');
});

test('SecureKeyRelease uses the agent only when asked: agent option, or $CVM_SKR_AGENT_SOCKET without a platform object', async (t) => {
  const { agentSocketFor } = await import('../../src/agent/client.js');
  const saved = process.env.CVM_SKR_AGENT_SOCKET;
  t.teardown(() => {
    if (saved === undefined) delete process.env.CVM_SKR_AGENT_SOCKET;
    else process.env.CVM_SKR_AGENT_SOCKET = saved;
  });
  delete process.env.CVM_SKR_AGENT_SOCKET;
  t.is(agentSocketFor(undefined, undefined), undefined);
  t.deepEqual(agentSocketFor({ socket: '/x.sock' }, undefined), { socket: '/x.sock' });
  t.is(agentSocketFor('auto', undefined)?.socket, existsSync('/run/cvm-skr/agent.sock') ? '/run/cvm-skr/agent.sock' : undefined);
  process.env.CVM_SKR_AGENT_SOCKET = '/env.sock';
  t.deepEqual(agentSocketFor(undefined, 'auto'), { socket: '/env.sock' });
  t.is(agentSocketFor(undefined, { kind: 'a platform' }), undefined, 'an explicit platform stays in-process');
  t.is(agentSocketFor(false, undefined), undefined);
  t.throws(() => agentSocketFor('always' as never, undefined), { instanceOf: InvalidArgumentError });
});
