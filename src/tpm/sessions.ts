import { randomBytes } from 'node:crypto';
import { TPM_CC, TPM_RH, TPMA_SESSION } from './constants.js';
import { TpmWriter } from './marshal.js';
import { digestSize, hash, type PcrSelection, writePcrSelection } from './structures.js';

/** One entry of a command's authorization area (TPMS_AUTH_COMMAND). */
export interface AuthSession {
  handle: number;
  nonce: Uint8Array;
  attributes: number;
  hmac: Uint8Array;
}

const EMPTY = new Uint8Array(0);
const EMPTY_PASSWORD: AuthSession = Object.freeze({
  handle: TPM_RH.PW,
  nonce: EMPTY,
  attributes: 0,
  hmac: EMPTY,
});

/** Password authorization (TPM_RS_PW); the empty password is the default of hierarchies, PCRs and keys here. */
export function passwordAuth(password?: Uint8Array): AuthSession {
  if (password === undefined || password.length === 0) return EMPTY_PASSWORD;
  return { handle: TPM_RH.PW, nonce: EMPTY, attributes: 0, hmac: password };
}

/**
 * Authorization by a policy session that carries no HMAC (unbound, unsalted, no PolicyAuthValue).
 * Without `continueSession` the TPM flushes the session once the command succeeds; on failure it stays
 * loaded and the caller must flush it.
 */
export function policyAuth(sessionHandle: number, options: { continueSession?: boolean } = {}): AuthSession {
  return {
    handle: sessionHandle,
    // The TPM wants 16 bytes up to the session digest size; no HMAC uses it, so any fresh value will do.
    nonce: randomBytes(16),
    attributes: options.continueSession ? TPMA_SESSION.continueSession : 0,
    hmac: EMPTY,
  };
}

/**
 * The policyDigest after TPM2_PolicyPCR, computed locally (Part 3, 23.7):
 * H(previous || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || H(selected PCR values in order)).
 */
export function policyPcrDigest(
  sessionHash: number,
  selection: readonly PcrSelection[],
  pcrValues: readonly Uint8Array[],
  previous: Uint8Array = new Uint8Array(digestSize(sessionHash)),
): Uint8Array {
  const pcrDigest = hash(sessionHash, ...pcrValues);
  const w = new TpmWriter(64);
  w.u32(TPM_CC.PolicyPCR);
  writePcrSelection(w, selection);
  return hash(sessionHash, previous, w.finish(), pcrDigest);
}
