import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import {
  ConfigfsTsmError,
  DeviceNotFoundError,
  DevicePermissionError,
  InvalidArgumentError,
  UnsupportedPlatformError,
} from '../../src/errors.js';
import { addonTest } from '../helpers/swtpm.js';
import {
  ConfigfsTsmProvider,
  SevGuestIoctlProvider,
  type TsmFileSystem,
} from '../../src/hal/snp-providers.js';

// On an SNP guest the device exists and the negative case cannot run: skipped there, not passed.
(existsSync('/dev/sev-guest') ? test.skip : addonTest)('ioctl provider: no /dev/sev-guest gives a typed device-not-found error with advice', async (t) => {
  const provider = new SevGuestIoctlProvider();
  const error = await t.throwsAsync(provider.getReport({ reportData: new Uint8Array(64) }), {
    instanceOf: DeviceNotFoundError,
  });
  t.is(error?.systemCode, 'ENOENT');
  t.is(error?.syscall, 'open');
  t.is(error?.path, '/dev/sev-guest');
  t.regex(error?.message ?? '', /not an SEV-SNP guest/);
});

test('ioctl provider: bad arguments are refused before any device access', async (t) => {
  const provider = new SevGuestIoctlProvider({ path: '/nonexistent' });
  await t.throwsAsync(provider.getReport({ reportData: new Uint8Array(63) }), {
    instanceOf: InvalidArgumentError,
  });
  await t.throwsAsync(provider.getReport({ reportData: new Uint8Array(64), vmpl: 4 }), {
    instanceOf: InvalidArgumentError,
  });
});

interface FakeTsmOptions {
  provider?: string;
  /** Extra generation bumps on the next inblob write, as if another process wrote too. */
  racingWrites?: number;
  reportSize?: number;
  failOutblob?: boolean;
}

/**
 * configfs semantics over a real temporary folder: mkdir populates the attribute files, writes to inblob and
 * privlevel bump `generation` and regenerate `outblob`/`auxblob`, rmdir removes the populated entry.
 */
async function fakeConfigfs(t: import('ava').ExecutionContext, options: FakeTsmOptions = {}) {
  const root = await fsp.mkdtemp(path.join(tmpdir(), 'cvm-skr-tsm-'));
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  const log: string[] = [];
  const fileSystem: TsmFileSystem = {
    async mkdir(dir) {
      log.push(`mkdir ${path.basename(dir)}`);
      await fsp.mkdir(dir);
      await fsp.writeFile(path.join(dir, 'provider'), `${options.provider ?? 'sev_guest'}\n`);
      await fsp.writeFile(path.join(dir, 'generation'), '0\n');
      await fsp.writeFile(path.join(dir, 'privlevel'), '0\n');
    },
    async rmdir(dir) {
      log.push(`rmdir ${path.basename(dir)}`);
      await fsp.rm(dir, { recursive: true });
    },
    async readFile(file) {
      if (options.failOutblob && path.basename(file) === 'outblob') {
        throw Object.assign(new Error('EIO'), { code: 'EIO', errno: -5, syscall: 'read', path: file });
      }
      return fsp.readFile(file);
    },
    async writeFile(file, data) {
      const dir = path.dirname(file);
      const name = path.basename(file);
      log.push(`write ${name} ${typeof data === 'string' ? data.trim() : data.length}`);
      if (name === 'inblob' && (typeof data === 'string' || data.length !== 64)) {
        throw Object.assign(new Error('EINVAL'), {
          code: 'EINVAL',
          errno: -22,
          syscall: 'write',
          path: file,
        });
      }
      await fsp.writeFile(file, data);
      const generation = Number((await fsp.readFile(path.join(dir, 'generation'), 'utf8')).trim());
      const bump = 1 + (name === 'inblob' ? (options.racingWrites ?? 0) : 0);
      await fsp.writeFile(path.join(dir, 'generation'), `${generation + bump}\n`);
      if (name === 'inblob') {
        const report = Buffer.alloc(options.reportSize ?? 1184);
        Buffer.from(data as Uint8Array).copy(report, 0x50);
        const privlevel = Number((await fsp.readFile(path.join(dir, 'privlevel'), 'utf8')).trim());
        report.writeUInt32LE(privlevel, 0x30);
        await fsp.writeFile(path.join(dir, 'outblob'), report);
        await fsp.writeFile(path.join(dir, 'auxblob'), Buffer.from('cert-table'));
      }
    },
  };
  return { root, fileSystem, log };
}

async function entriesLeft(root: string): Promise<string[]> {
  return fsp.readdir(root);
}

test('configfs-tsm: report carries the 64-byte inblob, VMPL goes to privlevel, entry removed', async (t) => {
  const fake = await fakeConfigfs(t);
  const provider = new ConfigfsTsmProvider({ root: fake.root, fileSystem: fake.fileSystem });
  const reportData = Uint8Array.from({ length: 64 }, (_, i) => i + 1);
  const result = await provider.getReport({ reportData, vmpl: 2, extended: true });
  t.is(result.report.length, 1184);
  t.deepEqual(Buffer.from(result.report.subarray(0x50, 0x90)), Buffer.from(reportData));
  t.is(Buffer.from(result.report).readUInt32LE(0x30), 2);
  t.is(Buffer.from(result.certificateTable!).toString(), 'cert-table');
  t.deepEqual(
    fake.log.map((l) => l.split(' ')[0] + (l.startsWith('write') ? ` ${l.split(' ')[1]}` : '')),
    ['mkdir', 'write privlevel', 'write inblob', 'rmdir'],
  );
  t.true(fake.log.includes('write inblob 64'));
  t.deepEqual(await entriesLeft(fake.root), []);
});

test('configfs-tsm: a generation that moved by more than our writes is a race, and the entry is still removed', async (t) => {
  const fake = await fakeConfigfs(t, { racingWrites: 1 });
  const provider = new ConfigfsTsmProvider({ root: fake.root, fileSystem: fake.fileSystem });
  const error = await t.throwsAsync(provider.getReport({ reportData: new Uint8Array(64) }), {
    instanceOf: ConfigfsTsmError,
  });
  t.regex(error?.message ?? '', /another process/);
  t.deepEqual(await entriesLeft(fake.root), []);
});

test('configfs-tsm: a provider other than sev_guest is refused, entry removed', async (t) => {
  const fake = await fakeConfigfs(t, { provider: 'tdx_guest' });
  const provider = new ConfigfsTsmProvider({ root: fake.root, fileSystem: fake.fileSystem });
  await t.throwsAsync(provider.getReport({ reportData: new Uint8Array(64) }), {
    instanceOf: UnsupportedPlatformError,
  });
  t.deepEqual(await entriesLeft(fake.root), []);
  t.false(
    fake.log.some((l) => l.startsWith('write inblob')),
    'nothing written to a foreign provider',
  );
});

test('configfs-tsm: read failures and wrong report sizes are typed, entry removed on every path', async (t) => {
  const failing = await fakeConfigfs(t, { failOutblob: true });
  await t.throwsAsync(
    new ConfigfsTsmProvider({ root: failing.root, fileSystem: failing.fileSystem }).getReport({
      reportData: new Uint8Array(64),
    }),
    { code: 'ERR_DEVICE' },
  );
  t.deepEqual(await entriesLeft(failing.root), []);

  const short = await fakeConfigfs(t, { reportSize: 1000 });
  await t.throwsAsync(
    new ConfigfsTsmProvider({ root: short.root, fileSystem: short.fileSystem }).getReport({
      reportData: new Uint8Array(64),
    }),
    { instanceOf: ConfigfsTsmError, message: /1000-byte report/ },
  );
  t.deepEqual(await entriesLeft(short.root), []);
});

test('configfs-tsm: missing configfs is DeviceNotFound, root-only entries are DevicePermission', async (t) => {
  const missing = new ConfigfsTsmProvider({
    root: path.join(tmpdir(), 'cvm-skr-no-such-configfs', 'report'),
  });
  await t.throwsAsync(missing.getReport({ reportData: new Uint8Array(64) }), {
    instanceOf: DeviceNotFoundError,
  });

  const denied = new ConfigfsTsmProvider({
    root: '/configfs',
    fileSystem: {
      mkdir: async (dir) => {
        throw Object.assign(new Error('EACCES'), { code: 'EACCES', errno: -13, syscall: 'mkdir', path: dir });
      },
      rmdir: async () => {},
      readFile: async () => Buffer.alloc(0),
      writeFile: async () => {},
    },
  });
  await t.throwsAsync(denied.getReport({ reportData: new Uint8Array(64) }), {
    instanceOf: DevicePermissionError,
  });
});
