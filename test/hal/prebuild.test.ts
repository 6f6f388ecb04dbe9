import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import test from 'ava';
// @ts-expect-error: a plain .mjs build script without type declarations
import { nativeSourceHash } from '../../scripts/native-hash.mjs';

const run = promisify(execFile);

test('the committed prebuild was made from the current native sources', (t) => {
  const recorded = readFileSync(
    new URL('../../prebuilds/native-sources.sha256', import.meta.url),
    'utf8',
  ).trim();
  t.is(
    recorded,
    nativeSourceHash() as string,
    'native/ or binding.gyp changed since the prebuild was made: run "npm run prebuild" and commit prebuilds/',
  );
});

// Prebuilds are made for linux-x64 only: elsewhere this is skipped, not passed.
(process.platform === 'linux' && process.arch === 'x64' ? test : test.skip)('the prebuild loads with PREBUILDS_ONLY=1 and opens devices', async (t) => {
  const script = `
    const { tryLoadAddon } = await import('./src/hal/addon.ts');
    const loaded = tryLoadAddon();
    if (loaded instanceof Error) { console.log(JSON.stringify({ error: loaded.message })); process.exit(0); }
    const error = await loaded.addon.openTpm('/nonexistent/tpm', 1000).catch((e) => e);
    console.log(JSON.stringify({ path: loaded.path, supported: loaded.addon.supported, errno: error.errno }));
  `;
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    env: { ...process.env, PREBUILDS_ONLY: '1' },
  });
  const result = JSON.parse(stdout);
  t.is(result.error, undefined);
  t.regex(result.path, /prebuilds\/linux-x64\/cvm-skr\.glibc\.node$/);
  t.true(result.supported);
  t.is(result.errno, 2, 'ENOENT from the prebuilt binary');
});
