#include "tpm_device.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace cvmskr {

namespace {

OpenResult ConnectUnixSocket(const std::string& path) {
  OpenResult result;
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    result.err = ENAMETOOLONG;
    result.syscall = "connect";
    return result;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    result.err = errno;
    result.syscall = "socket";
    return result;
  }
  // A blocking connect on a local socket returns at once; switch to non-blocking afterwards.
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    result.err = errno;
    result.syscall = "connect";
    close(fd);
    return result;
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    result.err = errno;
    result.syscall = "fcntl";
    close(fd);
    return result;
  }
  result.fd = fd;
  result.is_socket = true;
  return result;
}

const char* FileTypeName(mode_t mode) {
  if (S_ISREG(mode)) return "regular file";
  if (S_ISDIR(mode)) return "directory";
  if (S_ISFIFO(mode)) return "FIFO";
  if (S_ISBLK(mode)) return "block device";
  if (S_ISLNK(mode)) return "symbolic link";
  return "file of unknown type";
}

}  // namespace

uint32_t FrameSize(const uint8_t* frame) {
  return (static_cast<uint32_t>(frame[2]) << 24) | (static_cast<uint32_t>(frame[3]) << 16) |
         (static_cast<uint32_t>(frame[4]) << 8) | static_cast<uint32_t>(frame[5]);
}

OpenResult OpenTpmPath(const std::string& path) {
  OpenResult result;
  // A first look before open(2): a directory or a read-only regular file would otherwise fail with EISDIR or
  // EACCES, which reads like "wrong permissions" rather than "not a TPM".
  struct stat st;
  if (stat(path.c_str(), &st) == 0 && !S_ISCHR(st.st_mode) && !S_ISSOCK(st.st_mode)) {
    result.not_tpm = FileTypeName(st.st_mode);
    return result;
  }
  int fd;
  do {
    fd = open(path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) {
    // The check that counts: the path may have been replaced between stat(2) and open(2), so the opened fd
    // itself must be a character device before the first write.
    if (fstat(fd, &st) != 0) {
      result.err = errno;
      result.syscall = "fstat";
      close(fd);
      return result;
    }
    if (!S_ISCHR(st.st_mode)) {
      result.not_tpm = FileTypeName(st.st_mode);
      close(fd);
      return result;
    }
    result.fd = fd;
    return result;
  }
  if (errno == ENXIO) return ConnectUnixSocket(path);
  result.err = errno;
  result.syscall = "open";
  return result;
}

// The exchange below follows the kernel's TPM character device (drivers/char/tpm/tpm-dev-common.c, torvalds/linux
// at 0010b838db9f93c74e735ee659131318e21edcfc) as much as a Unix socket (swtpm):
// - tpm_common_write() takes the whole command or fails (-EBUSY while a response is still unread, -E2BIG above
//   TPM_BUFSIZE = 4096); with O_NONBLOCK it queues the command to a kernel work item and returns at once.
// - tpm_common_poll() reports EPOLLIN once the response (or the error of the work item, as a negative length)
//   is there, EPOLLOUT otherwise; the work item wakes the poll waiters when it is done.
// - tpm_common_read() hands out the response (partial reads continue at the offset) and returns 0, not EAGAIN,
//   while none is pending; a failed command comes back as that read's error.
// A socket may take or give fewer bytes and says EAGAIN instead; the loops below cover both.

TpmDevice::TpmDevice(int fd, bool is_socket, std::string path)
    : fd_(fd), is_socket_(is_socket), path_(std::move(path)) {}

TpmDevice::~TpmDevice() {
  Wipe();
  if (fd_ >= 0) close(fd_);
}

int TpmDevice::TakeFd() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void TpmDevice::Wipe() {
  if (!tx_.empty()) std::memset(tx_.data(), 0, tx_.size());
  tx_.clear();
  if (got_ > 0) std::memset(rx_.data(), 0, got_);
  got_ = 0;
  expected_ = 0;
  written_ = 0;
}

void TpmDevice::Break(const std::string& reason) {
  broken_ = true;
  broken_reason_ = reason;
  in_exchange_ = false;
}

Step TpmDevice::Fail(IoStatus status, int err, const char* syscall, std::string detail, IoResult* failure) {
  Break(detail.empty() ? syscall : detail);
  awaiting_response_ = false;  // the device took no command, or handed out its answer or error
  Wipe();
  failure->status = status;
  failure->err = err;
  failure->syscall = syscall;
  failure->detail = std::move(detail);
  return Step::kFailed;
}

bool TpmDevice::Begin(const uint8_t* command, size_t length, IoResult* failure) {
  if (fd_ < 0) {
    failure->status = IoStatus::kClosed;
    return false;
  }
  if (broken_) {
    failure->status = IoStatus::kProtocol;
    failure->detail = "an earlier command failed mid-exchange (" + broken_reason_ +
                      "); the TPM stream is out of step, reopen the transport";
    return false;
  }
  if (rx_.size() != kMaxResponseSize) rx_.assign(kMaxResponseSize, 0);
  Wipe();
  tx_.assign(command, command + length);
  in_exchange_ = true;
  return true;
}

Step TpmDevice::Write(IoResult* failure) {
  while (written_ < tx_.size()) {
    // MSG_NOSIGNAL: a peer that died must surface as EPIPE, not as SIGPIPE in a host that does not ignore it.
    ssize_t n = is_socket_ ? send(fd_, tx_.data() + written_, tx_.size() - written_, MSG_NOSIGNAL)
                           : write(fd_, tx_.data() + written_, tx_.size() - written_);
    if (n > 0) {
      written_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Step::kAgain;
    return Fail(IoStatus::kSystem, n < 0 ? errno : EIO, "write", "", failure);
  }
  // The command is with the TPM; its bytes (they can hold a session's HMAC) are not kept.
  std::memset(tx_.data(), 0, tx_.size());
  tx_.clear();
  awaiting_response_ = true;
  return Step::kDone;
}

Step TpmDevice::Read(IoResult* failure) {
  for (;;) {
    ssize_t n = read(fd_, rx_.data() + got_, rx_.size() - got_);
    if (n > 0) {
      got_ += static_cast<size_t>(n);
      if (expected_ == 0 && got_ >= kTpmHeaderSize) {
        expected_ = FrameSize(rx_.data());
        if (expected_ < kTpmHeaderSize || expected_ > kMaxResponseSize) {
          return Fail(IoStatus::kProtocol, 0, "read",
                      "the TPM answered with a frame of invalid size " + std::to_string(expected_), failure);
        }
      }
      if (expected_ != 0 && got_ > expected_) {
        return Fail(IoStatus::kProtocol, 0, "read", "the TPM sent more bytes than its response header declares",
                    failure);
      }
      if (expected_ != 0 && got_ == expected_) {
        in_exchange_ = false;
        awaiting_response_ = false;
        return Step::kDone;
      }
      continue;
    }
    if (n == 0) {
      // A device with no response pending reads 0 (tpm_common_read); the poller calls Read() only on POLLIN, so
      // this is a spurious wake-up: wait again. Once part of a response is in, the device has handed out all
      // it had: the response is shorter than its header says.
      if (!is_socket_ && got_ == 0) return Step::kAgain;
      if (!is_socket_) {
        return Fail(IoStatus::kProtocol, 0, "read", "the TPM response is shorter than its header declares",
                    failure);
      }
      return Fail(IoStatus::kEof, 0, "read", "the TPM closed the connection", failure);
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return Step::kAgain;
    return Fail(IoStatus::kSystem, errno, "read", "", failure);
  }
}

Step TpmDevice::ReadUnsolicited(IoResult* failure) {
  uint8_t byte;
  ssize_t n;
  do {
    n = read(fd_, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Step::kAgain;
  if (n == 0 && !is_socket_) return Step::kAgain;  // a device with nothing pending (see Read)
  byte = 0;
  if (n == 0) return Fail(IoStatus::kEof, 0, "read", "the TPM closed the connection", failure);
  if (n < 0) return Fail(IoStatus::kSystem, errno, "read", "", failure);
  return Fail(IoStatus::kProtocol, 0, "read", "the TPM sent bytes with no command in flight", failure);
}

}  // namespace cvmskr
