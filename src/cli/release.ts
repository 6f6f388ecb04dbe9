import { createHash, createPublicKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InvalidArgumentError, TimeoutError } from '../errors.js';
import { parseKeyRef } from '../keyvault/key-id.js';
import { isReleaseEncryption } from '../keyvault/key-wrap.js';
import type { ReleasedKey } from '../keyvault/secure-key-release.js';
import { checkOutPath, parseTimeout, progress } from './io.js';
import { checkPlatformOption, releaseSetup } from './release-setup.js';

interface ReleaseCliOptions {
  agent?: string | true;
  emulator?: boolean;
  endpoint?: string;
  ca?: string;
  tpm?: string;
  platform?: string;
  enc?: string;
  out?: string;
  json?: boolean;
  timeout?: string;
}

/** What may be shown about a released key: identity and public facts, never the key. */
export function describeReleasedKey(released: ReleasedKey) {
  const key = released.key;
  const publicFingerprint =
    key.type === 'private'
      ? createHash('sha256')
          .update(createPublicKey(key).export({ format: 'der', type: 'spki' }))
          .digest('hex')
      : undefined;
  return {
    kid: released.kid,
    name: released.name,
    version: released.version,
    keyType: released.keyType,
    ...(publicFingerprint
      ? { publicKeySha256: publicFingerprint }
      : { secretBits: (key.symmetricKeySize ?? 0) * 8 }),
    attributes: released.attributes,
    releasedAt: released.releasedAt.toISOString(),
  };
}

/** PKCS#8 PEM for private keys, the raw bytes for secret keys. */
export function exportForFile(released: ReleasedKey): Buffer {
  return released.key.type === 'private'
    ? Buffer.from(released.key.export({ format: 'pem', type: 'pkcs8' }) as string)
    : released.key.export();
}

/**
 * With `--agent` the agent's own platform, attestation endpoint, CA and release encryption apply; a flag that
 * would choose one of them here is a contradiction, refused before anything is asked.
 */
function checkAgentOptions(options: ReleaseCliOptions): void {
  const local = (['emulator', 'endpoint', 'ca', 'tpm', 'platform', 'enc'] as const).filter(
    (name) => options[name] !== undefined,
  );
  if (local.length > 0) {
    throw new InvalidArgumentError(
      `--agent releases with the agent's own settings; drop ${local.map((name) => `--${name}`).join(', ')} (or drop --agent to release in this process)`,
    );
  }
}

export function registerRelease(program: Command): void {
  program
    // [keyId] so that `release --agent <keyId>` (the optional socket taking the key id) can be read as meant;
    // the usage line still shows it as required.
    .command('release [keyId]')
    .usage('[options] <keyId>')
    .description(
      'release a key to this machine (https://<vault>/keys/<name>[/<version>]); prints its identity, never the key',
    )
    .option(
      '--emulator',
      'use a running `cvm-skr emulator` (its exported environment) and an emulated platform',
    )
    .option('--endpoint <url>', 'attestation provider (default $CVM_SKR_ATTESTATION_URL)')
    .option('--ca <file>', 'PEM CA for the attestation endpoint and the vault (default $CVM_SKR_CA_FILE)')
    .option('--tpm <target>', 'vTPM device, Unix socket or host:port (e.g. a provisioned swtpm)')
    .option('--platform <kind>', 'with --emulator and no --tpm: azure-vtpm (default) or sev-guest')
    .option('--enc <alg>', 'RSA_AES_KEY_WRAP_256 (default), RSA_AES_KEY_WRAP_384 or CKM_RSA_AES_KEY_WRAP')
    .option('--out <file>', 'write the released key there (PKCS#8 PEM, or raw bytes for oct), mode 0600')
    .option(
      '--agent [socket]',
      "through the machine's key agent (`cvm-skr agent`) on this socket (default $CVM_SKR_AGENT_SOCKET or /run/cvm-skr/agent.sock); the agent's platform, endpoint and vault settings apply",
    )
    .option('--json', 'print JSON')
    .option('--timeout <seconds>', 'give up after this long, attestation and release included (default 60)')
    .action(async (given: string | undefined, options: ReleaseCliOptions, command: Command) => {
      let keyId = given;
      if (keyId === undefined && typeof options.agent === 'string' && /^https?:\/\//.test(options.agent)) {
        keyId = options.agent;
        options.agent = true;
      }
      // Reported by commander, as a missing `<keyId>` would have been (ERR_USAGE, exit 2).
      if (keyId === undefined) {
        command.error("error: missing required argument 'keyId'", { code: 'commander.missingArgument' });
      }
      // Everything the user typed is checked before any device, network or key release is touched.
      const ref = parseKeyRef(keyId);
      if (!ref.vaultUrl.startsWith('https:'))
        throw new InvalidArgumentError(`${keyId}: Key Vault is reached over https only`);
      if (options.enc !== undefined && !isReleaseEncryption(options.enc)) {
        throw new InvalidArgumentError(
          `--enc ${options.enc} is not one of RSA_AES_KEY_WRAP_256, RSA_AES_KEY_WRAP_384, CKM_RSA_AES_KEY_WRAP`,
        );
      }
      checkPlatformOption(options.platform);
      if (options.agent !== undefined) checkAgentOptions(options);
      const timeoutMs = parseTimeout(options.timeout);
      if (options.out !== undefined) await checkOutPath(options.out);
      const { SecureKeyRelease } = await import('../keyvault/secure-key-release.js');
      const cleanup: (() => Promise<void>)[] = [];
      try {
        let skr: InstanceType<typeof SecureKeyRelease>;
        if (options.agent !== undefined) {
          const agent = {
            ...(options.agent === true ? {} : { socket: options.agent }),
            ...(timeoutMs !== undefined ? { timeoutMs } : {}),
          };
          skr = new SecureKeyRelease({ agent });
          progress(`releasing ${ref.name} from ${ref.vaultUrl} through the key agent`);
        } else {
          const setup = await releaseSetup(options, cleanup);
          skr = new SecureKeyRelease({
            ...setup,
            ...(options.enc ? { enc: options.enc as 'RSA_AES_KEY_WRAP_256' } : {}),
            ...(timeoutMs !== undefined ? { timeoutMs } : {}),
            onRetry: (r) =>
              progress(
                `${r.step === 'attestation' ? 'attestation' : 'Key Vault'} attempt ${r.attempt} failed (${r.reason}); retrying${r.delayMs !== undefined ? ` in ${r.delayMs} ms` : ''}`,
              ),
          });
          progress(
            `releasing ${ref.name} from ${ref.vaultUrl} (attestation with ${setup.attestationEndpoint} first)`,
          );
        }
        cleanup.unshift(() => skr.close());
        let released: ReleasedKey;
        try {
          released = await skr.releaseKey(keyId);
        } catch (error) {
          if (error instanceof TimeoutError) {
            throw new TimeoutError(
              `no key within ${error.timeoutMs / 1000} s (--timeout): ${error.message.replace(/ \(timeoutMs\)/, '')}`,
              { timeoutMs: error.timeoutMs },
              { cause: error },
            );
          }
          throw error;
        }
        if (options.out) {
          const bytes = exportForFile(released);
          try {
            // wx: never overwrite an existing file with key material; 0600 from the first byte.
            await writeFile(options.out, bytes, { mode: 0o600, flag: 'wx' });
          } catch (error) {
            throw new InvalidArgumentError(
              `--out ${options.out}: the key was released but could not be written (${(error as NodeJS.ErrnoException).code ?? 'error'}); it is not kept anywhere else`,
              { cause: error },
            );
          } finally {
            bytes.fill(0);
          }
        }
        const summary = {
          ...describeReleasedKey(released),
          ...(options.out ? { writtenTo: options.out } : {}),
        };
        if (options.json) {
          process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        } else {
          process.stdout.write(
            [
              `released ${summary.kid}`,
              `  type ${summary.keyType}${'publicKeySha256' in summary ? `, public key sha256 ${summary.publicKeySha256}` : ''}`,
              options.out
                ? `  key written to ${options.out} (mode 0600)`
                : '  (key not shown; use --out <file> to save it)',
            ].join('\n') + '\n',
          );
        }
      } finally {
        for (const fn of cleanup) await fn().catch(() => {});
      }
    });
}
