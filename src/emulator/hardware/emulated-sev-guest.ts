/**
 * `emulated-sev-guest`: a SEV-SNP guest with the guest device, in software. The transfer key is an RSA key in
 * process memory; the runtime data JSON carries it (and the caller's nonce), and the report signed by the
 * emulated VCEK binds sha256(runtime data) || zeros, as the SevSnpVm protocol expects.
 */
import { randomBytes } from 'node:crypto';
import { AbortError, PlatformClosedError } from '../../errors.js';
import type { AttestationPlatform, CollectEvidenceOptions, SevGuestEvidence } from '../../hal/types.js';
import { EMULATED_MEASUREMENT, EmulatedAmd } from './amd.js';
import { EmulatedUvmSigner } from './uvm-signer.js';
import { type EmulatedPlatformOptions, loadOptions } from './emulated-vtpm.js';
import { hclReportData } from './hcl-report.js';
import { type EvidenceKnobs, finishReport, reportFieldsFor } from './knobs.js';
import { InMemoryTransferKey } from '../../hal/memory-transfer-key.js';

/** The kid of the guest's transfer key in the runtime data. */
export const SEV_GUEST_TRANSFER_KEY_KID = 'GuestEncryptionKey';

/** The runtime data JSON of a SevSnpVm request: the transfer key, and the nonce when there is one. */
export function sevGuestRuntimeData(jwk: InMemoryTransferKey['jwk'], nonce?: Uint8Array): Uint8Array {
  const json: Record<string, unknown> = {
    keys: [{ e: jwk.e, key_ops: ['encrypt'], kid: jwk.kid, kty: 'RSA', n: jwk.n }],
  };
  if (nonce !== undefined && nonce.length > 0) json.nonce = Buffer.from(nonce).toString('base64url');
  return new Uint8Array(Buffer.from(JSON.stringify(json), 'utf8'));
}

export class EmulatedSevGuestPlatform implements AttestationPlatform {
  readonly kind = 'emulated-sev-guest' as const;
  readonly amd: EmulatedAmd;
  readonly knobs: EvidenceKnobs;
  readonly #transferKey: InMemoryTransferKey;
  readonly #includeChain: boolean;
  readonly #uvmReferenceInfo: Uint8Array | undefined;
  #closed = false;

  private constructor(amd: EmulatedAmd, options: EmulatedPlatformOptions, uvmReferenceInfo?: Uint8Array) {
    this.amd = amd;
    this.#transferKey = options.transferKeyPair
      ? new InMemoryTransferKey(
          options.transferKeyPair.privateKey,
          SEV_GUEST_TRANSFER_KEY_KID,
          options.transferKeyPair.publicKey,
        )
      : InMemoryTransferKey.generate(SEV_GUEST_TRANSFER_KEY_KID);
    this.knobs = { ...options.knobs };
    this.#includeChain = options.includeVcekChain ?? true;
    this.#uvmReferenceInfo = uvmReferenceInfo;
  }

  static async create(options: EmulatedPlatformOptions = {}): Promise<EmulatedSevGuestPlatform> {
    const amd = options.amd ?? (await EmulatedAmd.load(loadOptions(options)));
    const uvm = options.uvmReferenceInfo;
    let uvmReferenceInfo: Uint8Array | undefined;
    if (uvm instanceof Uint8Array) {
      uvmReferenceInfo = uvm.length > 0 ? uvm : undefined;
    } else if (uvm !== undefined) {
      const signer = await EmulatedUvmSigner.load(
        options.cache === undefined ? {} : { cache: options.cache },
      );
      uvmReferenceInfo = signer.sign({
        flavour: uvm,
        launchMeasurement: options.knobs?.measurement ?? EMULATED_MEASUREMENT,
      });
    }
    return new EmulatedSevGuestPlatform(amd, options, uvmReferenceInfo);
  }

  async transferKey(): Promise<InMemoryTransferKey> {
    if (this.#closed) throw new PlatformClosedError('this emulated platform was closed; create a new one');
    return this.#transferKey;
  }

  async collectEvidence(options: CollectEvidenceOptions = {}): Promise<SevGuestEvidence> {
    if (this.#closed) throw new PlatformClosedError('this emulated platform was closed; create a new one');
    if (options.signal?.aborted)
      throw new AbortError('the operation was aborted', { cause: options.signal.reason });
    const runtimeData = sevGuestRuntimeData(this.#transferKey.jwk, options.nonce);
    // Stale: the report was made for other runtime data (another nonce) than the one sent with it.
    const bound = this.knobs.staleUserData
      ? sevGuestRuntimeData(this.#transferKey.jwk, randomBytes(16))
      : runtimeData;
    const fields = reportFieldsFor(this.amd, this.knobs, hclReportData(bound));
    const report = finishReport(await this.amd.signReport(fields), this.knobs);
    const chain = this.#includeChain ? await this.amd.chainFor(report) : undefined;
    return {
      kind: 'sev-guest',
      report,
      runtimeData,
      vcekCertChain: chain ?? '',
      ...(this.#uvmReferenceInfo === undefined ? {} : { uvmReferenceInfo: this.#uvmReferenceInfo }),
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
  }
}
