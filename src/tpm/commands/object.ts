import { NvIndexNotDefinedError, TpmError, TpmKeyNotFoundError } from '../../errors.js';
import { hex32, TPM_CC, TPM_RH } from '../constants.js';
import type { TpmReader } from '../marshal.js';
import { TPM_RC } from '../rc.js';
import { type AuthSession, passwordAuth } from '../sessions.js';
import {
  computeName,
  type PcrSelection,
  readTpm2bPublic,
  type TpmtPublic,
  writePcrSelection,
  writeTpm2bPublic,
} from '../structures.js';
import type { Tpm } from '../tpm.js';

/** A public area as the TPM returned it: parsed, the raw TPM2B_PUBLIC, and the TPM's name for it. */
export interface PublicInfo {
  public: TpmtPublic;
  /** The TPM2B_PUBLIC bytes exactly as received (size prefix included). */
  public2b: Uint8Array;
  name: Uint8Array;
}

function readPublicInfo(r: TpmReader): { public: TpmtPublic; public2b: Uint8Array } {
  const start = r.offset;
  const pub = readTpm2bPublic(r);
  return { public: pub, public2b: r.since(start) };
}

/** Rethrows "no such handle" (TPM_RC_HANDLE on handle `index`) as the typed not-found error. */
export function mapMissingHandle(
  error: unknown,
  indices: number | readonly number[],
  handle: number,
  hint = '',
): never {
  const blamed = error instanceof TpmError ? error.handleIndex : undefined;
  const matches =
    blamed !== undefined && (typeof indices === 'number' ? blamed === indices : indices.includes(blamed));
  if (error instanceof TpmError && error.baseRc === TPM_RC.HANDLE && matches) {
    const details = {
      rc: error.rc,
      baseRc: error.baseRc,
      rcName: error.rcName,
      command: error.command,
      warning: error.warning,
      handleIndex: blamed,
    };
    if (handle >>> 24 === 0x01) {
      throw new NvIndexNotDefinedError(`NV index ${hex32(handle)} is not defined${hint}`, handle, details, {
        cause: error,
      });
    }
    throw new TpmKeyNotFoundError(`no object at handle ${hex32(handle)}${hint}`, handle, details, {
      cause: error,
    });
  }
  throw error;
}

/** TPM2_ReadPublic. The returned name is checked against the public area, so a lying TPM is caught. */
export async function readPublic(tpm: Tpm, objectHandle: number, hint = ''): Promise<PublicInfo> {
  let r: TpmReader;
  try {
    ({ params: r } = await tpm.execute({ cc: TPM_CC.ReadPublic, handles: [objectHandle] }));
  } catch (error) {
    mapMissingHandle(error, 1, objectHandle, hint);
  }
  const info = readPublicInfo(r);
  const name = r.tpm2b('name', 66);
  r.tpm2b('qualifiedName', 66);
  r.expectEnd();
  checkName(info.public, info.public2b, name, r);
  return { ...info, name };
}

function checkName(pub: TpmtPublic, public2b: Uint8Array, name: Uint8Array, r: TpmReader): void {
  const expected = computeName(pub.nameAlg, public2b.subarray(2));
  if (Buffer.compare(expected, name) !== 0) r.fail('the returned name does not match the public area');
}

export interface CreatePrimaryResult extends PublicInfo {
  handle: number;
}

/** TPM2_CreatePrimary with an empty userAuth and no sensitive data (the TPM generates the key). */
export async function createPrimary(
  tpm: Tpm,
  options: {
    hierarchy: number;
    template: TpmtPublic;
    hierarchyAuth?: AuthSession;
    userAuth?: Uint8Array;
    outsideInfo?: Uint8Array;
    creationPcrs?: PcrSelection[];
  },
): Promise<CreatePrimaryResult> {
  const { handles, params: r } = await tpm.execute({
    cc: TPM_CC.CreatePrimary,
    handles: [options.hierarchy],
    auths: [options.hierarchyAuth ?? passwordAuth()],
    responseHandles: 1,
    params: (w) => {
      w.sized16((s) => s.tpm2b(options.userAuth ?? new Uint8Array(0)).u16(0));
      writeTpm2bPublic(w, options.template);
      w.tpm2b(options.outsideInfo ?? new Uint8Array(0));
      writePcrSelection(w, options.creationPcrs ?? []);
    },
  });
  const handle = handles[0]!;
  try {
    const info = readPublicInfo(r);
    r.tpm2b('creationData');
    r.tpm2b('creationHash', 64);
    r.u16('creationTicket.tag');
    r.u32('creationTicket.hierarchy');
    r.tpm2b('creationTicket.digest', 64);
    const name = r.tpm2b('name', 66);
    r.expectEnd();
    checkName(info.public, info.public2b, name, r);
    return { ...info, name, handle };
  } catch (error) {
    // The object is loaded even if we cannot read what the TPM said about it: do not leak the slot.
    await flushContext(tpm, handle).catch(() => {});
    throw error;
  }
}

/** TPM2_EvictControl: persist `objectHandle` at `persistentHandle`, or evict a persistent object (same handle). */
export async function evictControl(
  tpm: Tpm,
  options: { objectHandle: number; persistentHandle: number; auth?: number; authSession?: AuthSession },
): Promise<void> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.EvictControl,
    handles: [options.auth ?? TPM_RH.OWNER, options.objectHandle],
    auths: [options.authSession ?? passwordAuth()],
    params: (w) => w.u32(options.persistentHandle),
  });
  r.expectEnd();
}

/** TPM2_FlushContext for a transient object or a session. */
export async function flushContext(tpm: Tpm, handle: number): Promise<void> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.FlushContext, params: (w) => w.u32(handle) });
  r.expectEnd();
}
