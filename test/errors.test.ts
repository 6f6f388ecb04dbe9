import { readFileSync } from 'node:fs';
import test from 'ava';
import {
  CvmSkrError,
  type CvmSkrErrorCode,
  InvalidArgumentError,
  ReleaseDeniedError,
  TimeoutError,
  VcekFetchError,
} from '../src/errors.js';
import * as errors from '../src/errors.js';
import { errorRows } from '../scripts/error-table.js';

const source = readFileSync(new URL('../src/errors.ts', import.meta.url), 'utf8');
const emulatorSource = readFileSync(new URL('../src/emulator/errors.ts', import.meta.url), 'utf8');

/** The keys of an interface in `text`, e.g. the codes of `CvmSkrErrorCodes`. */
function interfaceKeys(text: string, name: string): string[] {
  const body = new RegExp(`interface ${name}\\s+(?:extends [\\w,\\s]+)?\\{([\\s\\S]*?)\\n\\s*\\}`).exec(text)?.[1] ?? '';
  return [...body.matchAll(/^\s*([A-Z][A-Z0-9_]+): true;/gm)].map((m) => m[1]!);
}

test('CvmSkrErrorCode lists exactly the codes of the classes and their documented variants', (t) => {
  const parents = /interface CvmSkrErrorCodes\s+extends ([\w,\s]+) \{/.exec(source)?.[1]?.split(/,\s*/) ?? [];
  t.deepEqual(parents, ['EvidenceFailureCodes', 'AttestationTokenFailureCodes', 'MalformedDataFailureCodes']);
  const listed = ['CvmSkrErrorCodes', ...parents].flatMap((name) => interfaceKeys(source, name));
  t.true(listed.includes('ERR_RELEASE_DENIED'), 'the scan finds the union');
  const documented = ['ERR_CVM_SKR', ...errorRows(source).map((r) => r.code)];
  t.deepEqual([...listed].sort(), [...new Set(documented)].sort());
});

test('cvm-skr/emulator adds exactly the codes of its classes and evidence rules to the union', (t) => {
  const listed = ['CvmSkrErrorCodes', 'EvidenceFailureCodes'].flatMap((name) => interfaceKeys(emulatorSource, name));
  t.true(listed.includes('ERR_EMULATOR_STATE'), 'the scan finds the augmentation');
  t.deepEqual([...listed].sort(), errorRows(emulatorSource).map((r) => r.code).sort());
  const mainCodes = new Set(errorRows(source).map((r) => r.code));
  t.deepEqual(
    listed.filter((code) => mainCodes.has(code)),
    [],
    'no code is defined twice',
  );
});

test('each class has its own static code, and its instances carry it', (t) => {
  const classes = Object.values(errors).filter(
    (value): value is typeof CvmSkrError => typeof value === 'function' && value.prototype instanceof Error,
  );
  t.true(classes.length > 20);
  const codes = classes.map((c) => c.code);
  t.is(new Set(codes).size, codes.length, 'no two classes share a code');
  const denied = new ReleaseDeniedError('refused');
  const code: CvmSkrErrorCode = denied.code;
  t.is(code, ReleaseDeniedError.code);
  t.is(new TimeoutError('late', { timeoutMs: 1 }).code, 'ERR_TIMEOUT');
  t.true(new TimeoutError('late', { timeoutMs: 1 }) instanceof CvmSkrError);
  t.is(new InvalidArgumentError('bad').name, 'InvalidArgumentError');
});

test('an HTTP status is statusCode on every error that carries one', (t) => {
  t.is(new VcekFetchError('THIM answered 404', 404).statusCode, 404);
  t.is(new errors.AttestationRequestError('429', { statusCode: 429 }).statusCode, 429);
  t.false('status' in new errors.AttestationRequestError('429', { statusCode: 429 }));
  t.is(new errors.KeyVaultRequestError('404', { statusCode: 404 }).statusCode, 404);
  t.is(new errors.RotationRequestError('403', { statusCode: 403 }).statusCode, 403);
  t.is(new errors.EventDeliveryError('bad', 400).statusCode, 400);
  t.is(new ReleaseDeniedError('refused', { statusCode: 403 }).statusCode, 403);
  // No class declares another name for it.
  t.notRegex(source + emulatorSource, /readonly (status|httpStatus)\??:/);
});

test('src/errors.ts has no placeholder comments', (t) => {
  t.notRegex(source, /go here|TODO|placeholder for/i);
});
