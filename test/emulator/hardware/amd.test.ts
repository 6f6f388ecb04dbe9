import { execFile } from 'node:child_process';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { EmulatedAmd, olderTcb } from '../../../src/emulator/hardware/amd.js';
import { parseCertificate } from '../../../src/snp/certificate.js';
import { parseSnpReport } from '../../../src/snp/report.js';
import { readVcekExtensions } from '../../../src/snp/vcek-extensions.js';
import { verifySnpReport } from '../../../src/snp/verify.js';

const execFileAsync = promisify(execFile);

for (const product of ['Milan', 'Genoa', 'Turin'] as const) {
  test(`${product}: emulated reports verify only when the emulated ARK is trusted`, async (t) => {
    const amd = await EmulatedAmd.load({ product, rootKeyBits: 2048, cache: false });
    const reportData = new Uint8Array(64).fill(7);
    const report = await amd.signReport({ reportData });
    const { chainPem } = await amd.vcek();
    const ok = verifySnpReport(report, {
      certificates: chainPem,
      trustedRoots: [amd.trustedRoot],
      reportData,
    });
    t.is(ok.product, product);
    t.is(ok.signer, 'vcek');
    t.true(ok.checks.every((c) => c.ok));
    t.deepEqual(
      ok.checks.map((c) => c.name),
      [
        'certificate-chain',
        'signing-key',
        'vcek-extensions',
        'certificate-validity',
        'report-signature',
        'debug',
        'report-data',
      ],
    );
    const error = t.throws(() => verifySnpReport(report, { certificates: chainPem }));
    t.is((error as { code?: string }).code, 'ERR_SNP_UNTRUSTED_ROOT');
  });
}

test('the VCEK carries the product, TCB and hwID extensions AMD puts there; subjects say emulator', async (t) => {
  const amd = await EmulatedAmd.load({ product: 'Turin', rootKeyBits: 2048, cache: false });
  const { certPem } = await amd.vcek();
  const ext = readVcekExtensions(parseCertificate(new X509Certificate(certPem).raw));
  t.is(ext.productName, 'Turin-C0');
  t.is(ext.bootloader, amd.tcb.bootloader);
  t.is(ext.snp, amd.tcb.snp);
  t.is(ext.microcode, amd.tcb.microcode);
  t.is(ext.fmc, amd.tcb.fmc);
  t.deepEqual(ext.hwid, amd.chipId.subarray(0, 8));
  for (const pem of [certPem, amd.askPem, amd.arkPem])
    t.regex(new X509Certificate(pem).subject, /cvm-skr emulator/);
  const ark = new X509Certificate(amd.arkPem);
  t.is(ark.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
});

test('signature layout: R and S little-endian at 0x2A0 and 0x2E8, a flipped bit breaks it', async (t) => {
  const amd = await EmulatedAmd.load({ rootKeyBits: 2048, cache: false });
  const report = await amd.signReport({});
  const parsed = parseSnpReport(report);
  t.deepEqual([...parsed.signature.r], [...report.subarray(0x2a0, 0x2a0 + 48)].reverse());
  t.deepEqual([...parsed.signature.s], [...report.subarray(0x2e8, 0x2e8 + 48)].reverse());
  const { chainPem } = await amd.vcek();
  const bad = new Uint8Array(report);
  bad[0x90] = (bad[0x90] ?? 0) ^ 1;
  const error = t.throws(() =>
    verifySnpReport(bad, { certificates: chainPem, trustedRoots: [amd.trustedRoot] }),
  );
  t.is((error as { code?: string }).code, 'ERR_SNP_SIGNATURE');
});

test('an older TCB is signed by the VCEK for that TCB, and a minimum TCB refuses it', async (t) => {
  const amd = await EmulatedAmd.load({ rootKeyBits: 2048, cache: false });
  const old = olderTcb('Milan', amd.tcb);
  const report = await amd.signReport({ tcb: old });
  const chain = await amd.chainFor(report);
  t.truthy(chain);
  const ok = verifySnpReport(report, { certificates: chain!, trustedRoots: [amd.trustedRoot] });
  t.is(ok.reportedTcb.snp, old.snp);
  const error = t.throws(() =>
    verifySnpReport(report, {
      certificates: chain!,
      trustedRoots: [amd.trustedRoot],
      minimumTcb: amd.tcb.raw,
    }),
  );
  t.is((error as { code?: string }).code, 'ERR_SNP_TCB_TOO_LOW');
});

test('the hierarchy is cached 0700/0600 per user and the VCEK key is stable across loads', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-amd-cache-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const cache = path.join(dir, 'cache');
  const a = await EmulatedAmd.load({ rootKeyBits: 2048, cache });
  t.is((await stat(cache)).mode & 0o777, 0o700);
  const files = await readdir(cache);
  t.deepEqual(files, ['emulated-amd-milan-rsa2048.json']);
  t.is((await stat(path.join(cache, files[0]!))).mode & 0o777, 0o600);
  const b = await EmulatedAmd.load({ rootKeyBits: 2048, cache });
  t.is(a.arkPem, b.arkPem);
  t.deepEqual(a.chipId, b.chipId);
  const [va, vb] = [await a.vcek(), await b.vcek()];
  const spki = (pem: string) => createPublicKey(pem).export({ format: 'der', type: 'spki' }).toString('hex');
  t.is(spki(va.certPem), spki(vb.certPem));
  // A report signed through one instance verifies with the chain another instance issues.
  const report = await a.signReport({});
  t.notThrows(() => verifySnpReport(report, { certificates: vb.chainPem, trustedRoots: [b.trustedRoot] }));
  // Another process reads the same hierarchy from disk instead of generating one.
  const script = `const { EmulatedAmd } = await import(${JSON.stringify(new URL('../../../src/emulator/hardware/amd.ts', import.meta.url).href)});
const amd = await EmulatedAmd.load({ rootKeyBits: 2048, cache: ${JSON.stringify(cache)} });
process.stdout.write(JSON.stringify({ ark: amd.arkPem, vcek: (await amd.vcek()).certPem }));`;
  const { stdout } = await execFileAsync(process.execPath, [
    '--import',
    'tsx',
    '--input-type=module',
    '-e',
    script,
  ]);
  const other = JSON.parse(stdout) as { ark: string; vcek: string };
  t.is(other.ark, a.arkPem);
  t.is(spki(other.vcek), spki(va.certPem));
});
