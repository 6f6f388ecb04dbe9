/**
 * The vTPM AK certificate's lifecycle, as Microsoft's guest attestation library handles it before every
 * attestation (Azure/confidential-computing-cvm-guest-attestation @ 990f66210018f03f66f000fb4227809db94c2c55,
 * client-library/src/Attestation/AttestationClient/lib/TpmCertOperations.cpp, ImdsClient.cpp, and the caller
 * in AttestationClientImpl.cpp):
 *
 * - "not provisioned": the issuer contains `CN=MICROSOFT AZURE TRUSTED VM RSA` (the Trusted Launch level
 *   certificate that stands in until the confidential VM's own is provisioned). The library then refuses to
 *   attest ("AK cert provisioning delayed. Please try attestation after some time.") and does not renew.
 * - "renewal due": notAfter is less than 90 days away or past (`AK_CERT_RENEWAL_THRESHOLD -90` days). The
 *   library renews through IMDS, writes the new certificate to NV 0x01C101D0 (undefine, define, write), and
 *   attests whatever the outcome (a failed renewal is only logged).
 * - renewal: `GET /metadata/instance/compute/vmId?api-version=2019-03-11&format=text`, then
 *   `POST /metadata/THIM/tvm/certificate/renew?api-version=2023-07-01&vmId=<id>&requestId=<uuid>` with header
 *   `Metadata:true` and as body the current certificate as PEM, URL-encoded (curl_easy_escape); the answer is
 *   JSON whose `AkCertPem` holds the renewed certificate (and `CertQueryId` a query id) — key names from
 *   AttestationLibConst.h. The library's fallback (api-version 2021-12-01, wait 60 s, then
 *   `/metadata/THIM/tvm/certificate/query`) is not implemented here.
 */
import { randomUUID, X509Certificate } from 'node:crypto';
import {
  AbortError,
  AkCertificateNotProvisionedError,
  AkCertificateRenewalError,
  CvmSkrError,
  InvalidArgumentError,
} from '../../errors.js';

/** Issuer prefix of the placeholder certificate (TpmCertOperations.cpp, `Trusted_VM_CERT_ISSUER_NAME_PREFIX`). */
export const PLACEHOLDER_AK_ISSUER = 'CN=MICROSOFT AZURE TRUSTED VM RSA';
/** Days before notAfter from which the library renews (`AK_CERT_RENEWAL_THRESHOLD`). */
export const AK_RENEWAL_THRESHOLD_DAYS = 90;
export const AK_RENEW_PATH = '/metadata/THIM/tvm/certificate/renew';
export const AK_RENEW_API_VERSION = '2023-07-01';
export const VM_ID_PATH = '/metadata/instance/compute/vmId';
export const VM_ID_API_VERSION = '2019-03-11';

const DAY_MS = 86_400_000;

export interface AkCertificateStatus {
  issuer: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  /** Whole days until notAfter (negative when expired). */
  daysLeft: number;
  /** Still the placeholder certificate: attestation waits for the real one. */
  placeholder: boolean;
  /** Expired, or expires within the library's 90-day threshold. */
  renewalDue: boolean;
}

function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

/** What the guest library decides about an AK certificate (DER). */
export function akCertificateStatus(der: Uint8Array, now: Date = new Date()): AkCertificateStatus {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(der);
  } catch (error) {
    throw new InvalidArgumentError('the AK certificate in NV 0x01C101D0 is not a DER X.509 certificate', {
      cause: error,
    });
  }
  const notAfter = new Date(cert.validTo);
  const daysLeft = Math.trunc((notAfter.getTime() - now.getTime()) / DAY_MS);
  return {
    issuer: oneLine(cert.issuer),
    subject: oneLine(cert.subject),
    notBefore: new Date(cert.validFrom).toISOString(),
    notAfter: notAfter.toISOString(),
    daysLeft,
    // The library matches X509_NAME_oneline's "/CN=MICROSOFT AZURE TRUSTED VM RSA" case-sensitively; matching
    // the CN without regard to case also catches a mixed-case spelling of the same CA.
    placeholder: cert.issuer
      .split('\n')
      .some((rdn) => rdn.toUpperCase().startsWith(PLACEHOLDER_AK_ISSUER)),
    renewalDue: notAfter.getTime() - now.getTime() <= AK_RENEWAL_THRESHOLD_DAYS * DAY_MS,
  };
}

/** The certificate as PEM the way the library sends it (one base64 line between header and footer). */
export function akCertificatePem(der: Uint8Array): string {
  return `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64')}\n-----END CERTIFICATE-----`;
}

export interface ImdsRequestOptions {
  /** IMDS base URL, e.g. `http://169.254.169.254` or an emulated IMDS on loopback. */
  imdsUrl: string;
  signal?: AbortSignal;
  /** Per request; default 30 s. */
  timeoutMs?: number;
}

async function imdsRequest(
  url: URL,
  init: { method: 'GET' | 'POST'; body?: string },
  what: string,
  options: ImdsRequestOptions,
): Promise<string> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? 30_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  let response: Response;
  try {
    response = await fetch(url, {
      method: init.method,
      headers: { Metadata: 'true' },
      ...(init.body === undefined ? {} : { body: init.body }),
      signal,
      redirect: 'error',
    });
  } catch (error) {
    if (options.signal?.aborted) throw new AbortError(`${what} was aborted`, { cause: error });
    throw new AkCertificateRenewalError(`${what}: IMDS at ${url.origin} is unreachable`, { cause: error });
  }
  const text = await response.text();
  if (!response.ok) {
    throw new AkCertificateRenewalError(
      `${what}: IMDS answered HTTP ${response.status}; check that this is an Azure confidential VM with IMDS enabled`,
    );
  }
  return text;
}

/**
 * Asks IMDS (THIM) for a renewed AK certificate for `currentDer`; resolves with the new certificate (DER). Does
 * not write it anywhere. Throws `AkCertificateRenewalError` naming the step that failed.
 */
export async function requestAkCertificateRenewal(
  currentDer: Uint8Array,
  options: ImdsRequestOptions,
): Promise<Uint8Array> {
  const base = new URL(options.imdsUrl);
  const vmIdUrl = new URL(VM_ID_PATH, base);
  vmIdUrl.search = `api-version=${VM_ID_API_VERSION}&format=text`;
  const vmId = (await imdsRequest(vmIdUrl, { method: 'GET' }, 'reading the VM id', options)).trim();
  if (!/^[0-9a-fA-F-]{36}$/.test(vmId))
    throw new AkCertificateRenewalError('reading the VM id: IMDS did not answer with a VM id');
  const renewUrl = new URL(AK_RENEW_PATH, base);
  renewUrl.search = `api-version=${AK_RENEW_API_VERSION}&vmId=${vmId}&requestId=${randomUUID()}`;
  const answer = await imdsRequest(
    renewUrl,
    { method: 'POST', body: encodeURIComponent(akCertificatePem(currentDer)) },
    'renewing the AK certificate',
    options,
  );
  let pem: unknown;
  try {
    pem = (JSON.parse(answer) as { AkCertPem?: unknown }).AkCertPem;
  } catch {
    pem = undefined;
  }
  if (typeof pem !== 'string' || !pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new AkCertificateRenewalError(
      'renewing the AK certificate: the IMDS answer has no AkCertPem (the synchronous renewal API did not renew)',
    );
  }
  let renewed: X509Certificate;
  try {
    renewed = new X509Certificate(pem);
  } catch (error) {
    throw new AkCertificateRenewalError('renewing the AK certificate: AkCertPem is not a certificate', {
      cause: error,
    });
  }
  const current = new X509Certificate(currentDer);
  if (!renewed.publicKey.equals(current.publicKey)) {
    throw new AkCertificateRenewalError(
      'renewing the AK certificate: the renewed certificate certifies another key than the AK',
    );
  }
  return new Uint8Array(renewed.raw);
}

export interface AkCertificateLifecycleOptions {
  /**
   * The time the certificate's lifetime is judged at: the guest's clock. Callers that inject a clock (an
   * emulator's virtual clock, a replayed recording's time) pass it here, so renewal follows that clock.
   */
  now: Date;
  /**
   * Renews through IMDS and stores the new certificate where the AK certificate lives, resolving with it;
   * undefined when renewal is off.
   */
  renew: (() => Promise<Uint8Array>) | undefined;
  /** Receives what happened (renewed, renewal off, renewal failed), as the guest library logs it. */
  diagnostics: string[];
}

/**
 * The AK certificate to send, after the guest library's checks before every attestation (see the top of this
 * file): the placeholder is refused with `AkCertificateNotProvisionedError`; a certificate within 90 days of
 * its notAfter (or past it) at `now` is renewed when renewal is on; a failed renewal is a diagnostic and the
 * current certificate is sent (AttestationClientImpl.cpp attests whatever the renewal's outcome).
 */
export async function akCertificateForAttestation(
  der: Uint8Array,
  options: AkCertificateLifecycleOptions,
): Promise<Uint8Array> {
  let status: AkCertificateStatus;
  try {
    status = akCertificateStatus(der, options.now);
  } catch {
    return der; // not X.509: the service says what is wrong with it
  }
  if (status.placeholder) {
    throw new AkCertificateNotProvisionedError(
      `the AK certificate is still the placeholder (issuer ${status.issuer}): Azure provisions the confidential ` +
        "VM's own a few minutes after the first boot; try again later",
    );
  }
  if (!status.renewalDue) return der;
  const when = `${status.daysLeft < 0 ? 'expired' : 'expires'} ${status.notAfter} (renewal is due 90 days before)`;
  if (options.renew === undefined) {
    options.diagnostics.push(`the AK certificate ${when} and renewal through IMDS is off`);
    return der;
  }
  try {
    const renewed = await options.renew();
    options.diagnostics.push(`the AK certificate ${when}; renewed through IMDS`);
    return renewed;
  } catch (error) {
    if (error instanceof AbortError) throw error;
    const reason = error instanceof CvmSkrError ? error.message : String(error);
    options.diagnostics.push(`the AK certificate ${when}; renewal through IMDS failed: ${reason}`);
    return der;
  }
}
