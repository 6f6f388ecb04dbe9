import type { Command } from 'commander';
import type { JWTPayload } from 'jose';
import { InvalidArgumentError, TimeoutError } from '../errors.js';
import type { AzureVtpmPlatform } from '../hal/platforms/azure-vtpm.js';
import type { AttestationPlatform } from '../hal/types.js';
import { deadline } from '../util/abort.js';
import { noteKeyGeneration, openTpmTarget, parseHexBytes, parseProduct } from './emulator.js';
import { parseTimeout, progress, readInput } from './io.js';

interface AttestCliOptions {
  emulator?: boolean;
  endpoint?: string;
  ca?: string;
  tpm?: string;
  platform?: string;
  product?: string;
  nonce?: string;
  cache?: boolean;
  json?: boolean;
  token?: boolean;
  timeout?: string;
}

export interface AttestCliResult {
  endpoint: string;
  protocol: 'AzureGuest' | 'SevSnpVm';
  platform: string;
  expiresAt: string;
  claims: JWTPayload;
  token?: string;
}

/**
 * `cvm-skr attest`: attests and prints the verified token's claims. `--emulator` uses a running
 * `cvm-skr emulator` when its environment is exported ($CVM_SKR_ATTESTATION_URL, $CVM_SKR_CA_FILE, and
 * $CVM_SKR_EMULATOR_HARDWARE_URL with $IDENTITY_HEADER for its chip), else runs the emulated MAA in this
 * process, with an emulated platform (`--platform azure-vtpm|sev-guest`) or, with `--tpm`, the real azure-vtpm
 * backend on a swtpm provisioned by `cvm-skr emulator provision-swtpm`. Without `--emulator`, `--endpoint`
 * names the attestation provider and `--tpm` the vTPM (default /dev/tpmrm0).
 */
export function registerAttest(program: Command): void {
  program
    .command('attest')
    .description("attest this machine (or the emulator) with MAA and print the verified token's claims")
    .option(
      '--emulator',
      'use the emulated attestation service (a running `cvm-skr emulator` when its environment is exported, else a private one) and, unless --tpm is given, an emulated platform',
    )
    .option('--endpoint <url>', 'attestation provider, e.g. https://sharedeus.eus.attest.azure.net')
    .option('--ca <file>', 'PEM CA to trust for the endpoint (private or emulated endpoints)')
    .option('--tpm <target>', 'vTPM: device, Unix socket or host:port (a provisioned swtpm with --emulator)')
    .option('--platform <kind>', 'with --emulator and no --tpm: azure-vtpm (default) or sev-guest')
    .option('--product <name>', 'emulated AMD product: Milan (default), Genoa or Turin')
    .option('--nonce <hex>', 'nonce to bind into the evidence (at most 64 bytes)')
    .option('--no-cache', 'emulator: fresh 2048-bit emulator roots in memory instead of the key cache')
    .option('--json', 'print JSON: endpoint, protocol, expiry and claims')
    .option('--token', 'also print the token itself (it is a bearer credential for key release)')
    .option('--timeout <seconds>', 'give up on the attestation service after this long (default 60)')
    .action(async (options: AttestCliOptions) => {
      const result = await runAttest(options);
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      const lines = [
        `verified ${result.protocol} token from ${result.endpoint} (platform ${result.platform})`,
        `expires ${result.expiresAt}`,
        JSON.stringify(result.claims, null, 2),
      ];
      if (result.token) lines.push(result.token);
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}

export async function runAttest(options: AttestCliOptions): Promise<AttestCliResult> {
  const nonce = options.nonce === undefined ? undefined : parseHexBytes(options.nonce, '--nonce', 64);
  const product = parseProduct(options.product);
  const timeoutMs = parseTimeout(options.timeout) ?? 60_000;
  if (options.platform !== undefined && !['azure-vtpm', 'sev-guest'].includes(options.platform))
    throw new InvalidArgumentError(`--platform must be azure-vtpm or sev-guest, not ${options.platform}`);
  const cache = options.cache === false ? ({ cache: false, rootKeyBits: 2048 } as const) : {};
  const cleanup: (() => Promise<void>)[] = [];
  // Loaded here, not at start-up: `cvm-skr --help` and the other commands do not pay for them.
  const [{ AzureVtpmPlatform }, { attest }] = await Promise.all([
    import('../hal/platforms/azure-vtpm.js'),
    import('../maa/client.js'),
  ]);
  try {
    let endpoint = options.endpoint;
    let ca = options.ca === undefined ? undefined : await readInput(options.ca, '--ca', 'utf8');
    let platform: AttestationPlatform;
    const running = options.emulator ? process.env.CVM_SKR_ATTESTATION_URL : undefined;
    if (options.emulator && running) {
      // A running `cvm-skr emulator` (its exported environment): attest with its service, as its chip.
      if (options.endpoint !== undefined)
        throw new InvalidArgumentError('--emulator uses $CVM_SKR_ATTESTATION_URL; drop --endpoint');
      if (options.product !== undefined || options.cache === false) {
        throw new InvalidArgumentError(
          'the running emulator ($CVM_SKR_ATTESTATION_URL) has its own chip: drop --product and --no-cache, or unset its environment to start a private one',
        );
      }
      const caFile = options.ca ?? process.env.CVM_SKR_CA_FILE;
      if (caFile === undefined) {
        throw new InvalidArgumentError(
          '--emulator with $CVM_SKR_ATTESTATION_URL needs the emulator CA: export CVM_SKR_CA_FILE as it prints it',
        );
      }
      ca = await readInput(caFile, options.ca ? '--ca' : '$CVM_SKR_CA_FILE', 'utf8');
      endpoint = running;
      const [{ emulatedHardwareFromEnvironment }, { EmulatedSevGuestPlatform }, { EmulatedAzureVtpmPlatform }] =
        await Promise.all([
          import('../emulator/hardware/remote.js'),
          import('../emulator/hardware/emulated-sev-guest.js'),
          import('../emulator/hardware/emulated-vtpm.js'),
        ]);
      if (options.tpm !== undefined) {
        // The vTPM's VCEK chain comes from the running emulator's IMDS (THIM).
        platform = await openVtpm(options.tpm, cleanup, process.env.CVM_SKR_IMDS_URL);
      } else {
        const hardware = await emulatedHardwareFromEnvironment(ca);
        if (!hardware) await noteKeyGeneration(undefined, true);
        platform =
          options.platform === 'sev-guest'
            ? await EmulatedSevGuestPlatform.create(hardware ? { amd: hardware.amd } : {})
            : await EmulatedAzureVtpmPlatform.create(hardware ?? {});
      }
    } else if (options.emulator) {
      if (options.endpoint !== undefined)
        throw new InvalidArgumentError('--emulator runs its own service; drop --endpoint');
      await noteKeyGeneration(product, options.cache !== false);
      const [
        { EmulatedAkCa },
        { EmulatedAmd },
        { EmulatedSevGuestPlatform },
        { EmulatedAzureVtpmPlatform },
        { startAttestationEmulator },
      ] = await Promise.all([
        import('../emulator/hardware/ak-ca.js'),
        import('../emulator/hardware/amd.js'),
        import('../emulator/hardware/emulated-sev-guest.js'),
        import('../emulator/hardware/emulated-vtpm.js'),
        import('../emulator/maa/server.js'),
      ]);
      const amd = await EmulatedAmd.load({ ...(product ? { product } : {}), ...cache });
      const akCa = await EmulatedAkCa.load(options.cache === false ? { cache: false } : {});
      const server = await startAttestationEmulator({ amd, akCa });
      cleanup.push(() => server.close());
      endpoint = server.url;
      ca = server.caPem;
      if (options.tpm !== undefined) {
        // The vTPM's VCEK chain comes from THIM: here an emulated IMDS serving this emulated chip.
        const { startImdsEmulator } = await import('../emulator/imds/index.js');
        const imds = await startImdsEmulator({ amd, akCa });
        cleanup.push(() => imds.close());
        platform = await openVtpm(options.tpm, cleanup, imds.url);
      } else if (options.platform === undefined || options.platform === 'azure-vtpm') {
        platform = await EmulatedAzureVtpmPlatform.create({ amd, akCa });
      } else if (options.platform === 'sev-guest') {
        platform = await EmulatedSevGuestPlatform.create({ amd });
      } else {
        throw new InvalidArgumentError('--platform must be azure-vtpm or sev-guest');
      }
    } else {
      if (endpoint === undefined)
        throw new InvalidArgumentError('give --endpoint <attestation provider URL>, or --emulator');
      if (options.platform !== undefined && options.platform !== 'azure-vtpm') {
        throw new InvalidArgumentError('without --emulator only the azure-vtpm platform is supported here');
      }
      platform =
        options.tpm === undefined ? await AzureVtpmPlatform.open() : await openVtpm(options.tpm, cleanup);
    }
    cleanup.unshift(() => platform.close());
    progress(`attesting ${platform.kind} with ${endpoint}`);
    const limit = deadline(timeoutMs, [], `no token within ${timeoutMs / 1000} s (--timeout)`);
    let result: Awaited<ReturnType<typeof attest>>;
    try {
      result = await attest(platform, {
        endpoint,
        ...(ca === undefined ? {} : { ca }),
        ...(nonce === undefined ? {} : { nonce }),
        signal: limit.signal,
      });
    } catch (error) {
      if (limit.timedOut) throw limit.signal.reason as TimeoutError;
      throw error;
    } finally {
      limit.dispose();
    }
    return {
      endpoint,
      protocol: result.protocol,
      platform: platform.kind,
      expiresAt: result.expiresAt.toISOString(),
      claims: result.claims,
      ...(options.token ? { token: result.token } : {}),
    };
  } finally {
    for (const fn of cleanup) await fn().catch(() => {});
  }
}

async function openVtpm(
  target: string,
  cleanup: (() => Promise<void>)[],
  imdsUrl?: string,
): Promise<AzureVtpmPlatform> {
  const transport = await openTpmTarget(target);
  cleanup.push(() => transport.close());
  const { AzureVtpmPlatform } = await import('../hal/platforms/azure-vtpm.js');
  return AzureVtpmPlatform.open(imdsUrl === undefined ? { transport } : { transport, imdsUrl });
}
