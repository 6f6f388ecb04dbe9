import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import ts from 'typescript';
import { errorRows, errorTables } from '../scripts/error-table.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const rows = ['../src/errors.ts', '../src/emulator/errors.ts'].flatMap((file) =>
  errorRows(readFileSync(new URL(file, import.meta.url), 'utf8')),
);

test('every error code is unique and documented in the README', (t) => {
  t.true(rows.length > 50);
  t.is(new Set(rows.map((r) => r.code)).size, rows.length, 'codes are unique');
  const missing = rows.filter((r) => !readme.includes(`\`${r.code}\``)).map((r) => r.code);
  t.deepEqual(missing, [], 'regenerate the table with: npx tsx scripts/error-table.ts');
});

test('the README error tables are exactly what scripts/error-table.ts generates', (t) => {
  t.true(readme.includes(errorTables()), 'regenerate the tables with: npx tsx scripts/error-table.ts');
});

test('the README names only npm scripts that exist', (t) => {
  const scripts = Object.keys(
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).scripts,
  );
  const named = [...readme.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!);
  t.true(named.length > 0);
  t.deepEqual(
    named.filter((n) => !scripts.includes(n)),
    [],
  );
});

test('every TypeScript example in the README type-checks strictly against the library as it is', (t) => {
  // Each ```ts block is compiled as its own ES module, next to package.json (so it is ESM with top-level
  // await), with 'cvm-skr' and 'cvm-skr/emulator' mapped to the sources: an example that names an option,
  // export or field the library does not have fails here, not in a user's editor.
  const root = fileURLToPath(new URL('..', import.meta.url));
  const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  t.true(blocks.length >= 10, 'the README has its examples');
  const files = new Map(blocks.map((code, i) => [path.join(root, `readme-example-${i + 1}.ts`), code]));
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    skipLibCheck: true,
    baseUrl: root,
    paths: { 'cvm-skr': ['src/index.ts'], 'cvm-skr/emulator': ['src/emulator/index.ts'] },
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => {
    const code = files.get(name);
    return code === undefined ? getSourceFile.call(host, name, language, ...rest) : ts.createSourceFile(name, code, language);
  };
  host.fileExists = (name) => files.has(name) || fileExists.call(host, name);
  host.readFile = (name) => files.get(name) ?? readFile.call(host, name);
  const program = ts.createProgram([...files.keys()], options, host);
  const problems = ts
    .getPreEmitDiagnostics(program)
    .filter((d) => d.file !== undefined && files.has(d.file.fileName))
    .map((d) => {
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
      return `${path.basename(d.file!.fileName)}:${line + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    });
  t.deepEqual(problems, []);
});

test('the README examples that need no hardware run as written against the emulator: the Key Vault emulator rotates, the whole emulator releases', async (t) => {
  // Each example runs in its own node with 'cvm-skr' and 'cvm-skr/emulator' pointed at the sources.
  const root = fileURLToPath(new URL('..', import.meta.url));
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-readme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const example = (opening: string) => {
    const block = [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).find((b) => b.startsWith(opening));
    if (block === undefined) throw new Error(`no README example starts with ${opening}`);
    return block
      .replaceAll("from 'cvm-skr/emulator'", `from '${pathToFileURL(path.join(root, 'src/emulator/index.ts')).href}'`)
      .replaceAll("from 'cvm-skr'", `from '${pathToFileURL(path.join(root, 'src/index.ts')).href}'`);
  };
  const run = async (name: string, code: string) => {
    const file = path.join(dir, `${name}.mts`);
    await writeFile(file, code);
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], {
      cwd: root,
      timeout: 120_000,
    });
    return stdout;
  };
  const rotated = await run('key-vault-emulator', example("import { startKeyVaultEmulator } from 'cvm-skr/emulator';"));
  t.is(rotated.trim(), '2', 'two enabled versions after the policy rotated the key');
  // The one change: in-memory emulator-only roots, so the test writes nothing to the user's key cache.
  const whole = example("import { SecureKeyRelease } from 'cvm-skr';\nimport { startEmulator }");
  t.true(whole.includes('await startEmulator();'));
  const released = await run(
    'whole-emulator',
    `${whole.replace('await startEmulator();', 'await startEmulator({ cache: false, rootKeyBits: 2048 });')}\nconsole.log(released.kid);\n`,
  );
  t.regex(released.trim(), /^https:\/\/127\.0\.0\.1:\d+\/keys\/k\/[0-9a-f]{32}$/);
});
