// POSIX side of the SEV-SNP guest device: SNP_GET_REPORT and SNP_GET_EXT_REPORT through the kernel's
// <linux/sev-guest.h> ABI. Returns raw bytes only; the report is parsed in TypeScript.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cvmskr {

struct SnpRequest {
  std::string path;
  uint8_t report_data[64];
  uint32_t vmpl = 0;
  bool extended = false;
  uint32_t certs_len = 4 * 4096;  // initial certificate buffer; grown when the host says it is too small
  int max_busy_retries = 10;
};

struct SnpResult {
  int err = 0;               // errno of the failing call, 0 on success
  const char* syscall = "";  // "open" or "ioctl"
  uint32_t fw_error = 0;     // firmware error; meaningful only when err == EIO
  uint32_t vmm_error = 0;    // hypervisor error (1 certificate buffer too small, 2 busy)
  uint32_t status = 0;       // status field of the report response
  std::string detail;
  std::vector<uint8_t> report;
  std::vector<uint8_t> certs;
};

SnpResult SnpGetReport(const SnpRequest& request);

}  // namespace cvmskr
