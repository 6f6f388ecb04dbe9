/**
 * Key ids, checked before any attestation: `https://<host>[:port]/keys/<name>[/<version>]` and nothing else.
 *
 * Format from Microsoft's "About keys, secrets, and certificates" (Object identifiers):
 * https://learn.microsoft.com/en-us/azure/key-vault/about-keys-secrets-and-certificates — an identifier is
 * `https://{vault-name}.vault.azure.net/{object-type}/{object-name}/{object-version}`, object names are
 * 1-127 characters of 0-9, a-z, A-Z and `-`, and versions are system-generated (32 characters in practice:
 * the kids in Azure/azure-sdk-for-js sdk/keyvault/keyvault-keys/recordings/ end in 32 hex digits).
 */
import { InvalidArgumentError } from '../errors.js';

export interface KeyRef {
  vaultUrl: string;
  name: string;
  version?: string;
  /** Lower-cased `vault/name[/version]`, the cache and coalescing key. */
  cacheKey: string;
}

const NAME = /^[0-9A-Za-z-]{1,127}$/;
const VERSION = /^[0-9A-Za-z]{1,127}$/;
const FORM = 'https://<vault>/keys/<name>[/<version>]';

/** Whether `name` is a Key Vault key name (1-127 letters, digits and dashes). */
export function isKeyName(name: string): boolean {
  return NAME.test(name);
}

/**
 * Parses a key id strictly. http is accepted here (a response's kid names the vault as it was reached); use
 * `checkKeyIdScheme` to refuse http for a request.
 */
export function parseKeyRef(keyId: string): KeyRef {
  const bad = (why: string, cause?: unknown) =>
    new InvalidArgumentError(
      `${JSON.stringify(keyId)} is not a key id like ${FORM}: ${why}`,
      cause === undefined ? undefined : { cause },
    );
  if (typeof keyId !== 'string') throw bad('a string is needed');
  let url: URL;
  try {
    url = new URL(keyId);
  } catch (error) {
    throw bad('it is not a URL', error);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad(`${url.protocol} is not https`);
  if (url.username || url.password) throw bad('it carries a user name or password');
  // `new URL` drops an empty `?` or `#`, so look at the text too.
  if (url.search || url.hash || /[?#]/.test(keyId)) throw bad('it has a query or fragment');
  const segments = url.pathname.split('/').slice(1);
  if (segments[0] !== 'keys') {
    throw bad(
      segments[0] === 'secrets' || segments[0] === 'certificates'
        ? `it names a ${segments[0].slice(0, -1)}, not a key (use the /keys/ id)`
        : 'the path must start with /keys/',
    );
  }
  if (segments.length < 2 || segments.length > 3) throw bad('the path must be /keys/<name>[/<version>]');
  const [, name = '', version] = segments;
  if (!NAME.test(name)) throw bad('key names are 1-127 letters, digits and dashes');
  if (version !== undefined && !VERSION.test(version)) {
    throw bad(version === '' ? 'it ends with a slash but names no version' : 'the version is not a version id');
  }
  const vaultUrl = url.origin;
  return {
    vaultUrl,
    name,
    ...(version ? { version } : {}),
    cacheKey: `${vaultUrl.toLowerCase()}/${name.toLowerCase()}${version ? `/${version.toLowerCase()}` : ''}`,
  };
}

/** Key Vault is https only; plain http only for a local emulator, allowed by the SDK's own option. */
export function checkKeyIdScheme(ref: KeyRef, allowInsecureConnection: boolean | undefined): void {
  if (ref.vaultUrl.startsWith('http:') && allowInsecureConnection !== true) {
    throw new InvalidArgumentError(
      `${ref.vaultUrl} is plain http: Key Vault is reached over https only. For a local test vault, pass vaultOptions: { allowInsecureConnection: true }`,
    );
  }
}
