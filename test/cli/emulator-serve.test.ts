/**
 * `cvm-skr emulator` in words: what it prints is what a client needs (every export, the CA file, the options a
 * Node client must set), and SIGTERM stops it and removes the files it wrote. The output is this project's own;
 * no service artifact applies.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { SecureKeyReleaseOptions } from '../../src/keyvault/secure-key-release.js';
import { runCli } from '../helpers/cli-process.js';
import { serveEmulator } from '../helpers/emulator-process.js';

function cli(args: string[], env: NodeJS.ProcessEnv) {
  return runCli(args, { env });
}

// Typed as option names: renaming an option breaks this file, so the printed hint cannot go stale silently.
const HINTED_OPTIONS: (keyof SecureKeyReleaseOptions)[] = ['attestationCa', 'releaseSigningRoots'];

test('the printed environment names the CA file, and the hint names the SecureKeyRelease options a Node client needs; SIGTERM removes the CA file', async (t) => {
  // --no-cache: in-memory emulator-only roots, nothing written to the user's cache.
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'emulator', '--no-cache'], {
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
  const { child, exited, info } = await serveEmulator(t, ['--no-cache', '--key', 'mykey', '--key', 'mykey'], {
    ...process.env,
  });
  const keyIds = (info as typeof info & { keyIds: string[] }).keyIds;
  t.deepEqual(keyIds, [`${info.vaultUrl}/keys/mykey`], 'a name given twice is one key');
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

test('emulator --key that the vault cannot create (a deleted key of that name) is one coded error, and the emulator stops and frees its state file', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-serve-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const state = path.join(dir, 'state.json');
  const first = await serveEmulator(t, ['--no-cache', '--state', state, '--key', 'gone'], { ...process.env });
  const env = first.info.environment;
  const { EmulatorCredential } = await import('../../src/emulator/identity/credential.js');
  const { KeyClient } = await import('@azure/keyvault-keys');
  const client = new KeyClient(
    first.info.vaultUrl,
    new EmulatorCredential({ tokenUrl: env.IDENTITY_ENDPOINT!, identityHeader: env.IDENTITY_HEADER! }),
    { disableChallengeResourceVerification: true, tlsOptions: { ca: readFileSync(env.CVM_SKR_CA_FILE!, 'utf8') } },
  );
  await client.beginDeleteKey('gone');
  first.child.kill('SIGTERM');
  t.is(await first.exited, 0);
  const second = await cli(['emulator', '--no-cache', '--state', state, '--key', 'gone'], { ...process.env });
  t.is(second.code, 2, second.stderr);
  t.regex(second.stderr, /--key gone: the emulated vault did not create it .*purged or recovered first \[ERR_INVALID_ARGUMENT\]/);
  t.false(existsSync(`${state}.lock`), 'the state file is not left locked');
});
