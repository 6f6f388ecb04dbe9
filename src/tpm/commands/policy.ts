import { randomBytes } from 'node:crypto';
import { TPM_ALG, TPM_CC, TPM_RH, TPM_SE } from '../constants.js';
import { digestSize, NULL_SYM, type PcrSelection, writePcrSelection, writeSymDef } from '../structures.js';
import type { Tpm } from '../tpm.js';
import { flushContext } from './object.js';

export interface StartedSession {
  handle: number;
  nonceTpm: Uint8Array;
}

/** TPM2_StartAuthSession, unbound and unsalted (no HMAC key): enough for policy and trial sessions. */
export async function startAuthSession(
  tpm: Tpm,
  options: { sessionType: number; authHash?: number } = { sessionType: TPM_SE.POLICY },
): Promise<StartedSession> {
  const authHash = options.authHash ?? TPM_ALG.SHA256;
  const { handles, params: r } = await tpm.execute({
    cc: TPM_CC.StartAuthSession,
    handles: [TPM_RH.NULL, TPM_RH.NULL],
    responseHandles: 1,
    params: (w) => {
      w.tpm2b(randomBytes(digestSize(authHash)));
      w.tpm2b(new Uint8Array(0));
      w.u8(options.sessionType);
      writeSymDef(w, NULL_SYM);
      w.u16(authHash);
    },
  });
  const handle = handles[0]!;
  try {
    const nonceTpm = r.tpm2b('nonceTPM', 64);
    r.expectEnd();
    return { handle, nonceTpm };
  } catch (error) {
    await flushContext(tpm, handle).catch(() => {});
    throw error;
  }
}

/** TPM2_PolicyPCR: with an empty `pcrDigest` the TPM uses the current PCR values. */
export async function policyPcr(
  tpm: Tpm,
  sessionHandle: number,
  pcrs: readonly PcrSelection[],
  pcrDigest: Uint8Array = new Uint8Array(0),
): Promise<void> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.PolicyPCR,
    handles: [sessionHandle],
    params: (w) => {
      w.tpm2b(pcrDigest);
      writePcrSelection(w, pcrs);
    },
  });
  r.expectEnd();
}

/** TPM2_PolicyGetDigest. */
export async function policyGetDigest(tpm: Tpm, sessionHandle: number): Promise<Uint8Array> {
  const { params: r } = await tpm.execute({ cc: TPM_CC.PolicyGetDigest, handles: [sessionHandle] });
  const digest = r.tpm2b('policyDigest', 64);
  r.expectEnd();
  return digest;
}
