/**
 * Makes a running swtpm look like an Azure confidential VM's vTPM, so the real `azure-vtpm` platform (and the
 * native transport) run against it unchanged: the AK persisted at 0x81000003, its certificate from the
 * emulated vTPM CA at NV 0x01C101D0, and at NV 0x01400001 an HCL report whose SNP report is signed by the
 * emulated VCEK and whose runtime data names the swtpm's AK as `HCLAkPub` (bound by report_data). The report
 * is kept within swtpm's 2048-byte NV index limit (no HCLEkPub). Never point this at a real TPM: it replaces
 * whatever is at those handles.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { TpmTransport } from '../../hal/types.js';
import type { SnpProduct } from '../../snp/tcb.js';
import { type AzureVtpmLayout, provisionAzureVtpmLayout } from '../../tpm/provision.js';
import type { Tpm } from '../../tpm/tpm.js';
import { EmulatedAkCa } from './ak-ca.js';
import { EmulatedAmd } from './amd.js';
import { loadOptions } from './emulated-vtpm.js';
import {
  encodeHclReport,
  encodeHclRuntimeData,
  type HclVmConfigurationJson,
  hclReportData,
} from './hcl-report.js';
import { type EvidenceKnobs, finishReport, reportFieldsFor } from './knobs.js';

export interface ProvisionSwtpmOptions {
  /** The emulated chip that signs the report; default loaded from the emulator cache. */
  amd?: EmulatedAmd;
  /** The CA that certifies the AK; default loaded from the emulator cache. */
  akCa?: EmulatedAkCa;
  product?: SnpProduct;
  rootKeyBits?: 2048 | 3072 | 4096;
  cache?: string | false;
  /** 64 bytes of user data the report carries as `user-data`. */
  userData?: Uint8Array;
  vmConfiguration?: Partial<HclVmConfigurationJson>;
  /** Bad-evidence knobs (akMismatch names a key other than the swtpm AK in the report). */
  knobs?: EvidenceKnobs;
}

export interface ProvisionedSwtpm {
  layout: AzureVtpmLayout;
  amd: EmulatedAmd;
  akCa: EmulatedAkCa;
  /** VCEK, ASK, ARK of the report's signer (what THIM would serve), PEM. */
  vcekCertChain: string;
}

export async function provisionSwtpmAsAzureVtpm(
  target: TpmTransport | Tpm,
  options: ProvisionSwtpmOptions = {},
): Promise<ProvisionedSwtpm> {
  const amd = options.amd ?? (await EmulatedAmd.load(loadOptions(options)));
  const akCa =
    options.akCa ?? (await EmulatedAkCa.load(options.cache === undefined ? {} : { cache: options.cache }));
  const knobs = options.knobs ?? {};
  let vcekCertChain = '';
  const layout = await provisionAzureVtpmLayout(target, {
    akCertDer: (ak) => akCa.issue(ak.publicKey),
    hclReport: async (ak) => {
      const built = await buildEmulatedHclReport(amd, ak.publicKey, {
        ...(options.userData ? { userData: options.userData } : {}),
        ...(options.vmConfiguration ? { vmConfiguration: options.vmConfiguration } : {}),
        knobs,
      });
      vcekCertChain = built.vcekCertChain;
      return built.hclReport;
    },
  });
  return { layout, amd, akCa, vcekCertChain };
}

export interface EmulatedHclReportOptions {
  userData?: Uint8Array;
  vmConfiguration?: Partial<HclVmConfigurationJson>;
  knobs?: EvidenceKnobs;
}

/**
 * An HCL report as the paravisor makes it for a vTPM whose AK is `akPublicKey`: runtime data naming that AK
 * (another key under the akMismatch knob), the SNP report binding the runtime data, signed by `amd`.
 */
export async function buildEmulatedHclReport(
  amd: EmulatedAmd,
  akPublicKey: KeyObject,
  options: EmulatedHclReportOptions = {},
): Promise<{ hclReport: Uint8Array; vcekCertChain: string }> {
  const knobs = options.knobs ?? {};
  const akPub = knobs.akMismatch
    ? generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey
    : akPublicKey;
  const common = { akPub, ...(options.vmConfiguration ? { vmConfiguration: options.vmConfiguration } : {}) };
  const runtimeData = encodeHclRuntimeData({
    ...common,
    ...(options.userData ? { userData: options.userData } : {}),
  });
  // Stale: the report was made before the user data changed.
  const bound = knobs.staleUserData
    ? encodeHclRuntimeData({ ...common, userData: new Uint8Array(64).fill(0xee) })
    : runtimeData;
  const snpReport = finishReport(
    await amd.signReport(reportFieldsFor(amd, knobs, hclReportData(bound))),
    knobs,
  );
  return {
    hclReport: encodeHclReport({ snpReport, runtimeData }),
    vcekCertChain: (await amd.chainFor(snpReport)) ?? '',
  };
}
