import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import path from 'node:path';
import { DeviceError, NotATpmError, NotConfidentialError } from '../errors.js';
import { tryLoadAddon } from './addon.js';
import { DEFAULT_TPM_PATH } from './open-tpm.js';
import {
  ConfigfsTsmProvider,
  DEFAULT_CONFIGFS_TSM_PATH,
  DEFAULT_SEV_GUEST_PATH,
  SevGuestIoctlProvider,
} from './snp-providers.js';
import type { AttestationPlatform, PlatformKind } from './types.js';

export const HCL_REPORT_NV_INDEX = 0x01400001;

export interface BackendStatus {
  kind: PlatformKind;
  /** The backend can run here. */
  available: boolean;
  /** `detectPlatform` may pick it without being asked (never true for emulators). */
  automatic: boolean;
  /** Why it is or is not available: what was found, or what to check. */
  reason: string;
}

export interface PathStatus {
  path: string;
  exists: boolean;
  readable: boolean;
  writable: boolean;
  /** Type letter as `ls -l` prints it, permission bits in octal, owner: e.g. `c660 uid=0 gid=113` */
  mode?: string;
  error?: string;
}

export interface PlatformDetection {
  /** The backend `platform: 'auto'` uses, or null when this is not a confidential machine. */
  selected: 'azure-vtpm' | 'sev-guest' | null;
  backends: BackendStatus[];
  addon: { loaded: boolean; supported?: boolean; path?: string; error?: string };
  tpm: PathStatus & { hclReportIndex?: 'defined' | 'undefined' | 'unknown' };
  sevGuest: PathStatus;
  configfsTsm: PathStatus;
  swtpm: { onPath: boolean; path?: string };
}

export interface DetectOptions {
  tpmPath?: string;
  sevGuestPath?: string;
  configfsTsmPath?: string;
  /** Ask the TPM whether the HCL report index exists (one NV_ReadPublic). Default true. */
  probeTpm?: boolean;
}

async function statPath(p: string): Promise<PathStatus> {
  try {
    const st = await fsp.stat(p);
    const can = async (mode: number) =>
      fsp.access(p, mode).then(
        () => true,
        () => false,
      );
    // The type letter as ls -l prints it, so a FIFO or block device is not shown as a regular file.
    const kind = st.isCharacterDevice()
      ? 'c'
      : st.isBlockDevice()
        ? 'b'
        : st.isDirectory()
          ? 'd'
          : st.isSocket()
            ? 's'
            : st.isFIFO()
              ? 'p'
              : '-';
    return {
      path: p,
      exists: true,
      readable: await can(fsConstants.R_OK),
      writable: await can(fsConstants.W_OK),
      mode: `${kind}${(st.mode & 0o777).toString(8).padStart(3, '0')} uid=${st.uid} gid=${st.gid}`,
    };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
    return {
      path: p,
      exists: false,
      readable: false,
      writable: false,
      ...(code !== 'ENOENT' ? { error: code } : {}),
    };
  }
}

async function findOnPath(program: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, program);
    const ok = await fsp.access(candidate, fsConstants.X_OK).then(
      () => true,
      () => false,
    );
    if (ok) return candidate;
  }
  return undefined;
}

/** Why a TPM path that opened did not answer, worded for what the path is (type letter as in PathStatus.mode). */
function noAnswerReason(tpmPath: string, type: string | undefined): string {
  if (type === 's') {
    return `${tpmPath} accepted the connection but did not answer NV_ReadPublic; is it a TPM (swtpm's server socket, not its control socket)?`;
  }
  const name = path.basename(tpmPath);
  if (/^tpmrm\d+$/.test(name)) {
    // The kernel's resource manager device serves many processes at once: silence is the device's own fault.
    return `${tpmPath} is accessible but did not answer NV_ReadPublic; look for TPM errors in the kernel log (dmesg | grep -i tpm)`;
  }
  if (/^tpm\d+$/.test(name)) {
    return `${tpmPath} did not answer NV_ReadPublic; the raw device serves one process at a time (is tpm2-abrmd or another program holding it?): use ${path.join(path.dirname(tpmPath), name.replace('tpm', 'tpmrm'))}`;
  }
  return `${tpmPath} is a character device but did not answer NV_ReadPublic; is it a TPM (/dev/tpmrm0)?`;
}

/** A TPM path that exists but could not be opened or connected to. */
function openFailedReason(tpmPath: string, error: Error): string {
  const refused = error instanceof DeviceError && error.systemCode === 'ECONNREFUSED';
  return refused
    ? `${tpmPath}: nothing listens on this socket (a socket file left behind, or swtpm is not running)`
    : `${tpmPath} could not be opened: ${error.message}`;
}

/** A TPM that answered NV_ReadPublic with an error other than "no such index". */
function errorAnswerReason(tpmPath: string, rc: number): string {
  const hex = `0x${rc.toString(16).padStart(3, '0')}`;
  // TPM_RC_INITIALIZE (TPM 2.0 Part 2, section 6.6.3): TPM2_Startup was not run since power-on.
  return rc === 0x100
    ? `${tpmPath} answered NV_ReadPublic with TPM_RC_INITIALIZE (${hex}): the TPM was not started (for swtpm: --flags startup-clear)`
    : `${tpmPath} answered NV_ReadPublic with TPM error ${hex}; a TPM, but the HCL report index could not be read`;
}

/** One NV_ReadPublic on the HCL report index, hand-marshalled so the HAL does not depend on the TPM layer. */
async function probeHclIndex(
  tpmPath: string,
): Promise<'defined' | 'undefined' | 'unknown' | { rc: number } | { openFailed: Error } | NotATpmError> {
  const { NativeTpmTransport } = await import('./native-transport.js');
  let transport: Awaited<ReturnType<typeof NativeTpmTransport.open>> | undefined;
  try {
    try {
      transport = await NativeTpmTransport.open(tpmPath, 5000);
    } catch (error) {
      if (error instanceof NotATpmError || !(error instanceof Error)) throw error;
      return { openFailed: error };
    }
    const i = HCL_REPORT_NV_INDEX;
    const command = Uint8Array.from([
      0x80,
      0x01,
      0,
      0,
      0,
      14,
      0,
      0,
      0x01,
      0x69,
      i >>> 24,
      (i >> 16) & 0xff,
      (i >> 8) & 0xff,
      i & 0xff,
    ]);
    const response = await transport.transmit(command);
    const rc = Buffer.from(response.buffer, response.byteOffset, response.byteLength).readUInt32BE(6);
    // TPM_RC_HANDLE (format 1, handle 1) is how a TPM says the index does not exist.
    if (rc === 0) return 'defined';
    if ((rc & 0xbf) === 0x8b) return 'undefined';
    return { rc };
  } catch (error) {
    // A device the transport refuses before writing (one without poll, such as /dev/null) is no TPM at all.
    return error instanceof NotATpmError ? error : 'unknown';
  } finally {
    await transport?.close();
  }
}

/**
 * Finds out which confidential-computing backends this machine offers, and why each other one is missing.
 * Order of preference: the Azure vTPM, then the SEV-SNP guest device (ioctl or configfs-tsm). Emulators are
 * listed but never chosen automatically.
 */
export async function detectPlatform(options: DetectOptions = {}): Promise<PlatformDetection> {
  const tpmPath = options.tpmPath ?? DEFAULT_TPM_PATH;
  const sevGuestPath = options.sevGuestPath ?? DEFAULT_SEV_GUEST_PATH;
  const configfsPath = options.configfsTsmPath ?? DEFAULT_CONFIGFS_TSM_PATH;
  const loaded = tryLoadAddon();
  const addon =
    loaded instanceof Error
      ? { loaded: false, error: loaded.message }
      : { loaded: true, supported: loaded.addon.supported, path: loaded.path };
  const [tpm, sevGuest, configfsTsm, swtpmPath] = await Promise.all([
    statPath(tpmPath),
    statPath(sevGuestPath),
    statPath(configfsPath),
    findOnPath('swtpm'),
  ]);
  const nativeReady = addon.loaded && addon.supported === true;

  let hclReportIndex: 'defined' | 'undefined' | 'unknown' | undefined;
  let vtpmReason: string;
  let vtpmAvailable = false;
  const tpmKind = tpm.mode?.[0];
  if (tpm.exists && tpmKind !== 'c' && tpmKind !== 's') {
    // Never probed: a TPM command written into a regular file would overwrite its first bytes.
    vtpmReason = `${tpmPath} is not a TPM (${tpm.mode}): give a TPM character device or a swtpm Unix socket`;
  } else if (!tpm.exists) {
    vtpmReason = `${tpmPath} not found: no vTPM (not an Azure confidential VM, or the TPM driver is not loaded)`;
  } else if (!tpm.readable || !tpm.writable) {
    vtpmReason = `${tpmPath} exists but this process may not open it (${tpm.mode}); run as root or join the device's group (usually "tss")`;
  } else if (!nativeReady) {
    vtpmReason = `${tpmPath} is accessible but the native addon is not loaded: ${addon.error ?? 'unsupported platform'}`;
  } else if (options.probeTpm === false) {
    hclReportIndex = 'unknown';
    vtpmAvailable = true;
    vtpmReason = `${tpmPath} accessible (HCL report index not probed)`;
  } else {
    const probed = await probeHclIndex(tpmPath);
    hclReportIndex = typeof probed === 'string' ? probed : 'unknown';
    vtpmAvailable = hclReportIndex === 'defined';
    vtpmReason =
      probed instanceof NotATpmError
        ? `${probed.message.replace(/; nothing was written to it$/, '')} (nothing was written to it)`
        : typeof probed === 'object'
          ? 'rc' in probed
            ? errorAnswerReason(tpmPath, probed.rc)
            : openFailedReason(tpmPath, probed.openFailed)
          : probed === 'defined'
            ? `${tpmPath} accessible and NV index 0x01400001 holds an HCL report`
            : probed === 'undefined'
              ? `${tpmPath} works but NV index 0x01400001 (HCL report) is not defined: a TPM, but not an Azure confidential VM's vTPM`
              : noAnswerReason(tpmPath, tpmKind);
  }

  let sevAvailable = false;
  let sevReason: string;
  if (sevGuest.exists && sevGuest.readable && sevGuest.writable && nativeReady) {
    sevAvailable = true;
    sevReason = `${sevGuestPath} accessible (SNP_GET_REPORT through the native addon)`;
  } else if (configfsTsm.exists && configfsTsm.writable) {
    sevAvailable = true;
    sevReason = `configfs-tsm at ${configfsPath} (the provider is checked on first use)`;
  } else if (sevGuest.exists) {
    sevReason = !nativeReady
      ? `${sevGuestPath} exists but the native addon is not loaded: ${addon.error ?? 'unsupported platform'}`
      : `${sevGuestPath} exists but this process may not open it (${sevGuest.mode}); run as root`;
  } else if (configfsTsm.exists) {
    sevReason = `configfs-tsm at ${configfsPath} exists but is not writable by this process; run as root`;
  } else {
    sevReason = `neither ${sevGuestPath} nor configfs-tsm (${configfsPath}) found: not an SEV-SNP guest`;
  }

  const emulatorReason =
    'software emulator, always available; used only when asked for by name (never by "auto")';
  const backends: BackendStatus[] = [
    { kind: 'azure-vtpm', available: vtpmAvailable, automatic: true, reason: vtpmReason },
    { kind: 'sev-guest', available: sevAvailable, automatic: true, reason: sevReason },
    { kind: 'emulated-azure-vtpm', available: true, automatic: false, reason: emulatorReason },
    { kind: 'emulated-sev-guest', available: true, automatic: false, reason: emulatorReason },
  ];
  return {
    selected: vtpmAvailable ? 'azure-vtpm' : sevAvailable ? 'sev-guest' : null,
    backends,
    addon,
    tpm: { ...tpm, ...(hclReportIndex ? { hclReportIndex } : {}) },
    sevGuest,
    configfsTsm,
    swtpm: swtpmPath ? { onPath: true, path: swtpmPath } : { onPath: false },
  };
}

/**
 * Opens the hardware backend `detectPlatform()` selects (`platform: 'auto'` of `SecureKeyRelease`), or explains
 * why there is none. The platform modules load only here, when a machine is found to have one.
 */
export async function openDetectedPlatform(): Promise<AttestationPlatform> {
  const detection = await detectPlatform();
  if (detection.selected === 'azure-vtpm') {
    const { AzureVtpmPlatform } = await import('./platforms/azure-vtpm.js');
    return AzureVtpmPlatform.open();
  }
  if (detection.selected === 'sev-guest') {
    const { SevGuestPlatform } = await import('./platforms/sev-guest.js');
    const provider =
      detection.sevGuest.exists && detection.addon.loaded ? new SevGuestIoctlProvider() : new ConfigfsTsmProvider();
    return SevGuestPlatform.open({ provider });
  }
  throw new NotConfidentialError(
    `no confidential-computing backend on this machine: ${detection.backends
      .filter((b) => b.automatic)
      .map((b) => `${b.kind}: ${b.reason}`)
      .join('; ')}. Run "cvm-skr doctor" for details; to test locally, use the emulator (cvm-skr release/attest --emulator, or a platform from cvm-skr/emulator)`,
  );
}
