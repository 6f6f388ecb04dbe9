import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { detectPlatform, HCL_REPORT_NV_INDEX } from '../../src/hal/detect.js';
import { NativeTpmTransport } from '../../src/hal/native-transport.js';
import { storeNvBlob } from '../../src/tpm/provision.js';
import { Tpm } from '../../src/tpm/tpm.js';
import { addonTest, startSwtpm, swtpmTest } from '../helpers/swtpm.js';

const run = promisify(execFile);

test('detectPlatform on a machine with no confidential hardware explains every backend', async (t) => {
  const report = await detectPlatform({
    tpmPath: '/nonexistent/tpmrm0',
    sevGuestPath: '/nonexistent/sev-guest',
    configfsTsmPath: '/nonexistent/tsm/report',
  });
  t.is(report.selected, null);
  t.deepEqual(
    report.backends.map((b) => [b.kind, b.available, b.automatic]),
    [
      ['azure-vtpm', false, true],
      ['sev-guest', false, true],
      ['emulated-azure-vtpm', true, false],
      ['emulated-sev-guest', true, false],
    ],
  );
  t.regex(report.backends[0]!.reason, /not found/);
  t.regex(report.backends[1]!.reason, /not an SEV-SNP guest/);
  if (process.platform === 'linux') t.true(report.addon.loaded, report.addon.error);
});

test('a FIFO at the TPM path is shown with the type letter ls -l uses (p) and never opened', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-detect-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'tpmrm0');
  await run('mkfifo', [fifo]);
  // Opening a FIFO for writing blocks until a reader comes: finishing at all shows it was not opened.
  const report = await detectPlatform({
    tpmPath: fifo,
    sevGuestPath: '/nonexistent/sev-guest',
    configfsTsmPath: '/nonexistent/tsm/report',
  });
  t.regex(report.tpm.mode ?? '', /^p\d{3} /);
  t.false(report.backends[0]!.available);
  t.regex(report.backends[0]!.reason, /is not a TPM \(p\d{3} /);
});

/** detectPlatform with its TPM path at a Unix socket served by `onConnection`, stopped at teardown. */
async function detectAtStandIn(t: ExecutionContext, onConnection: (socket: Socket) => void) {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-detect-'));
  const socketPath = path.join(dir, 'tpm.sock');
  const held: Socket[] = [];
  const server = createServer((socket) => {
    held.push(socket);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(async () => {
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });
  return detectPlatform({
    tpmPath: socketPath,
    sevGuestPath: '/nonexistent/sev-guest',
    configfsTsmPath: '/nonexistent/tsm/report',
  });
}

addonTest('a socket that accepts but never answers (such as swtpm\'s control socket) is reported as that, not as a busy /dev/tpm0', async (t) => {
  const report = await detectAtStandIn(t, () => {});
  t.is(report.tpm.hclReportIndex, 'unknown');
  t.regex(report.backends[0]!.reason, /accepted the connection but did not answer NV_ReadPublic; is it a TPM \(swtpm's server socket, not its control socket\)\?/);
  t.notRegex(report.backends[0]!.reason, /tpm0/);
});

addonTest('a TPM that answers NV_ReadPublic with TPM_RC_INITIALIZE is reported as not started, with the swtpm flag that starts it', async (t) => {
  // A response header only (TPM 2.0 Part 1, section 18): TPM_ST_NO_SESSIONS, size 10, TPM_RC_INITIALIZE.
  const report = await detectAtStandIn(t, (socket) =>
    socket.once('data', () => socket.end(Buffer.from('80010000000a00000100', 'hex'))),
  );
  t.is(report.tpm.hclReportIndex, 'unknown');
  t.regex(report.backends[0]!.reason, /TPM_RC_INITIALIZE \(0x100\): the TPM was not started \(for swtpm: --flags startup-clear\)/);
});

addonTest('a socket file nothing listens on (left behind) is reported as that, not as a silent TPM', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-detect-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'tpm.sock');
  // A bound socket file whose server is gone: Node removes its own socket files on close, Python does not.
  await run('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socketPath)})`]);
  const report = await detectPlatform({
    tpmPath: socketPath,
    sevGuestPath: '/nonexistent/sev-guest',
    configfsTsmPath: '/nonexistent/tsm/report',
  });
  t.regex(report.backends[0]!.reason, /nothing listens on this socket \(a socket file left behind, or swtpm is not running\)/);
});

swtpmTest('detectPlatform tells a plain TPM from an Azure vTPM by the HCL report index', async (t) => {
  const swtpm = await startSwtpm();
  t.teardown(swtpm.stop);
  const options = {
    tpmPath: swtpm.socketPath,
    sevGuestPath: '/nonexistent/sev-guest',
    configfsTsmPath: '/nonexistent/tsm',
  };
  const plain = await detectPlatform(options);
  t.is(plain.tpm.hclReportIndex, 'undefined');
  t.false(plain.backends[0]!.available);
  t.regex(plain.backends[0]!.reason, /not an Azure confidential VM/);
  t.is(plain.selected, null);

  const transport = await NativeTpmTransport.open(swtpm.socketPath);
  try {
    await storeNvBlob(new Tpm(transport), HCL_REPORT_NV_INDEX, new Uint8Array(64).fill(7));
  } finally {
    await transport.close();
  }
  const vtpm = await detectPlatform(options);
  t.is(vtpm.tpm.hclReportIndex, 'defined');
  t.true(vtpm.backends[0]!.available);
  t.is(vtpm.selected, 'azure-vtpm');
});

test('cvm-skr doctor --json prints the detection, with the addon loaded on Linux', async (t) => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor', '--json']);
  const report = JSON.parse(stdout);
  t.is(report.addon.loaded, process.platform === 'linux');
  t.is(report.backends.length, 4);
  const text = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'doctor']);
  t.regex(text.stdout, /backends:/);
  t.regex(text.stdout, /emulated-azure-vtpm/);
});
