#include "tpm_device.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

namespace cvmskr {

namespace {

int64_t NowMs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

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

TpmDevice::TpmDevice(int fd, bool is_socket, std::string path)
    : fd_(fd), cancel_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), is_socket_(is_socket), path_(std::move(path)) {}

TpmDevice::~TpmDevice() {
  Shutdown();
  if (cancel_fd_ >= 0) close(cancel_fd_);
}

void TpmDevice::Cancel() {
  if (cancel_fd_ >= 0) {
    uint64_t one = 1;
    ssize_t ignored = write(cancel_fd_, &one, sizeof(one));
    (void)ignored;
  }
}

void TpmDevice::Shutdown() {
  Cancel();
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

TpmDevice::Wait TpmDevice::WaitFor(short events, int64_t deadline_ms, int* err) {
  for (;;) {
    int64_t remaining = deadline_ms - NowMs();
    if (remaining <= 0) return Wait::kTimeout;
    struct pollfd fds[2];
    fds[0].fd = fd_;
    fds[0].events = events;
    fds[0].revents = 0;
    fds[1].fd = cancel_fd_;
    fds[1].events = POLLIN;
    fds[1].revents = 0;
    int rc = poll(fds, cancel_fd_ >= 0 ? 2 : 1, static_cast<int>(remaining > 60000 ? 60000 : remaining));
    if (rc < 0) {
      if (errno == EINTR) continue;
      *err = errno;
      return Wait::kError;
    }
    if (rc == 0) continue;
    if (fds[1].revents & POLLIN) return Wait::kCancelled;
    // POLLHUP/POLLERR: let the following read/write report the precise error or EOF.
    if (fds[0].revents) return Wait::kReady;
  }
}

IoResult TpmDevice::Transmit(const std::vector<uint8_t>& command, int timeout_ms) {
  IoResult result;
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) {
    result.status = IoStatus::kClosed;
    return result;
  }
  if (broken_) {
    result.status = IoStatus::kProtocol;
    result.detail = "an earlier command failed mid-exchange (" + broken_reason_ +
                    "); the TPM stream is out of step, reopen the transport";
    return result;
  }
  const int64_t deadline = NowMs() + timeout_ms;
  auto fail = [&](IoStatus status, int err, const char* syscall, std::string detail) {
    broken_ = true;
    broken_reason_ = detail.empty() ? syscall : detail;
    result.status = status;
    result.err = err;
    result.syscall = syscall;
    result.detail = std::move(detail);
    return result;
  };
  auto wait_failure = [&](Wait w, int err, const char* syscall) {
    if (w == Wait::kTimeout) return fail(IoStatus::kTimeout, 0, syscall, "timeout");
    if (w == Wait::kCancelled) return fail(IoStatus::kCancelled, 0, syscall, "closed");
    return fail(IoStatus::kSystem, err, "poll", "");
  };

  size_t written = 0;
  while (written < command.size()) {
    // MSG_NOSIGNAL: a peer that died must surface as EPIPE, not as SIGPIPE in a host that does not ignore it.
    ssize_t n = is_socket_ ? send(fd_, command.data() + written, command.size() - written, MSG_NOSIGNAL)
                           : write(fd_, command.data() + written, command.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int err = 0;
      Wait w = WaitFor(POLLOUT, deadline, &err);
      if (w != Wait::kReady) return wait_failure(w, err, "write");
      continue;
    }
    return fail(IoStatus::kSystem, n < 0 ? errno : EIO, "write", "");
  }

  if (rx_.size() != kMaxResponseSize) rx_.assign(kMaxResponseSize, 0);
  std::vector<uint8_t>& buffer = rx_;
  size_t got = 0;
  size_t expected = 0;
  while (expected == 0 || got < expected) {
    ssize_t n = read(fd_, buffer.data() + got, buffer.size() - got);
    if (n > 0) {
      got += static_cast<size_t>(n);
      if (expected == 0 && got >= kTpmHeaderSize) {
        expected = FrameSize(buffer.data());
        if (expected < kTpmHeaderSize || expected > kMaxResponseSize) {
          memset(buffer.data(), 0, got);
          return fail(IoStatus::kProtocol, 0, "read",
                      "the TPM answered with a frame of invalid size " + std::to_string(expected));
        }
      }
      if (expected != 0 && got > expected) {
        memset(buffer.data(), 0, got);
        return fail(IoStatus::kProtocol, 0, "read", "the TPM sent more bytes than its response header declares");
      }
      continue;
    }
    if (n == 0) {
      memset(buffer.data(), 0, got);
      return fail(IoStatus::kEof, 0, "read", "the TPM closed the connection");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      int err = 0;
      Wait w = WaitFor(POLLIN, deadline, &err);
      if (w != Wait::kReady) {
        memset(buffer.data(), 0, got);
        return wait_failure(w, err, "read");
      }
      continue;
    }
    int err = errno;
    memset(buffer.data(), 0, got);
    return fail(IoStatus::kSystem, err, "read", "");
  }
  result.response.assign(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(expected));
  // Responses can carry secrets (RSA_Decrypt output): leave no copy behind.
  memset(buffer.data(), 0, got);
  return result;
}

}  // namespace cvmskr
