/**
 * `startEmulator`: the emulated attestation service, Key Vault and IMDS (THIM) together, wired as in Azure: one CA for
 * both (clients trust one PEM), the vault trusting the attestation service as a token issuer, and one virtual
 * clock, so that advancing it moves key lifetimes and token validity alike.
 */
import type { KeyObject } from 'node:crypto';
import type { KeyClient, KeyClientOptions } from '@azure/keyvault-keys';
import type { AttestationPlatform } from '../hal/types.js';
import type { SnpProduct } from '../snp/tcb.js';
import { EmulatedAkCa } from './hardware/ak-ca.js';
import type { EmulatorCa } from './ca.js';
import { EmulatedAmd } from './hardware/amd.js';
import { EmulatedSevGuestPlatform } from './hardware/emulated-sev-guest.js';
import { EmulatedAzureVtpmPlatform, type EmulatedAzureVtpmOptions } from './hardware/emulated-vtpm.js';
import { type ImdsEmulator, type ImdsEmulatorOptions, startImdsEmulator } from './imds/index.js';
import type { EvidenceKnobs } from './hardware/knobs.js';
import {
  type KeyVaultEmulator,
  type KeyVaultEmulatorOptions,
  startKeyVaultEmulator,
} from './keyvault/index.js';
import { emulatorCacheDir, EMULATOR_CACHE_ENV } from './cache.js';
import { type EmulatorRoutesContext, emulatorRoutes, isLoopbackHost } from './maa/emulator-routes.js';
import {
  type AttestationEmulator,
  type AttestationEmulatorOptions,
  startAttestationEmulator,
} from './maa/server.js';
import type { UvmFlavour } from './hardware/uvm-signer.js';

export interface EmulatorOptions {
  /** Loopback address for both services. Default 127.0.0.1. */
  host?: string;
  /** Vault port. Default: a free port. */
  port?: number;
  /** Attestation service port. Default: a free port. */
  attestationPort?: number;
  /** Persist vault state (and the CA) to this file. */
  statePath?: string;
  /** CA for both services. Default: from the state file, else a new one. */
  ca?: EmulatorCa;
  /** Emulated chip product. Default Milan. */
  product?: SnpProduct;
  /**
   * Size of the emulated AMD root keys. Default 4096 like AMD's, generated once and cached per user (see
   * `cache`); 2048 is emulator-only and fast, for tests.
   */
  rootKeyBits?: 2048 | 3072 | 4096;
  /** Cache folder for the emulated AMD and vTPM CA hierarchies (created 0700), or false for memory only. */
  cache?: string | false;
  /** Attestation token lifetime. Default 8 hours, as the service. */
  tokenLifetimeSeconds?: number;
  /** More Key Vault settings (principals, webhooks, clock, `flavour`, ...). */
  vault?: Omit<KeyVaultEmulatorOptions, 'host' | 'port' | 'statePath' | 'ca'>;
  /**
   * Also serve a Managed HSM beside the vault: its own port, the same CA, clock, trusted attestation service
   * and identities (one token endpoint for both). `true` for defaults; its state is kept only when
   * `statePath` is given here.
   */
  managedHsm?:
    | boolean
    | Omit<KeyVaultEmulatorOptions, 'host' | 'ca' | 'clock' | 'flavour' | 'shareIdentityWith'>;
  /** Emulated IMDS port. Default: a free port. */
  imdsPort?: number;
  /** More emulated IMDS settings (THIM's TCB and cacheControl, VM id, ...). */
  imds?: Omit<ImdsEmulatorOptions, 'host' | 'port' | 'amd' | 'akCa' | 'now'>;
  /** More attestation service settings (policy, issuer, ...). */
  attestation?: Omit<AttestationEmulatorOptions, 'host' | 'port' | 'ca' | 'amd' | 'akCa' | 'now'>;
}

export type EmulatedPlatformKind = 'emulated-azure-vtpm' | 'emulated-sev-guest';

export interface Emulator {
  readonly vaultUrl: string;
  readonly attestationUrl: string;
  /** Emulated IMDS base URL (THIM, AK certificate renewal): `imdsUrl` of AzureVtpmPlatform, `CVM_SKR_IMDS_URL`. */
  readonly imdsUrl: string;
  /** Managed identity token endpoint (`IDENTITY_ENDPOINT`). */
  readonly tokenUrl: string;
  /** PEM of the CA behind both services' TLS and signing certificates. */
  readonly caPem: string;
  readonly credential: KeyVaultEmulator['credential'];
  readonly clock: KeyVaultEmulator['clock'];
  readonly events: KeyVaultEmulator['events'];
  /** The two services, for counters, principals, issuers and release decisions. */
  readonly vault: KeyVaultEmulator;
  /** The Managed HSM, when `managedHsm` asked for one. */
  readonly managedHsm: KeyVaultEmulator | undefined;
  readonly attestation: AttestationEmulator;
  readonly imds: ImdsEmulator;
  readonly amd: EmulatedAmd;
  readonly akCa: EmulatedAkCa;
  /** An SDK client for the vault, trusting the emulator CA. */
  keyClient(options?: KeyClientOptions & { clientId?: string }): KeyClient;
  /**
   * An emulated platform whose evidence this attestation service accepts (unless knobs spoil it). The vTPM's
   * AK certificate is issued at the virtual clock's now and renewed through `imds` when that clock nears its
   * expiry; pass `clock: () => e.clock.now()` to `SecureKeyRelease` so the client judges by the same clock.
   */
  platform(
    kind: EmulatedPlatformKind,
    options?: {
      knobs?: EvidenceKnobs;
      pcrs?: readonly number[];
      /** Emulator-only: the VM's transfer key pair (see `EmulatedPlatformOptions.transferKeyPair`). */
      transferKeyPair?: { privateKey: KeyObject; publicKey: KeyObject };
      /** Emulated sev-guest only: run as a confidential container (see `EmulatedPlatformOptions`). */
      uvmReferenceInfo?: Uint8Array | UvmFlavour;
    },
  ): Promise<AttestationPlatform>;
  /** A release policy (JSON) that this emulator's attestation tokens satisfy, for `createKey`. */
  releasePolicy(kind?: EmulatedPlatformKind): ReleasePolicyDocument;
  /** Environment exports a client process needs. */
  environment(): Record<string, string>;
  close(): Promise<void>;
}

export interface ReleasePolicyDocument {
  version: '1.0.0';
  anyOf: { authority: string; allOf: { claim: string; equals: string | boolean }[] }[];
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
  const host = options.host ?? '127.0.0.1';
  const cache = options.cache;
  const [amd, akCa] = await Promise.all([
    EmulatedAmd.load({
      product: options.product ?? 'Milan',
      ...(options.rootKeyBits ? { rootKeyBits: options.rootKeyBits } : {}),
      ...(cache !== undefined ? { cache } : {}),
    }),
    EmulatedAkCa.load(cache !== undefined ? { cache } : {}),
  ]);
  const vault = await startKeyVaultEmulator({
    ...options.vault,
    host,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.statePath ? { statePath: options.statePath } : {}),
    ...(options.ca ? { ca: options.ca } : {}),
  });
  // The emulator-only routes hand out emulated key material: mounted on loopback services only.
  const routes: { context?: EmulatorRoutesContext } = {};
  const loopback = isLoopbackHost(host);
  let attestation: AttestationEmulator;
  try {
    attestation = await startAttestationEmulator({
      ...options.attestation,
      ...(loopback ? { emulatorRoutes: emulatorRoutes(() => routes.context) } : {}),
      host,
      ...(options.attestationPort !== undefined ? { port: options.attestationPort } : {}),
      ca: vault.ca,
      amd,
      akCa,
      // the emulated UVM signer is loaded from the same cache as the platforms' (uvm-signer.ts)
      ...(cache !== undefined ? { cache } : {}),
      now: () => vault.clock.now(),
      ...(options.tokenLifetimeSeconds !== undefined
        ? { tokenLifetimeSeconds: options.tokenLifetimeSeconds }
        : {}),
    });
  } catch (error) {
    await vault.close();
    throw error;
  }
  let imds: ImdsEmulator;
  try {
    imds = await startImdsEmulator({
      ...options.imds,
      host,
      ...(options.imdsPort !== undefined ? { port: options.imdsPort } : {}),
      amd,
      akCa,
      now: () => vault.clock.now(),
    });
  } catch (error) {
    await Promise.allSettled([attestation.close(), vault.close()]);
    throw error;
  }
  // Tokens name the configured issuer when one is set (e.g. the address clients reach the service by).
  vault.trustIssuer({ issuer: options.attestation?.issuer ?? attestation.url, ca: vault.caPem });
  let managedHsm: KeyVaultEmulator | undefined;
  if (options.managedHsm) {
    try {
      managedHsm = await startKeyVaultEmulator({
        ...(typeof options.managedHsm === 'object' ? options.managedHsm : {}),
        host,
        ca: vault.ca,
        clock: vault.clock,
        flavour: 'managedhsm',
        shareIdentityWith: vault,
      });
    } catch (error) {
      await Promise.allSettled([attestation.close(), vault.close(), imds.close()]);
      throw error;
    }
    managedHsm.trustIssuer({ issuer: options.attestation?.issuer ?? attestation.url, ca: vault.caPem });
  }
  const platformOptions = { amd, ...(cache !== undefined ? { cache } : {}) };
  const makePlatform: Emulator['platform'] = async (kind, extra = {}) => {
    const common = {
      ...platformOptions,
      ...(extra.knobs ? { knobs: extra.knobs } : {}),
      ...(extra.transferKeyPair ? { transferKeyPair: extra.transferKeyPair } : {}),
      ...(extra.uvmReferenceInfo ? { uvmReferenceInfo: extra.uvmReferenceInfo } : {}),
    };
    if (kind === 'emulated-sev-guest') return EmulatedSevGuestPlatform.create(common);
    // The VM lives on the emulator's clock: its AK certificate is issued at virtual now, and renewed through
    // this emulator's IMDS when the virtual clock comes within 90 days of its expiry.
    const vtpm: EmulatedAzureVtpmOptions = {
      ...common,
      akCa,
      clock: () => vault.clock.now(),
      imdsUrl: imds.url,
      ...(extra.pcrs ? { pcrs: extra.pcrs } : {}),
    };
    return EmulatedAzureVtpmPlatform.create(vtpm);
  };
  routes.context = {
    identityHeader: vault.identityHeader,
    hardware: () => ({ amd: amd.toDocument(), akCa: akCa.toDocument() }),
    async vmToken(kind, knobs, transferKeyPair) {
      const { attest } = await import('../maa/client.js');
      const platform = await makePlatform(kind === 'sev-guest' ? 'emulated-sev-guest' : 'emulated-azure-vtpm', {
        knobs,
        transferKeyPair,
      });
      try {
        // Judged by the clock that issued it (tokens carry virtual iat/nbf/exp).
        const result = await attest(platform, {
          endpoint: attestation.url,
          ca: vault.caPem,
          now: () => vault.clock.now(),
        });
        return {
          token: result.token,
          expiresAt: result.expiresAt.toISOString(),
          protocol: result.protocol,
          jwk: { ...result.transferKey.jwk },
        };
      } finally {
        await platform.close();
      }
    },
  };

  return {
    vaultUrl: vault.vaultUrl,
    attestationUrl: attestation.url,
    imdsUrl: imds.url,
    tokenUrl: vault.tokenUrl,
    caPem: vault.caPem,
    credential: vault.credential,
    clock: vault.clock,
    events: vault.events,
    vault,
    managedHsm,
    attestation,
    imds,
    amd,
    akCa,
    keyClient: (clientOptions) => vault.keyClient(clientOptions),
    platform: makePlatform,
    releasePolicy(kind = 'emulated-azure-vtpm') {
      // AzureGuest tokens carry the SNP claims under x-ms-isolation-tee; SevSnpVm tokens at the top level.
      const prefix = kind === 'emulated-azure-vtpm' ? 'x-ms-isolation-tee.' : '';
      return {
        version: '1.0.0',
        anyOf: [
          {
            authority: options.attestation?.issuer ?? attestation.url,
            allOf: [
              { claim: `${prefix}x-ms-attestation-type`, equals: 'sevsnpvm' },
              { claim: `${prefix}x-ms-sevsnpvm-is-debuggable`, equals: false },
            ],
          },
        ],
      };
    },
    environment: () => ({
      ...vault.environment(),
      CVM_SKR_VAULT_URL: vault.vaultUrl,
      CVM_SKR_ATTESTATION_URL: attestation.url,
      ...(managedHsm ? { CVM_SKR_MANAGED_HSM_URL: managedHsm.vaultUrl } : {}),
      CVM_SKR_IMDS_URL: imds.url,
      // Where clients in other processes get this emulator's emulated hardware (also when it is in memory only).
      ...(loopback ? { CVM_SKR_EMULATOR_HARDWARE_URL: `${attestation.url}/emulator/hardware` } : {}),
      ...(typeof cache === 'string'
        ? { [EMULATOR_CACHE_ENV]: cache }
        : cache === undefined && process.env[EMULATOR_CACHE_ENV]
          ? { [EMULATOR_CACHE_ENV]: emulatorCacheDir() }
          : {}),
    }),
    async close() {
      await Promise.allSettled([
        attestation.close(),
        vault.close(),
        imds.close(),
        ...(managedHsm ? [managedHsm.close()] : []),
      ]);
    },
  };
}
