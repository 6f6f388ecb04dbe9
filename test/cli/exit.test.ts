/**
 * How CLI errors map to codes and exit codes (README "Exit codes"). The CLI's own convention; the one service
 * fact is that the Azure SDK's RestError carries the service's error code (`KeyNotFound` in the recorded 404
 * of test/fixtures/kv-recordings/backup-missing-key.json).
 */
import { readFileSync } from 'node:fs';
import { RestError } from '@azure/core-rest-pipeline';
import test from 'ava';
import { codeOf, exitCodeOf } from '../../src/cli/exit.js';
import { AgentForbiddenError, AgentSocketError, InvalidArgumentError, ReleaseDeniedError } from '../../src/errors.js';

test('a service error in a cause chain shows the service\'s own code, not ERR_INTERNAL', (t) => {
  const recording = readFileSync(new URL('../fixtures/kv-recordings/backup-missing-key.json', import.meta.url), 'utf8');
  t.regex(recording, /"code":\s*"KeyNotFound"/, 'the recorded 404 names KeyNotFound');
  const notFound = new RestError('A key with (name/id) nosuchkey was not found in this key vault.', {
    code: 'KeyNotFound',
    statusCode: 404,
  });
  t.is(codeOf(notFound), 'KeyNotFound');
  t.is(codeOf(Object.assign(new Error('x'), { code: 'ERR_INVALID_URL' })), 'ERR_INVALID_URL');
  t.is(codeOf(new Error('no code')), 'ERR_INTERNAL');
  t.is(codeOf(Object.assign(new Error('x'), { code: 'not a code, a sentence' })), 'ERR_INTERNAL');
});

test('a refusal by the agent\'s rules is a negative verdict like a denied release; a socket failure is a runtime error', (t) => {
  t.is(exitCodeOf(new AgentForbiddenError('no rule gives this caller the key')), 1);
  t.is(exitCodeOf(new ReleaseDeniedError('denied')), 1);
  t.is(exitCodeOf(new InvalidArgumentError('bad flag')), 2);
  t.is(exitCodeOf(new AgentSocketError('socket /x: permission denied', '/x')), 3);
});
