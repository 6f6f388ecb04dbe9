/**
 * `cvm-skr emulator` in words: what it prints is what a client needs (every export, the CA file, the options a
 * Node client must set), and SIGTERM stops it and removes the files it wrote. The output is this project's own;
 * no service artifact applies.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import test from 'ava';
import type { SecureKeyReleaseOptions } from '../../src/keyvault/secure-key-release.js';

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
