/**
 * The published package: every module the shipped code imports is a declared dependency (so the public
 * `.d.ts` resolves under `--install-strategy=nested`), the Azure dependencies share ranges with
 * @azure/keyvault-keys (one copy in an application), a LICENSE ships, and no source map points at a file the
 * package does not contain.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import test from 'ava';

const root = new URL('..', import.meta.url).pathname;
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  files: string[];
  engines: { node: string };
  scripts: Record<string, string>;
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  );
}

/** The package a bare specifier names: `@scope/name` or `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

test('every package that src/ imports, types included, is a declared dependency', (t) => {
  const builtins = new Set(builtinModules);
  const imported = new Set<string>();
  for (const file of sourceFiles(join(root, 'src'))) {
    // Comments may name imports (`import('cvm-skr')`) without making them.
    const text = readFileSync(file, 'utf8')
      .replace(/\/\*[\s\S]*?\*\//g, '')
      .replace(/^\s*\/\/.*$/gm, '');
    const specifiers = [
      ...text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gm),
      ...text.matchAll(/^\s*import\s+'([^']+)'/gm),
      ...text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
    ].map((match) => match[1]!);
    for (const specifier of specifiers) {
      if (specifier.startsWith('.')) continue;
      if (specifier.startsWith('node:') || builtins.has(specifier)) continue;
      imported.add(packageOf(specifier));
    }
  }
  t.true(imported.has('@azure/keyvault-keys'), 'the scan finds imports');
  const undeclared = [...imported].filter((name) => !(name in pkg.dependencies));
  t.deepEqual(undeclared, [], 'add these to "dependencies"');
});

test('src/ names no node:crypto type that the newest @types/node no longer exports (JsonWebKey: use Jwk)', (t) => {
  // Found by scripts/consumer-check.sh: with @types/node 26 and skipLibCheck off, a public .d.ts naming
  // node:crypto's JsonWebKey does not compile. The consumer check needs the registry; this guard does not.
  // Any use counts (a named import, crypto.JsonWebKey, import('node:crypto').JsonWebKey); jwk.ts only names
  // it in the comment that says why it is not used.
  const offenders = sourceFiles(join(root, 'src')).filter(
    (file) => !file.endsWith('/util/jwk.ts') && /\bJsonWebKey\b/.test(readFileSync(file, 'utf8')),
  );
  t.deepEqual(offenders, []);
});

test('Azure dependencies use caret ranges, so an application that also uses the Azure SDK gets one copy', (t) => {
  const azure = Object.entries(pkg.dependencies).filter(([name]) => name.startsWith('@azure/'));
  t.true(azure.length >= 3);
  for (const [name, range] of azure) t.regex(range, /^\^\d+\.\d+\.\d+$/, name);
});

test('a LICENSE ships and the build writes no source maps (their sources are not in the package)', (t) => {
  t.regex(readFileSync(join(root, 'LICENSE'), 'utf8'), /MIT License/);
  const build = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as {
    compilerOptions: { sourceMap?: boolean; declarationMap?: boolean };
  };
  t.is(build.compilerOptions.sourceMap, false);
  t.not(build.compilerOptions.declarationMap, true);
  t.false(pkg.files.includes('src'), 'src/ is not shipped, so maps into it would dangle');
  t.regex(pkg.scripts.prepare!, /rmSync\('dist'/, 'prepare starts from an empty dist/ (no stale maps)');
});

test('engines matches the README: require(esm) without a flag needs Node.js 20.19', (t) => {
  t.is(pkg.engines.node, '>=20.19.0');
  t.regex(readFileSync(join(root, 'README.md'), 'utf8'), /ESM only, Node\.js >= 20\.19/);
});
