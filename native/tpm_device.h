// POSIX side of the TPM transport: opens a TPM character device or a Unix socket and moves one command and its
// response with non-blocking read(2)/write(2). It never waits: the caller (addon.cc) waits for readiness in the
// event loop's own poller (uv_poll) and calls Write()/Read() again when the fd is ready. No N-API, no libuv here.
#pragma once

#include <cstdint>
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
// socket with connect(2). The fd is O_CLOEXEC and non-blocking (the addon waits in libuv's poller). Anything else (a
// regular file, a directory, a FIFO, a block device) is refused with `not_tpm` set, checked with fstat(2) on
// the opened fd before anything is written, so a mistyped path never receives a TPM command.
OpenResult OpenTpmPath(const std::string& path);

// Uint32 big-endian size from a TPM header.
uint32_t FrameSize(const uint8_t* frame);

// Progress of one step of an exchange.
enum class Step { kDone, kAgain, kFailed };

// One TPM connection, one command at a time, used only from the thread that owns it (the event loop's).
class TpmDevice {
 public:
  TpmDevice(int fd, bool is_socket, std::string path);
  ~TpmDevice();
  TpmDevice(const TpmDevice&) = delete;
  TpmDevice& operator=(const TpmDevice&) = delete;

  // Takes a command (length already checked by the caller). Refused with kProtocol while broken.
  bool Begin(const uint8_t* command, size_t length, IoResult* failure);
  // Writes what is left of the command: kDone when all is written, kAgain when the fd would block.
  Step Write(IoResult* failure);
  // Reads what is there of the response: kDone when the whole frame is in (see Response()), kAgain when more
  // is to come.
  Step Read(IoResult* failure);
  // The response of the last Read() that returned kDone. Valid until Wipe().
  const uint8_t* response() const { return rx_.data(); }
  size_t response_size() const { return expected_; }
  // Zeroes the command and response bytes this exchange held: responses can carry secrets (RSA_Decrypt output).
  void Wipe();

  // Marks the stream out of step (an exchange failed half-way): later commands are refused, not mismatched.
  void Break(const std::string& reason);
  // Data or end-of-stream arrived with no command in flight.
  Step ReadUnsolicited(IoResult* failure);

  // Gives up the fd (the caller closes it); -1 when already taken.
  int TakeFd();
  bool in_exchange() const { return in_exchange_; }
  // The whole command was written and its response not yet read: a device may still be working on it.
  bool awaiting_response() const { return awaiting_response_; }

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  bool is_socket() const { return is_socket_; }

 private:
  Step Fail(IoStatus status, int err, const char* syscall, std::string detail, IoResult* failure);

  int fd_;
  bool is_socket_;
  bool broken_ = false;
  bool in_exchange_ = false;
  bool awaiting_response_ = false;
  std::string broken_reason_;
  std::string path_;
  std::vector<uint8_t> tx_;
  size_t written_ = 0;
  // Receive buffer, allocated once: sized for the largest response and wiped after every command (only the
  // bytes it held), so no response outlives its command here and no command pays for a 64 KiB allocation.
  std::vector<uint8_t> rx_;
  size_t got_ = 0;
  size_t expected_ = 0;
};

}  // namespace cvmskr
