// POSIX side of the TPM transport: opens a TPM character device or a Unix socket and moves one command
// and its response. No N-API here, so it runs on libuv worker threads without touching JavaScript.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace cvmskr {

constexpr size_t kTpmHeaderSize = 10;
constexpr size_t kMaxCommandSize = 4096;
constexpr size_t kMaxResponseSize = 64 * 1024;

enum class IoStatus { kOk, kSystem, kTimeout, kCancelled, kClosed, kEof, kProtocol };

struct IoResult {
  IoStatus status = IoStatus::kOk;
  int err = 0;                  // errno for kSystem
  const char* syscall = "";     // failing call for kSystem
  std::string detail;           // human detail for kProtocol
  std::vector<uint8_t> response;
};

struct OpenResult {
  int fd = -1;
  bool is_socket = false;
  int err = 0;
  const char* syscall = "";
  // Set (with fd -1) when the path is neither a character device nor a Unix socket: "regular file", ...
  const char* not_tpm = nullptr;
};

// Opens `path`: a character device with open(2), or, when open(2) says ENXIO (a socket file), a Unix stream
// socket with connect(2). The fd is O_CLOEXEC and non-blocking; waits happen in poll(2). Anything else (a
// regular file, a directory, a FIFO, a block device) is refused with `not_tpm` set, checked with fstat(2) on
// the opened fd before anything is written, so a mistyped path never receives a TPM command.
OpenResult OpenTpmPath(const std::string& path);

// Uint32 big-endian size from a TPM header.
uint32_t FrameSize(const uint8_t* frame);

class TpmDevice {
 public:
  TpmDevice(int fd, bool is_socket, std::string path);
  ~TpmDevice();
  TpmDevice(const TpmDevice&) = delete;
  TpmDevice& operator=(const TpmDevice&) = delete;

  // Sends one command and reads the whole response. Serialised by a mutex; the JavaScript side also queues,
  // so the mutex is only contended by Shutdown().
  IoResult Transmit(const std::vector<uint8_t>& command, int timeout_ms);

  // Wakes any transmit in progress (it fails with kCancelled), then closes the fd. Idempotent; safe from any
  // thread; waits only for the in-progress transmit to notice the cancel event.
  void Shutdown();

  // Only wakes a transmit in progress; the fd is closed by Shutdown() or the destructor.
  void Cancel();

  const std::string& path() const { return path_; }
  bool is_socket() const { return is_socket_; }

 private:
  enum class Wait { kReady, kTimeout, kCancelled, kError };
  Wait WaitFor(short events, int64_t deadline_ms, int* err);

  std::mutex mu_;
  int fd_;
  int cancel_fd_;
  bool is_socket_;
  bool broken_ = false;  // a failed exchange leaves the stream out of step; refuse further commands
  std::string broken_reason_;
  std::string path_;
  // Receive buffer, allocated once: sized for the largest response, wiped after every command (only the bytes
  // it held), so no response outlives its command here and no command pays for a 64 KiB allocation.
  std::vector<uint8_t> rx_;
};

}  // namespace cvmskr
