/**
 * An emulator (attestation service + Key Vault) and a swtpm provisioned as an Azure vTPM, with the real
 * `AzureVtpmPlatform` over the native transport (no resource manager), and a counter of TPM commands. Shared
 * by the release benchmark and the soak.
 */
import { provisionSwtpmAsAzureVtpm } from '../src/emulator/hardware/provision-swtpm.js';
import { type Emulator, startEmulator } from '../src/emulator/start.js';
import { openTpm } from '../src/hal/open-tpm.js';
import { AzureVtpmPlatform } from '../src/hal/platforms/azure-vtpm.js';
import type { TpmTransport } from '../src/hal/types.js';
import { SecureKeyRelease, type SecureKeyReleaseOptions } from '../src/keyvault/secure-key-release.js';
import { getHandles } from '../src/tpm/commands/capability.js';
import { Tpm } from '../src/tpm/tpm.js';
import { startSwtpm, type Swtpm } from '../test/helpers/swtpm.js';

/** Counts commands on their way to the TPM. */
export class CountingTransport implements TpmTransport {
  transmits = 0;
  /** Transmits per command code. */
  readonly byCommand = new Map<number, number>();
  constructor(readonly inner: TpmTransport) {}
  transmit(command: Uint8Array): Promise<Uint8Array> {
    this.transmits++;
    const cc = command.length >= 10 ? Buffer.from(command.buffer, command.byteOffset, 10).readUInt32BE(6) : 0;
    this.byCommand.set(cc, (this.byCommand.get(cc) ?? 0) + 1);
    return this.inner.transmit(command);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface ReleaseRig {
  e: Emulator;
  swtpm: Swtpm;
  transport: CountingTransport;
  /** Transient objects and loaded or saved sessions now in the TPM. */
  handles(): Promise<{ transient: number; sessions: number }>;
  /** A new platform on the rig's transport (its transfer key is made on first use). */
  platform(): Promise<AzureVtpmPlatform>;
  skr(platform: AzureVtpmPlatform, options?: Partial<SecureKeyReleaseOptions>): SecureKeyRelease;
  keyId(name: string): string;
  /** Creates exportable RSA-HSM keys the swtpm platform's attestation satisfies. */
  createKeys(names: readonly string[]): Promise<void>;
  attestations(): number;
  /** Release decisions the vault recorded (it keeps the last 1000). */
  releases(): number;
  close(): Promise<void>;
}

export async function startReleaseRig(): Promise<ReleaseRig> {
  const e = await startEmulator({ rootKeyBits: 2048, cache: false });
  let swtpm: Swtpm | undefined;
  let raw: TpmTransport | undefined;
  try {
    swtpm = await startSwtpm();
    raw = await openTpm({ path: swtpm.socketPath });
    await provisionSwtpmAsAzureVtpm(raw, { amd: e.amd, akCa: e.akCa });
  } catch (error) {
    await raw?.close();
    await swtpm?.stop();
    await e.close();
    throw error;
  }
  const transport = new CountingTransport(raw);
  const tpm = new Tpm(raw);
  const policy = e.releasePolicy('emulated-azure-vtpm');
  const releasePolicy = { encodedPolicy: new Uint8Array(Buffer.from(JSON.stringify(policy))) };
  const client = e.keyClient();
  const s = swtpm;
  return {
    e,
    swtpm: s,
    transport,
    handles: async () => ({
      transient: (await getHandles(tpm, 0x80000000)).length,
      sessions: (await getHandles(tpm, 0x02000000)).length + (await getHandles(tpm, 0x03000000)).length,
    }),
    // The VCEK chain comes from the emulated IMDS (THIM), as on Azure from the real one.
    platform: () => AzureVtpmPlatform.open({ transport, imdsUrl: e.imdsUrl }),
    skr: (platform, options = {}) =>
      new SecureKeyRelease({
        attestationEndpoint: e.attestationUrl,
        attestationCa: e.caPem,
        credential: e.credential,
        platform,
        releaseSigningRoots: [e.caPem],
        vaultOptions: { disableChallengeResourceVerification: true, tlsOptions: { ca: e.caPem } },
        retry: { baseDelayMs: 10, maxDelayMs: 50 },
        ...options,
      }),
    keyId: (name) => `${e.vaultUrl}/keys/${name}`,
    createKeys: async (names) => {
      for (const name of names) {
        await client.createKey(name, 'RSA-HSM', { keySize: 2048, exportable: true, releasePolicy });
      }
    },
    attestations: () => e.attestation.counters.attestations,
    releases: () => e.vault.releaseDecisions().length,
    close: async () => {
      await raw.close();
      await s.stop();
      await e.close();
    },
  };
}
