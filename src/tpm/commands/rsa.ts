import { TPM_CC } from '../constants.js';
import type { AuthSession } from '../sessions.js';
import { type TpmtScheme, writeScheme } from '../structures.js';
import type { Tpm } from '../tpm.js';

/** TPM2_RSA_Encrypt with the public half of a loaded key (no authorization needed). */
export async function rsaEncrypt(
  tpm: Tpm,
  options: { keyHandle: number; message: Uint8Array; scheme: TpmtScheme; label?: Uint8Array },
): Promise<Uint8Array> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.RSA_Encrypt,
    handles: [options.keyHandle],
    params: (w) => {
      w.tpm2b(options.message);
      writeScheme(w, options.scheme);
      w.tpm2b(options.label ?? new Uint8Array(0));
    },
  });
  const out = r.tpm2b('outData', 512);
  r.expectEnd();
  return out;
}

/** TPM2_RSA_Decrypt (USER role on the key: a password or policy session, as the key's attributes demand). */
export async function rsaDecrypt(
  tpm: Tpm,
  options: {
    keyHandle: number;
    ciphertext: Uint8Array;
    scheme: TpmtScheme;
    auth: AuthSession;
    label?: Uint8Array;
  },
): Promise<Uint8Array> {
  const { params: r } = await tpm.execute({
    cc: TPM_CC.RSA_Decrypt,
    handles: [options.keyHandle],
    auths: [options.auth],
    params: (w) => {
      w.tpm2b(options.ciphertext);
      writeScheme(w, options.scheme);
      w.tpm2b(options.label ?? new Uint8Array(0));
    },
  });
  const out = r.tpm2b('message', 512);
  r.expectEnd();
  return out;
}
