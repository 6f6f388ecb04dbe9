/**
 * Token claims with the names and nesting of Microsoft Azure Attestation (MicrosoftDocs/azure-security-docs articles/attestation/claim-sets.md; sample tokens in
 * test/fixtures/maa-samples/).
 * SevSnpVm: the `x-ms-sevsnpvm-*` claims, `x-ms-attestation-type: sevsnpvm` and the runtime JSON as
 * `x-ms-runtime`, all at the top level. AzureGuest: `x-ms-attestation-type: azurevm` and `x-ms-azurevm-*` at
 * the top level with the transfer key in `x-ms-runtime.keys`; the SNP claims, HCL runtime data and compliance
 * status nested under `x-ms-isolation-tee`.
 */
import { createHash } from 'node:crypto';
import { toHex } from '../../snp/bytes.js';
import { bootClaims } from './boot-log.js';
import type { VerifiedAzureGuest, VerifiedSevSnpVm, VerifiedSnp } from './evidence.js';
import type { UvmEndorsementOutcome } from './uvm-endorsement.js';

export function snpClaims(snp: VerifiedSnp): Record<string, unknown> {
  const r = snp.report;
  const claims: Record<string, unknown> = {
    'x-ms-sevsnpvm-authorkeydigest': toHex(r.authorKeyDigest),
    'x-ms-sevsnpvm-bootloader-svn': snp.tcb.bootloader,
    'x-ms-sevsnpvm-familyId': toHex(r.familyId).toUpperCase(),
    'x-ms-sevsnpvm-guestsvn': r.guestSvn,
    'x-ms-sevsnpvm-hostdata': toHex(r.hostData),
    'x-ms-sevsnpvm-idkeydigest': toHex(r.idKeyDigest),
    'x-ms-sevsnpvm-imageId': toHex(r.imageId).toUpperCase(),
    'x-ms-sevsnpvm-is-debuggable': r.policy.debug,
    'x-ms-sevsnpvm-launchmeasurement': toHex(r.measurement),
    'x-ms-sevsnpvm-microcode-svn': snp.tcb.microcode,
    'x-ms-sevsnpvm-migration-allowed': r.policy.migrateMa,
    'x-ms-sevsnpvm-reportdata': toHex(r.reportData),
    'x-ms-sevsnpvm-reportid': toHex(r.reportId),
    'x-ms-sevsnpvm-smt-allowed': r.policy.smt,
    'x-ms-sevsnpvm-snpfw-svn': snp.tcb.snp,
    'x-ms-sevsnpvm-tee-svn': snp.tcb.tee,
    'x-ms-sevsnpvm-vmpl': r.vmpl,
  };
  return claims;
}

/** The default (emulated) attestation policy text; its hash is `x-ms-policy-hash`. */
export const EMULATED_POLICY_TEXT =
  'version=1.0;authorizationrules{=>permit();};issuancerules{c:[type=="x-ms-sevsnpvm-is-debuggable"]=>issue(claim=c);};';

/**
 * `x-ms-policy-hash`: BASE64URL(SHA256(UTF8(BASE64URL(UTF8(policy text))))), as MicrosoftDocs/azure-security-docs
 * articles/attestation/claim-sets.md (commit 0e19f847341f) defines it.
 */
export function policyHash(text = EMULATED_POLICY_TEXT): string {
  const encoded = Buffer.from(text, 'utf8').toString('base64url');
  return createHash('sha256').update(encoded, 'utf8').digest('base64url');
}

export function sevSnpVmClaims(
  v: VerifiedSevSnpVm,
  nonce: string | undefined,
  uvm?: UvmEndorsementOutcome,
): Record<string, unknown> {
  return {
    // The request's nonce, untransformed (MicrosoftDocs/azure-security-docs articles/attestation/claim-sets.md).
    ...(nonce === undefined ? {} : { nonce }),
    'x-ms-attestation-type': 'sevsnpvm',
    // The SevSnpVm sample token says azure-compliant-cvm (MicrosoftDocs/azure-security-docs
    // articles/attestation/attestation-token-examples.md, commit e5e04f4e090a); a request with UVM endorsements
    // gets the container values instead (uvmClaims).
    ...(uvm === undefined && v.compliant ? { 'x-ms-compliance-status': 'azure-compliant-cvm' } : {}),
    ...uvmClaims(v, uvm),
    'x-ms-policy-hash': policyHash(),
    'x-ms-runtime': v.runtimeJson,
    ...snpClaims(v.snp),
    'x-ms-ver': '1.0',
  };
}

/**
 * Container claims of a SevSnpVm request that sent UVM endorsements (uvm-endorsement.ts): a verified endorsement
 * for the report's launch measurement gives `x-ms-sevsnpvm-uvm-endorsement` (its payload) and, when the report
 * also meets the compliance rules, `x-ms-compliance-status` of its UVM product; anything else gives neither.
 */
export function uvmClaims(v: VerifiedSevSnpVm, uvm: UvmEndorsementOutcome | undefined): Record<string, unknown> {
  if (uvm === undefined || !uvm.ok) return {};
  return {
    ...(v.compliant ? { 'x-ms-compliance-status': uvm.status } : {}),
    'x-ms-sevsnpvm-uvm-endorsement': uvm.endorsement.payload,
  };
}

export interface AzureGuestOsInfo {
  osType?: string;
  osDistro?: string;
  osVersionMajor?: number;
  osVersionMinor?: number;
  osBuild?: string;
  clientPayload?: Record<string, unknown>;
}

export function azureGuestClaims(v: VerifiedAzureGuest, os: AzureGuestOsInfo): Record<string, unknown> {
  const vmConfig = v.runtimeJson['vm-configuration'] as Record<string, unknown> | undefined;
  const tee: Record<string, unknown> = {
    'x-ms-attestation-type': 'sevsnpvm',
    ...(v.compliant ? { 'x-ms-compliance-status': 'azure-compliant-cvm' } : {}),
    'x-ms-runtime': v.runtimeJson,
    ...snpClaims(v.snp),
  };
  return {
    secureboot: vmConfig?.['secure-boot'] === true,
    'x-ms-attestation-type': 'azurevm',
    'x-ms-azurevm-attestation-protocol-ver': '2.0',
    'x-ms-azurevm-attested-pcrs': v.pcrs,
    // Derived from the TCG log (boot-log.ts); absent when the client sent an empty log.
    ...(v.boot === undefined ? {} : bootClaims(v.boot)),
    'x-ms-azurevm-is-windows': (os.osType ?? '').toLowerCase() === 'windows',
    'x-ms-azurevm-ostype': os.osType ?? 'Linux',
    ...(os.osDistro === undefined ? {} : { 'x-ms-azurevm-osdistro': os.osDistro }),
    ...(os.osVersionMajor === undefined ? {} : { 'x-ms-azurevm-osversion-major': os.osVersionMajor }),
    ...(os.osVersionMinor === undefined ? {} : { 'x-ms-azurevm-osversion-minor': os.osVersionMinor }),
    ...(os.osBuild === undefined ? {} : { 'x-ms-azurevm-osbuild': os.osBuild }),
    ...(typeof vmConfig?.vmUniqueId === 'string' ? { 'x-ms-azurevm-vmid': vmConfig.vmUniqueId } : {}),
    'x-ms-isolation-tee': tee,
    'x-ms-policy-hash': policyHash(),
    'x-ms-runtime': {
      // The ClientPayload as sent, e.g. {"nonce": "MTIzNA=="} (Azure/confidential-computing-cvm-guest-attestation
      // aks-linux-sample/README.md); no top-level nonce claim on this protocol.
      ...(os.clientPayload === undefined ? {} : { 'client-payload': os.clientPayload }),
      keys: [
        {
          e: v.transferKeyJwk.e,
          key_ops: ['encrypt'],
          kid: 'TpmEphemeralEncryptionKey',
          kty: 'RSA',
          n: v.transferKeyJwk.n,
        },
      ],
    },
    'x-ms-ver': '1.0',
  };
}
