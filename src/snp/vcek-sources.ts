import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AbortError, InvalidArgumentError, VcekFetchError } from '../errors.js';
import { deadline, raceAbort } from '../util/abort.js';
import { toHex } from './bytes.js';
import { loadSnpCertificates, type SnpCertificates, type ThimCertificates } from './certificates.js';
import type { SnpReport } from './report.js';
import { decodeTcb, type SnpProduct, type TcbVersion } from './tcb.js';
import { VcekCache } from './vcek-cache.js';

/** Azure IMDS inside a VM (link-local, plain http, reachable only from the VM itself). */
export const IMDS_BASE_URL = 'http://169.254.169.254';
/**
 * THIM's VCEK endpoint under IMDS, as Microsoft's guest attestation library asks it (`imds_endpoint` +
 * `vcek_cert_path` in Azure/confidential-computing-cvm-guest-attestation
 * client-library/src/Attestation/AttestationClient/lib/ImdsOperations.cpp).
 */
export const THIM_PATH = '/metadata/THIM/amd/certification';
export const THIM_URL = `${IMDS_BASE_URL}${THIM_PATH}`;

/** THIM's URL under another IMDS base (an emulated IMDS, or a proxy), e.g. `http://127.0.0.1:8080`. */
export function thimUrlFor(imdsBaseUrl: string): string {
  const base = new URL(imdsBaseUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new InvalidArgumentError(`IMDS URL ${imdsBaseUrl} is not http(s)`);
  return `${base.origin}${base.pathname.replace(/\/+$/, '')}${THIM_PATH}`;
}
export const KDS_BASE_URL = 'https://kdsintf.amd.com';
const DEFAULT_TIMEOUT_MS = 10_000;

export interface HttpOptions {
  signal?: AbortSignal;
  /** Per request; default 10 s. */
  timeoutMs?: number;
}

async function httpGet(
  url: string,
  headers: Record<string, string>,
  what: string,
  options: HttpOptions,
): Promise<Response> {
  // Not AbortSignal.any + AbortSignal.timeout: garbage collection can drop that timeout (see util/abort.ts).
  // The deadline stays armed after the headers, so it also bounds reading the body; it detaches itself.
  const limit = deadline(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, [options.signal], `${what} timed out`);
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: limit.signal, redirect: 'error' });
  } catch (error) {
    limit.dispose();
    if (options.signal?.aborted) throw new AbortError(`${what} request was aborted`, { cause: error });
    if (limit.timedOut)
      throw new VcekFetchError(`${what} did not answer within ${options.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms`);
    throw new VcekFetchError(`${what} at ${new URL(url).origin} is unreachable`, undefined, { cause: error });
  }
  if (!response.ok) {
    await response.body?.cancel();
    const retry = response.headers.get('retry-after');
    const hint =
      response.status === 429
        ? `: rate-limited${retry ? `, retry after ${retry} s` : ''}; cache VCEKs by chip and TCB`
        : response.status === 404
          ? ': no such certificate (check the chip id and TCB)'
          : '';
    throw new VcekFetchError(`${what} answered HTTP ${response.status}${hint}`, response.status);
  }
  return response;
}

function parseCacheSeconds(value: string | number | null | undefined): number | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const maxAge = /max-age=(\d+)/i.exec(value)?.[1] ?? (/^\s*\d+\s*$/.test(value) ? value.trim() : undefined);
  return maxAge === undefined ? undefined : Number(maxAge);
}

function asThim(json: unknown, what: string): ThimCertificates {
  if (
    typeof json !== 'object' ||
    json === null ||
    typeof (json as ThimCertificates).vcekCert !== 'string' ||
    typeof (json as ThimCertificates).certificateChain !== 'string'
  ) {
    throw new VcekFetchError(`${what} did not return {vcekCert, certificateChain}`);
  }
  return json as ThimCertificates;
}

/** Azure THIM inside a confidential VM or container host: the VCEK of this host, with ASK and ARK. */
export async function fetchThimCertificates(
  options: HttpOptions & { url?: string } = {},
): Promise<ThimCertificates> {
  const response = await httpGet(options.url ?? THIM_URL, { Metadata: 'true' }, 'THIM', options);
  let json: unknown;
  try {
    json = await response.json();
  } catch (error) {
    throw new VcekFetchError('THIM answered with something that is not JSON', undefined, { cause: error });
  }
  return asThim(json, 'THIM');
}

export interface ContainerCertificateOptions {
  env?: NodeJS.ProcessEnv;
  /** Path of the `host-amd-cert-base64` file; default `$UVM_SECURITY_CONTEXT_DIR/host-amd-cert-base64`. */
  file?: string;
}

/**
 * Confidential containers (ACI): the THIM JSON, base64, in `UVM_HOST_AMD_CERTIFICATE` or a `host-amd-cert-base64`
 * file. Resolves undefined when neither is present.
 */
export async function readContainerCertificates(
  options: ContainerCertificateOptions = {},
): Promise<ThimCertificates | undefined> {
  const env = options.env ?? process.env;
  let encoded = env.UVM_HOST_AMD_CERTIFICATE;
  let where = 'UVM_HOST_AMD_CERTIFICATE';
  if (encoded === undefined || encoded === '') {
    const dir = env.UVM_SECURITY_CONTEXT_DIR;
    const file = options.file ?? (dir ? join(dir, 'host-amd-cert-base64') : undefined);
    if (file === undefined) return undefined;
    try {
      encoded = await readFile(file, 'utf8');
      where = file;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new VcekFetchError(`cannot read ${file}`, undefined, { cause: error });
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(encoded.trim(), 'base64').toString('utf8'));
  } catch (error) {
    throw new VcekFetchError(`${where} is not base64 of a THIM JSON`, undefined, { cause: error });
  }
  return asThim(json, where);
}

/** AMD KDS URL of a VCEK: Milan/Genoa by the 64-byte chip id, Turin by its first 8 bytes plus fmcSPL. */
export function kdsVcekUrl(
  product: SnpProduct,
  chipId: Uint8Array,
  tcb: TcbVersion,
  baseUrl = KDS_BASE_URL,
): string {
  if (chipId.length !== 64) throw new InvalidArgumentError('chip_id must be 64 bytes');
  const base = baseUrl.replace(/\/+$/, '');
  const spl = `blSPL=${tcb.bootloader}&teeSPL=${tcb.tee}&snpSPL=${tcb.snp}&ucodeSPL=${tcb.microcode}`;
  if (product === 'Turin') {
    return `${base}/vcek/v1/Turin/${toHex(chipId.subarray(0, 8))}?fmcSPL=${tcb.fmc ?? 0}&${spl}`;
  }
  return `${base}/vcek/v1/${product}/${toHex(chipId)}?${spl}`;
}

export interface KdsVcekRequest extends HttpOptions {
  product: SnpProduct;
  chipId: Uint8Array;
  /** reported_tcb (not current_tcb), decoded or as the u64. */
  reportedTcb: TcbVersion | bigint;
  baseUrl?: string;
}

/** Fetches a VCEK (DER) from AMD KDS; `maxAgeSeconds` from its Cache-Control. */
export async function fetchKdsVcek(
  request: KdsVcekRequest,
): Promise<{ der: Uint8Array; maxAgeSeconds?: number }> {
  const tcb =
    typeof request.reportedTcb === 'bigint'
      ? decodeTcb(request.reportedTcb, request.product)
      : request.reportedTcb;
  const url = kdsVcekUrl(request.product, request.chipId, tcb, request.baseUrl);
  const response = await httpGet(
    url,
    { Accept: 'application/pkix-cert, application/octet-stream' },
    'AMD KDS',
    request,
  );
  const der = new Uint8Array(await response.arrayBuffer());
  if (der.length < 4 || der[0] !== 0x30)
    throw new VcekFetchError('AMD KDS returned something that is not a DER certificate');
  const maxAge = parseCacheSeconds(response.headers.get('cache-control'));
  return maxAge === undefined ? { der } : { der, maxAgeSeconds: maxAge };
}

/** Fetches the ASK and ARK (PEM) of a product from AMD KDS. The embedded roots make this optional. */
export async function fetchKdsChain(
  request: HttpOptions & { product: SnpProduct; baseUrl?: string },
): Promise<string> {
  const base = (request.baseUrl ?? KDS_BASE_URL).replace(/\/+$/, '');
  const response = await httpGet(`${base}/vcek/v1/${request.product}/cert_chain`, {}, 'AMD KDS', request);
  const pem = await response.text();
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new VcekFetchError('AMD KDS cert_chain is not PEM');
  return pem;
}

export type VcekSourceName = 'container' | 'thim' | 'kds';

export interface VcekFetcherOptions {
  /** Tried in order; default container, THIM, KDS. */
  sources?: readonly VcekSourceName[];
  thimUrl?: string;
  kdsBaseUrl?: string;
  container?: ContainerCertificateOptions;
  /** Shared between fetchers to share fetched certificates; default one per fetcher. */
  cache?: VcekCache<FetchedCertificates>;
  timeoutMs?: number;
}

/** Where certificates came from, for diagnostics. */
export interface FetchedCertificates {
  certificates: SnpCertificates;
  source: VcekSourceName;
  /** The THIM answer as served (THIM and container sources), e.g. to pass its PEM on unchanged. */
  thim?: ThimCertificates;
}

function tcbmMatches(thim: ThimCertificates, report: SnpReport): boolean {
  if (thim.tcbm === undefined || !/^[0-9a-fA-F]{1,16}$/.test(thim.tcbm)) return true;
  return BigInt(`0x${thim.tcbm}`) === report.reportedTcb.raw;
}

/**
 * Finds the VCEK chain for a report from the configured sources, caching by (chip_id, reported_tcb) and honouring
 * each answer's cache lifetime (`cacheControl` for THIM, Cache-Control for KDS). Concurrent callers for the same
 * key share one fetch.
 */
export class VcekFetcher {
  readonly #options: VcekFetcherOptions;
  readonly #cache: VcekCache<FetchedCertificates>;

  constructor(options: VcekFetcherOptions = {}) {
    this.#options = options;
    this.#cache = options.cache ?? new VcekCache<FetchedCertificates>();
  }

  async certificatesFor(
    report: SnpReport,
    options: { product?: SnpProduct; signal?: AbortSignal } = {},
  ): Promise<FetchedCertificates> {
    const key = `${toHex(report.chipId)}:${report.reportedTcb.raw.toString(16)}`;
    // The shared fetch is not tied to any one caller's signal (only to the timeout), so one caller giving up
    // does not fail the others waiting on it; each caller's own signal ends only its own wait.
    const signal = options.signal;
    // An aborted caller starts nothing.
    if (signal?.aborted) throw new AbortError('VCEK lookup aborted', { cause: signal.reason });
    const product = options.product;
    const shared = this.#cache.get(key, () => this.#load(report, product === undefined ? {} : { product }));
    return raceAbort(shared, signal, 'VCEK lookup');
  }

  async #load(
    report: SnpReport,
    options: { product?: SnpProduct },
  ): Promise<{ value: FetchedCertificates; ttlSeconds?: number }> {
    const http: HttpOptions =
      this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs };
    const failures: string[] = [];
    let status: number | undefined;
    for (const source of this.#options.sources ?? ['container', 'thim', 'kds']) {
      try {
        if (source === 'container' || source === 'thim') {
          const thim =
            source === 'container'
              ? await readContainerCertificates(this.#options.container)
              : await fetchThimCertificates({
                  ...http,
                  ...(this.#options.thimUrl ? { url: this.#options.thimUrl } : {}),
                });
          if (thim === undefined) {
            failures.push(`${source}: not present`);
            continue;
          }
          if (!tcbmMatches(thim, report)) {
            failures.push(`${source}: its tcbm ${thim.tcbm} is not the report's reported_tcb`);
            continue;
          }
          const ttl = parseCacheSeconds(thim.cacheControl);
          const value = { certificates: loadSnpCertificates(thim), source, thim };
          return ttl === undefined ? { value } : { value, ttlSeconds: ttl };
        }
        const product = report.product ?? options.product;
        if (product === undefined) {
          failures.push('kds: the report has no cpuid; pass the product');
          continue;
        }
        if (report.signer !== 'vcek') {
          failures.push('kds: only VCEKs are on AMD KDS');
          continue;
        }
        const { der, maxAgeSeconds } = await fetchKdsVcek({
          ...http,
          product,
          chipId: report.chipId,
          reportedTcb: report.reportedTcb.raw,
          ...(this.#options.kdsBaseUrl ? { baseUrl: this.#options.kdsBaseUrl } : {}),
        });
        const value = { certificates: loadSnpCertificates(der), source };
        return maxAgeSeconds === undefined ? { value } : { value, ttlSeconds: maxAgeSeconds };
      } catch (error) {
        if (error instanceof VcekFetchError && error.statusCode !== undefined) status = error.statusCode;
        failures.push(`${source}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    const error = new VcekFetchError(
      `no source had the VCEK for this report (${failures.join('; ')})`,
      status,
    );
    error.tried = failures;
    throw error;
  }
}
