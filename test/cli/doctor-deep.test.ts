/**
 * `cvm-skr doctor --deep` against a swtpm provisioned as an Azure vTPM and the emulated IMDS. What it reports
 * follows the checks of Microsoft's guest library (Azure/confidential-computing-cvm-guest-attestation
 * client-library/src/Attestation/AttestationClient/lib/TpmCertOperations.cpp: placeholder issuer, 90-day
 * renewal threshold; ImdsOperations.cpp: THIM). It must stay read-only: nothing renewed, NV unchanged.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { provisionSwtpmAsAzureVtpm } from '../../src/emulator/hardware/provision-swtpm.js';
import { deepReport, formatDeep, type DeepReport } from '../../src/cli/doctor-deep.js';
import { AZURE_VTPM } from '../../src/tpm/azure-layout.js';
import { nvReadAll, nvReadPublic } from '../../src/tpm/commands/nv.js';
import { storeNvBlob } from '../../src/tpm/provision.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { startSwtpm, swtpmTest } from '../helpers/swtpm.js';
import { connectSwtpm } from '../helpers/transport.js';
import { hardware, imds } from '../helpers/emulated-hardware.js';

const run = promisify(execFile);
const { amd, akCa } = await hardware();
const DAY = 86_400_000;

async function akCertNv(transport: Awaited<ReturnType<typeof connectSwtpm>>): Promise<Buffer> {
  const tpm = new Tpm(transport);
  const info = await nvReadPublic(tpm, AZURE_VTPM.AK_CERT_INDEX);
  return Buffer.from(await nvReadAll(tpm, { nvIndex: AZURE_VTPM.AK_CERT_INDEX, chunkSize: 1024, public: info.public }));
}

/** A swtpm laid out as an Azure vTPM whose AK certificate expires in 30 days; its transport closed again. */
async function rig(t: ExecutionContext) {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const transport = await connectSwtpm(swtpm);
  let nvBefore: Buffer;
  try {
    const { layout } = await provisionSwtpmAsAzureVtpm(transport, { amd, akCa });
    const soon = await akCa.issue(layout.ak.publicKey, undefined, {
      notBefore: new Date(Date.now() - 300 * DAY),
      notAfter: new Date(Date.now() + 30 * DAY),
    });
    await storeNvBlob(new Tpm(transport), AZURE_VTPM.AK_CERT_INDEX, soon);
    nvBefore = await akCertNv(transport);
  } finally {
    await transport.close();
  }
  const metadata = await imds(t, { amd, akCa });
  return { swtpm, metadata, nvBefore };
}

function checkReport(t: ExecutionContext, deep: DeepReport): void {
  t.true(deep.thim.ok);
  t.is(BigInt(`0x${deep.thim.tcbm}`), amd.tcb.raw);
  t.is(deep.thim.chainCertificates, 2);
  t.regex(deep.thim.vcek?.subject ?? '', /SEV-VCEK/);
  t.true(deep.tpm.opened);
  t.false(deep.tpm.resourceManager);
  t.is(deep.akCertificate?.renewalDue, true);
  t.is(deep.akCertificate?.placeholder, false);
  t.true(deep.akCertificate!.daysLeft >= 29 && deep.akCertificate!.daysLeft <= 30);
  t.regex(deep.akCertificate?.advice ?? '', /renewal is due/);
  t.is(deep.hclReport?.reportType, 'snp');
  t.true(deep.hclReport?.version === 1 || deep.hclReport?.version === 2);
  t.is(deep.hclReport?.reportedTcb && BigInt(`0x${deep.hclReport.reportedTcb}`), amd.tcb.raw);
  t.true(deep.pcrBanks?.some((b) => b.algorithm === 'sha256' && b.pcrs.length === 24));
  t.false(deep.tcgLog.readable);
}

swtpmTest('doctor --deep --json reports THIM, the AK certificate due for renewal, HCL report, PCR banks and TCG log, and renews nothing', async (t) => {
  const { swtpm, metadata, nvBefore } = await rig(t);
  const { stdout } = await run(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'doctor', '--deep', '--json', '--tpm', swtpm.socketPath, '--imds', metadata.url],
    { env: { ...process.env, CVM_SKR_IMDS_URL: '' } },
  );
  const out = JSON.parse(stdout) as { deep: DeepReport; backends: unknown[] };
  t.true(Array.isArray(out.backends), 'the plain doctor report is still there');
  checkReport(t, out.deep);
  t.is(metadata.counters.renew, 0);
  t.is(metadata.counters.vmId, 0);
  const transport = await connectSwtpm(swtpm);
  t.teardown(() => transport.close());
  t.deepEqual(await akCertNv(transport), nvBefore, 'the AK certificate in NV is untouched');
});

swtpmTest('doctor --deep in words names every check and lists the due renewal and the unreadable TCG log as problems', async (t) => {
  const { swtpm, metadata } = await rig(t);
  const deep = await deepReport({
    tpm: swtpm.socketPath,
    imdsUrl: metadata.url,
    eventLog: '/nonexistent/cvm-skr-test/binary_bios_measurements',
  });
  checkReport(t, deep);
  const text = formatDeep(deep);
  for (const label of ['THIM', 'TPM', 'AK certificate', 'HCL report', 'PCR banks', 'TCG log'])
    t.regex(text, new RegExp(`^  ${label}\\s`, 'm'));
  t.regex(text, /^problems:$/m);
  t.regex(text, /^ {2}- AK certificate: renewal is due/m);
  t.regex(text, /- the TCG log cannot be read \(ENOENT\)/);
  t.is(metadata.counters.renew, 0);
});

test('doctor --deep with IMDS unreachable says THIM failed and that attestation cannot work', async (t) => {
  const deep = await deepReport({ tpm: '/nonexistent/tpm', imdsUrl: 'http://127.0.0.1:9' });
  t.false(deep.thim.ok);
  t.false(deep.tpm.opened);
  t.regex(deep.problems.join('\n'), /THIM is not reachable.*no VCEK chain/);
});

test('doctor --deep on a machine without /dev/tpmrm0 does not call the missing device a resource manager in use', async (t) => {
  const deep = await deepReport({ tpm: '/nonexistent/tpmrm0', imdsUrl: 'http://127.0.0.1:9' });
  t.false(deep.tpm.opened);
  t.false(deep.tpm.resourceManager);
  t.notRegex(formatDeep(deep), /resource manager \(tpmrm\) is in use/);
  t.regex(formatDeep(deep), /\/nonexistent\/tpmrm0 does not exist/);
});
