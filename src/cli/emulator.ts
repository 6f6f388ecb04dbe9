import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import type { TpmTransport } from '../hal/types.js';
import type { SnpProduct } from '../snp/tcb.js';
import { progress } from './io.js';

const PRODUCTS: readonly SnpProduct[] = ['Milan', 'Genoa', 'Turin'];

/** `host:port` goes to the TCP transport, anything else (Unix socket, device) to the native one. */
export async function openTpmTarget(target: string): Promise<TpmTransport> {
  const { openTpm } = await import('../hal/open-tpm.js');
  return /^[^/]+:\d+$/.test(target) ? openTpm({ tcp: target }) : openTpm({ path: target });
}

/**
 * Says on stderr when the emulated AMD root keys are about to be generated (RSA-4096: seconds), so a first
 * run does not look hung. The file name is the one src/emulator/hardware/amd.ts caches them under.
 */
export async function noteKeyGeneration(product: SnpProduct | undefined, cached: boolean): Promise<void> {
  const name = (product ?? 'Milan').toLowerCase();
  if (!cached) {
    progress('generating in-memory emulator root keys (--no-cache)');
    return;
  }
  const { emulatorCacheDir } = await import('../emulator/cache.js');
  const dir = emulatorCacheDir();
  const present = await access(path.join(dir, `emulated-amd-${name}-rsa4096.json`)).then(
    () => true,
    () => false,
  );
  if (!present) {
    progress(`first run: generating emulated AMD root keys for ${product ?? 'Milan'} (takes seconds; cached in ${dir})`);
  }
}

export function parseProduct(value: string | undefined): SnpProduct | undefined {
  if (value === undefined) return undefined;
  const product = PRODUCTS.find((p) => p.toLowerCase() === value.toLowerCase());
  if (product === undefined)
    throw new InvalidArgumentError(`--product must be Milan, Genoa or Turin, not ${value}`);
  return product;
}

export function parseHexBytes(value: string, what: string, max: number): Uint8Array {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(value) || value.length / 2 > max) {
    throw new InvalidArgumentError(`${what} must be hex of at most ${max} bytes`);
  }
  return new Uint8Array(Buffer.from(value, 'hex'));
}

interface ProvisionOptions {
  tpm: string;
  product?: string;
  userData?: string;
  noCache?: boolean;
  json?: boolean;
}

/** The `emulator` command group; `provision-swtpm` makes a running swtpm look like an Azure vTPM. */
export function registerEmulator(program: Command): Command {
  const emulator = program
    .command('emulator')
    .description('the software backend: emulated hardware and services')
    .addHelpText(
      'after',
      '\n`cvm-skr emulator [options]` runs `serve`, the default command: its options (--key, --state, --port,\n' +
        '--flavour, --cache, --json, ...) are listed by `cvm-skr emulator serve --help`.',
    );
  emulator
    .command('provision-swtpm')
    .description(
      'make a running swtpm look like an Azure confidential VM vTPM (AK 0x81000003, AK certificate 0x01C101D0, ' +
        'HCL report 0x01400001 signed by the emulated AMD chip); never point it at a real TPM',
    )
    .requiredOption('--tpm <target>', 'swtpm command channel: Unix socket path, or host:port')
    .option('--product <name>', 'emulated AMD product: Milan (default), Genoa or Turin')
    .option('--user-data <hex>', 'up to 64 bytes the HCL report carries as user-data')
    .option('--no-cache', 'do not use the emulator key cache (fresh 2048-bit emulator roots in memory)')
    .option('--json', 'print the result as JSON')
    .action(async (options: ProvisionOptions & { cache?: boolean }) => {
      const product = parseProduct(options.product);
      let userData: Uint8Array | undefined;
      if (options.userData !== undefined) {
        userData = new Uint8Array(64);
        userData.set(parseHexBytes(options.userData, '--user-data', 64));
      }
      const noCache = options.cache === false;
      await noteKeyGeneration(product, !noCache);
      const [{ emulatorCacheDir }, { provisionSwtpmAsAzureVtpm }] = await Promise.all([
        import('../emulator/cache.js'),
        import('../emulator/hardware/provision-swtpm.js'),
      ]);
      const transport = await openTpmTarget(options.tpm);
      try {
        const result = await provisionSwtpmAsAzureVtpm(transport, {
          ...(product ? { product } : {}),
          ...(userData ? { userData } : {}),
          ...(noCache ? { cache: false, rootKeyBits: 2048 } : {}),
        });
        const summary = {
          tpm: options.tpm,
          product: result.amd.product,
          reportedTcb: result.amd.tcb.raw.toString(16).padStart(16, '0'),
          chipId: Buffer.from(result.amd.chipId).toString('hex'),
          akHandle: '0x81000003',
          akCertIndex: '0x01c101d0',
          akCertBytes: result.layout.akCertDer.length,
          hclReportIndex: '0x01400001',
          hclReportBytes: result.layout.hclReport.length,
          keyCache: noCache ? null : emulatorCacheDir(),
        };
        if (options.json) {
          process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
        } else {
          process.stdout.write(
            `${[
              `provisioned ${options.tpm} as an Azure vTPM (emulated ${summary.product}, TCB ${summary.reportedTcb})`,
              `  AK            ${summary.akHandle}, certificate at NV ${summary.akCertIndex} (${summary.akCertBytes} bytes)`,
              `  HCL report    NV ${summary.hclReportIndex} (${summary.hclReportBytes} bytes), signed by the emulated VCEK`,
              `  key cache     ${summary.keyCache ?? 'none (in memory)'}`,
              'Attest against it with an emulated MAA that trusts the emulated roots, e.g.',
              `  cvm-skr attest --emulator --tpm ${options.tpm}`,
            ].join('\n')}\n`,
          );
        }
      } finally {
        await transport.close();
      }
    });
  return emulator;
}
