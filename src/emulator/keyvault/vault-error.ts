/** Factories for the errors the emulated vault answers with, worded like the service. */
import { EmulatedVaultRequestError } from '../errors.js';

export { EmulatedVaultRequestError as VaultHttpError };

/** What a failed release answers, whatever the reason (the service does not say which check failed). */
export const RELEASE_DENIED_MESSAGE = 'Target environment attestation statement cannot be verified.';

export const VaultErrors = {
  badParameter(message: string): EmulatedVaultRequestError {
    return new EmulatedVaultRequestError(400, 'BadParameter', message);
  },
  keyNotFound(name: string, version?: string): EmulatedVaultRequestError {
    const what = version ? `(name/id) ${name}/${version}` : `(name/id) ${name}`;
    return new EmulatedVaultRequestError(
      404,
      'KeyNotFound',
      `A key with ${what} was not found in this key vault.`,
    );
  },
  deletedKeyNotFound(name: string): EmulatedVaultRequestError {
    return new EmulatedVaultRequestError(404, 'KeyNotFound', `Deleted Key not found: ${name}`);
  },
  forbidden(message: string, inner?: string): EmulatedVaultRequestError {
    return new EmulatedVaultRequestError(403, 'Forbidden', message, inner);
  },
  releaseDenied(): EmulatedVaultRequestError {
    return new EmulatedVaultRequestError(403, 'Forbidden', RELEASE_DENIED_MESSAGE, 'AccessDenied');
  },
  conflict(message: string): EmulatedVaultRequestError {
    return new EmulatedVaultRequestError(409, 'Conflict', message);
  },
  skr(rule: 1004 | 1005 | 1013 | 1014 | 1020, detail?: string): EmulatedVaultRequestError {
    const text: Record<typeof rule, string> = {
      1004: 'Exportable keys must have release policy.',
      1005: 'Non-exportable keys must not have release policy.',
      1013: 'The release policy is malformed.',
      1014: 'Cannot modify the exportable state of a key.',
      1020: 'The release policy of this key is immutable and cannot be changed.',
    };
    return new EmulatedVaultRequestError(
      400,
      'BadParameter',
      `AKV.SKR.${rule}: ${text[rule]}${detail ? ` ${detail}` : ''}`,
    );
  },
};
