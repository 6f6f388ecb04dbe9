#include "sev_guest.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sev-guest.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#ifndef SNP_GUEST_VMM_ERR_INVALID_LEN
#define SNP_GUEST_VMM_ERR_INVALID_LEN 1
#endif
#ifndef SNP_GUEST_VMM_ERR_BUSY
#define SNP_GUEST_VMM_ERR_BUSY 2
#endif

namespace cvmskr {

namespace {

constexpr uint32_t kReportSize = 1184;
constexpr uint32_t kResponseHeader = 32;
constexpr uint32_t kMaxCertsLen = 16 * 1024 * 1024;
constexpr uint32_t kPageSize = 4096;

void SleepMs(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

uint32_t ReadLe32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

}  // namespace

SnpResult SnpGetReport(const SnpRequest& request) {
  SnpResult result;
  int fd;
  do {
    fd = open(request.path.c_str(), O_RDWR | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    result.err = errno;
    result.syscall = "open";
    return result;
  }

  struct snp_ext_report_req ext;
  memset(&ext, 0, sizeof(ext));
  memcpy(ext.data.user_data, request.report_data, sizeof(ext.data.user_data));
  ext.data.vmpl = request.vmpl;

  struct snp_report_resp resp;
  uint32_t certs_len = request.certs_len;
  if (certs_len % kPageSize != 0) certs_len += kPageSize - certs_len % kPageSize;
  std::vector<uint8_t> certs;
  int busy_retries = 0;
  int grow_retries = 0;

  for (;;) {
    memset(&resp, 0, sizeof(resp));
    struct snp_guest_request_ioctl io;
    memset(&io, 0, sizeof(io));
    io.msg_version = 1;
    io.resp_data = reinterpret_cast<uint64_t>(&resp);
    unsigned long cmd;
    if (request.extended) {
      certs.assign(certs_len, 0);
      ext.certs_address = reinterpret_cast<uint64_t>(certs.data());
      ext.certs_len = certs_len;
      io.req_data = reinterpret_cast<uint64_t>(&ext);
      cmd = SNP_GET_EXT_REPORT;
    } else {
      io.req_data = reinterpret_cast<uint64_t>(&ext.data);
      cmd = SNP_GET_REPORT;
    }
    int rc = ioctl(fd, cmd, &io);
    if (rc == 0) break;
    int err = errno;
    if (err == EINTR) continue;
    uint32_t vmm_error = static_cast<uint32_t>(io.exitinfo2 >> 32);
    uint32_t fw_error = static_cast<uint32_t>(io.exitinfo2 & 0xffffffffu);
    if ((vmm_error == SNP_GUEST_VMM_ERR_BUSY || err == EAGAIN) && busy_retries < request.max_busy_retries) {
      SleepMs(10 << (busy_retries < 6 ? busy_retries : 6));
      ++busy_retries;
      continue;
    }
    if (request.extended && vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN && grow_retries < 3 &&
        ext.certs_len > certs_len && ext.certs_len <= kMaxCertsLen) {
      certs_len = ext.certs_len;
      if (certs_len % kPageSize != 0) certs_len += kPageSize - certs_len % kPageSize;
      ++grow_retries;
      continue;
    }
    result.err = err;
    result.syscall = "ioctl";
    result.vmm_error = vmm_error;
    result.fw_error = err == EIO ? fw_error : 0;
    close(fd);
    return result;
  }
  close(fd);

  result.status = ReadLe32(resp.data);
  uint32_t report_size = ReadLe32(resp.data + 4);
  if (result.status != 0) {
    result.detail = "the firmware answered the report request with status " + std::to_string(result.status);
    result.err = EIO;
    result.syscall = "ioctl";
    return result;
  }
  if (report_size < kReportSize || report_size > sizeof(resp.data) - kResponseHeader) {
    result.detail = "the firmware returned a report of " + std::to_string(report_size) + " bytes";
    result.err = EIO;
    result.syscall = "ioctl";
    return result;
  }
  result.report.assign(resp.data + kResponseHeader, resp.data + kResponseHeader + report_size);
  if (request.extended) result.certs = std::move(certs);
  return result;
}

}  // namespace cvmskr
