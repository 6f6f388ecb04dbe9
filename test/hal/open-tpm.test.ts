/**
 * Wrong input has no side effects: a TPM path that names a regular file (a mistyped `--tpm`) must be refused
 * before anything is written to it. Before this check the native transport opened the file O_RDWR and wrote
 * a TPM command (14 bytes of NV_ReadPublic from `doctor`) over its first bytes.
 * No Microsoft artifact covers this: it is a local safety property of this project's transports.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { NotATpmError } from '../../src/errors.js';
import { openTpm } from '../../src/hal/open-tpm.js';
import { SocketTpmTransport } from '../../src/hal/socket-transport.js';
import { addonTest } from '../helpers/swtpm.js';

const run = promisify(execFile);
const cli = ['--import', 'tsx', 'src/cli/main.ts'];
const CONTENT = Buffer.from('root:x:0:0:root:/root:/bin/bash\nthe first bytes must survive\n');
const OLD = new Date('2020-01-02T03:04:05Z');

/** A regular file with known bytes and an mtime in the past, so any write would show in both. */
async function victim(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-not-tpm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'passwd');
  await writeFile(file, CONTENT);
  await utimes(file, OLD, OLD);
  return file;
}

async function assertUntouched(t: ExecutionContext, file: string): Promise<void> {
  t.deepEqual(await readFile(file), CONTENT, 'the file is byte-for-byte unchanged');
  t.is((await stat(file)).mtime.getTime(), OLD.getTime(), 'its mtime is unchanged');
}

addonTest('openTpm on a regular file rejects with ERR_NOT_A_TPM and leaves the file unchanged', async (t) => {
  const file = await victim(t);
  const error = await t.throwsAsync(openTpm({ path: file }), { instanceOf: NotATpmError });
  t.is(error?.code, 'ERR_NOT_A_TPM');
  t.is(error?.fileType, 'regular file');
  t.regex(error!.message, /not a TPM/);
  await assertUntouched(t, file);
});

addonTest('openTpm on a directory or a FIFO is refused as not a TPM', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-not-tpm-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const sub = path.join(dir, 'sub');
  await mkdir(sub);
  const fifo = path.join(dir, 'fifo');
  await run('mkfifo', [fifo]);
  t.is((await t.throwsAsync(openTpm({ path: sub }), { instanceOf: NotATpmError }))?.fileType, 'directory');
  t.is((await t.throwsAsync(openTpm({ path: fifo }), { instanceOf: NotATpmError }))?.fileType, 'FIFO');
});

addonTest('a character device that is not a TPM (/dev/null) is refused as not a TPM before anything is written to it', async (t) => {
  // /dev/null has no poll operation, so the event loop's poller refuses it (epoll_ctl: EPERM); the addon
  // closes it without writing. Before, this surfaced as ERR_DEVICE_PERMISSION, "run as root", even as root.
  const error = await t.throwsAsync(openTpm({ path: '/dev/null' }), { instanceOf: NotATpmError });
  t.is(error?.code, 'ERR_NOT_A_TPM');
  t.regex(error!.fileType, /character device that cannot be polled/);
});

addonTest('a read-only regular file is refused as not a TPM, not as a permission problem', async (t) => {
  const file = await victim(t);
  await run('chmod', ['0444', file]);
  await t.throwsAsync(openTpm({ path: file }), { instanceOf: NotATpmError });
});

test('the TypeScript socket transport refuses a regular file as its socket path', async (t) => {
  const file = await victim(t);
  await t.throwsAsync(SocketTpmTransport.connect({ socketPath: file }), {
    instanceOf: NotATpmError,
  });
  await assertUntouched(t, file);
});

test('cvm-skr doctor --tpm <regular file> reports it is not a TPM and does not write to it', async (t) => {
  const file = await victim(t);
  const { stdout } = await run(process.execPath, [...cli, 'doctor', '--json', '--tpm', file]);
  const report = JSON.parse(stdout) as { backends: { kind: string; available: boolean; reason: string }[] };
  const vtpm = report.backends.find((b) => b.kind === 'azure-vtpm')!;
  t.false(vtpm.available);
  t.regex(vtpm.reason, /is not a TPM/);
  await assertUntouched(t, file);
});

addonTest('cvm-skr doctor --tpm /dev/null says it is not a TPM, not that another process holds the TPM', async (t) => {
  const { stdout } = await run(process.execPath, [...cli, 'doctor', '--json', '--tpm', '/dev/null']);
  const report = JSON.parse(stdout) as { backends: { kind: string; available: boolean; reason: string }[] };
  const vtpm = report.backends.find((b) => b.kind === 'azure-vtpm')!;
  t.false(vtpm.available);
  t.regex(vtpm.reason, /cannot be polled.*not a TPM/);
  t.notRegex(vtpm.reason, /another process/);
});

addonTest('cvm-skr attest --tpm <regular file> fails with ERR_NOT_A_TPM and does not write to it', async (t) => {
  const file = await victim(t);
  const error = (await t.throwsAsync(
    run(process.execPath, [...cli, 'attest', '--endpoint', 'https://127.0.0.1:9', '--tpm', file]),
  )) as unknown as { stderr: string; code: number };
  t.regex(error.stderr, /ERR_NOT_A_TPM/);
  t.notRegex(error.stderr, /\n\s+at /, 'no stack trace');
  await assertUntouched(t, file);
});

addonTest('cvm-skr release --tpm <regular file> fails with ERR_NOT_A_TPM and does not write to it', async (t) => {
  const file = await victim(t);
  const error = (await t.throwsAsync(
    run(process.execPath, [...cli, 'release', 'https://v.example/keys/k', '--endpoint', 'https://127.0.0.1:9', '--tpm', file]),
  )) as unknown as { stderr: string; code: number };
  t.is(error.code, 2, 'a wrong path is a usage error');
  t.regex(error.stderr, /ERR_NOT_A_TPM/);
  await assertUntouched(t, file);
});
