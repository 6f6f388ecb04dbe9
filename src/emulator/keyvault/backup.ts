/**
 * Key backup and restore (`POST /keys/{name}/backup` -> `{value}`, `POST /keys/restore` `{value}` -> KeyBundle)
 * and random bytes (`POST /rng` `{count}` -> `{value}`, Managed HSM only).
 *
 * A backup is opaque to its holder and restorable only by the same emulator identity: the key (every version,
 * its rotation policy) as JSON, sealed with AES-256-GCM under a key derived (HKDF-SHA256) from the emulator's
 * identity secret, with the format tag and the flavour as additional data, so a vault backup is not restorable
 * into a Managed HSM and a changed or foreign blob is refused. The real service's blobs are likewise
 * base64url of a versioned, encrypted container ("&AzureKeyVaultKeyBackupV1.microsoft.com" + JWE, visible
 * in the request bodies of Azure/azure-sdk-for-js
 * `sdk/keyvault/keyvault-keys/recordings/node/keys_client__restore_keys_and_recover_backups/recording_can_restore_a_key_with_a_given_backup.js`).
 *
 * Answers, as recorded in that folder:
 * - backup of a missing key: 404 KeyNotFound (recording_fails_to_generate_a_backup_of_a_nonexisting_key.json);
 * - restore of a blob that is not a backup: 400 `{"code":"Malformed backup blob","message":"Backup blob
 *   contains invalid or corrupt version."}` (recording_fails_to_restore_a_key_with_a_malformed_backup.js);
 * - restore while the name is in use (live, or deleted and not purged): 409 Conflict "There was a conflict
 *   restoring the key '<kid>'. ..." (recording_can_restore_a_key_with_a_given_backup.js, the retries before
 *   the purge completes).
 * Random bytes: count outside 1..128 is 400 BadParameter "GetRandomBytesRequest: count cannot be greater than
 * 128 or less than 1" (keys_client__create_read_update_and_delete_operations_for_managed_hsm_getrandombytes/
 * recording_returns_an_error_when_bytes_is_out_of_range.json).
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { EmulatedVaultRequestError } from '../errors.js';
import type { VaultFlavour } from './flavour.js';
import { isKeyType } from './key-material.js';
import type { StoredKey } from './store.js';
import { VaultErrors } from './vault-error.js';

/** Leading bytes of every emulator backup (and its format version). */
const MAGIC = Buffer.from('&CvmSkrEmulatorKeyBackupV1', 'ascii');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** Larger blobs are refused before decoding (the request body limit is 1 MiB anyway). */
const MAX_BLOB_CHARS = 1024 * 1024;

export const MALFORMED_BACKUP_MESSAGE = 'Backup blob contains invalid or corrupt version.';

export function malformedBackup(): EmulatedVaultRequestError {
  return new EmulatedVaultRequestError(400, 'Malformed backup blob', MALFORMED_BACKUP_MESSAGE);
}

export function restoreConflict(kid: string): EmulatedVaultRequestError {
  return VaultErrors.conflict(
    `There was a conflict restoring the key '${kid}'. This can happen if either: a second key with the same name was created after the first key was deleted; thus trying to restore a key whose name is already in use. To fix this, rename the second key to something else so that the restore works. The second probable cause of this exception is when multiple operations are performed in parallel against the key. To avoid this error, perform operations against a key in a sequential manner.`,
  );
}

/** A new identity secret for an emulator (persisted in its state file when it has one). */
export function newIdentitySecret(): string {
  return randomBytes(32).toString('base64url');
}

export class BackupSealer {
  readonly #key: Buffer;
  readonly #aad: Buffer;

  constructor(identitySecret: string, flavour: VaultFlavour | undefined) {
    const secret = Buffer.from(identitySecret, 'base64url');
    if (secret.length < 16) throw new RangeError('the emulator identity secret must be at least 16 bytes');
    this.#key = Buffer.from(hkdfSync('sha256', secret, MAGIC, 'cvm-skr keyvault emulator key backup', 32));
    this.#aad = Buffer.concat([MAGIC, Buffer.from(`:${flavour ?? 'vault'}`, 'ascii')]);
  }

  /** The backup blob of a key (deleted state and notification bookkeeping left out). */
  seal(key: StoredKey): string {
    const copy = structuredClone(key);
    delete copy.deleted;
    for (const v of copy.versions) {
      delete v.nearExpiryNotified;
      delete v.expiredNotified;
    }
    const plain = Buffer.from(JSON.stringify(copy), 'utf8');
    const nonce = randomBytes(NONCE_BYTES);
    const c = createCipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(this.#aad);
    const body = Buffer.concat([c.update(plain), c.final()]);
    plain.fill(0);
    return Buffer.concat([MAGIC, nonce, body, c.getAuthTag()]).toString('base64url');
  }

  /** The key a blob holds; `Malformed backup blob` for anything this emulator did not seal. */
  open(blob: unknown): StoredKey {
    if (typeof blob !== 'string' || blob.length === 0 || blob.length > MAX_BLOB_CHARS) {
      throw malformedBackup();
    }
    if (!/^[A-Za-z0-9_-]+$/.test(blob)) throw malformedBackup();
    const raw = Buffer.from(blob, 'base64url');
    if (raw.length < MAGIC.length + NONCE_BYTES + TAG_BYTES || !raw.subarray(0, MAGIC.length).equals(MAGIC)) {
      throw malformedBackup();
    }
    const nonce = raw.subarray(MAGIC.length, MAGIC.length + NONCE_BYTES);
    const body = raw.subarray(MAGIC.length + NONCE_BYTES, raw.length - TAG_BYTES);
    const tag = raw.subarray(raw.length - TAG_BYTES);
    let plain: Buffer;
    try {
      const d = createDecipheriv('aes-256-gcm', this.#key, nonce, { authTagLength: TAG_BYTES });
      d.setAAD(this.#aad);
      d.setAuthTag(tag);
      plain = Buffer.concat([d.update(body), d.final()]);
    } catch {
      throw malformedBackup();
    }
    let key: unknown;
    try {
      key = JSON.parse(plain.toString('utf8'));
    } catch {
      throw malformedBackup();
    } finally {
      plain.fill(0);
    }
    if (!isStoredKey(key)) throw malformedBackup();
    return key;
  }
}

function isStoredKey(k: unknown): k is StoredKey {
  if (typeof k !== 'object' || k === null) return false;
  const key = k as Record<string, unknown>;
  return (
    typeof key.name === 'string' &&
    Array.isArray(key.versions) &&
    key.versions.length > 0 &&
    key.versions.every(
      (v: unknown) =>
        typeof v === 'object' &&
        v !== null &&
        typeof (v as Record<string, unknown>).version === 'string' &&
        isKeyType((v as Record<string, unknown>).kty),
    )
  );
}

/** `POST /rng`: `{count}` (1..128) -> `{value}` (base64url). */
export function randomBytesAnswer(body: unknown): { value: string } {
  const count = typeof body === 'object' && body !== null ? (body as Record<string, unknown>).count : undefined;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 128) {
    throw VaultErrors.badParameter('GetRandomBytesRequest: count cannot be greater than 128 or less than 1');
  }
  return { value: randomBytes(count).toString('base64url') };
}
