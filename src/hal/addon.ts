import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import nodeGypBuild from 'node-gyp-build';
import { AddonLoadError } from '../errors.js';

/** A TPM connection owned by the native addon. */
export interface NativeTpmHandle {
  transmit(command: Uint8Array): Promise<Buffer>;
  close(): Promise<void>;
  /** True for a Unix socket (swtpm), false for a character device. */
  readonly isSocket: boolean;
  /** Commands queued or in flight. */
  readonly pending: number;
}

export interface NativeSnpReport {
  report: Buffer;
  certificateTable?: Buffer;
}

/** The functions the addon exports (native/addon.cc; native/addon_stub.cc off Linux). */
export interface NativeAddon {
  /** False for the stub built on platforms without the device backends. */
  readonly supported: boolean;
  openTpm(path: string, timeoutMs: number): Promise<NativeTpmHandle>;
  snpGetReport(
    path: string,
    reportData: Uint8Array,
    vmpl: number,
    extended: boolean,
  ): Promise<NativeSnpReport>;
  /**
   * The pid, uid and gid of the process at the other end of a connected Unix socket, as the kernel recorded
   * them at connect() (`getsockopt(SO_PEERCRED)`, socket(7)). Throws a `NativeError` (`kind: 'system'`) for a
   * descriptor that is not a connected Unix socket, `kind: 'unsupported'` off Linux.
   */
  peerCredentials(fd: number): PeerCredentials;
}

/** Who connected to a Unix socket (`NativeAddon.peerCredentials`). */
export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

/** Error shape of addon rejections: `kind` classifies; system errors add errno/syscall/path. */
export interface NativeError extends Error {
  kind?: 'system' | 'timeout' | 'closed' | 'eof' | 'protocol' | 'invalid' | 'unsupported' | 'not-tpm';
  errno?: number;
  syscall?: string;
  path?: string;
  firmwareError?: number;
  vmmError?: number;
  detail?: string;
  /** For `not-tpm`: what the path is instead ("regular file", "directory", ...). */
  fileType?: string;
}

export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

let cached: { addon: NativeAddon; path: string } | AddonLoadError | undefined;

/** Loads the addon once per JavaScript realm (each worker thread loads its own instance). */
export function loadAddon(): NativeAddon {
  const loaded = tryLoadAddon();
  if (loaded instanceof AddonLoadError) throw loaded;
  return loaded.addon;
}

export function tryLoadAddon(): { addon: NativeAddon; path: string } | AddonLoadError {
  if (cached) return cached;
  let binaryPath: string | undefined;
  try {
    binaryPath = nodeGypBuild.path(PACKAGE_ROOT);
    const require = createRequire(import.meta.url);
    cached = { addon: require(binaryPath) as NativeAddon, path: binaryPath };
  } catch (error) {
    const tried = binaryPath
      ? `loading ${binaryPath} failed`
      : `looked in ${PACKAGE_ROOT}build/Release, build/Debug and prebuilds/${process.platform}-${process.arch}` +
        (process.env.PREBUILDS_ONLY ? ' (prebuilds only: PREBUILDS_ONLY is set)' : '');
    cached = new AddonLoadError(
      `the cvm-skr native addon is not available: ${tried}. Build it from source with "npm run build:native" ` +
        '(needs python3, make and a C++17 compiler); the emulator and the TCP TPM transport work without it',
      { cause: error },
    );
  }
  return cached;
}
