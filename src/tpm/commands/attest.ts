import { TPM_CC } from '../constants.js';
import type { TpmReader } from '../marshal.js';
import { type AuthSession, passwordAuth } from '../sessions.js';
import {
  NULL_SCHEME,
  type PcrSelection,
  readAttest,
  readSignature,
  type TpmsAttest,
  type TpmtScheme,
  type TpmtSignature,
  writePcrSelection,
  writeScheme,
} from '../structures.js';
import type { Tpm } from '../tpm.js';

/** A signed attestation: the TPMS_ATTEST bytes (as signed), parsed, and the signature. */
export interface SignedAttest {
  /** The marshalled TPMS_ATTEST, exactly the bytes the signature covers. */
  attestBytes: Uint8Array;
  attest: TpmsAttest;
  signature: TpmtSignature;
  /** The marshalled TPMT_SIGNATURE as received. */
  signatureBytes: Uint8Array;
}

function readSigned(r: TpmReader): SignedAttest {
  const size = r.u16('TPM2B_ATTEST.size');
  const inner = r.sub(size, 'TPM2B_ATTEST');
  const start = inner.offset;
  const attest = readAttest(inner);
  inner.expectEnd('TPM2B_ATTEST');
  const attestBytes = inner.since(start);
  const sigStart = r.offset;
  const signature = readSignature(r);
  const signatureBytes = r.since(sigStart);
  r.expectEnd();
  return { attestBytes, attest, signature, signatureBytes };
}

/** TPM2_Quote: PCR digest over `pcrs`, signed by `signHandle` (scheme NULL = the key's own). */
export async function quote(
  tpm: Tpm,
  options: {
    signHandle: number;
    pcrs: readonly PcrSelection[];
    qualifyingData?: Uint8Array;
    scheme?: TpmtScheme;
    signAuth?: AuthSession;
  },
): Promise<SignedAttest> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.Quote,
    handles: [options.signHandle],
    auths: [options.signAuth ?? passwordAuth()],
    params: (w) => {
      w.tpm2b(options.qualifyingData ?? new Uint8Array(0));
      writeScheme(w, options.scheme ?? NULL_SCHEME);
      writePcrSelection(w, options.pcrs);
    },
  });
  return readSigned(r);
}

/** TPM2_Certify: `signHandle` attests that `objectHandle` (ADMIN role) is loaded in this TPM. */
export async function certify(
  tpm: Tpm,
  options: {
    objectHandle: number;
    signHandle: number;
    qualifyingData?: Uint8Array;
    scheme?: TpmtScheme;
    objectAuth?: AuthSession;
    signAuth?: AuthSession;
  },
): Promise<SignedAttest> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.Certify,
    handles: [options.objectHandle, options.signHandle],
    auths: [options.objectAuth ?? passwordAuth(), options.signAuth ?? passwordAuth()],
    params: (w) => {
      w.tpm2b(options.qualifyingData ?? new Uint8Array(0));
      writeScheme(w, options.scheme ?? NULL_SCHEME);
    },
  });
  return readSigned(r);
}
