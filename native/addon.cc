// N-API glue of the cvm-skr addon. TPM commands are written and read on the JavaScript thread with
// non-blocking I/O, waiting in the event loop's poller (see "Why the TPM I/O waits in uv_poll" below); opening
// a path and the SEV-SNP ioctl run in AsyncWorker::Execute on libuv worker threads and never touch JavaScript.
// No static state: per-env data lives in the Napi::Addon instance, so the addon loads in worker_threads.
#include <napi.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sev_guest.h"
#include "tpm_device.h"

namespace cvmskr {

namespace {

// Errors carry `kind` so TypeScript can map them onto the project's coded errors without parsing messages.
Napi::Error MakeError(Napi::Env env, const std::string& message, const char* kind) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("kind", Napi::String::New(env, kind));
  return error;
}

Napi::Error MakeSystemError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  Napi::Error error = MakeError(env, std::string(syscall) + " " + path + ": " + strerror(err), "system");
  error.Set("errno", Napi::Number::New(env, err));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.Set("path", Napi::String::New(env, path));
  return error;
}

// Settles a promise from a thread-pool completion. When the environment is shutting down (a worker thread was
// terminated while the work ran), JavaScript can no longer run and settling throws; nobody is left to receive the
// result, so the exception is dropped here rather than escaping into node-addon-api, whose attempt to rethrow it
// into a dead environment would abort the whole process. Whatever the result holds is released by destructors
// (an fd by ~TpmDevice) or by the TpmHandle's cleanup hook.
template <typename Settle>
void SettleUnlessShuttingDown(Settle&& settle) {
  try {
    settle();
  } catch (const Napi::Error&) {
  }
}

Napi::Value IoResultError(Napi::Env env, const IoResult& result, const std::string& path) {
  switch (result.status) {
    case IoStatus::kSystem:
      return MakeSystemError(env, result.err, result.syscall, path).Value();
    case IoStatus::kTimeout:
      return MakeError(env, "the TPM did not answer in time", "timeout").Value();
    case IoStatus::kCancelled:
    case IoStatus::kClosed:
      return MakeError(env, "the transport was closed", "closed").Value();
    case IoStatus::kEof:
      return MakeError(env, "the TPM closed the connection", "eof").Value();
    case IoStatus::kProtocol:
    default:
      return MakeError(env, result.detail, "protocol").Value();
  }
}

// Hands a vector's bytes to JavaScript without another copy; the vector is freed (and wiped) when the Buffer
// is collected.
Napi::Buffer<uint8_t> TakeBuffer(Napi::Env env, std::vector<uint8_t>&& bytes) {
  auto* owned = new std::vector<uint8_t>(std::move(bytes));
  return Napi::Buffer<uint8_t>::NewOrCopy(env, owned->data(), owned->size(),
                                          [](Napi::Env, uint8_t*, std::vector<uint8_t>* data) {
                                            std::memset(data->data(), 0, data->size());
                                            delete data;
                                          },
                                          owned);
}

}  // namespace

// Why the TPM I/O waits in uv_poll rather than on a thread of its own
// ---------------------------------------------------------------------
// Earlier versions ran every command on a dedicated I/O thread per handle (poll(2) there, a thread-safe
// function back): two thread wake-ups per command, which on a loaded 2-core machine cost as much as the TPM
// round trip itself (bench/transport.bench.ts). Both the kernel's TPM character device and a Unix socket take a
// non-blocking write and report the answer through poll (drivers/char/tpm/tpm-dev-common.c: tpm_common_write
// queues the command when O_NONBLOCK is set, tpm_common_poll says EPOLLIN once the response is in), so the
// command is now written from the JavaScript thread and the fd is watched by the event loop's own poller
// (uv_poll_start, the pattern of serialport/bindings-cpp src/poller.cpp). The guarantees stay:
// - the event loop never blocks on the device: every read/write is non-blocking (TpmDevice never waits);
//   closing a device fd whose command is still in the kernel waits for it (tpm_common_release flushes the
//   work item), so that close runs on a short-lived thread of its own;
// - close() rejects the command in flight and everything queued, at once;
// - terminating a Worker is immediate: an async cleanup hook stops the watch and closes the fd, and nothing
//   of ours sits in libuv's thread pool (which Node waits for before cleanup);
// - a per-command timeout is a uv_timer; it fails the command and marks the stream out of step.

class TpmHandle;

// The libuv handles of one TpmHandle. libuv finishes closing a handle on a later loop turn, so this block can
// outlive its TpmHandle; it frees itself when both close callbacks have run.
struct LoopWatch {
  uv_poll_t poll;
  uv_timer_t timer;
  TpmHandle* owner = nullptr;  // null once the owner has let go
  int open_handles = 0;
  napi_async_cleanup_hook_handle cleanup_hook = nullptr;
};

class TpmHandle : public Napi::ObjectWrap<TpmHandle> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TpmHandle",
                       {
                           InstanceMethod<&TpmHandle::Transmit>("transmit"),
                           InstanceMethod<&TpmHandle::Close>("close"),
                           InstanceAccessor<&TpmHandle::IsSocket>("isSocket"),
                           InstanceAccessor<&TpmHandle::Pending>("pending"),
                       });
  }

  explicit TpmHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TpmHandle>(info), env_(info.Env()) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !info[0].IsExternal() || !info[1].IsNumber()) {
      throw Napi::TypeError::New(env, "TpmHandle instances are created by openTpm()");
    }
    device_ = std::move(*info[0].As<Napi::External<std::unique_ptr<TpmDevice>>>().Data());
    if (!device_) throw Napi::TypeError::New(env, "TpmHandle instances are created by openTpm()");
    timeout_ms_ = info[1].As<Napi::Number>().Int32Value();
    if (timeout_ms_ <= 0) timeout_ms_ = 30000;

    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "no event loop");
    auto watch = std::make_unique<LoopWatch>();
    // epoll refuses (EPERM) an fd without a poll operation: a regular file, or a TPM device of a kernel before
    // the non-blocking interface (tpm_common_poll in tpm_fops / tpmrm_fops, Linux 4.20). Refused here, before
    // any command is written.
    int rc = uv_poll_init(loop, &watch->poll, device_->fd());
    if (rc != 0) throw MakeSystemError(env, -rc, "epoll_ctl", device_->path());
    uv_timer_init(loop, &watch->timer);
    watch->open_handles = 2;
    watch->owner = this;
    watch->poll.data = watch.get();
    watch->timer.data = watch.get();
    // The watch for readable stays on for the life of the handle: restarting it per command would cost two
    // epoll_ctl calls each time. An idle handle does not keep the process alive.
    uv_poll_start(&watch->poll, UV_READABLE, &TpmHandle::OnPollCallback);
    uv_unref(reinterpret_cast<uv_handle_t*>(&watch->poll));
    uv_unref(reinterpret_cast<uv_handle_t*>(&watch->timer));
    watch_ = watch.release();
    watched_ = UV_READABLE;
    resource_ = Napi::Persistent(Napi::Object::New(env));
    napi_async_init(env, resource_.Value(), Napi::String::New(env, "cvm-skr:tpm-io"), &async_context_);
    napi_add_async_cleanup_hook(env, &TpmHandle::OnEnvCleanup, watch_, &watch_->cleanup_hook);
  }

  ~TpmHandle() override { TearDown(); }

 private:
  static TpmHandle* OwnerOf(uv_handle_t* handle) { return static_cast<LoopWatch*>(handle->data)->owner; }

  static void OnPollCallback(uv_poll_t* poll, int status, int events) {
    if (TpmHandle* self = OwnerOf(reinterpret_cast<uv_handle_t*>(poll))) self->OnPoll(status, events);
  }

  static void OnTimerCallback(uv_timer_t* timer) {
    if (TpmHandle* self = OwnerOf(reinterpret_cast<uv_handle_t*>(timer))) self->OnTimeout();
  }

  static void OnHandleClosed(uv_handle_t* handle) {
    auto* watch = static_cast<LoopWatch*>(handle->data);
    if (--watch->open_handles > 0) return;
    // Also tells Node that an environment teardown waiting on this hook may go on.
    if (watch->cleanup_hook) napi_remove_async_cleanup_hook(watch->cleanup_hook);
    delete watch;
  }

  // Environment teardown (a Worker terminated, the process exiting): no JavaScript runs any more, so pending
  // promises are dropped; the fd is closed now and teardown waits only for the two handles to close.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* watch = static_cast<LoopWatch*>(arg);
    if (watch->owner) {
      watch->owner->closed_ = true;
      watch->owner->TearDown();
    }
  }

  // Stops the watch and timer, closes the fd, releases everything that keeps the loop or this object alive.
  void TearDown() {
    if (torn_down_) return;
    torn_down_ = true;
    closed_ = true;
    busy_ = false;
    writing_ = false;
    const bool kernel_busy = device_->awaiting_response();
    // uv_close stops the watch first: the fd leaves epoll before it is closed.
    watch_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_->poll), &TpmHandle::OnHandleClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_->timer), &TpmHandle::OnHandleClosed);
    watch_ = nullptr;
    int fd = device_->TakeFd();
    if (fd >= 0) {
      if (!device_->is_socket() && kernel_busy) {
        // tpm_common_release() flushes the command's work item: the close would wait for the TPM to finish.
        std::thread([fd] { close(fd); }).detach();
      } else {
        close(fd);
      }
    }
    device_->Wipe();
    for (auto& job : queue_) std::memset(job.command.data(), 0, job.command.size());
    if (async_context_) {
      napi_async_destroy(env_, async_context_);
      async_context_ = nullptr;
    }
    if (keep_alive_) {
      keep_alive_ = false;
      Unref();
    }
  }

  Napi::Value Transmit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    Napi::Promise promise = deferred.Promise();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      deferred.Reject(MakeError(env, "transmit() takes a Uint8Array", "invalid").Value());
      return promise;
    }
    auto bytes = info[0].As<Napi::Uint8Array>();
    size_t length = bytes.ElementLength();
    if (length < kTpmHeaderSize || length > kMaxCommandSize) {
      deferred.Reject(MakeError(env, "TPM command of " + std::to_string(length) + " bytes is outside 10.." +
                                         std::to_string(kMaxCommandSize),
                                "invalid")
                          .Value());
      return promise;
    }
    if (FrameSize(bytes.Data()) != length) {
      deferred.Reject(MakeError(env, "TPM command header size disagrees with the buffer length", "invalid").Value());
      return promise;
    }
    if (closed_) {
      deferred.Reject(MakeError(env, "the transport is closed", "closed").Value());
      return promise;
    }
    if (busy_ || !queue_.empty()) {
      queue_.push_back(Job{std::move(deferred), std::vector<uint8_t>(bytes.Data(), bytes.Data() + length)});
    } else {
      // Written now, from this thread: the write never blocks, and the answer arrives through the poll watch.
      Start(env, std::move(deferred), bytes.Data(), length);
    }
    UpdateKeepAlive();
    return promise;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    if (!torn_down_) {
      closed_ = true;
      if (current_) {
        current_->Reject(MakeError(env, "the transport was closed", "closed").Value());
        current_.reset();
      }
      for (auto& job : queue_) {
        std::memset(job.command.data(), 0, job.command.size());
        job.deferred.Reject(MakeError(env, "the transport was closed", "closed").Value());
      }
      queue_.clear();
      TearDown();
    }
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }

  // Starts queued commands until one is in flight or the queue is empty.
  void StartNext(Napi::Env env) {
    while (!busy_ && !queue_.empty() && !torn_down_) {
      Job job = std::move(queue_.front());
      queue_.pop_front();
      Start(env, std::move(job.deferred), job.command.data(), job.command.size());
      std::memset(job.command.data(), 0, job.command.size());
    }
    UpdateKeepAlive();
  }

  // Begins one command: written at once as far as the fd takes it. A command the stream refuses (closed, out
  // of step) or whose write fails is rejected here.
  void Start(Napi::Env env, Napi::Promise::Deferred deferred, const uint8_t* command, size_t length) {
    IoResult failure;
    if (!device_->Begin(command, length, &failure)) {
      deferred.Reject(IoResultError(env, failure, device_->path()));
      return;
    }
    current_.emplace(std::move(deferred));
    busy_ = true;
    uv_timer_start(&watch_->timer, &TpmHandle::OnTimerCallback, static_cast<uint64_t>(timeout_ms_), 0);
    Step step = device_->Write(&failure);
    if (step == Step::kAgain) {
      writing_ = true;
      Watch(UV_READABLE | UV_WRITABLE);
    } else if (step == Step::kFailed) {
      Fail(env, failure);
    }
  }

  void OnPoll(int status, int events) {
    IoResult failure;
    Step step = Step::kAgain;
    if (status < 0) {
      failure.status = IoStatus::kSystem;
      failure.err = -status;
      failure.syscall = "poll";
      device_->Break("poll");
      step = Step::kFailed;
    } else {
      if (writing_ && (events & UV_WRITABLE)) {
        step = device_->Write(&failure);
        if (step == Step::kDone) {
          writing_ = false;
          Watch(UV_READABLE);
          step = Step::kAgain;
        }
      }
      if (step == Step::kAgain && (events & UV_READABLE)) {
        // Bytes or end-of-stream before the command is out, or with none in flight, break the stream.
        step = busy_ && !writing_ ? device_->Read(&failure) : device_->ReadUnsolicited(&failure);
      }
    }
    if (step == Step::kAgain) return;
    if (!busy_) {  // the stream broke while idle: nothing to settle; the next command is refused
      Watch(0);
      return;
    }
    Napi::Env env(env_);
    Napi::HandleScope handle_scope(env);
    // Settling inside a callback scope runs the promise reactions right after, as for any Node I/O callback.
    Napi::CallbackScope callback_scope(env, OpenCallbackScope(env));
    if (step == Step::kDone) {
      Complete(env);
    } else {
      Fail(env, failure);
    }
    StartNext(env);
  }

  void OnTimeout() {
    if (!busy_) return;
    device_->Break("timeout");
    IoResult failure;
    failure.status = IoStatus::kTimeout;
    Napi::Env env(env_);
    Napi::HandleScope handle_scope(env);
    Napi::CallbackScope callback_scope(env, OpenCallbackScope(env));
    Fail(env, failure);
    StartNext(env);
  }

  napi_callback_scope OpenCallbackScope(Napi::Env env) {
    napi_callback_scope scope = nullptr;
    if (napi_open_callback_scope(env, resource_.Value(), async_context_, &scope) != napi_ok) {
      Napi::Error::Fatal("cvm-skr:tpm-io", "napi_open_callback_scope failed");
    }
    return scope;
  }

  void Complete(Napi::Env env) {
    uv_timer_stop(&watch_->timer);
    busy_ = false;
    // Responses can carry secrets (RSA_Decrypt output): the Buffer's bytes are wiped when it is collected.
    auto response = TakeBuffer(env, std::vector<uint8_t>(device_->response(),
                                                         device_->response() + device_->response_size()));
    device_->Wipe();
    Napi::Promise::Deferred deferred = std::move(*current_);
    current_.reset();
    deferred.Resolve(response);
  }

  // The command in flight failed; the stream is out of step (TpmDevice::Break), so the watch is no longer needed.
  void Fail(Napi::Env env, const IoResult& failure) {
    uv_timer_stop(&watch_->timer);
    busy_ = false;
    writing_ = false;
    device_->Wipe();
    Watch(0);
    Napi::Promise::Deferred deferred = std::move(*current_);
    current_.reset();
    deferred.Reject(IoResultError(env, failure, device_->path()));
  }

  void Watch(int events) {
    if (events == watched_ || torn_down_) return;
    watched_ = events;
    if (events == 0) {
      uv_poll_stop(&watch_->poll);
    } else {
      uv_poll_start(&watch_->poll, events, &TpmHandle::OnPollCallback);
    }
  }

  // While commands are queued or in flight the loop stays alive and this object is not collected.
  void UpdateKeepAlive() {
    bool want = busy_ || !queue_.empty();
    if (want == keep_alive_ || torn_down_) return;
    keep_alive_ = want;
    if (want) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&watch_->poll));
      Ref();
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&watch_->poll));
      Unref();
    }
  }

  Napi::Value IsSocket(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), device_->is_socket()); }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(queue_.size() + (busy_ ? 1 : 0)));
  }

  struct Job {
    Napi::Promise::Deferred deferred;
    std::vector<uint8_t> command;
  };

  napi_env env_;
  std::unique_ptr<TpmDevice> device_;
  LoopWatch* watch_ = nullptr;
  napi_async_context async_context_ = nullptr;
  Napi::ObjectReference resource_;  // the async resource of the callback scopes, made once
  int timeout_ms_ = 30000;
  int watched_ = 0;
  std::deque<Job> queue_;
  std::optional<Napi::Promise::Deferred> current_;
  bool busy_ = false;
  bool writing_ = false;
  bool closed_ = false;
  bool torn_down_ = false;
  bool keep_alive_ = false;
};

class OpenWorker : public Napi::AsyncWorker {
 public:
  OpenWorker(Napi::Env env, Napi::FunctionReference* constructor, std::string path, int timeout_ms)
      : Napi::AsyncWorker(env, "cvm-skr:tpm-open"),
        constructor_(constructor),
        deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)),
        timeout_ms_(timeout_ms) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { result_ = OpenTpmPath(path_); }

  void OnOK() override {
    SettleUnlessShuttingDown([this] { Settle(); });
  }

  void OnError(const Napi::Error& error) override {
    SettleUnlessShuttingDown([&] { deferred_.Reject(error.Value()); });
  }

 private:
  void Settle() {
    Napi::Env env = Env();
    if (result_.not_tpm != nullptr) {
      Napi::Error error =
          MakeError(env, path_ + " is a " + result_.not_tpm + ", not a TPM character device or Unix socket",
                    "not-tpm");
      error.Set("path", Napi::String::New(env, path_));
      error.Set("fileType", Napi::String::New(env, result_.not_tpm));
      deferred_.Reject(error.Value());
      return;
    }
    if (result_.fd < 0) {
      deferred_.Reject(MakeSystemError(env, result_.err, result_.syscall, path_).Value());
      return;
    }
    auto device = std::make_unique<TpmDevice>(result_.fd, result_.is_socket, path_);
    result_.fd = -1;
    try {
      Napi::Object handle = constructor_->New({Napi::External<std::unique_ptr<TpmDevice>>::New(env, &device),
                                               Napi::Number::New(env, timeout_ms_)});
      deferred_.Resolve(handle);
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }

  Napi::FunctionReference* constructor_;
  Napi::Promise::Deferred deferred_;
  std::string path_;
  int timeout_ms_;
  OpenResult result_;
};

class SnpReportWorker : public Napi::AsyncWorker {
 public:
  SnpReportWorker(Napi::Env env, SnpRequest request)
      : Napi::AsyncWorker(env, "cvm-skr:snp-report"),
        deferred_(Napi::Promise::Deferred::New(env)),
        request_(std::move(request)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { result_ = SnpGetReport(request_); }

  void OnOK() override {
    SettleUnlessShuttingDown([this] { Settle(); });
  }

  void OnError(const Napi::Error& error) override {
    SettleUnlessShuttingDown([&] { deferred_.Reject(error.Value()); });
  }

 private:
  void Settle() {
    Napi::Env env = Env();
    if (result_.err != 0) {
      Napi::Error error = MakeSystemError(env, result_.err, result_.syscall, request_.path);
      error.Set("firmwareError", Napi::Number::New(env, result_.fw_error));
      error.Set("vmmError", Napi::Number::New(env, result_.vmm_error));
      if (!result_.detail.empty()) error.Set("detail", Napi::String::New(env, result_.detail));
      deferred_.Reject(error.Value());
      return;
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("report", TakeBuffer(env, std::move(result_.report)));
    if (request_.extended) out.Set("certificateTable", TakeBuffer(env, std::move(result_.certs)));
    deferred_.Resolve(out);
  }

  Napi::Promise::Deferred deferred_;
  SnpRequest request_;
  SnpResult result_;
};

class CvmSkrAddon : public Napi::Addon<CvmSkrAddon> {
 public:
  CvmSkrAddon(Napi::Env env, Napi::Object exports) {
    tpm_handle_ = Napi::Persistent(TpmHandle::Define(env));
    DefineAddon(exports, {
                             InstanceMethod<&CvmSkrAddon::OpenTpm>("openTpm"),
                             InstanceMethod<&CvmSkrAddon::SnpGetReport>("snpGetReport"),
                             InstanceMethod<&CvmSkrAddon::PeerCredentials>("peerCredentials"),
                             InstanceValue("supported", Napi::Boolean::New(env, true), napi_enumerable),
                         });
  }

 private:
  // openTpm(path: string, timeoutMs: number): Promise<TpmHandle>
  Napi::Value OpenTpm(const Napi::CallbackInfo& info) {
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) {
      throw Napi::TypeError::New(info.Env(), "openTpm(path: string, timeoutMs: number)");
    }
    auto* worker = new OpenWorker(info.Env(), &tpm_handle_, info[0].As<Napi::String>().Utf8Value(),
                                  info[1].As<Napi::Number>().Int32Value());
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  // snpGetReport(path: string, reportData: Uint8Array(64), vmpl: number, extended: boolean)
  Napi::Value SnpGetReport(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
        !info[3].IsBoolean()) {
      throw Napi::TypeError::New(env, "snpGetReport(path, reportData, vmpl, extended)");
    }
    auto data = info[1].As<Napi::Uint8Array>();
    if (data.ElementLength() != 64) throw Napi::RangeError::New(env, "reportData must be exactly 64 bytes");
    uint32_t vmpl = info[2].As<Napi::Number>().Uint32Value();
    if (vmpl > 3) throw Napi::RangeError::New(env, "vmpl must be 0..3");
    SnpRequest request;
    request.path = info[0].As<Napi::String>().Utf8Value();
    std::memcpy(request.report_data, data.Data(), 64);
    request.vmpl = vmpl;
    request.extended = info[3].As<Napi::Boolean>().Value();
    auto* worker = new SnpReportWorker(env, std::move(request));
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }

  // peerCredentials(fd: number): { pid, uid, gid } of the process at the other end of a connected Unix
  // socket, as the kernel recorded them at connect() (socket(7), SO_PEERCRED): the key agent's authorization
  // needs them and Node has no API for them. Synchronous: getsockopt on a socket never blocks.
  Napi::Value PeerCredentials(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "peerCredentials(fd: number)");
    int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd < 0) throw Napi::RangeError::New(env, "fd must be a non-negative descriptor");
    struct ucred cred {};
    socklen_t length = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof(cred)) {
      throw MakeSystemError(env, errno, "getsockopt", "SO_PEERCRED");
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("pid", Napi::Number::New(env, cred.pid));
    out.Set("uid", Napi::Number::New(env, cred.uid));
    out.Set("gid", Napi::Number::New(env, cred.gid));
    return out;
  }

  Napi::FunctionReference tpm_handle_;
};

}  // namespace cvmskr

using CvmSkrAddon = cvmskr::CvmSkrAddon;
NODE_API_ADDON(CvmSkrAddon)
