/**
 * The UVM reference information a confidential container's security context provides, found where
 * microsoft/confidential-sidecar-containers looks for it (pkg/common/info.go, commit fa8df58aa090):
 *
 * - the file `reference-info-base64` in the security context folder (the "files" scheme of
 *   microsoft/hcsshim#1708): `UVM_SECURITY_CONTEXT_DIR` when set, else the first entry of `/` whose name
 *   contains `security-context-` (Confidential ACI), else `/opt/confidential-containers/share/kata-containers`
 *   (Confidential AKS) (`GetUvmSecurityCtxDir`);
 * - when that file cannot be read or is empty, the environment variable `UVM_REFERENCE_INFO` (the older
 *   scheme): `GetUvmInformation` logs the failed read and falls back to it rather than failing.
 *
 * Both hold standard base64 of a COSE_Sign1 document (pkg/common/security-context-test/reference-info-base64 in
 * the same repository is a real one). The library forwards the bytes untouched as the sidecar does; it only
 * checks the base64, a size bound, and that the bytes start like a tagged COSE_Sign1 (CBOR tag 18, an array of
 * four), so a wrong file fails here rather than at the service.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UvmReferenceInfoError } from '../../errors.js';

export const UVM_SECURITY_CONTEXT_DIR_ENV = 'UVM_SECURITY_CONTEXT_DIR';
export const UVM_REFERENCE_INFO_ENV = 'UVM_REFERENCE_INFO';
export const UVM_REFERENCE_INFO_FILE = 'reference-info-base64';

/** Real reference info is about 11 KB (10 864 bytes in the sidecar's test data); anything past this is not one. */
export const MAX_UVM_REFERENCE_INFO_BYTES = 256 * 1024;

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes the standard base64 text of a security-context entry; empty text means "none". */
export function decodeUvmReferenceInfo(text: string, source: string): Uint8Array | undefined {
  const trimmed = text.replace(/\s+/g, '');
  if (trimmed.length === 0) return undefined;
  if (trimmed.length > Math.ceil(MAX_UVM_REFERENCE_INFO_BYTES / 3) * 4) {
    throw new UvmReferenceInfoError(
      `${source} is larger than ${MAX_UVM_REFERENCE_INFO_BYTES} bytes of reference information`,
      source,
    );
  }
  if (!BASE64.test(trimmed) || trimmed.length % 4 !== 0) {
    throw new UvmReferenceInfoError(`${source} is not standard base64`, source);
  }
  const bytes = new Uint8Array(Buffer.from(trimmed, 'base64'));
  // 0xd2 = CBOR tag 18 (COSE_Sign1, RFC 9052 section 4.2), 0x84 = an array of four items.
  if (bytes.length < 2 || bytes[0] !== 0xd2 || bytes[1] !== 0x84) {
    throw new UvmReferenceInfoError(`${source} does not hold a tagged COSE_Sign1 document`, source);
  }
  return bytes;
}

/** The sidecar's default security context folder on Confidential AKS (`uvmSecurityCtxDirDefault`). */
export const UVM_SECURITY_CONTEXT_DIR_DEFAULT = '/opt/confidential-containers/share/kata-containers';

/** Where to look: the filesystem root scanned for `security-context-*` and the default folder (for tests). */
export interface UvmSecurityContextLocations {
  root?: string;
  defaultDir?: string;
}

/** The security context folder, chosen as the sidecar's `GetUvmSecurityCtxDir` chooses it. */
async function securityContextDir(env: NodeJS.ProcessEnv, locations: UvmSecurityContextLocations): Promise<string> {
  const named = env[UVM_SECURITY_CONTEXT_DIR_ENV];
  if (named !== undefined && named !== '') return named;
  const root = locations.root ?? '/';
  try {
    const found = (await readdir(root)).find((name) => name.includes('security-context-'));
    if (found !== undefined) return path.join(root, found);
  } catch {
    // An unreadable root is the same as one without a security context folder.
  }
  return locations.defaultDir ?? UVM_SECURITY_CONTEXT_DIR_DEFAULT;
}

/** The text of `file`, or undefined when it cannot be read as a regular file (then the sidecar falls back). */
async function readSecurityContextFile(file: string): Promise<string | undefined> {
  let size: number;
  try {
    const info = await stat(file);
    if (!info.isFile()) return undefined;
    size = info.size;
  } catch {
    return undefined;
  }
  // base64 of the largest accepted document, plus room for line breaks
  if (size > MAX_UVM_REFERENCE_INFO_BYTES * 2) {
    throw new UvmReferenceInfoError(
      `${file} is larger than ${MAX_UVM_REFERENCE_INFO_BYTES} bytes of reference information`,
      file,
    );
  }
  try {
    return await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * The container's UVM reference information, or undefined when the environment provides none (not a
 * confidential container, or an empty entry). Content that is there but is not reference information (not
 * base64, not a COSE_Sign1, too large) is an `UvmReferenceInfoError`, so a broken security context fails here
 * and not at the attestation service.
 */
export async function readUvmReferenceInfo(
  env: NodeJS.ProcessEnv = process.env,
  locations: UvmSecurityContextLocations = {},
): Promise<Uint8Array | undefined> {
  const file = path.join(await securityContextDir(env, locations), UVM_REFERENCE_INFO_FILE);
  const text = await readSecurityContextFile(file);
  const fromFile = text === undefined ? undefined : decodeUvmReferenceInfo(text, file);
  if (fromFile !== undefined) return fromFile;
  const value = env[UVM_REFERENCE_INFO_ENV];
  return value === undefined ? undefined : decodeUvmReferenceInfo(value, UVM_REFERENCE_INFO_ENV);
}
