import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import {
  AbortError,
  ConfigfsTsmError,
  CvmSkrError,
  DeviceError,
  InvalidArgumentError,
  SnpFirmwareError,
  TransportError,
  UnsupportedPlatformError,
} from '../errors.js';
import { loadAddon, type NativeError } from './addon.js';
import { nodeSystemError, wrapSystemError } from './system-error.js';
import type { SnpReportProvider, SnpReportRequest, SnpReportResult } from './types.js';

export const DEFAULT_SEV_GUEST_PATH = '/dev/sev-guest';
export const DEFAULT_CONFIGFS_TSM_PATH = '/sys/kernel/config/tsm/report';
export const SNP_REPORT_SIZE = 1184;

const SEV_GUEST_ADVICE = {
  notFound:
    'this is not an SEV-SNP guest, or the sev-guest driver is not loaded (modprobe sev-guest); on an Azure confidential VM with a vTPM use the azure-vtpm platform instead',
  permission: 'run as root or grant the service user read/write access to the device',
};

function checkRequest(request: SnpReportRequest): number {
  if (!(request.reportData instanceof Uint8Array) || request.reportData.length !== 64) {
    throw new InvalidArgumentError('reportData must be exactly 64 bytes');
  }
  const vmpl = request.vmpl ?? 0;
  if (!Number.isInteger(vmpl) || vmpl < 0 || vmpl > 3)
    throw new InvalidArgumentError('vmpl must be an integer 0..3');
  if (request.signal?.aborted) throw new AbortError('SNP report request aborted');
  return vmpl;
}

/** SNP reports through the `/dev/sev-guest` ioctls (SNP_GET_REPORT, SNP_GET_EXT_REPORT), via the native addon. */
export class SevGuestIoctlProvider implements SnpReportProvider {
  readonly name = 'sev-guest-ioctl' as const;
  readonly path: string;

  constructor(options: { path?: string } = {}) {
    this.path = options.path ?? DEFAULT_SEV_GUEST_PATH;
  }

  async getReport(request: SnpReportRequest): Promise<SnpReportResult> {
    const vmpl = checkRequest(request);
    const addon = loadAddon();
    try {
      const result = await addon.snpGetReport(this.path, request.reportData, vmpl, request.extended ?? false);
      return {
        report: result.report,
        ...(result.certificateTable ? { certificateTable: result.certificateTable } : {}),
      };
    } catch (error) {
      throw sevGuestError(error, this.path);
    }
  }
}

function sevGuestError(error: unknown, devicePath: string): Error {
  const native = error as NativeError;
  if (native?.kind === 'unsupported') {
    return new UnsupportedPlatformError(
      `${native.message}; the SEV-SNP guest device exists on Linux guests only`,
      {
        cause: error,
      },
    );
  }
  if (native?.kind !== 'system') return error instanceof Error ? error : new TransportError(String(error));
  const cause = nodeSystemError(native.errno ?? 0, native.syscall ?? 'ioctl', native.path ?? devicePath);
  if (cause.syscall === 'ioctl') {
    const firmwareError = native.firmwareError ?? 0;
    const vmmError = native.vmmError ?? 0;
    if (cause.code === 'ENOTTY') {
      return new SnpFirmwareError(
        `SEV-SNP guest requests are disabled at ${devicePath} (ENOTTY): the kernel turned off the VMPCK after a failed message; reboot the guest`,
        firmwareError,
        vmmError,
        { cause },
      );
    }
    if (cause.code === 'EIO' || vmmError !== 0) {
      const detail = native.detail ? ` (${native.detail})` : '';
      return new SnpFirmwareError(
        `the SEV-SNP firmware refused the report request: firmware error 0x${firmwareError.toString(16)}, ` +
          `hypervisor error ${vmmError}${detail}; check the requested VMPL and that the host supports SNP guest requests`,
        firmwareError,
        vmmError,
        { cause },
      );
    }
  }
  return wrapSystemError(cause, `SEV-SNP guest device ${devicePath}`, SEV_GUEST_ADVICE);
}

/**
 * The file operations configfs-tsm needs. configfs attributes behave unlike plain files (mkdir populates a
 * directory, writes bump `generation`, rmdir removes a non-empty directory); tests substitute a fake with
 * those semantics over a temporary folder.
 */
export interface TsmFileSystem {
  mkdir(dir: string): Promise<void>;
  rmdir(dir: string): Promise<void>;
  readFile(file: string): Promise<Buffer>;
  writeFile(file: string, data: Uint8Array | string): Promise<void>;
}

const nodeTsmFileSystem: TsmFileSystem = {
  mkdir: async (dir) => {
    await fsp.mkdir(dir, { mode: 0o700 });
  },
  rmdir: (dir) => fsp.rmdir(dir),
  readFile: (file) => fsp.readFile(file),
  writeFile: (file, data) => fsp.writeFile(file, data),
};

/**
 * SNP reports through configfs-tsm (Linux 6.7+): create an entry, write 64 bytes to `inblob`, read `outblob`
 * (and `auxblob`, the certificate table), and remove the entry. Plain file I/O, no addon needed.
 */
export class ConfigfsTsmProvider implements SnpReportProvider {
  readonly name = 'configfs-tsm' as const;
  readonly root: string;
  readonly #fs: TsmFileSystem;

  constructor(options: { root?: string; fileSystem?: TsmFileSystem } = {}) {
    this.root = options.root ?? DEFAULT_CONFIGFS_TSM_PATH;
    this.#fs = options.fileSystem ?? nodeTsmFileSystem;
  }

  async getReport(request: SnpReportRequest): Promise<SnpReportResult> {
    const vmpl = checkRequest(request);
    const entry = path.join(this.root, `cvm-skr-${process.pid}-${randomBytes(6).toString('hex')}`);
    try {
      await this.#fs.mkdir(entry);
    } catch (error) {
      throw this.#fileError(error, entry, 'mkdir');
    }
    try {
      return await this.#exchange(entry, request, vmpl);
    } finally {
      await this.#fs.rmdir(entry).catch(() => {
        // The entry is only a kernel object; failing to remove it leaks no secret. The report was returned
        // or an error is already on its way, so this one is not allowed to mask either.
      });
    }
  }

  async #exchange(entry: string, request: SnpReportRequest, vmpl: number): Promise<SnpReportResult> {
    const read = (name: string) =>
      this.#fs.readFile(path.join(entry, name)).catch((e) => {
        throw this.#fileError(e, path.join(entry, name), 'read');
      });
    const write = (name: string, data: Uint8Array | string) =>
      this.#fs.writeFile(path.join(entry, name), data).catch((e) => {
        throw this.#fileError(e, path.join(entry, name), 'write');
      });

    const provider = (await read('provider')).toString('utf8').trim();
    if (provider !== 'sev_guest') {
      throw new UnsupportedPlatformError(
        `configfs-tsm at ${this.root} is provided by "${provider}", not "sev_guest": this guest is not SEV-SNP`,
      );
    }
    const generation = parseGeneration(await read('generation'));
    let writes = 0;
    if (vmpl !== 0) {
      await write('privlevel', `${vmpl}\n`);
      writes++;
    }
    await write('inblob', request.reportData);
    writes++;
    if (request.signal?.aborted) throw new AbortError('SNP report request aborted');
    const report = await read('outblob');
    const certificateTable = request.extended ? await read('auxblob').catch(() => undefined) : undefined;
    const after = parseGeneration(await read('generation'));
    // Another writer on the same entry would make outblob answer their inblob, not ours.
    if (after !== generation + writes) {
      throw new ConfigfsTsmError(
        `configfs-tsm entry ${entry} changed under us (generation ${generation} -> ${after}, expected +${writes}); another process wrote to it, retry`,
      );
    }
    if (report.length !== SNP_REPORT_SIZE) {
      throw new ConfigfsTsmError(
        `configfs-tsm returned a ${report.length}-byte report, expected ${SNP_REPORT_SIZE}`,
      );
    }
    return { report, ...(certificateTable && certificateTable.length > 0 ? { certificateTable } : {}) };
  }

  #fileError(error: unknown, file: string, operation: string): Error {
    if (error instanceof CvmSkrError) return error;
    const e = error as NodeJS.ErrnoException;
    if (typeof e?.code === 'string' && typeof e.errno === 'number') {
      return wrapSystemError(
        nodeSystemError(e.errno, e.syscall ?? operation, e.path ?? file),
        `configfs-tsm ${operation} of ${file}`,
        {
          notFound: `configfs-tsm is not available at ${this.root} (needs Linux 6.7+ with configfs mounted and the sev-guest driver)`,
          permission: 'run as root: configfs-tsm report entries are root-only',
        },
      );
    }
    return new DeviceError(
      `configfs-tsm ${operation} of ${file} failed`,
      { systemCode: 'UNKNOWN', errno: 0, syscall: operation, path: file },
      { cause: error },
    );
  }
}

function parseGeneration(bytes: Buffer): number {
  const text = bytes.toString('utf8').trim();
  if (!/^\d{1,15}$/.test(text))
    throw new ConfigfsTsmError(
      `configfs-tsm generation is not a number: ${JSON.stringify(text.slice(0, 20))}`,
    );
  return Number(text);
}
