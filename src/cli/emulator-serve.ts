import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { isKeyName } from '../keyvault/key-id.js';
import { noteKeyGeneration, parseProduct } from './emulator.js';

interface ServeOptions {
  port?: string;
  attestationPort?: string;
  imdsPort?: string;
  state?: string;
  product?: string;
  cache?: boolean | string;
  json?: boolean;
  flavour?: string;
  key: string[];
}

const FLAVOUR_CHOICES = ['vault', 'managedhsm', 'both'] as const;

/** `--flavour`: which Key Vault kind(s) to serve; undefined keeps the emulator's flavourless vault. */
export function parseServeFlavour(value: string | undefined): (typeof FLAVOUR_CHOICES)[number] | undefined {
  if (value === undefined) return undefined;
  if ((FLAVOUR_CHOICES as readonly string[]).includes(value)) return value as (typeof FLAVOUR_CHOICES)[number];
  throw new InvalidArgumentError(`--flavour must be vault, managedhsm or both, not ${value}`);
}

function collect(value: string, previous: string[]): string[] {
  if (!isKeyName(value)) {
    throw new InvalidArgumentError(`--key ${value}: a key name is 1-127 letters, digits and dashes`);
  }
  return previous.includes(value) ? previous : [...previous, value];
}

function parsePort(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new InvalidArgumentError(`${flag} must be a port number`);
  return port;
}

/**
 * `cvm-skr emulator` (default subcommand `serve`): the emulated attestation service and Key Vault in the
 * foreground, until Ctrl-C. Prints the URLs and the environment a client process needs.
 */
export function registerEmulatorServe(emulator: Command): void {
  emulator
    .command('serve', { isDefault: true })
    .description(
      'run the emulated attestation service and Key Vault until interrupted, and print how to reach them',
    )
    .option('--port <n>', 'Key Vault port (default: a free port)')
    .option('--attestation-port <n>', 'attestation service port (default: a free port)')
    .option('--imds-port <n>', 'emulated IMDS (THIM, AK certificate renewal) port (default: a free port)')
    .option(
      '--state <file>',
      'keep vault state (keys, versions, policies, the CA) in this file across restarts',
    )
    .option('--product <name>', 'emulated AMD product: Milan (default), Genoa or Turin')
    .option(
      '--cache <dir>',
      'emulated AMD and vTPM CA key cache folder (default $CVM_SKR_EMULATOR_CACHE, else the per-user cache)',
    )
    .option(
      '--no-cache',
      'fresh emulator-only 2048-bit AMD roots in memory instead of the per-user key cache',
    )
    .option(
      '--flavour <kind>',
      'vault (RSA/EC keys), managedhsm (RSA-HSM/EC-HSM/oct-HSM keys, /rng) or both (a vault and a Managed HSM)',
    )
    .option(
      '--key <name>',
      'create an exportable RSA-HSM 2048 key that emulated VMs (vTPM or SNP guest) may release, unless it exists (repeatable)',
      collect,
      [],
    )
    .option('--json', 'print the URLs and environment as JSON')
    .action(async (options: ServeOptions) => {
      const { startEmulator } = await import('../emulator/start.js');
      const product = parseProduct(options.product);
      const port = parsePort(options.port, '--port');
      const attestationPort = parsePort(options.attestationPort, '--attestation-port');
      const flavour = parseServeFlavour(options.flavour);
      const imdsPort = parsePort(options.imdsPort, '--imds-port');
      if (typeof options.cache === 'string') process.env.CVM_SKR_EMULATOR_CACHE = path.resolve(options.cache);
      await noteKeyGeneration(product, options.cache !== false);
      const e = await startEmulator({
        ...(port !== undefined ? { port } : {}),
        ...(attestationPort !== undefined ? { attestationPort } : {}),
        ...(imdsPort !== undefined ? { imdsPort } : {}),
        ...(options.state ? { statePath: path.resolve(options.state) } : {}),
        ...(product ? { product } : {}),
        ...(options.cache === false ? { cache: false as const, rootKeyBits: 2048 as const } : {}),
        ...(typeof options.cache === 'string' ? { cache: path.resolve(options.cache) } : {}),
        vault: {
          tickIntervalMs: 1000,
          ...(flavour === 'managedhsm' ? { flavour: 'managedhsm' as const } : {}),
          ...(flavour === 'vault' || flavour === 'both' ? { flavour: 'vault' as const } : {}),
        },
        ...(flavour === 'both' ? { managedHsm: { tickIntervalMs: 1000 } } : {}),
      });
      const managedHsmUrl = e.managedHsm?.vaultUrl;
      let keyIds: string[];
      try {
        keyIds = await createReleasableKeys(e, options.key);
      } catch (error) {
        // Nothing is served after a failed start: the servers stop and a --state lock is released.
        await e.close().catch(() => {});
        throw error;
      }
      const dir = await mkdtemp(path.join(tmpdir(), 'cvm-skr-emulator-'));
      const caFile = path.join(dir, 'ca.pem');
      await writeFile(caFile, e.caPem);
      // The emulated ARK and ASK (public certificates) for clients that verify SNP reports themselves.
      const amdRootFile = path.join(dir, 'emulated-amd-root.pem');
      await writeFile(amdRootFile, `${e.amd.arkPem.trim()}\n${e.amd.askPem.trim()}\n`);
      await chmod(dir, 0o700);
      const environment = {
        ...e.environment(),
        CVM_SKR_AMD_ROOT_FILE: amdRootFile,
        CVM_SKR_CA_FILE: caFile,
        NODE_EXTRA_CA_CERTS: caFile,
      };
      // Ctrl-C is handled before anything is printed: a client that reads the environment and stops the
      // emulator at once must not race the handler (stdout to a pipe is written synchronously).
      const stopped = new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      if (options.json) {
        process.stdout.write(
          `${JSON.stringify({ vaultUrl: e.vaultUrl, ...(managedHsmUrl ? { managedHsmUrl } : {}), attestationUrl: e.attestationUrl, imdsUrl: e.imdsUrl, tokenUrl: e.tokenUrl, caFile, keyIds, environment }, null, 2)}\n`,
        );
      } else {
        const lines = [
          'cvm-skr emulator is running (Ctrl-C to stop)',
          `  ${(flavour === 'managedhsm' ? 'Managed HSM' : 'Key Vault').padEnd(21)}${e.vaultUrl}`,
          ...(managedHsmUrl ? [`  Managed HSM          ${managedHsmUrl}`] : []),
          `  attestation service  ${e.attestationUrl}`,
          `  token endpoint       ${e.tokenUrl}`,
          `  IMDS (THIM)          ${e.imdsUrl}`,
          `  emulator CA          ${caFile}`,
          ...keyIds.map((id) => `  key (--key)          ${id}`),
          '',
          'In another shell:',
          ...Object.entries(environment).map(([k, v]) => `  export ${k}=${JSON.stringify(v)}`),
          '',
          'then e.g.: npx cvm-skr attest --emulator, or npx cvm-skr release --emulator <keyId>.',
          'The Azure SDK: ManagedIdentityCredential and { disableChallengeResourceVerification: true } (the CA is',
          '  trusted through NODE_EXTRA_CA_CERTS). SecureKeyRelease also takes the CA file\'s PEM as attestationCa',
          '  and in releaseSigningRoots: the emulated vault signs releases under it, not under a public root.',
        ];
        process.stdout.write(`${lines.join('\n')}\n`);
      }
      await stopped;
      await e.close();
      await rm(dir, { recursive: true, force: true });
      process.stderr.write('cvm-skr emulator stopped\n');
    });
}

/**
 * The keys `--key` names, created in the (first) emulated vault with a release policy that both emulated
 * platforms meet: an AzureGuest token (vTPM) carries the SNP claims under x-ms-isolation-tee, a SevSnpVm
 * token at the top level. A key that already exists (kept by --state) is left as it is, policy included.
 */
async function createReleasableKeys(
  e: Awaited<ReturnType<typeof import('../emulator/start.js').startEmulator>>,
  names: string[],
): Promise<string[]> {
  if (names.length === 0) return [];
  const client = e.keyClient();
  const vtpm = e.releasePolicy('emulated-azure-vtpm');
  const snp = e.releasePolicy('emulated-sev-guest');
  const policy = { version: vtpm.version, anyOf: [...vtpm.anyOf, ...snp.anyOf] };
  const ids: string[] = [];
  for (const name of names) {
    const existing = await client.getKey(name).catch((error: { statusCode?: number }) => {
      if (error.statusCode === 404) return undefined;
      throw error;
    });
    const key =
      existing ??
      (await client
        .createKey(name, 'RSA-HSM', {
          keySize: 2048,
          exportable: true,
          releasePolicy: { encodedPolicy: Buffer.from(JSON.stringify(policy)) },
        })
        .catch((error: unknown) => {
          throw new InvalidArgumentError(
            `--key ${name}: the emulated vault did not create it (${(error as Error).message}); a deleted key of that name must be purged or recovered first`,
            { cause: error },
          );
        }));
    ids.push(`${e.vaultUrl}/keys/${key.name}`);
  }
  return ids;
}
