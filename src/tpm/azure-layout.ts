/**
 * Handles and NV indices of the Azure confidential VM vTPM, as Microsoft's client reads them (Azure/confidential-computing-cvm-guest-attestation @990f662,
 * client-library/src/Attestation/LinuxTpm/lib/Tss2Util.h: `AIK_CERT_INDEX`, `HCL_REPORT_INDEX`, `AIK_PUB_INDEX`).
 */
export const AZURE_VTPM = {
  /** HCL report: HCL header, SNP report, runtime data JSON (2048 bytes on SNP VMs, 2600 on newer ones). */
  HCL_REPORT_INDEX: 0x01400001,
  /** 64 bytes of user data; writing it makes the paravisor regenerate the HCL report with `user-data`. */
  USER_DATA_INDEX: 0x01400002,
  USER_DATA_SIZE: 64,
  /** Attestation key (RSA-2048, RSASSA SHA-256), persistent. */
  AK_HANDLE: 0x81000003,
  /** AK certificate (DER). */
  AK_CERT_INDEX: 0x01c101d0,
  EK_CERT_INDEX: 0x01c00002,
  EK_TEMPLATE_INDEX: 0x01c00004,
  EK_HANDLE: 0x81010001,
} as const;
