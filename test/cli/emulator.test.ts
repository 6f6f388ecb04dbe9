import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { runCli } from '../helpers/cli-process.js';
import { startSwtpm, swtpmTest } from '../helpers/swtpm.js';

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runCli(args, { env: { ...process.env, ...env }, timeoutMs: 60_000 });
}

test('cvm-skr attest --emulator --json prints a verified token for both emulated platforms', async (t) => {
  for (const platform of ['azure-vtpm', 'sev-guest']) {
    const out = await cli([
      'attest',
      '--emulator',
      '--no-cache',
      '--json',
      '--platform',
      platform,
      '--nonce',
      '0a0b',
    ]);
    t.is(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout) as {
      protocol: string;
      claims: Record<string, unknown>;
      token?: string;
    };
    t.is(result.protocol, platform === 'sev-guest' ? 'SevSnpVm' : 'AzureGuest');
    t.is(result.claims['x-ms-attestation-type'], platform === 'sev-guest' ? 'sevsnpvm' : 'azurevm');
    t.is(result.token, undefined, 'the bearer token is printed only on request');
  }
});

swtpmTest('cvm-skr emulator provision-swtpm, then attest --emulator --tpm against it (shared key cache)', async (t) => {
  const swtpm = await startSwtpm({ tcp: true });
  t.teardown(swtpm.stop);
  const cacheDir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-cli-cache-'));
  t.teardown(() => rm(cacheDir, { recursive: true, force: true }));
  const env = { CVM_SKR_EMULATOR_CACHE: cacheDir };
  const provisioned = await cli(['emulator', 'provision-swtpm', '--tpm', swtpm.tcp!, '--json'], env);
  t.is(provisioned.code, 0, provisioned.stderr);
  const summary = JSON.parse(provisioned.stdout) as {
    hclReportBytes: number;
    akHandle: string;
    keyCache: string;
  };
  t.is(summary.akHandle, '0x81000003');
  t.true(summary.hclReportBytes <= 2048);
  t.is(summary.keyCache, cacheDir);
  // A second process loads the cached emulated roots and VCEK and so accepts the report written by the first.
  const attested = await cli(['attest', '--emulator', '--tpm', swtpm.tcp!, '--json'], env);
  t.is(attested.code, 0, attested.stderr);
  const result = JSON.parse(attested.stdout) as { platform: string; claims: Record<string, unknown> };
  t.is(result.platform, 'azure-vtpm');
  const tee = result.claims['x-ms-isolation-tee'] as Record<string, unknown>;
  t.is(tee['x-ms-compliance-status'], 'azure-compliant-cvm');
});

test('cvm-skr attest without --endpoint or --emulator says what to give', async (t) => {
  const out = await cli(['attest']);
  t.not(out.code, 0);
  t.regex(out.stderr, /--endpoint.*--emulator/);
  t.regex(out.stderr, /ERR_INVALID_ARGUMENT/);
});
