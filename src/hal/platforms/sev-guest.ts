import { createHash, generateKeyPair } from 'node:crypto';
import { promisify } from 'node:util';
import {
  AbortError,
  EvidenceVerificationError,
  InvalidArgumentError,
  PlatformClosedError,
  SnpCertificateError,
} from '../../errors.js';
import { loadJose } from '../../load-jose.js';
import { certificateBundlePem } from '../../snp/bundle.js';
import { bytesEqual } from '../../snp/bytes.js';
import { loadSnpCertificates, type SnpCertificates } from '../../snp/certificates.js';
import { parseSnpReport, type SnpReport } from '../../snp/report.js';
import type { TrustedRootInput } from '../../snp/roots.js';
import type { SnpProduct } from '../../snp/tcb.js';
import { VcekFetcher } from '../../snp/vcek-sources.js';
import { InMemoryTransferKey } from '../memory-transfer-key.js';
import { readUvmReferenceInfo } from './uvm-security-context.js';
import type {
  AttestationPlatform,
  CollectEvidenceOptions,
  SevGuestEvidence,
  SnpReportProvider,
  TransferKey,
} from '../types.js';

const generateRsa = promisify(generateKeyPair);

export interface SevGuestPlatformOptions {
  /** Where reports come from: the sev-guest ioctl or configfs-tsm provider (or a test double). */
  provider: SnpReportProvider;
  /** VMPL to request reports at. Default 0. */
  vmpl?: number;
  /** Product, for version-2 reports when certificates must be fetched from AMD KDS. */
  product?: SnpProduct;
  /**
   * Certificates when the host gives no extended-report table: a fetcher (confidential-container variable, THIM,
   * KDS). Default: a fetcher with the standard endpoints. `false`: only the extended report.
   */
  vcekFetcher?: VcekFetcher | false;
  /** Roots besides AMD's used to complete the PEM chain (e.g. an emulator's). */
  trustedRoots?: readonly TrustedRootInput[];
  /**
   * UVM reference information sent as UVM endorsements (confidential containers). Default `'environment'`:
   * the container's security context, found as microsoft/confidential-sidecar-containers finds it
   * (`UVM_SECURITY_CONTEXT_DIR`/reference-info-base64, else `UVM_REFERENCE_INFO`; see uvm-security-context.ts),
   * read once. Bytes: this document. `false`: never send any.
   */
  uvmReferenceInfo?: Uint8Array | 'environment' | false;
}

/**
 * The `sev-guest` platform: SNP reports from the guest device (through an `SnpReportProvider`), and a transfer key
 * generated in guest memory (RSA-2048; the private key is never exported). Evidence binds the transfer key:
 * report_data = sha256(runtime data JSON) || 32 zero bytes.
 */
export class SevGuestPlatform implements AttestationPlatform {
  readonly kind = 'sev-guest' as const;
  readonly #options: SevGuestPlatformOptions;
  readonly #fetcher: VcekFetcher | undefined;
  #key: Promise<InMemoryTransferKey> | undefined;
  #uvmInfo: Promise<Uint8Array | undefined> | undefined;
  #closed = false;

  constructor(options: SevGuestPlatformOptions) {
    if (options?.provider === undefined)
      throw new InvalidArgumentError('SevGuestPlatform needs a report provider');
    const vmpl = options.vmpl ?? 0;
    if (!Number.isInteger(vmpl) || vmpl < 0 || vmpl > 3) throw new InvalidArgumentError('vmpl must be 0..3');
    this.#options = options;
    this.#fetcher = options.vcekFetcher === false ? undefined : (options.vcekFetcher ?? new VcekFetcher());
  }

  /** Creates the platform and its transfer key. */
  static async open(options: SevGuestPlatformOptions): Promise<SevGuestPlatform> {
    const platform = new SevGuestPlatform(options);
    await platform.transferKey();
    return platform;
  }

  #checkOpen(): void {
    if (this.#closed) throw new PlatformClosedError('this SevGuestPlatform was closed; open a new one');
  }

  async transferKey(): Promise<TransferKey> {
    this.#checkOpen();
    this.#key ??= (async () => {
      const { privateKey, publicKey } = await generateRsa('rsa', {
        modulusLength: 2048,
        publicExponent: 0x10001,
      });
      const { n, e } = publicKey.export({ format: 'jwk' });
      if (n === undefined || e === undefined)
        throw new InvalidArgumentError('generated RSA key has no modulus');
      const { calculateJwkThumbprint } = await loadJose();
      const kid = await calculateJwkThumbprint({ kty: 'RSA', n, e }, 'sha256');
      return new InMemoryTransferKey(privateKey, kid, publicKey, () => this.#closed);
    })();
    return this.#key;
  }

  /** The runtime data JSON: the transfer key, and the caller's nonce (base64url) when given. */
  async runtimeData(nonce?: Uint8Array): Promise<Buffer> {
    const { jwk } = await this.transferKey();
    const runtime: Record<string, unknown> = {
      keys: [{ e: jwk.e, key_ops: jwk.key_ops, kid: jwk.kid, kty: jwk.kty, n: jwk.n }],
    };
    if (nonce !== undefined) runtime.nonce = Buffer.from(nonce).toString('base64url');
    return Buffer.from(JSON.stringify(runtime));
  }

  async collectEvidence(options: CollectEvidenceOptions = {}): Promise<SevGuestEvidence> {
    this.#checkOpen();
    if (options.signal?.aborted) throw new AbortError('evidence collection aborted');
    const runtimeData = await this.runtimeData(options.nonce);
    const reportData = new Uint8Array(64);
    reportData.set(createHash('sha256').update(runtimeData).digest());
    const result = await this.#options.provider.getReport({
      reportData,
      vmpl: this.#options.vmpl ?? 0,
      extended: true,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
    });
    this.#checkOpen();
    const report = parseSnpReport(result.report);
    // A provider that returns someone else's report (or a stale one) would bind the wrong transfer key.
    if (!bytesEqual(report.reportData, reportData) || report.vmpl !== (this.#options.vmpl ?? 0)) {
      throw new EvidenceVerificationError(
        'ERR_SNP_REPORT_DATA',
        `the ${this.#options.provider.name} provider returned a report for other report_data or VMPL than requested`,
        'report-data',
      );
    }
    const certificates = await this.#certificates(report, result.certificateTable, options.signal);
    const uvmReferenceInfo = await this.#uvmReferenceInfo();
    return {
      kind: 'sev-guest',
      report: report.raw,
      runtimeData,
      vcekCertChain: certificateBundlePem(certificates, report.signer, this.#options.trustedRoots),
      ...(uvmReferenceInfo === undefined ? {} : { uvmReferenceInfo }),
    };
  }

  /** The container's UVM reference information, read once; a failed read is not kept. */
  #uvmReferenceInfo(): Promise<Uint8Array | undefined> {
    const option = this.#options.uvmReferenceInfo ?? 'environment';
    if (option === false) return Promise.resolve(undefined);
    if (option !== 'environment') return Promise.resolve(option.length > 0 ? option : undefined);
    if (this.#uvmInfo === undefined) {
      const pending = readUvmReferenceInfo();
      this.#uvmInfo = pending;
      pending.catch(() => {
        if (this.#uvmInfo === pending) this.#uvmInfo = undefined;
      });
    }
    return this.#uvmInfo;
  }

  async #certificates(
    report: SnpReport,
    table: Uint8Array | undefined,
    signal?: AbortSignal,
  ): Promise<SnpCertificates> {
    let tableProblem = 'the host gave no extended-report certificate table';
    if (table !== undefined && table.length > 0) {
      try {
        return loadSnpCertificates(table);
      } catch (error) {
        if (!(error instanceof SnpCertificateError)) throw error;
        tableProblem = `the host's certificate table is unusable (${error.message})`;
      }
    }
    if (this.#fetcher === undefined) {
      throw new SnpCertificateError(`${tableProblem}, and fetching certificates is turned off`);
    }
    const product = this.#options.product;
    const fetched = await this.#fetcher.certificatesFor(report, {
      ...(product === undefined ? {} : { product }),
      ...(signal === undefined ? {} : { signal }),
    });
    return fetched.certificates;
  }

  /** Forgets the transfer key; later calls fail with `PlatformClosedError`. The provider is not owned. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#key = undefined;
  }
}
