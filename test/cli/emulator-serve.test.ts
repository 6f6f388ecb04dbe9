/**
 * `cvm-skr emulator` in words: what it prints is what a client needs (every export, the CA file, the options a
 * Node client must set), and SIGTERM stops it and removes the files it wrote. The output is this project's own;
 * no service artifact applies.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import test from 'ava';
import type { SecureKeyReleaseOptions } from '../../src/keyvault/secure-key-release.js';
import { serveEmulator } from '../helpers/emulator-process.js';

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', ...args],
      { env, timeout: 90_000 },
      (error, stdout, stderr) =>
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr }),
    );
  });
}

// Typed as option names: renaming an option breaks this file, so the printed hint cannot go stale silently.
const HINTED_OPTIONS: (keyof SecureKeyReleaseOptions)[] = ['attestationCa', 'releaseSigningRoots'];

test('the printed environment names the CA file, and the hint names the SecureKeyRelease options a Node client needs; SIGTERM removes the CA file', async (t) => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'emulator'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  const output = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('not under a public root.\n')) resolve(out);
    });
    void exited.then((code) => reject(new Error(`the emulator exited with ${code}: ${out}`)));
  });
  const exports = Object.fromEntries(
    [...output.matchAll(/^ {2}export (\w+)=(".*")$/gm)].map((m) => [m[1]!, JSON.parse(m[2]!) as string]),
  );
  t.truthy(exports.CVM_SKR_ATTESTATION_URL);
  const caFile = exports.CVM_SKR_CA_FILE!;
  t.is(exports.NODE_EXTRA_CA_CERTS, caFile);
  t.regex(readFileSync(caFile, 'utf8'), /^-----BEGIN CERTIFICATE-----/);
  for (const option of HINTED_OPTIONS) t.true(output.includes(option), `the hint names ${option}`);
  child.kill('SIGTERM');
  t.is(await exited, 0);
  t.false(existsSync(caFile), 'the CA file is removed when the emulator stops');
});

test('emulator --key creates a key both emulated platforms may release, and release --emulator releases it with the printed environment only', async (t) => {
  const { child, exited, info } = await serveEmulator(t, ['--key', 'mykey'], { ...process.env });
  const keyIds = (info as typeof info & { keyIds: string[] }).keyIds;
  t.deepEqual(keyIds, [`${info.vaultUrl}/keys/mykey`]);
  const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...info.environment };
  for (const platform of ['azure-vtpm', 'sev-guest']) {
    const released = await cli(['release', keyIds[0]!, '--emulator', '--platform', platform, '--json'], env);
    t.is(released.code, 0, `${platform}: ${released.stderr}`);
    t.regex((JSON.parse(released.stdout) as { kid: string }).kid, /\/keys\/mykey\/[0-9a-f]{32}$/);
  }
  child.kill('SIGTERM');
  t.is(await exited, 0);
});

test('emulator --key with a name Key Vault would refuse is a usage error before anything starts', async (t) => {
  const result = await cli(['emulator', '--key', 'my_key'], { ...process.env });
  t.is(result.code, 2);
  t.regex(result.stderr, /--key my_key: a key name is 1-127 letters, digits and dashes/);
  t.is(result.stdout, '', 'no emulator was started');
});
