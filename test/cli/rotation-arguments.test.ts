import { execFile } from 'node:child_process';
import { createSecretKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { formatAudit, formatPlan, parseInstant, readPolicyFile } from '../../src/cli/rotation.js';
import { InvalidArgumentError, RotationPolicyFormatError } from '../../src/errors.js';
import { auditKey } from '../../src/rotation/audit.js';
import { EnvelopeCipher } from '../../src/rotation/envelope.js';
import { planRotation } from '../../src/rotation/plan.js';

const run = promisify(execFile);
const documented = JSON.stringify({
  lifetimeActions: [
    { trigger: { timeAfterCreate: 'P18M' }, action: { type: 'Rotate' } },
    { trigger: { timeBeforeExpiry: 'P30D' }, action: { type: 'Notify' } },
  ],
  attributes: { expiryTime: 'P2Y' },
});

async function tempDir(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-rotation-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function cli(args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('parseInstant accepts only unambiguous instants', (t) => {
  t.is(parseInstant('2025-01-31', '--created').toISOString(), '2025-01-31T00:00:00.000Z');
  t.is(parseInstant('2025-01-31T08:00:00+02:00', '--created').toISOString(), '2025-01-31T06:00:00.000Z');
  for (const bad of ['2025-01-31T08:00', 'yesterday', '2025-13-01', '1738310400', '']) {
    t.throws(
      () => parseInstant(bad, '--created'),
      { instanceOf: InvalidArgumentError, message: /--created/ },
      bad,
    );
  }
});

test('readPolicyFile: good file, bad JSON, missing file, BOM', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'ok.json'), `\uFEFF${documented}`);
  await writeFile(join(dir, 'bad.json'), '{"lifetimeActions": [');
  t.is((await readPolicyFile(join(dir, 'ok.json'))).expiryTime, 'P2Y');
  await t.throwsAsync(readPolicyFile(join(dir, 'bad.json')), { instanceOf: RotationPolicyFormatError });
  await t.throwsAsync(readPolicyFile(join(dir, 'missing.json')), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(readPolicyFile(dir), { instanceOf: InvalidArgumentError, message: /not a file/ });
});

test('formatPlan and formatAudit say what will happen', (t) => {
  const plan = planRotation(
    undefined,
    { createdOn: new Date('2025-01-01T00:00:00Z'), expiresOn: new Date('2025-06-01T00:00:00Z') },
    { now: new Date('2025-01-02T00:00:00Z') },
  );
  const text = formatPlan(plan);
  t.regex(text, /next rotation: +none \(the key has no rotation policy\)/);
  t.regex(text, /warning: the current version expires before it is rotated/);
  const entry = auditKey(
    { name: 'k', createdOn: new Date('2025-01-01T00:00:00Z') },
    undefined,
    730,
    new Date('2025-01-02T00:00:00Z'),
  );
  const audit = formatAudit({
    maximumDaysToRotate: 730,
    evaluatedAt: new Date(),
    keys: [entry],
    summary: { total: 1, compliant: 0, nonCompliant: 1, skipped: 0, errors: 0, expiringWithoutRotation: 0 },
  });
  t.regex(audit, /^non-compliant +k: the key has no rotation policy/);
  t.regex(audit, /1 keys, max 730 days: 0 compliant, 1 non-compliant/);
});

test('cvm-skr rotation plan prints the documented example plan', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'policy.json');
  await writeFile(file, documented);
  const text = await cli([
    'rotation',
    'plan',
    '--policy',
    file,
    '--created',
    '2025-01-31T08:00:00Z',
    '--expires',
    '2027-01-31T08:00:00Z',
    '--now',
    '2025-02-01T00:00:00Z',
  ]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, /next rotation: +2026-07-31T08:00:00\.000Z/);
  t.regex(text.stdout, /new version expires: +2028-07-31T08:00:00\.000Z/);
  t.regex(text.stdout, /next notification: +none \(every version is rotated .*before its notification time/);
  t.is(text.stderr, '');

  const json = await cli([
    'rotation',
    'plan',
    '--policy',
    file,
    '--created',
    '2025-01-31',
    '--now',
    '2025-02-01',
    '--json',
  ]);
  t.is(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as {
    rotation: { at: string };
    violations: Array<{ code: string; severity: string }>;
    warnings: Array<{ code: string; severity: string }>;
  };
  t.is(parsed.rotation.at, '2026-07-31T00:00:00.000Z');
  // no --expires: the key has no expiry; the service stores the Notify, which stays inert (a warning, kept
  // apart from violations as in rotation validate --json)
  t.deepEqual(parsed.violations, []);
  t.deepEqual(
    parsed.warnings.map((v) => [v.code, v.severity]),
    [['KEY_EXPIRY_REQUIRED', 'warning']],
  );
});

test('cvm-skr rotation validate exits 1 and lists every violation', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'policy.json');
  await writeFile(
    file,
    JSON.stringify({
      lifetimeActions: [{ trigger: { timeAfterCreate: 'P3D' }, action: { type: 'rotate' } }],
      attributes: { expiryTime: 'P20D' },
    }),
  );
  const out = await cli(['rotation', 'validate', '--policy', file, '--json']);
  t.is(out.code, 1);
  const parsed = JSON.parse(out.stdout) as {
    valid: boolean;
    violations: Array<{ code: string; field: string }>;
  };
  t.false(parsed.valid);
  t.deepEqual(
    parsed.violations.map((v) => v.code),
    ['EXPIRY_TOO_SHORT', 'ROTATION_TOO_EARLY'],
  );
  const refused = await cli(['rotation', 'plan', '--policy', file, '--created', '2025-01-31']);
  t.is(refused.code, 1, 'planning a policy the service would refuse is a negative verdict too');
  t.regex(refused.stderr, /warning: the service would refuse this policy/);
  const bad = await cli(['rotation', 'plan', '--policy', file, '--created', 'now']);
  t.is(bad.code, 2, 'a bad flag value is a usage error');
  t.regex(bad.stderr, /--created must be an ISO-8601 date .*\[ERR_INVALID_ARGUMENT\]/);
});

test('cvm-skr rotation envelopes names the key version of each file from its header', async (t) => {
  const dir = await tempDir(t);
  const key = createSecretKey(randomBytes(32));
  const kid = 'https://v.vault.azure.net/keys/data/0123456789abcdef0123456789abcdef';
  const skr = {
    releaseKey: async () => ({
      kid,
      name: 'data',
      version: '0123456789abcdef0123456789abcdef',
      keyType: 'oct-HSM',
      key,
      attributes: {},
      releasedAt: new Date(),
    }),
  };
  const cipher = new EnvelopeCipher({ skr, keyId: 'https://v.vault.azure.net/keys/data' });
  await writeFile(join(dir, 'a.env'), await cipher.encrypt(randomBytes(50_000)));
  await writeFile(join(dir, 'b.txt'), 'not an envelope');
  const out = await cli([
    'rotation',
    'envelopes',
    join(dir, 'a.env'),
    join(dir, 'b.txt'),
    join(dir, 'missing'),
    dir,
  ]);
  t.is(out.code, 2, 'a file that is not an envelope is malformed input');
  t.true(out.stdout.includes(`cannot read ${dir}: it is a directory [ERR_INVALID_ARGUMENT]`), out.stdout);
  t.true(out.stdout.includes(`a.env: ${kid} (AES-KWP, 50000 bytes of data)`), out.stdout);
  t.regex(
    out.stdout,
    /b\.txt: not a valid cvm-skr envelope: it does not start with "CSKE" \[ERR_ENVELOPE_FORMAT\]/,
  );
  t.regex(out.stdout, /missing: cannot read .*missing: no such file \[ERR_INVALID_ARGUMENT\]/);
  const json = await cli(['rotation', 'envelopes', join(dir, 'a.env'), '--json']);
  t.is(json.code, 0, json.stderr);
  t.like((JSON.parse(json.stdout) as unknown[])[0], {
    kid,
    version: '0123456789abcdef0123456789abcdef',
    dataLength: 50_000,
  });
});
