import { MalformedDataError } from '../../errors.js';
import { TPM_CC } from '../constants.js';
import { type AuthSession, passwordAuth } from '../sessions.js';
import {
  digestSize,
  type PcrSelection,
  readDigestList,
  readPcrSelection,
  type TaggedDigest,
  writeDigestValues,
  writePcrSelection,
} from '../structures.js';
import type { Tpm } from '../tpm.js';

export interface PcrReadResult {
  updateCounter: number;
  /** What the TPM actually served (at most 8 digests per call). */
  selection: PcrSelection[];
  digests: Uint8Array[];
}

/** TPM2_PCR_Read: one call; the TPM may serve only part of the selection. */
export async function pcrRead(tpm: Tpm, selection: readonly PcrSelection[]): Promise<PcrReadResult> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.PCR_Read,
    params: (w) => writePcrSelection(w, selection),
  });
  const updateCounter = r.u32('pcrUpdateCounter');
  const served = readPcrSelection(r);
  const digests = readDigestList(r);
  r.expectEnd();
  const count = served.reduce((n, s) => n + s.pcrs.length, 0);
  if (count !== digests.length)
    r.fail(`selection names ${count} PCRs but ${digests.length} digests came back`);
  return { updateCounter, selection: served, digests };
}

/**
 * Reads every PCR of `pcrs` in one bank, looping PCR_Read until all are served. If the PCRs change while
 * reading (pcrUpdateCounter moves), starts again so the values are one consistent snapshot.
 */
export async function readPcrs(
  tpm: Tpm,
  hashAlg: number,
  pcrs: readonly number[],
): Promise<{ index: number; digest: Uint8Array }[]> {
  const size = digestSize(hashAlg);
  const wanted = [...new Set(pcrs)].sort((a, b) => a - b);
  for (let attempt = 0; attempt < 4; attempt++) {
    const values = new Map<number, Uint8Array>();
    let counter: number | undefined;
    let consistent = true;
    while (values.size < wanted.length) {
      const remaining = wanted.filter((p) => !values.has(p));
      const result = await pcrRead(tpm, [{ hashAlg, pcrs: remaining }]);
      if (counter !== undefined && result.updateCounter !== counter) {
        consistent = false;
        break;
      }
      counter = result.updateCounter;
      let i = 0;
      let progress = 0;
      for (const s of result.selection) {
        for (const p of s.pcrs) {
          const digest = result.digests[i++]!;
          if (s.hashAlg !== hashAlg || !remaining.includes(p)) continue;
          if (digest.length !== size) {
            throw new MalformedDataError(
              'ERR_TPM_MALFORMED',
              `PCR ${p} digest is ${digest.length} bytes, expected ${size}`,
            );
          }
          values.set(p, digest);
          progress++;
        }
      }
      if (progress === 0) {
        throw new MalformedDataError(
          'ERR_TPM_MALFORMED',
          `the TPM served none of PCRs ${remaining.join(',')} in bank 0x${hashAlg.toString(16)}; is the bank allocated?`,
        );
      }
    }
    if (consistent) return wanted.map((index) => ({ index, digest: values.get(index)! }));
  }
  throw new MalformedDataError('ERR_TPM_MALFORMED', 'PCRs kept changing while they were read');
}

/** TPM2_PCR_Extend (PCRs 0-15 have an empty authValue by default). */
export async function pcrExtend(
  tpm: Tpm,
  pcr: number,
  digests: readonly TaggedDigest[],
  auth: AuthSession = passwordAuth(),
): Promise<void> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.PCR_Extend,
    handles: [pcr],
    auths: [auth],
    params: (w) => writeDigestValues(w, digests),
  });
  r.expectEnd();
}
