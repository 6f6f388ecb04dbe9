/**
 * The public surface of `cvm-skr` (src/index.ts): it names no emulator error. The emulator's errors live in
 * src/emulator/errors.ts and are exported from `cvm-skr/emulator` only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import ts from 'typescript';
import * as emulator from '../src/emulator/index.js';
import * as emulatorErrors from '../src/emulator/errors.js';
import { CvmSkrError } from '../src/errors.js';
import * as main from '../src/index.js';

const root = new URL('..', import.meta.url).pathname;

const isErrorClass = (value: unknown): value is typeof CvmSkrError =>
  typeof value === 'function' && value.prototype instanceof CvmSkrError;

const emulatorErrorNames = Object.entries(emulatorErrors)
  .filter(([, value]) => isErrorClass(value))
  .map(([name]) => name);

test('cvm-skr/emulator exports every emulator error, and cvm-skr none of them', (t) => {
  t.true(emulatorErrorNames.includes('EmulatorStateError'), 'the scan finds the emulator errors');
  for (const name of emulatorErrorNames) {
    t.true(name in emulator, `cvm-skr/emulator exports ${name}`);
    t.false(name in main, `cvm-skr exports ${name}`);
  }
  const mainValues = new Set(Object.values(main));
  t.false(
    Object.values(emulatorErrors).some((value) => mainValues.has(value as never)),
    'no emulator error under another name',
  );
});

test("the declarations of cvm-skr's entry point reach no file of src/emulator and name no emulator error", (t) => {
  // The type graph of src/index.ts alone, as a consumer of `cvm-skr` (without `cvm-skr/emulator`) compiles it.
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.build.json'), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: () => undefined,
  })!;
  const program = ts.createProgram([join(root, 'src/index.ts')], { ...config.options, noEmit: true });
  const reached = program
    .getSourceFiles()
    .map((f) => f.fileName)
    .filter((name) => name.startsWith(join(root, 'src')));
  t.true(reached.length > 20, 'the program holds the library');
  t.deepEqual(
    reached.filter((name) => name.startsWith(join(root, 'src/emulator'))),
    [],
  );
  const checker = program.getTypeChecker();
  const index = checker.getSymbolAtLocation(program.getSourceFile(join(root, 'src/index.ts'))!)!;
  const exported = checker.getExportsOfModule(index).map((s) => s.name);
  t.true(exported.includes('SecureKeyRelease'));
  t.deepEqual(
    exported.filter((name) => emulatorErrorNames.includes(name)),
    [],
  );
});

test('every error class of src/errors.ts is thrown outside the emulator, or is the base of one that is', (t) => {
  const source = readFileSync(join(root, 'src/errors.ts'), 'utf8');
  const classes = [...source.matchAll(/^export class (\w+) extends (\w+)/gm)].map((m) => ({ name: m[1]!, base: m[2]! }));
  const bases = new Set(classes.map((c) => c.base));
  const files = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? e.name === 'emulator'
          ? []
          : files(join(dir, e.name))
        : e.name.endsWith('.ts') && e.name !== 'errors.ts'
          ? [join(dir, e.name)]
          : [],
    );
  const library = files(join(root, 'src'))
    .map((f) => readFileSync(f, 'utf8'))
    .join('\n');
  const emulatorOnly = classes
    .filter((c) => !bases.has(c.name))
    .filter((c) => !new RegExp(`\\bnew ${c.name}\\(`).test(library))
    .map((c) => c.name);
  t.deepEqual(emulatorOnly, [], 'move these to src/emulator/errors.ts');
});
