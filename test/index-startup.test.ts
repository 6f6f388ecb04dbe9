import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../', import.meta.url));

// A module hook that reports every package (bare specifier) the child resolves, on stderr.
const HOOKS = `data:text/javascript,${encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (!/^(node:|\\.|\\/|file:|data:)/.test(specifier)) process.stderr.write('PACKAGE ' + specifier + '\\n');
  return next(specifier, context);
}`)}`;
const REGISTER = `data:text/javascript,${encodeURIComponent(
  `import { register } from 'node:module'; register(${JSON.stringify(HOOKS)});`,
)}`;

async function packagesLoadedBy(args: string[]): Promise<Set<string>> {
  const { stderr } = await run(process.execPath, ['--import', REGISTER, '--import', 'tsx', ...args], {
    cwd: ROOT,
  });
  return new Set([...stderr.matchAll(/^PACKAGE (\S+)$/gm)].map((m) => m[1]!.replace(/^(@[^/]+\/[^/]+|[^@/][^/]*).*$/, '$1')));
}

const HEAVY = [
  '@azure/identity',
  '@peculiar/x509',
  'reflect-metadata',
  'jose',
  '@azure/logger',
  '@azure/core-tracing',
  // The ASN.1 schema stack (about 13 MB of start-up RSS on its own); certificates are read by src/util/der.ts.
  '@peculiar/asn1-schema',
  '@peculiar/asn1-x509',
  '@peculiar/asn1-rsa',
  'asn1js',
];

test("import('cvm-skr') loads no Azure SDK client, jose or the X.509 library", async (t) => {
  const loaded = await packagesLoadedBy(['--input-type=module', '-e', "await import('./src/index.ts')"]);
  t.true(loaded.has('node-gyp-build'), 'the hook sees the packages that do load');
  for (const name of [...HEAVY, '@azure/keyvault-keys'])
    t.false(loaded.has(name), `${name} is loaded at first use, not at import`);
});

test('cvm-skr --help loads no SDK, jose or X.509 package', async (t) => {
  const loaded = await packagesLoadedBy(['src/cli/main.ts', '--help']);
  t.true(loaded.has('commander'));
  for (const name of [...HEAVY, '@azure/keyvault-keys']) t.false(loaded.has(name), `${name} is not loaded`);
});
