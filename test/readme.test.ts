import { readFileSync } from 'node:fs';
import test from 'ava';
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
