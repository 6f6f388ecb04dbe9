import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { aciReport, aciThim } from './_fixtures.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const fx = (p: string): string => join(root, 'test/fixtures', p);

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'verify-report', ...args],
      {
        cwd: root,
        timeout: 60_000,
        env: { ...process.env, UVM_HOST_AMD_CERTIFICATE: '', UVM_SECURITY_CONTEXT_DIR: '' },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const NOW = ['--now', '2025-01-01T00:00:00Z'];

test('ACI report with its THIM JSON: every check passes, exit 0, --json fields', async (t) => {
  const { code, stdout } = await cli([
    fx('snp/aci-milan/report.bin'),
    '--certs',
    fx('snp/aci-milan/thim.json'),
    ...NOW,
    '--json',
  ]);
  t.is(code, 0);
  const result = JSON.parse(stdout);
  t.true(result.ok);
  t.is(result.product, 'Milan');
  t.is(result.signer, 'vcek');
  t.is(result.reportedTcb.raw, '7308000000000003');
  t.true(result.reportData.startsWith('ee986ff2'));
  t.is(result.measurement.length, 96);
  t.is(result.chipId.length, 128);
  t.true(result.checks.every((c: { ok: boolean }) => c.ok));
  t.true(result.checks.some((c: { name: string }) => c.name === 'report-signature'));
});

test('milan-debug: rejected by default (exit 1, FAIL debug), accepted with --allow-debug', async (t) => {
  const args = [fx('snp/milan-debug/report.bin'), '--certs', fx('snp/milan-debug/vcek.der'), ...NOW];
  const rejected = await cli(args);
  t.is(rejected.code, 1);
  t.regex(rejected.stdout, /PASS {2}report-signature/);
  t.regex(rejected.stdout, /FAIL {2}debug.*--allow-debug/, "the refusal names the flag that accepts it");
  t.regex(rejected.stdout, /REJECTED/);
  const accepted = await cli([...args, '--allow-debug']);
  t.is(accepted.code, 0);
  t.regex(accepted.stdout, /OK: SNP report \(Milan, VCEK\)/);
});

test('Azure HCL report is detected; binding checked', async (t) => {
  const { code, stdout } = await cli([
    fx('azure-vtpm/milan/hcl-report.bin'),
    '--certs',
    fx('azure-vtpm/milan/vcek-chain.pem'),
    ...NOW,
  ]);
  t.is(code, 0);
  t.regex(stdout, /PASS {2}parse: HCL report v1/);
  t.regex(stdout, /PASS {2}hcl-binding/);
});

test('a tampered or truncated report, or missing certificates, exit 1', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'cvm-skr-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const tampered = aciReport();
  tampered[0x90] = (tampered[0x90] as number) ^ 1;
  await writeFile(join(dir, 'tampered.bin'), tampered);
  await writeFile(join(dir, 'short.bin'), aciReport().subarray(0, 1000));
  const bad = await cli([
    join(dir, 'tampered.bin'),
    '--certs',
    fx('snp/aci-milan/thim.json'),
    ...NOW,
    '--json',
  ]);
  t.is(bad.code, 1);
  const result = JSON.parse(bad.stdout);
  t.false(result.ok);
  t.deepEqual(result.checks.at(-1), {
    name: 'report-signature',
    ok: false,
    detail: result.checks.at(-1).detail,
  });
  const short = await cli([join(dir, 'short.bin'), '--certs', fx('snp/aci-milan/thim.json')]);
  t.is(short.code, 1);
  t.regex(short.stdout, /FAIL {2}parse: 1000 bytes/);
  const noCerts = await cli([fx('snp/aci-milan/report.bin')]);
  t.is(noCerts.code, 1);
  t.regex(noCerts.stdout, /FAIL {2}certificate-chain: no certificates/);
  const badTime = await cli([fx('snp/aci-milan/report.bin'), '--now', 'yesterday']);
  t.is(badTime.code, 2, 'a bad flag value is a usage error, not a verdict');
  t.regex(badTime.stderr, /not an ISO time \[ERR_INVALID_ARGUMENT\]/);
});

test('--fetch gets the VCEK from THIM (a loopback stand-in) when --certs is absent', async (t) => {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    if (req.headers.metadata !== 'true') return void res.writeHead(400).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(aciThim());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const { code, stdout } = await cli([
    fx('snp/aci-milan/report.bin'),
    '--fetch',
    '--thim-url',
    `http://127.0.0.1:${port}/metadata/THIM/amd/certification`,
    '--kds-url',
    `http://127.0.0.1:${port}/kds`,
    ...NOW,
  ]);
  t.is(code, 0);
  t.is(hits, 1);
  t.regex(stdout, /OK: SNP report \(Milan, VCEK\)/);
});
