import { readFile } from 'node:fs/promises';
import {
  AbortError,
  DeviceNotFoundError,
  DevicePermissionError,
  HclUserDataTimeoutError,
  InvalidArgumentError,
  NvIndexNotDefinedError,
  PcrsUnstableError,
  PlatformClosedError,
  TcgLogUnreadableError,
  TpmPolicyError,
} from '../../errors.js';
import { certificateBundlePem } from '../../snp/bundle.js';
import { parseSnpReport } from '../../snp/report.js';
import { KDS_BASE_URL, thimUrlFor, IMDS_BASE_URL, VcekFetcher, type VcekSourceName } from '../../snp/vcek-sources.js';
import { AZURE_VTPM } from '../../tpm/azure-layout.js';
import { certify, quote, type SignedAttest } from '../../tpm/commands/attest.js';
import { getProperty } from '../../tpm/commands/capability.js';
import {
  nvDefineSpace,
  nvReadAll,
  nvReadPublic,
  nvUndefineSpace,
  nvWriteAll,
} from '../../tpm/commands/nv.js';
import {
  createPrimary,
  flushContext,
  mapMissingHandle,
  type PublicInfo,
  readPublic,
} from '../../tpm/commands/object.js';
import { readPcrs } from '../../tpm/commands/pcr.js';
import { policyPcr, startAuthSession } from '../../tpm/commands/policy.js';
import { rsaDecrypt } from '../../tpm/commands/rsa.js';
import { TPM_ALG, TPM_PT, TPM_RH, TPM_SE, TPMA_NV, TPMA_OBJECT } from '../../tpm/constants.js';
import { publicToJwk } from '../../tpm/keys.js';
import { policyAuth, policyPcrDigest } from '../../tpm/sessions.js';
import {
  hash,
  type PcrSelection,
  rsaTemplate,
  type TpmsNvPublic,
  type TpmtScheme,
} from '../../tpm/structures.js';
import { type RetryOptions, Tpm } from '../../tpm/tpm.js';
import { DEFAULT_TPM_PATH, openTpm } from '../open-tpm.js';
import type {
  AttestationPlatform,
  AzureVtpmEvidence,
  CollectEvidenceOptions,
  DecryptScheme,
  PcrValue,
  TpmTransport,
  TransferKey,
} from '../types.js';
import {
  type AkCertificateStatus,
  akCertificateForAttestation,
  akCertificateStatus,
  requestAkCertificateRenewal,
} from './ak-certificate.js';
import { hclUserData } from './hcl-user-data.js';

export interface AzureVtpmPlatformOptions {
  /** An already open transport (e.g. to swtpm). The platform does not close it. */
  transport?: TpmTransport;
  /** TPM device or Unix socket, opened with `openTpm` (and closed by `close()`). Default `/dev/tpmrm0`. */
  path?: string;
  /** Per-command timeout of a transport opened from `path`. */
  timeoutMs?: number;
  /** SHA-256 PCRs for the quote and the transfer key's policy. Default 0-7 (Linux). */
  pcrs?: readonly number[];
  retry?: RetryOptions;
  /**
   * TCG event log for the evidence. Default: the kernel's log when the platform opened a device path,
   * none otherwise. `false`: never read one.
   */
  eventLogPath?: string | false;
  /**
   * Fail evidence collection with `TcgLogUnreadableError` when the event log cannot be read, instead of sending
   * an empty one with a diagnostic. The attestation service derives the `x-ms-azurevm-*` claims from it.
   */
  requireTcgLog?: boolean;
  /**
   * IMDS base URL for THIM (the VCEK chain) and AK certificate renewal. Default: `CVM_SKR_IMDS_URL`, else
   * `http://169.254.169.254` when the platform opened a `/dev/` TPM device; with a `transport` or a socket and
   * neither set, the evidence carries no VCEK chain (test rigs), which the attestation service refuses.
   */
  imdsUrl?: string;
  /**
   * Where the VCEK chain comes from: a fetcher of your own (e.g. shared between platforms, with its own
   * sources), or `false` for none. Default: THIM at `imdsUrl`, then AMD KDS when `kds` is set; cached per
   * platform by chip_id and reported TCB for as long as THIM's `cacheControl` (KDS: Cache-Control) allows.
   */
  vcekFetcher?: VcekFetcher | false;
  /** Fall back to AMD KDS when THIM has no chain: `true` for kdsintf.amd.com, or a KDS base URL. Default off. */
  kds?: boolean | string;
  /**
   * Renew an AK certificate that expires within 90 days through IMDS before collecting evidence, as Microsoft's
   * guest library does. Default true when IMDS is in use. A failed renewal is a diagnostic, not an error.
   */
  renewAkCertificate?: boolean;
}

export interface WriteUserDataOptions {
  /** How long to wait for the regenerated report. Default 10 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface QuoteOptions {
  /** Qualifying data (at most 64 bytes) the quote must carry as extraData. */
  nonce?: Uint8Array;
  pcrs?: readonly number[];
}

const DEFAULT_PCRS: readonly number[] = [0, 1, 2, 3, 4, 5, 6, 7];
/** Where Linux exposes the TCG event log (root-only on most distributions). */
export const KERNEL_EVENT_LOG = '/sys/kernel/security/tpm0/binary_bios_measurements';
const EMPTY = new Uint8Array(0);

/**
 * The transfer key template: decrypt only, no userWithAuth, PolicyPCR-bound; the attributes Microsoft's client
 * gives its ephemeral key (Azure/confidential-computing-cvm-guest-attestation @990f662, client-library/src/Attestation/LinuxTpm/lib/Tss2Util.cpp
 * `PopulateEphemeralKeyPublicTemplate`).
 */
const TRANSFER_KEY_ATTRIBUTES =
  TPMA_OBJECT.decrypt |
  TPMA_OBJECT.fixedTPM |
  TPMA_OBJECT.fixedParent |
  TPMA_OBJECT.sensitiveDataOrigin |
  TPMA_OBJECT.noDA;

const SCHEMES: Record<DecryptScheme, TpmtScheme> = {
  rsaes: { scheme: TPM_ALG.RSAES },
  'oaep-sha1': { scheme: TPM_ALG.OAEP, hashAlg: TPM_ALG.SHA1 },
  'oaep-sha256': { scheme: TPM_ALG.OAEP, hashAlg: TPM_ALG.SHA256 },
  'oaep-sha384': { scheme: TPM_ALG.OAEP, hashAlg: TPM_ALG.SHA384 },
};

const HINT = {
  hclReport: ': not an Azure confidential VM (the paravisor defines it at boot), or the TPM is not the vTPM',
  akCert:
    ': not a confidential VM, or the AK certificate is not provisioned yet (it appears a few minutes after the first boot)',
  ak: ': not an Azure confidential VM, or the AK is not provisioned yet',
};

interface EphemeralKey {
  handle: number;
  public: PublicInfo;
  selection: PcrSelection[];
  modulusBytes: number;
  transferKey: AzureVtpmTransferKey;
}

/** The vTPM transfer key: its private half never leaves the TPM; decrypts through a PolicyPCR session. */
export class AzureVtpmTransferKey implements TransferKey {
  readonly jwk: { kty: 'RSA'; n: string; e: string; kid: string; key_ops: string[] };
  /** TPM2B_PUBLIC of the key and its name, e.g. for evidence or a certify check. */
  readonly public: PublicInfo;
  readonly #platform: AzureVtpmPlatform;

  constructor(platform: AzureVtpmPlatform, pub: PublicInfo) {
    const jwk = publicToJwk(pub.public);
    if (jwk.kty !== 'RSA') throw new InvalidArgumentError('transfer key must be RSA');
    this.jwk = { kty: 'RSA', n: jwk.n, e: jwk.e, kid: 'TpmEphemeralEncryptionKey', key_ops: ['encrypt'] };
    this.public = pub;
    this.#platform = platform;
  }

  decrypt(ciphertext: Uint8Array, scheme: DecryptScheme): Promise<Buffer> {
    return this.#platform.decrypt(ciphertext, scheme);
  }
}

function checkSignal(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError('the operation was aborted', { cause: signal.reason });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new AbortError('the operation was aborted', { cause: signal?.reason }));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function rangeText(pcrs: readonly number[]): string {
  return pcrs.join(',');
}

/**
 * The `azure-vtpm` backend: evidence and the transfer key of an Azure confidential VM, from its vTPM.
 * TPM work that needs a session or creates an object is serialised, so a TPM without a resource manager
 * (swtpm: 3 object and 3 session slots) is never exhausted; everything created is flushed on every path.
 */
export class AzureVtpmPlatform implements AttestationPlatform {
  readonly kind = 'azure-vtpm' as const;
  readonly tpm: Tpm;
  readonly #ownsTransport: boolean;
  readonly #pcrs: readonly number[];
  readonly #eventLogPath: string | undefined;
  readonly #requireTcgLog: boolean;
  readonly #imdsUrl: string | undefined;
  readonly #vcek: VcekFetcher | undefined;
  readonly #renewAk: boolean;
  #nvBufferMax: Promise<number> | undefined;
  readonly #nvPublic = new Map<number, Promise<TpmsNvPublic>>();
  #key: Promise<EphemeralKey> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    tpm: Tpm,
    ownsTransport: boolean,
    pcrs: readonly number[],
    eventLogPath: string | undefined,
    options: AzureVtpmPlatformOptions,
  ) {
    this.tpm = tpm;
    this.#ownsTransport = ownsTransport;
    this.#pcrs = pcrs;
    this.#eventLogPath = eventLogPath;
    this.#requireTcgLog = options.requireTcgLog === true;
    const envImds = process.env.CVM_SKR_IMDS_URL;
    // Azure's IMDS only by default on a kernel TPM device: a swtpm socket is a test rig, not a VM.
    const onDevice = ownsTransport && (options.path ?? DEFAULT_TPM_PATH).startsWith('/dev/');
    this.#imdsUrl = options.imdsUrl ?? (envImds ? envImds : undefined) ?? (onDevice ? IMDS_BASE_URL : undefined);
    if (options.vcekFetcher !== undefined) {
      this.#vcek = options.vcekFetcher === false ? undefined : options.vcekFetcher;
    } else if (this.#imdsUrl !== undefined || options.kds) {
      const sources: VcekSourceName[] = [];
      if (this.#imdsUrl !== undefined) sources.push('thim');
      if (options.kds) sources.push('kds');
      this.#vcek = new VcekFetcher({
        sources,
        ...(this.#imdsUrl !== undefined ? { thimUrl: thimUrlFor(this.#imdsUrl) } : {}),
        ...(options.kds ? { kdsBaseUrl: typeof options.kds === 'string' ? options.kds : KDS_BASE_URL } : {}),
      });
    }
    this.#renewAk = options.renewAkCertificate ?? this.#imdsUrl !== undefined;
  }

  /** The IMDS base URL this platform uses (THIM, AK renewal), if any. */
  get imdsUrl(): string | undefined {
    return this.#imdsUrl;
  }

  static async open(options: AzureVtpmPlatformOptions = {}): Promise<AzureVtpmPlatform> {
    if (options.transport && options.path !== undefined) {
      throw new InvalidArgumentError('AzureVtpmPlatform.open takes either transport or path, not both');
    }
    const pcrs = [...new Set(options.pcrs ?? DEFAULT_PCRS)].sort((a, b) => a - b);
    if (pcrs.length === 0 || pcrs.some((p) => !Number.isInteger(p) || p < 0 || p > 23)) {
      throw new InvalidArgumentError('pcrs must be a non-empty list of PCR indices 0-23');
    }
    let transport = options.transport;
    const owns = transport === undefined;
    if (!transport) {
      const path = options.path ?? DEFAULT_TPM_PATH;
      transport = await openDevice(path, options.timeoutMs);
    }
    const eventLogPath =
      options.eventLogPath === false
        ? undefined
        : (options.eventLogPath ?? (owns ? KERNEL_EVENT_LOG : undefined));
    if (options.imdsUrl !== undefined) thimUrlFor(options.imdsUrl);
    return new AzureVtpmPlatform(new Tpm(transport, options.retry), owns, pcrs, eventLogPath, options);
  }

  // -------------------------------------------------------------------------------------------------------
  // NV: HCL report, user data, AK certificate
  // -------------------------------------------------------------------------------------------------------

  #chunkSize(): Promise<number> {
    this.#nvBufferMax ??= getProperty(this.tpm, TPM_PT.NV_BUFFER_MAX).catch((error: unknown) => {
      this.#nvBufferMax = undefined;
      throw error;
    });
    return this.#nvBufferMax;
  }

  /**
   * The public area of a read-only platform index, read once per platform: the paravisor defines the HCL report
   * and AK certificate indices at boot and rewrites their contents in place (the size and attributes a read
   * needs do not change), so later reads are NV_Read commands only, as few as TPM_PT_NV_BUFFER_MAX allows.
   * A failed read forgets it, so the next call asks the TPM again.
   */
  #nvPublicOf(nvIndex: number, hint: string): Promise<TpmsNvPublic> {
    let known = this.#nvPublic.get(nvIndex);
    if (!known) {
      const reading = nvReadPublic(this.tpm, nvIndex, hint).then((info) => info.public);
      known = reading;
      this.#nvPublic.set(nvIndex, reading);
      reading.catch(() => {
        if (this.#nvPublic.get(nvIndex) === reading) this.#nvPublic.delete(nvIndex);
      });
    }
    return known;
  }

  async #readNv(nvIndex: number, hint: string): Promise<Uint8Array> {
    try {
      const [pub, chunkSize] = await Promise.all([this.#nvPublicOf(nvIndex, hint), this.#chunkSize()]);
      return await nvReadAll(this.tpm, { nvIndex, chunkSize, public: pub });
    } catch (error) {
      this.#nvPublic.delete(nvIndex);
      throw error;
    }
  }

  /** The whole NV blob of 0x01400001 (HCL header, SNP report, runtime data), read in NV_BUFFER_MAX chunks. */
  async readHclReport(): Promise<Uint8Array> {
    this.#checkOpen();
    return this.#readNv(AZURE_VTPM.HCL_REPORT_INDEX, HINT.hclReport);
  }

  /** The AK certificate (DER) from NV 0x01C101D0. */
  async readAkCertificate(): Promise<Uint8Array> {
    this.#checkOpen();
    return derPrefix(await this.#readNv(AZURE_VTPM.AK_CERT_INDEX, HINT.akCert));
  }

  /** The AK certificate's issuer, validity and what Microsoft's guest library would decide about it. */
  async akCertificateStatus(now: Date = new Date()): Promise<AkCertificateStatus> {
    return akCertificateStatus(await this.readAkCertificate(), now);
  }

  /**
   * Renews the AK certificate through IMDS (THIM) and writes the renewed one to NV 0x01C101D0 as Microsoft's
   * guest library does (undefine, define with the new size and the old attributes, write). Resolves with the
   * new certificate (DER). Throws `AkCertificateRenewalError` when IMDS does not renew it.
   */
  async renewAkCertificate(options: { signal?: AbortSignal } = {}): Promise<Uint8Array> {
    this.#checkOpen();
    if (this.#imdsUrl === undefined) {
      throw new InvalidArgumentError('AK certificate renewal needs IMDS: pass imdsUrl or set CVM_SKR_IMDS_URL');
    }
    const current = await this.readAkCertificate();
    const renewed = await requestAkCertificateRenewal(current, {
      imdsUrl: this.#imdsUrl,
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const nvIndex = AZURE_VTPM.AK_CERT_INDEX;
    const old = (await nvReadPublic(this.tpm, nvIndex, HINT.akCert)).public;
    await nvUndefineSpace(this.tpm, { nvIndex });
    const pub = { ...old, dataSize: renewed.length, attributes: old.attributes & ~TPMA_NV.WRITTEN };
    await nvDefineSpace(this.tpm, { public: pub });
    await nvWriteAll(this.tpm, { nvIndex, data: renewed, chunkSize: await this.#chunkSize(), public: pub });
    return renewed;
  }

  /**
   * Writes up to 64 bytes of user data (zero-padded) to 0x01400002 and waits until the paravisor's
   * regenerated HCL report carries them as `user-data`; resolves with that report. Polls with a growing
   * interval until `timeoutMs`, then throws `HclUserDataTimeoutError`.
   */
  async writeUserData(data: Uint8Array, options: WriteUserDataOptions = {}): Promise<Uint8Array> {
    this.#checkOpen();
    if (data.length > AZURE_VTPM.USER_DATA_SIZE) {
      throw new InvalidArgumentError(
        `user data is ${data.length} bytes; at most ${AZURE_VTPM.USER_DATA_SIZE} fit`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 10_000;
    const padded = new Uint8Array(AZURE_VTPM.USER_DATA_SIZE);
    padded.set(data);
    const expected = Buffer.from(padded).toString('hex');
    const nvIndex = AZURE_VTPM.USER_DATA_INDEX;
    let pub: Awaited<ReturnType<typeof nvReadPublic>>['public'];
    try {
      pub = (await nvReadPublic(this.tpm, nvIndex)).public;
    } catch (error) {
      if (!(error instanceof NvIndexNotDefinedError)) throw error;
      // The index is the guest's to define (as Azure's own samples do with tpm2_nvdefine).
      pub = {
        nvIndex,
        nameAlg: TPM_ALG.SHA256,
        attributes:
          TPMA_NV.OWNERWRITE | TPMA_NV.AUTHWRITE | TPMA_NV.OWNERREAD | TPMA_NV.AUTHREAD | TPMA_NV.NO_DA,
        authPolicy: EMPTY,
        dataSize: AZURE_VTPM.USER_DATA_SIZE,
      };
      await nvDefineSpace(this.tpm, { public: pub });
    }
    if (pub.dataSize !== AZURE_VTPM.USER_DATA_SIZE) {
      throw new InvalidArgumentError(
        `NV index 0x01400002 holds ${pub.dataSize} bytes, not ${AZURE_VTPM.USER_DATA_SIZE}: it was defined by someone else`,
      );
    }
    await nvWriteAll(this.tpm, { nvIndex, data: padded, chunkSize: await this.#chunkSize(), public: pub });
    const deadline = Date.now() + timeoutMs;
    let delay = 5;
    let seen = 'no report read yet';
    for (;;) {
      checkSignal(options.signal);
      const report = await this.readHclReport();
      const { userData, problem } = hclUserData(report);
      if (userData !== undefined && userData.toLowerCase() === expected) return report;
      seen = problem ?? 'the report still carries other user data';
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new HclUserDataTimeoutError(
          `the HCL report did not carry the new user data within ${timeoutMs} ms (${seen}); on an Azure ` +
            'confidential VM the paravisor regenerates it after the write, anywhere else whoever emulates the ' +
            'paravisor must rewrite NV 0x01400001',
        );
      }
      await sleep(Math.min(delay, left), options.signal);
      delay = Math.min(delay * 2, 250);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // AK, PCRs, quote
  // -------------------------------------------------------------------------------------------------------

  /** The AK public area at 0x81000003 (TPM2B_PUBLIC bytes, parsed, and its name). */
  async readAkPublic(): Promise<PublicInfo> {
    this.#checkOpen();
    return readPublic(this.tpm, AZURE_VTPM.AK_HANDLE, HINT.ak);
  }

  /** SHA-256 PCR values (default 0-7), one consistent snapshot. */
  async readPcrs(pcrs: readonly number[] = this.#pcrs): Promise<PcrValue[]> {
    this.#checkOpen();
    return readPcrs(this.tpm, TPM_ALG.SHA256, pcrs);
  }

  /** TPM2_Quote by the AK over SHA-256 PCRs, with the AK's own scheme (RSASSA SHA-256). */
  async quote(options: QuoteOptions = {}): Promise<SignedAttest> {
    this.#checkOpen();
    const nonce = options.nonce ?? EMPTY;
    if (nonce.length > 64)
      throw new InvalidArgumentError(`quote nonce is ${nonce.length} bytes; at most 64 fit`);
    try {
      return await quote(this.tpm, {
        signHandle: AZURE_VTPM.AK_HANDLE,
        pcrs: [{ hashAlg: TPM_ALG.SHA256, pcrs: [...(options.pcrs ?? this.#pcrs)] }],
        qualifyingData: nonce,
      });
    } catch (error) {
      mapMissingHandle(error, 1, AZURE_VTPM.AK_HANDLE, HINT.ak);
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // transfer key
  // -------------------------------------------------------------------------------------------------------

  /** Runs `fn` after every earlier exclusive operation: one session or new object at a time. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #ephemeral(): Promise<EphemeralKey> {
    this.#checkOpen();
    this.#key ??= this.#exclusive(() => this.#createEphemeral()).catch((error: unknown) => {
      this.#key = undefined;
      throw error;
    });
    return this.#key;
  }

  async #createEphemeral(): Promise<EphemeralKey> {
    this.#checkOpen();
    const selection: PcrSelection[] = [{ hashAlg: TPM_ALG.SHA256, pcrs: [...this.#pcrs] }];
    const values = await readPcrs(this.tpm, TPM_ALG.SHA256, this.#pcrs);
    const authPolicy = policyPcrDigest(
      TPM_ALG.SHA256,
      selection,
      values.map((v) => v.digest),
    );
    const created = await createPrimary(this.tpm, {
      hierarchy: TPM_RH.NULL,
      template: rsaTemplate({ objectAttributes: TRANSFER_KEY_ATTRIBUTES, authPolicy }),
    });
    try {
      const pub = created.public;
      if (pub.type !== TPM_ALG.RSA || Buffer.compare(pub.authPolicy, authPolicy) !== 0) {
        throw new InvalidArgumentError('the TPM created a transfer key that does not match the template');
      }
      const info: PublicInfo = { public: pub, public2b: created.public2b, name: created.name };
      return {
        handle: created.handle,
        public: info,
        selection,
        modulusBytes: pub.unique.length,
        transferKey: new AzureVtpmTransferKey(this, info),
      };
    } catch (error) {
      await flushContext(this.tpm, created.handle).catch(() => {});
      throw error;
    }
  }

  /**
   * The ephemeral transfer key: an RSA-2048 primary in the NULL hierarchy whose authPolicy is PolicyPCR over
   * the platform's PCRs. Created on first use and kept loaded until `close()`.
   */
  async transferKey(): Promise<AzureVtpmTransferKey> {
    return (await this.#ephemeral()).transferKey;
  }

  /** TPM2_Certify of the transfer key by the AK (empty qualifying data). */
  async certifyTransferKey(): Promise<SignedAttest> {
    const key = await this.#ephemeral();
    try {
      return await certify(this.tpm, { objectHandle: key.handle, signHandle: AZURE_VTPM.AK_HANDLE });
    } catch (error) {
      mapMissingHandle(error, 2, AZURE_VTPM.AK_HANDLE, HINT.ak);
    }
  }

  /** Decrypts with the transfer key inside the TPM: PolicyPCR session + TPM2_RSA_Decrypt. */
  async decrypt(ciphertext: Uint8Array, scheme: DecryptScheme): Promise<Buffer> {
    const tpmScheme = SCHEMES[scheme];
    if (!tpmScheme) throw new InvalidArgumentError(`unknown decrypt scheme ${JSON.stringify(scheme)}`);
    const key = await this.#ephemeral();
    if (ciphertext.length !== key.modulusBytes) {
      throw new InvalidArgumentError(
        `ciphertext is ${ciphertext.length} bytes; the ${key.modulusBytes * 8}-bit transfer key needs ${key.modulusBytes}`,
      );
    }
    return this.#exclusive(async () => {
      this.#checkOpen();
      const session = await startAuthSession(this.tpm, {
        sessionType: TPM_SE.POLICY,
        authHash: TPM_ALG.SHA256,
      });
      let consumed = false;
      try {
        await policyPcr(this.tpm, session.handle, key.selection);
        // Without continueSession the TPM flushes the session itself when the decrypt succeeds.
        const out = await rsaDecrypt(this.tpm, {
          keyHandle: key.handle,
          ciphertext,
          scheme: tpmScheme,
          auth: policyAuth(session.handle),
        });
        consumed = true;
        return Buffer.from(out.buffer, out.byteOffset, out.length);
      } catch (error) {
        if (error instanceof TpmPolicyError) {
          throw new TpmPolicyError(
            `the transfer key's PCR policy failed (${error.rcName}): SHA-256 PCRs ${rangeText(this.#pcrs)} changed ` +
              'since the key was made; open a new platform to make a key for the current PCRs, then attest again',
            error,
            { cause: error },
          );
        }
        throw error;
      } finally {
        if (!consumed) await flushContext(this.tpm, session.handle).catch(() => {});
      }
    });
  }

  // -------------------------------------------------------------------------------------------------------
  // evidence
  // -------------------------------------------------------------------------------------------------------

  async #eventLog(diagnostics: string[]): Promise<Uint8Array> {
    if (!this.#eventLogPath) return EMPTY;
    try {
      return new Uint8Array(await readFile(this.#eventLogPath));
    } catch (error) {
      // Root-only on most distributions. The service derives the x-ms-azurevm-* claims (secure boot, boot
      // debugging, ...) from it, so a missing log changes the token: say so, or fail when asked to.
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      const message =
        `the TCG event log ${this.#eventLogPath} cannot be read (${code}); the token will lack the ` +
        'x-ms-azurevm-* claims the service derives from it: run as root, or make it readable';
      if (this.#requireTcgLog) throw new TcgLogUnreadableError(message, { cause: error });
      diagnostics.push(message);
      return EMPTY;
    }
  }

  /** The AK certificate after the guest library's lifecycle checks (placeholder refused, renewal when due). */
  async #checkedAkCertificate(
    diagnostics: string[],
    signal: AbortSignal | undefined,
    now: Date | undefined,
  ): Promise<Uint8Array> {
    return akCertificateForAttestation(await this.readAkCertificate(), {
      now: now ?? new Date(),
      renew: this.#renewAk
        ? () => this.#exclusive(() => this.renewAkCertificate(signal ? { signal } : {}))
        : undefined,
      diagnostics,
    });
  }

  /** The VCEK chain as Microsoft's clients send it: THIM's vcekCert PEM followed by its certificateChain PEM. */
  async #vcekChain(hclReport: Uint8Array, signal: AbortSignal | undefined): Promise<string | undefined> {
    if (this.#vcek === undefined) return undefined;
    if (hclReport.length < 0x20 + 1184) return undefined; // the service names the malformed report
    const report = parseSnpReport(hclReport.subarray(0x20, 0x20 + 1184));
    const fetched = await this.#vcek.certificatesFor(report, signal ? { signal } : {});
    if (fetched.thim) {
      // The two PEM strings as THIM serves them, concatenated: Azure/confidential-computing-cvm-guest-attestation
      // client-library/src/Attestation/AttestationClient/lib/ImdsOperations.cpp (GetVCekCert: base64 of
      // cert + chain) and Azure/cvm-attestation-tools cvm-attestation/src/imds_client.py (get_vcek_certificate;
      // it base64url-encodes in src/isolation.py, the C++ library and we use standard base64, which MAA takes).
      const { vcekCert, certificateChain } = fetched.thim;
      return `${vcekCert}${vcekCert.endsWith('\n') ? '' : '\n'}${certificateChain}`;
    }
    return certificateBundlePem(fetched.certificates, report.signer);
  }

  /**
   * Everything MAA's AzureGuest protocol needs: HCL report, AK certificate and public area, PCRs and a
   * quote over them (with the caller's nonce), the transfer key and the AK's certification of it.
   */
  async collectEvidence(options: CollectEvidenceOptions = {}): Promise<AzureVtpmEvidence> {
    this.#checkOpen();
    const { signal } = options;
    checkSignal(signal);
    const diagnostics: string[] = [];
    const akCert = await this.#checkedAkCertificate(diagnostics, signal, options.now);
    const [hclReport, akPub, key, tcgLog] = await Promise.all([
      this.readHclReport(),
      this.readAkPublic(),
      this.#ephemeral(),
      this.#eventLog(diagnostics),
    ]);
    const vcekCertChain = await this.#vcekChain(hclReport, signal);
    checkSignal(signal);
    // The quote must cover the PCR values reported beside it; retry if something extends a PCR in between.
    let pcrs: PcrValue[] = [];
    let signed: SignedAttest | undefined;
    for (let attempt = 0; attempt < 3 && !signed; attempt++) {
      pcrs = await this.readPcrs();
      const q = await this.quote(options.nonce ? { nonce: options.nonce } : {});
      const digest = hash(TPM_ALG.SHA256, ...pcrs.map((p) => p.digest));
      if ('quote' in q.attest && Buffer.compare(q.attest.quote.pcrDigest, digest) === 0) signed = q;
    }
    if (!signed) {
      throw new PcrsUnstableError(
        'PCRs kept changing between PCR_Read and Quote; something is extending PCRs, try again when it settles',
      );
    }
    checkSignal(signal);
    const certified = await this.certifyTransferKey();
    return {
      kind: 'azure-vtpm',
      hclReport,
      akCert,
      akPub: akPub.public2b,
      quote: signed.attestBytes,
      quoteSignature: rawSignature(signed),
      pcrs,
      encKeyPub: key.public.public2b,
      encKeyCertifyInfo: certified.attestBytes,
      encKeyCertifyInfoSignature: rawSignature(certified),
      tcgLog,
      ...(vcekCertChain === undefined ? {} : { vcekCertChain }),
      diagnostics,
    };
  }

  // -------------------------------------------------------------------------------------------------------
  // lifetime
  // -------------------------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new PlatformClosedError('this AzureVtpmPlatform was closed; open a new one');
  }

  /** Flushes the transfer key (after running exclusive work finishes) and closes a transport it opened. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pending = this.#key;
    this.#key = undefined;
    await this.#exclusive(async () => {
      const key = await pending?.catch(() => undefined);
      // Without a resource manager a lost flush would leave the key loaded: try once more. If the first one did
      // reach the TPM, the second fails with TPM_RC_HANDLE, which is fine.
      if (key) {
        await flushContext(this.tpm, key.handle)
          .catch(() => flushContext(this.tpm, key.handle))
          .catch(() => {});
      }
    });
    if (this.#ownsTransport) await this.tpm.transport.close();
  }
}

function rawSignature(signed: SignedAttest): Uint8Array {
  const s = signed.signature;
  if ('signature' in s) return s.signature;
  throw new InvalidArgumentError(`the AK signed with algorithm 0x${s.sigAlg.toString(16)}, not RSA`);
}

/**
 * An NV index may be larger than the certificate it holds: return just the DER SEQUENCE (by its own length),
 * so strict X.509 parsers do not trip over trailing padding. Anything that is not DER is returned unchanged.
 */
export function derPrefix(bytes: Uint8Array): Uint8Array {
  if (bytes.length < 2 || bytes[0] !== 0x30) return bytes;
  const first = bytes[1]!;
  let length = first;
  let header = 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n < 1 || n > 3 || bytes.length < 2 + n) return bytes;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[2 + i]!;
    header = 2 + n;
  }
  const total = header + length;
  return total <= bytes.length ? bytes.subarray(0, total) : bytes;
}

async function openDevice(path: string, timeoutMs: number | undefined): Promise<TpmTransport> {
  try {
    return await openTpm(timeoutMs === undefined ? { path } : { path, timeoutMs });
  } catch (error) {
    throw explainOpenError(error, path);
  }
}

/** Rewrites "cannot open the device" errors into ones that say what to check on a confidential VM. */
export function explainOpenError(error: unknown, path: string): unknown {
  if (error instanceof DevicePermissionError) {
    return new DevicePermissionError(
      `permission denied opening the vTPM at ${path}: run as root, or add the user to the group owning it ` +
        `(usually tss: sudo usermod -aG tss "$USER", then log in again; check with ls -l ${path})`,
      detailsOf(error, path),
      { cause: error },
    );
  }
  if (error instanceof DeviceNotFoundError) {
    return new DeviceNotFoundError(
      `no TPM at ${path}: not a confidential VM with a vTPM (Azure DCasv5/ECasv5), or the TPM driver is not loaded`,
      detailsOf(error, path),
      { cause: error },
    );
  }
  return error;
}

function detailsOf(error: DevicePermissionError | DeviceNotFoundError, path: string) {
  return {
    systemCode: error.systemCode,
    errno: error.errno,
    syscall: error.syscall,
    path: error.path ?? path,
  };
}
