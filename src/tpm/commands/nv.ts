import { MalformedDataError } from '../../errors.js';
import { TPM_CC, TPM_RH, TPMA_NV } from '../constants.js';
import type { TpmReader } from '../marshal.js';
import { type AuthSession, passwordAuth } from '../sessions.js';
import { computeName, readNvPublic2b, type TpmsNvPublic, writeNvPublic2b } from '../structures.js';
import type { Tpm } from '../tpm.js';
import { mapMissingHandle } from './object.js';

export interface NvPublicInfo {
  public: TpmsNvPublic;
  name: Uint8Array;
}

/** TPM2_NV_ReadPublic. A missing index raises `NvIndexNotDefinedError` (with `hint` appended). */
export async function nvReadPublic(tpm: Tpm, nvIndex: number, hint = ''): Promise<NvPublicInfo> {
  let r: TpmReader;
  try {
    ({ params: r } = await tpm.execute({ cc: TPM_CC.NV_ReadPublic, handles: [nvIndex] }));
  } catch (error) {
    mapMissingHandle(error, 1, nvIndex, hint);
  }
  const start = r.offset;
  const pub = readNvPublic2b(r);
  const marshalled = r.since(start).subarray(2);
  const name = r.tpm2b('nvName', 66);
  r.expectEnd();
  if (pub.nvIndex !== nvIndex)
    r.fail(`asked for NV index 0x${nvIndex.toString(16)}, got 0x${pub.nvIndex.toString(16)}`);
  if (Buffer.compare(computeName(pub.nameAlg, marshalled), name) !== 0) {
    r.fail('the returned NV name does not match the NV public area');
  }
  return { public: pub, name };
}

/** Who authorizes a read or write of an index: the index itself or the owner, as its attributes allow. */
export interface NvAuth {
  /** TPM_RH_OWNER, TPM_RH_PLATFORM or the NV index itself. */
  authHandle: number;
  session: AuthSession;
}

/** Picks index auth when allowed (needs no hierarchy password), else owner auth, with an empty password. */
export function nvAuthFor(pub: TpmsNvPublic, mode: 'read' | 'write'): NvAuth {
  const [auth, owner, pp] =
    mode === 'read'
      ? [TPMA_NV.AUTHREAD, TPMA_NV.OWNERREAD, TPMA_NV.PPREAD]
      : [TPMA_NV.AUTHWRITE, TPMA_NV.OWNERWRITE, TPMA_NV.PPWRITE];
  const authHandle =
    pub.attributes & auth
      ? pub.nvIndex
      : pub.attributes & owner
        ? TPM_RH.OWNER
        : pub.attributes & pp
          ? TPM_RH.PLATFORM
          : pub.nvIndex;
  return { authHandle, session: passwordAuth() };
}

/** TPM2_NV_Read of one chunk (`size` must not exceed TPM_PT_NV_BUFFER_MAX). */
export async function nvRead(
  tpm: Tpm,
  options: { nvIndex: number; size: number; offset?: number; auth?: NvAuth },
): Promise<Uint8Array> {
  const auth = options.auth ?? { authHandle: options.nvIndex, session: passwordAuth() };
  let r: TpmReader;
  try {
    ({ params: r } = await tpm.execute({
      cc: TPM_CC.NV_Read,
      handles: [auth.authHandle, options.nvIndex],
      auths: [auth.session],
      params: (w) => w.u16(options.size).u16(options.offset ?? 0),
    }));
  } catch (error) {
    mapMissingHandle(error, auth.authHandle === options.nvIndex ? [1, 2] : 2, options.nvIndex);
  }
  const data = r.tpm2b('data');
  r.expectEnd();
  if (data.length !== options.size) r.fail(`returned ${data.length} bytes for ${options.size} requested`);
  return data;
}

/**
 * Reads a whole index (or `length` bytes from `offset`) in chunks of at most `chunkSize`
 * (TPM_PT_NV_BUFFER_MAX), into one preallocated buffer.
 */
export async function nvReadAll(
  tpm: Tpm,
  options: { nvIndex: number; chunkSize: number; public?: TpmsNvPublic; offset?: number; length?: number },
): Promise<Uint8Array> {
  const pub = options.public ?? (await nvReadPublic(tpm, options.nvIndex)).public;
  const offset = options.offset ?? 0;
  const length = options.length ?? pub.dataSize - offset;
  if (offset + length > pub.dataSize || options.chunkSize < 1) {
    throw new MalformedDataError(
      'ERR_TPM_MALFORMED',
      `cannot read ${length} bytes at ${offset} of a ${pub.dataSize}-byte index`,
    );
  }
  const auth = nvAuthFor(pub, 'read');
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const size = Math.min(options.chunkSize, length - done);
    out.set(await nvRead(tpm, { nvIndex: options.nvIndex, size, offset: offset + done, auth }), done);
    done += size;
  }
  return out;
}

/** TPM2_NV_Write of one chunk. */
export async function nvWrite(
  tpm: Tpm,
  options: { nvIndex: number; data: Uint8Array; offset?: number; auth?: NvAuth },
): Promise<void> {
  const auth = options.auth ?? { authHandle: options.nvIndex, session: passwordAuth() };
  let r: TpmReader;
  try {
    ({ params: r } = await tpm.execute({
      cc: TPM_CC.NV_Write,
      handles: [auth.authHandle, options.nvIndex],
      auths: [auth.session],
      params: (w) => w.tpm2b(options.data).u16(options.offset ?? 0),
    }));
  } catch (error) {
    mapMissingHandle(error, auth.authHandle === options.nvIndex ? [1, 2] : 2, options.nvIndex);
  }
  r.expectEnd();
}

/** Writes `data` at `offset` in chunks of at most `chunkSize`. */
export async function nvWriteAll(
  tpm: Tpm,
  options: { nvIndex: number; data: Uint8Array; chunkSize: number; public?: TpmsNvPublic; offset?: number },
): Promise<void> {
  const pub = options.public ?? (await nvReadPublic(tpm, options.nvIndex)).public;
  const offset = options.offset ?? 0;
  if (offset + options.data.length > pub.dataSize || options.chunkSize < 1) {
    throw new MalformedDataError(
      'ERR_TPM_MALFORMED',
      `cannot write ${options.data.length} bytes at ${offset} of a ${pub.dataSize}-byte index`,
    );
  }
  const auth = nvAuthFor(pub, 'write');
  for (let done = 0; done < options.data.length; ) {
    const size = Math.min(options.chunkSize, options.data.length - done);
    await nvWrite(tpm, {
      nvIndex: options.nvIndex,
      data: options.data.subarray(done, done + size),
      offset: offset + done,
      auth,
    });
    done += size;
  }
}

/** TPM2_NV_DefineSpace under the owner (default) or platform hierarchy. */
export async function nvDefineSpace(
  tpm: Tpm,
  options: { public: TpmsNvPublic; auth?: Uint8Array; hierarchy?: number; hierarchyAuth?: AuthSession },
): Promise<void> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.NV_DefineSpace,
    handles: [options.hierarchy ?? TPM_RH.OWNER],
    auths: [options.hierarchyAuth ?? passwordAuth()],
    params: (w) => {
      w.tpm2b(options.auth ?? new Uint8Array(0));
      writeNvPublic2b(w, options.public);
    },
  });
  r.expectEnd();
}

/** TPM2_NV_UndefineSpace. */
export async function nvUndefineSpace(
  tpm: Tpm,
  options: { nvIndex: number; hierarchy?: number; hierarchyAuth?: AuthSession },
): Promise<void> {
  let r: TpmReader;
  try {
    ({ params: r } = await tpm.execute({
      cc: TPM_CC.NV_UndefineSpace,
      handles: [options.hierarchy ?? TPM_RH.OWNER, options.nvIndex],
      auths: [options.hierarchyAuth ?? passwordAuth()],
    }));
  } catch (error) {
    mapMissingHandle(error, 2, options.nvIndex);
  }
  r.expectEnd();
}
