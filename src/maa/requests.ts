/**
 * Request bodies of the two MAA protocols (AzureGuest as Microsoft's C++ client builds it: Azure/confidential-computing-cvm-guest-attestation @990f662,
 * client-library/src/Attestation/AttestationClient/lib/AttestationClientImpl.cpp and TpmInfo.cpp, IsolationInfo.cpp;
 * fields pinned in test/maa/requests.test.ts), built from a platform's evidence.
 */
import { readFile } from 'node:fs/promises';
import { MalformedDataError } from '../errors.js';
import type { AzureVtpmEvidence, SevGuestEvidence } from '../hal/types.js';

const b64 = (bytes: Uint8Array | string): string =>
  (typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes)).toString('base64');
const b64url = (bytes: Uint8Array | string): string =>
  (typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : Buffer.from(bytes)).toString('base64url');

export interface SevSnpVmRequest {
  report: string;
  runtimeData: { data: string; dataType: 'JSON' };
  nonce?: string;
}

/**
 * The report document's `Endorsements` for UVM reference information, as microsoft/confidential-sidecar-containers
 * builds it (pkg/common/maa.go, commit fa8df58aa090, `newAttestSNPRequestBody`): base64url of the JSON
 * `{"Uvm":[base64url(COSE_Sign1)]}`, both with Go's padded `base64.URLEncoding`.
 */
export function uvmEndorsements(referenceInfo: Uint8Array): string {
  const uvm = Buffer.from(referenceInfo).toString('base64url');
  return b64urlPadded(JSON.stringify({ Uvm: [padBase64(uvm)] }));
}

const padBase64 = (unpadded: string): string => unpadded + '='.repeat((4 - (unpadded.length % 4)) % 4);
const b64urlPadded = (text: string): string => padBase64(Buffer.from(text, 'utf8').toString('base64url'));

/**
 * `POST /attest/SevSnpVm` body. The nonce (already bound into the runtime data) is also sent as a string. A
 * confidential container's UVM reference information goes into the report document as `Endorsements`, after
 * `SnpReport` and `VcekCertChain`, as the sidecar sends it; without one the field is absent (`omitempty`).
 */
export function buildSevSnpVmRequest(evidence: SevGuestEvidence, nonce?: Uint8Array): SevSnpVmRequest {
  const report: Record<string, string> = { SnpReport: b64url(evidence.report) };
  if (evidence.vcekCertChain) report.VcekCertChain = b64url(evidence.vcekCertChain);
  if (evidence.uvmReferenceInfo && evidence.uvmReferenceInfo.length > 0) {
    report.Endorsements = uvmEndorsements(evidence.uvmReferenceInfo);
  }
  return {
    report: b64url(JSON.stringify(report)),
    runtimeData: { data: b64url(evidence.runtimeData), dataType: 'JSON' },
    ...(nonce && nonce.length > 0 ? { nonce: b64url(nonce) } : {}),
  };
}

export interface OsIdentity {
  type: string;
  distro: string;
  versionMajor: number;
  versionMinor: number;
  build: string;
}

/** OS fields of the AzureGuest request, from /etc/os-release where there is one. */
export async function localOsIdentity(): Promise<OsIdentity> {
  const out: OsIdentity = {
    type: 'Linux',
    distro: 'Linux',
    versionMajor: 0,
    versionMinor: 0,
    build: 'NotApplication',
  };
  try {
    const text = await readFile('/etc/os-release', 'utf8');
    const value = (key: string) => new RegExp(`^${key}="?([^"\\n]*)"?$`, 'm').exec(text)?.[1];
    out.distro = value('NAME') ?? out.distro;
    const [major, minor] = (value('VERSION_ID') ?? '').split('.');
    if (major && /^\d+$/.test(major)) out.versionMajor = Number(major);
    if (minor && /^\d+$/.test(minor)) out.versionMinor = Number(minor);
  } catch {
    // not Linux, or no os-release: keep the neutral values
  }
  return out;
}

/** The HCL report's SNP report and runtime data, as the AzureGuest protocol sends them separately. */
export function splitHclReport(hcl: Uint8Array): { snpReport: Uint8Array; runtimeData: Uint8Array } {
  const view = new DataView(hcl.buffer, hcl.byteOffset, hcl.byteLength);
  if (hcl.length < 0x4d4 || view.getUint32(0, true) !== 0x414c4348) {
    throw new MalformedDataError(
      'ERR_HCL_REPORT_MALFORMED',
      'the evidence hclReport is not an HCL report (no "HCLA" header)',
    );
  }
  const size = view.getUint32(0x4c0 + 16, true);
  if (size > hcl.length - 0x4d4)
    throw new MalformedDataError('ERR_HCL_REPORT_MALFORMED', 'the HCL runtime data runs past the end of the report');
  return { snpReport: hcl.subarray(0x20, 0x20 + 1184), runtimeData: hcl.subarray(0x4d4, 0x4d4 + size) };
}

/** `POST /attest/AzureGuest` body: `{ AttestationInfo: base64url(JSON) }`. */
export function buildAzureGuestRequest(
  evidence: AzureVtpmEvidence,
  options: { nonce?: Uint8Array; os: OsIdentity },
): { AttestationInfo: string } {
  const { snpReport, runtimeData } = splitHclReport(evidence.hclReport);
  const proof: Record<string, string> = { SnpReport: b64url(snpReport) };
  if (evidence.vcekCertChain) proof.VcekCertChain = b64(evidence.vcekCertChain);
  const info = {
    AttestationProtocolVersion: '2.0',
    OSType: b64(options.os.type),
    OSDistro: b64(options.os.distro),
    OSVersionMajor: options.os.versionMajor,
    OSVersionMinor: options.os.versionMinor,
    OSBuild: b64(options.os.build),
    TcgLogs: b64(evidence.tcgLog),
    ClientPayload: options.nonce && options.nonce.length > 0 ? { nonce: b64(options.nonce) } : {},
    TpmInfo: {
      AikCert: b64(evidence.akCert),
      AikPub: b64(evidence.akPub),
      PcrQuote: b64(evidence.quote),
      PcrSignature: b64(evidence.quoteSignature),
      EncKeyPub: b64(evidence.encKeyPub),
      EncKeyCertifyInfo: b64(evidence.encKeyCertifyInfo),
      EncKeyCertifyInfoSignature: b64(evidence.encKeyCertifyInfoSignature),
      PcrSet: evidence.pcrs.map((p) => p.index),
      PCRs: evidence.pcrs.map((p) => ({ Index: p.index, Digest: b64(p.digest) })),
    },
    IsolationInfo: {
      Type: 'SevSnp',
      Evidence: {
        Proof: b64(JSON.stringify(proof)),
        RunTimeData: b64(runtimeData),
      },
    },
  };
  return { AttestationInfo: b64url(JSON.stringify(info)) };
}
