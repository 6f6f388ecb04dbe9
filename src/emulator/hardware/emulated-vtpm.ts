/**
 * `emulated-azure-vtpm`: an Azure confidential VM's vTPM in software. The HCL report carries a report signed by
 * the emulated VCEK and binds the runtime data (AK, VM configuration, user data); the AK (with a certificate
 * from the emulated vTPM CA), the quote over the PCR values that replay its TCG log (tcg-log.ts), the ephemeral transfer key and its
 * certification are real TPM structures (src/tpm marshalling) signed with keys held in node:crypto.
 */
import { createHash, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { AbortError, InvalidArgumentError, PlatformClosedError } from '../../errors.js';
import type {
  AttestationPlatform,
  AzureVtpmEvidence,
  CollectEvidenceOptions,
  PcrValue,
} from '../../hal/types.js';
import type { SnpProduct } from '../../snp/tcb.js';
import { TPM_RH } from '../../tpm/constants.js';
import { AK_TEMPLATE } from '../../tpm/provision.js';
import { EmulatedAkCa } from './ak-ca.js';
import { EmulatedAmd } from './amd.js';
import type { UvmFlavour } from './uvm-signer.js';
import { encodeHclReport, encodeHclRuntimeData, hclReportData } from './hcl-report.js';
import { type EvidenceKnobs, finishReport, reportFieldsFor } from './knobs.js';
import { emulatedBoot } from './tcg-log.js';
import { InMemoryTransferKey } from '../../hal/memory-transfer-key.js';
import { akCertificateForAttestation, requestAkCertificateRenewal } from '../../hal/platforms/ak-certificate.js';
import {
  type SoftPublic,
  type SoftSigner,
  softCertify,
  softPublic,
  softQuote,
  transferKeyPublic,
} from './tpm-evidence.js';

export interface EmulatedPlatformOptions {
  /** The emulated chip; default `EmulatedAmd.load({ product, rootKeyBits, cache })`. */
  amd?: EmulatedAmd;
  product?: SnpProduct;
  rootKeyBits?: 2048 | 3072 | 4096;
  /** Cache folder for the emulated hierarchy, or false for memory only. */
  cache?: string | false;
  knobs?: EvidenceKnobs;
  /** Put the VCEK chain into the evidence (as THIM provides it). Default true. */
  includeVcekChain?: boolean;
  /**
   * Emulator-only: the transfer key's RSA pair instead of a fresh one, so that its owner (the emulator's
   * `POST /emulator/vm-token`) can hand the private half to a client that unwraps released keys itself.
   */
  transferKeyPair?: { privateKey: KeyObject; publicKey: KeyObject };
  /**
   * Emulated SEV-SNP guest only: run as a confidential container whose security context provides UVM reference
   * information, sent as UVM endorsements. `'aci'` or `'aks'`: signed by the emulated UVM signer (uvm-signer.ts)
   * for this guest's launch measurement; bytes: that document as is.
   */
  uvmReferenceInfo?: Uint8Array | UvmFlavour;
}

export interface EmulatedAzureVtpmOptions extends EmulatedPlatformOptions {
  akCa?: EmulatedAkCa;
  /** SHA-256 PCRs quoted and bound into the transfer key's policy. Default 0-7. */
  pcrs?: readonly number[];
  /**
   * The VM's clock: its AK certificate is issued at its "now" (valid from a day before for a year, like a
   * renewed one), and the guest judges the certificate's lifetime by it unless the caller passes `now` to
   * `collectEvidence`. Default: the system clock. `startEmulator` passes its virtual clock.
   */
  clock?: () => Date;
  /**
   * IMDS that renews the AK certificate (an emulated IMDS). When set, a certificate within 90 days of its
   * notAfter is renewed through it before evidence is collected, by the same code the `azure-vtpm` platform
   * uses, and kept as the vTPM's certificate from then on. Default: no renewal.
   */
  imdsUrl?: string;
}

const DAY_MS = 86_400_000;

function rsaKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('rsa', { modulusLength: 2048 });
}

export class EmulatedAzureVtpmPlatform implements AttestationPlatform {
  readonly kind = 'emulated-azure-vtpm' as const;
  readonly amd: EmulatedAmd;
  readonly akCa: EmulatedAkCa;
  readonly knobs: EvidenceKnobs;
  readonly #ak: SoftSigner & { public: SoftPublic };
  /** What NV 0x01C101D0 holds: replaced when a renewal succeeds. */
  #akCert: Uint8Array;
  #renewal: Promise<Uint8Array> | undefined;
  readonly #clock: () => Date;
  readonly #imdsUrl: string | undefined;
  readonly #pcrs: PcrValue[];
  /** The firmware event log; `#pcrs` are its replay. */
  readonly #tcgLog: Uint8Array;
  readonly #transferKey: InMemoryTransferKey;
  readonly #transferPublic: SoftPublic;
  readonly #includeChain: boolean;
  /** The key the HCL report names as HCLAkPub (another one under the akMismatch knob). */
  readonly #reportedAk: KeyObject;
  #hclReport: Promise<Uint8Array>;
  #closed = false;

  private constructor(
    amd: EmulatedAmd,
    akCa: EmulatedAkCa,
    ak: { privateKey: KeyObject; publicKey: KeyObject },
    akCert: Uint8Array,
    options: EmulatedAzureVtpmOptions,
  ) {
    this.amd = amd;
    this.akCa = akCa;
    this.knobs = { ...options.knobs };
    const akPublic = softPublic(AK_TEMPLATE, ak.publicKey, TPM_RH.ENDORSEMENT);
    this.#ak = { key: ak.privateKey, qualifiedName: akPublic.qualifiedName, public: akPublic };
    this.#akCert = akCert;
    this.#clock = options.clock ?? (() => new Date());
    this.#imdsUrl = options.imdsUrl;
    const boot = emulatedBoot(options.pcrs ?? [0, 1, 2, 3, 4, 5, 6, 7], { secureBoot: !this.knobs.secureBootOff });
    this.#pcrs = boot.pcrs;
    this.#tcgLog = boot.tcgLog;
    this.#transferKey = options.transferKeyPair
      ? new InMemoryTransferKey(
          options.transferKeyPair.privateKey,
          'TpmEphemeralEncryptionKey',
          options.transferKeyPair.publicKey,
        )
      : InMemoryTransferKey.generate('TpmEphemeralEncryptionKey');
    this.#transferPublic = transferKeyPublic(
      this.#transferKey.publicKey,
      this.#pcrs,
      this.knobs.transferKeyPolicy ?? 'quoted-pcrs',
    );
    this.#includeChain = options.includeVcekChain ?? true;
    this.#reportedAk = this.knobs.akMismatch ? rsaKey().publicKey : ak.publicKey;
    this.#hclReport = this.#makeHclReport(undefined);
  }

  static async create(options: EmulatedAzureVtpmOptions = {}): Promise<EmulatedAzureVtpmPlatform> {
    const pcrs = options.pcrs ?? [];
    if (pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) {
      throw new InvalidArgumentError('pcrs must be PCR indices 0-23');
    }
    const amd = options.amd ?? (await EmulatedAmd.load(loadOptions(options)));
    const akCa =
      options.akCa ?? (await EmulatedAkCa.load(options.cache === undefined ? {} : { cache: options.cache }));
    const ak = rsaKey();
    const issuedAt = (options.clock?.() ?? new Date()).getTime();
    const akCert = await akCa.issue(ak.publicKey, undefined, {
      notBefore: new Date(issuedAt - DAY_MS),
      notAfter: new Date(issuedAt + 365 * DAY_MS),
    });
    const platform = new EmulatedAzureVtpmPlatform(amd, akCa, ak, akCert, options);
    await platform.#hclReport;
    return platform;
  }

  async #makeHclReport(userData: Uint8Array | undefined): Promise<Uint8Array> {
    const runtimeData = encodeHclRuntimeData({
      akPub: this.#reportedAk,
      ...(userData ? { userData } : {}),
      ...(this.knobs.secureBootOff ? { vmConfiguration: { 'secure-boot': false } } : {}),
    });
    let bound = runtimeData;
    if (this.knobs.staleUserData) {
      // The hardware report was made for earlier runtime data: other (or no) user data than what it carries now.
      const earlier = userData ? undefined : randomBytes(64);
      bound = encodeHclRuntimeData({
        akPub: this.#reportedAk,
        ...(earlier ? { userData: earlier } : {}),
        ...(this.knobs.secureBootOff ? { vmConfiguration: { 'secure-boot': false } } : {}),
      });
    }
    const fields = reportFieldsFor(this.amd, this.knobs, hclReportData(bound));
    const snpReport = finishReport(await this.amd.signReport(fields), this.knobs);
    return encodeHclReport({ snpReport, runtimeData });
  }

  #checkOpen(): void {
    if (this.#closed) throw new PlatformClosedError('this emulated platform was closed; create a new one');
  }

  /** The NV blob of 0x01400001. */
  async readHclReport(): Promise<Uint8Array> {
    this.#checkOpen();
    return this.#hclReport;
  }

  /** Like writing NV 0x01400002 on Azure: the emulated paravisor regenerates the report with `user-data`. */
  async writeUserData(data: Uint8Array): Promise<Uint8Array> {
    this.#checkOpen();
    if (data.length > 64) throw new InvalidArgumentError(`user data is ${data.length} bytes; at most 64 fit`);
    const padded = new Uint8Array(64);
    padded.set(data);
    this.#hclReport = this.#makeHclReport(padded);
    return this.#hclReport;
  }

  /** The AK certificate (DER), issued by the emulated vTPM CA. */
  get akCertificate(): Uint8Array {
    return this.#akCert;
  }

  async transferKey(): Promise<InMemoryTransferKey> {
    this.#checkOpen();
    return this.#transferKey;
  }

  async collectEvidence(options: CollectEvidenceOptions = {}): Promise<AzureVtpmEvidence> {
    this.#checkOpen();
    if (options.signal?.aborted)
      throw new AbortError('the operation was aborted', { cause: options.signal.reason });
    const diagnostics: string[] = [];
    // What the guest library does before every attestation (renewal when due), by the code the azure-vtpm
    // platform runs: hal/platforms/ak-certificate.ts.
    const akCert = await akCertificateForAttestation(this.#akCert, {
      now: options.now ?? this.#clock(),
      renew: this.#imdsUrl === undefined ? undefined : () => this.#renew(options.signal),
      diagnostics,
    });
    const hclReport = await this.#hclReport;
    // The weakQuote knob's SHA-1 bank quotes SHA-1 values of the same PCRs.
    const pcrs =
      this.knobs.weakQuote === 'sha1-bank'
        ? this.#pcrs.map((p) => ({ index: p.index, digest: new Uint8Array(createHash('sha1').update(p.digest).digest()) }))
        : this.#pcrs;
    const quote = softQuote(this.#ak, pcrs, options.nonce ?? new Uint8Array(0), this.knobs.weakQuote);
    const certified = softCertify(this.#ak, this.#transferPublic);
    const evidence: AzureVtpmEvidence = {
      kind: 'azure-vtpm',
      hclReport,
      akCert,
      akPub: this.#ak.public.public2b,
      quote: quote.attestBytes,
      quoteSignature: quote.signature,
      pcrs: pcrs.map((p) => ({ index: p.index, digest: new Uint8Array(p.digest) })),
      encKeyPub: this.#transferPublic.public2b,
      encKeyCertifyInfo: certified.attestBytes,
      encKeyCertifyInfoSignature: certified.signature,
      tcgLog: new Uint8Array(this.#tcgLog),
      ...(diagnostics.length > 0 ? { diagnostics } : {}),
    };
    if (this.#includeChain) {
      const chain = await this.amd.chainFor(hclReport.subarray(0x20, 0x20 + 1184));
      if (chain !== undefined) evidence.vcekCertChain = chain;
    }
    return evidence;
  }

  /** One renewal at a time; the renewed certificate replaces the stored one, as the guest writes it to NV. */
  #renew(signal: AbortSignal | undefined): Promise<Uint8Array> {
    this.#renewal ??= requestAkCertificateRenewal(this.#akCert, {
      imdsUrl: this.#imdsUrl!,
      ...(signal ? { signal } : {}),
    })
      .then((renewed) => {
        if (!this.#closed) this.#akCert = renewed;
        return renewed;
      })
      .finally(() => {
        this.#renewal = undefined;
      });
    return this.#renewal;
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}

export function loadOptions(options: EmulatedPlatformOptions): Parameters<typeof EmulatedAmd.load>[0] {
  return {
    ...(options.product ? { product: options.product } : {}),
    ...(options.rootKeyBits ? { rootKeyBits: options.rootKeyBits } : {}),
    ...(options.cache !== undefined ? { cache: options.cache } : {}),
  };
}
