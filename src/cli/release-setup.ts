/**
 * What `cvm-skr release` and `cvm-skr agent` share before they build a `SecureKeyRelease`: the platform (a vTPM
 * given with --tpm, an emulated one with --emulator, else the detected hardware), the attestation endpoint and
 * CA, and, with --emulator, the running emulator's identity and vault settings.
 */
import type { TokenCredential } from '@azure/core-auth';
import { InvalidArgumentError } from '../errors.js';
import type { AttestationPlatform } from '../hal/types.js';
import type { SecureKeyReleaseOptions } from '../keyvault/secure-key-release.js';
import { noteKeyGeneration, openTpmTarget } from './emulator.js';
import { readInput } from './io.js';

export interface ReleaseSetupOptions {
  emulator?: boolean;
  endpoint?: string;
  ca?: string;
  tpm?: string;
  platform?: string;
}

/** Checks `--platform` before anything is opened. */
export function checkPlatformOption(platform: string | undefined): void {
  if (platform !== undefined && !['azure-vtpm', 'sev-guest'].includes(platform))
    throw new InvalidArgumentError(`--platform must be azure-vtpm or sev-guest, not ${platform}`);
}

/**
 * Opens what the options name and returns the `SecureKeyRelease` settings for it. Everything opened is added to
 * `cleanup` (newest first), so the caller closes it also when a later step fails.
 */
export async function releaseSetup(
  options: ReleaseSetupOptions,
  cleanup: (() => Promise<void>)[],
): Promise<Pick<SecureKeyReleaseOptions, 'attestationEndpoint' | 'attestationCa' | 'releaseSigningRoots' | 'credential' | 'platform' | 'vaultOptions'>> {
  let platform: AttestationPlatform | 'auto' = 'auto';
  if (options.tpm !== undefined) {
    const { AzureVtpmPlatform } = await import('../hal/platforms/azure-vtpm.js');
    const transport = await openTpmTarget(options.tpm);
    cleanup.push(() => transport.close());
    const vtpm = await AzureVtpmPlatform.open({ transport });
    cleanup.unshift(() => vtpm.close());
    platform = vtpm;
  }
  const endpoint = options.endpoint ?? process.env.CVM_SKR_ATTESTATION_URL;
  let ca = options.ca ? await readInput(options.ca, '--ca', 'utf8') : undefined;
  let credential: TokenCredential | undefined;
  if (options.emulator) {
    const caFile = options.ca ?? process.env.CVM_SKR_CA_FILE;
    if (!endpoint || !caFile || !process.env.IDENTITY_ENDPOINT || !process.env.IDENTITY_HEADER) {
      throw new InvalidArgumentError(
        '--emulator talks to a running "cvm-skr emulator": export the variables it prints (CVM_SKR_ATTESTATION_URL, CVM_SKR_CA_FILE, IDENTITY_ENDPOINT, IDENTITY_HEADER, CVM_SKR_EMULATOR_HARDWARE_URL)',
      );
    }
    ca = await readInput(caFile, options.ca ? '--ca' : '$CVM_SKR_CA_FILE', 'utf8');
    const { ManagedIdentityCredential } = await import('@azure/identity');
    credential = new ManagedIdentityCredential();
    if (platform === 'auto') {
      // The running emulator's own chip and AK CA (also when they live only in its memory), else the cache
      // folder it shares with this process ($CVM_SKR_EMULATOR_CACHE or the per-user default).
      const { emulatedHardwareFromEnvironment } = await import('../emulator/hardware/remote.js');
      const hardware = await emulatedHardwareFromEnvironment(ca);
      if (!hardware) await noteKeyGeneration(undefined, true);
      let emulated: AttestationPlatform;
      if (options.platform === 'sev-guest') {
        const { EmulatedSevGuestPlatform } = await import('../emulator/hardware/emulated-sev-guest.js');
        emulated = await EmulatedSevGuestPlatform.create(hardware ? { amd: hardware.amd } : {});
      } else {
        const { EmulatedAzureVtpmPlatform } = await import('../emulator/hardware/emulated-vtpm.js');
        emulated = await EmulatedAzureVtpmPlatform.create(hardware ?? {});
      }
      cleanup.unshift(() => emulated.close());
      platform = emulated;
    }
  }
  if (!endpoint) throw new InvalidArgumentError('give --endpoint <attestation provider URL> (or --emulator)');
  return {
    attestationEndpoint: endpoint,
    ...(ca ? { attestationCa: ca, releaseSigningRoots: [ca] } : {}),
    ...(credential ? { credential } : {}),
    platform,
    // The emulator's vault answers on a loopback host its challenge does not name, over its own CA.
    ...(options.emulator
      ? { vaultOptions: { disableChallengeResourceVerification: true, ...(ca ? { tlsOptions: { ca } } : {}) } }
      : {}),
  };
}
