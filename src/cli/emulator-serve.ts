import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
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
}

const FLAVOUR_CHOICES = ['vault', 'managedhsm', 'both'] as const;

/** `--flavour`: which Key Vault kind(s) to serve; undefined keeps the emulator's flavourless vault. */
export function parseServeFlavour(value: string | undefined): (typeof FLAVOUR_CHOICES)[number] | undefined {
  if (value === undefined) return undefined;
  if ((FLAVOUR_CHOICES as readonly string[]).includes(value)) return value as (typeof FLAVOUR_CHOICES)[number];
  throw new InvalidArgumentError(`--flavour must be vault, managedhsm or both, not ${value}`);
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
          `${JSON.stringify({ vaultUrl: e.vaultUrl, ...(managedHsmUrl ? { managedHsmUrl } : {}), attestationUrl: e.attestationUrl, imdsUrl: e.imdsUrl, tokenUrl: e.tokenUrl, caFile, environment }, null, 2)}\n`,
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
