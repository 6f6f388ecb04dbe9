// N-API glue of the cvm-skr addon. Device I/O runs in AsyncWorker::Execute on libuv worker threads and never
// touches JavaScript; everything that touches JavaScript runs on the owning thread. No static state: per-env
// data lives in the Napi::Addon instance, so the addon loads in worker_threads.
#include <napi.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <memory>
#include <string>
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

// One command travelling to the I/O thread and its result travelling back.
struct IoJob {
  uint64_t id;
  std::vector<uint8_t> command;
};

struct IoCompletion {
  uint64_t id;
  IoResult result;
};

class TpmHandle;
void DeliverCompletion(Napi::Env env, Napi::Function, TpmHandle* handle, IoCompletion* completion);
using CompletionTsfn = Napi::TypedThreadSafeFunction<TpmHandle, IoCompletion, DeliverCompletion>;

// A dedicated thread per handle rather than libuv's pool: Node waits for pool work to finish before it runs
// environment cleanup hooks, so a command stuck in poll(2) would block Worker termination until its timeout.
// This thread is ours to cancel and join from the cleanup hook.
class IoThread {
 public:
  IoThread(std::shared_ptr<TpmDevice> device, int timeout_ms, CompletionTsfn tsfn)
      : device_(std::move(device)), timeout_ms_(timeout_ms), tsfn_(tsfn), thread_([this] { Run(); }) {}

  ~IoThread() { Stop(); }

  void Submit(IoJob&& job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

  // Jobs not yet started, so their promises can be rejected on the JavaScript thread.
  std::deque<IoJob> TakeQueued() {
    std::lock_guard<std::mutex> lock(mu_);
    std::deque<IoJob> taken;
    taken.swap(queue_);
    return taken;
  }

  // Cancels the job in progress (if any) and joins the thread. Returns quickly: the device wakes on cancel.
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    device_->Cancel();
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
    for (auto& job : queue_) std::memset(job.command.data(), 0, job.command.size());
    queue_.clear();
  }

 private:
  void Run() {
    for (;;) {
      IoJob job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      auto* completion = new IoCompletion{job.id, device_->Transmit(job.command, timeout_ms_)};
      std::memset(job.command.data(), 0, job.command.size());
      if (tsfn_.NonBlockingCall(completion) != napi_ok) {
        std::memset(completion->result.response.data(), 0, completion->result.response.size());
        delete completion;
      }
    }
  }

  std::shared_ptr<TpmDevice> device_;
  int timeout_ms_;
  CompletionTsfn tsfn_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<IoJob> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
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
    device_ = *info[0].As<Napi::External<std::shared_ptr<TpmDevice>>>().Data();
    int timeout_ms = info[1].As<Napi::Number>().Int32Value();
    if (timeout_ms <= 0) timeout_ms = 30000;
    tsfn_ = CompletionTsfn::New(env, "cvm-skr:tpm-io", 0, 1, this);
    tsfn_.Unref(env);  // an idle transport does not keep the process alive
    io_ = std::make_unique<IoThread>(device_, timeout_ms, tsfn_);
    napi_add_env_cleanup_hook(env_, &TpmHandle::OnEnvCleanup, this);
    hook_registered_ = true;
  }

  // The hook holds a raw pointer to this object: it must be removed whenever the object goes first, whether or
  // not close() already tore the device down.
  ~TpmHandle() override {
    if (hook_registered_) napi_remove_env_cleanup_hook(env_, &TpmHandle::OnEnvCleanup, this);
    TearDown();
  }

  void OnCompletion(Napi::Env env, IoCompletion* completion) {
    std::unique_ptr<IoCompletion> owned(completion);
    if (waiting_.empty() || waiting_.front().first != completion->id) {
      std::memset(completion->result.response.data(), 0, completion->result.response.size());
      return;  // its promise was already rejected by close()
    }
    Napi::Promise::Deferred deferred = std::move(waiting_.front().second);
    waiting_.pop_front();
    if (completion->result.status == IoStatus::kOk) {
      deferred.Resolve(TakeBuffer(env, std::move(completion->result.response)));
    } else {
      deferred.Reject(IoResultError(env, completion->result, device_->path()));
    }
    Settle(env);
  }

 private:
  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<TpmHandle*>(arg);
    self->hook_registered_ = false;
    self->closed_ = true;
    self->TearDown();
  }

  // Stops the I/O thread and closes the fd. The thread-safe function is released last, so no completion can
  // arrive for a handle that is gone.
  void TearDown() {
    if (torn_down_) return;
    torn_down_ = true;
    io_->Stop();
    device_->Shutdown();
    tsfn_.Release();
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
    uint64_t id = next_id_++;
    if (!keep_alive_) {
      // While commands are in flight the handle must not be collected and the loop must not exit.
      keep_alive_ = true;
      tsfn_.Ref(env);
      Ref();
    }
    waiting_.emplace_back(id, std::move(deferred));
    io_->Submit(IoJob{id, std::vector<uint8_t>(bytes.Data(), bytes.Data() + length)});
    return promise;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto deferred = Napi::Promise::Deferred::New(env);
    Napi::Promise promise = deferred.Promise();
    if (torn_down_) {
      deferred.Resolve(env.Undefined());
      return promise;
    }
    closed_ = true;
    // Queued commands never started: reject them now. The one in flight is cancelled and settles through
    // OnCompletion, which then finishes the close.
    std::deque<IoJob> queued = io_->TakeQueued();
    while (!queued.empty() && !waiting_.empty() && waiting_.back().first == queued.back().id) {
      std::memset(queued.back().command.data(), 0, queued.back().command.size());
      waiting_.back().second.Reject(MakeError(env, "the transport was closed", "closed").Value());
      waiting_.pop_back();
      queued.pop_back();
    }
    close_waiters_.push_back(std::move(deferred));
    if (waiting_.empty()) {
      Settle(env);
    } else {
      device_->Cancel();
    }
    return promise;
  }

  // Called whenever a command settles: drop the keep-alive references when idle, finish a pending close.
  void Settle(Napi::Env env) {
    if (!waiting_.empty()) return;
    if (closed_ && !torn_down_) TearDown();
    if (!close_waiters_.empty()) {
      for (auto& waiter : close_waiters_) waiter.Resolve(env.Undefined());
      close_waiters_.clear();
    }
    if (keep_alive_) {
      keep_alive_ = false;
      if (!torn_down_) tsfn_.Unref(env);
      Unref();
    }
  }

  Napi::Value IsSocket(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), device_->is_socket()); }

  Napi::Value Pending(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(waiting_.size()));
  }

  napi_env env_;
  std::shared_ptr<TpmDevice> device_;
  CompletionTsfn tsfn_;
  std::unique_ptr<IoThread> io_;
  std::deque<std::pair<uint64_t, Napi::Promise::Deferred>> waiting_;
  std::vector<Napi::Promise::Deferred> close_waiters_;
  uint64_t next_id_ = 1;
  bool closed_ = false;
  bool torn_down_ = false;
  bool hook_registered_ = false;
  bool keep_alive_ = false;
};

void DeliverCompletion(Napi::Env env, Napi::Function, TpmHandle* handle, IoCompletion* completion) {
  if (env == nullptr || handle == nullptr) {  // the environment is going away: drop the result, wiped
    std::memset(completion->result.response.data(), 0, completion->result.response.size());
    delete completion;
    return;
  }
  handle->OnCompletion(env, completion);
}

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
    auto device = std::make_shared<TpmDevice>(result_.fd, result_.is_socket, path_);
    result_.fd = -1;
    try {
      Napi::Object handle = constructor_->New({Napi::External<std::shared_ptr<TpmDevice>>::New(env, &device),
                                               Napi::Number::New(env, timeout_ms_)});
      deferred_.Resolve(handle);
    } catch (const Napi::Error& error) {
      deferred_.Reject(error.Value());
    }
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
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

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
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
                             InstanceValue("supported", Napi::Boolean::New(env, true), napi_enumerable),
                             InstanceValue("TpmHandle", tpm_handle_.Value(), napi_enumerable),
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

  Napi::FunctionReference tpm_handle_;
};

}  // namespace cvmskr

using CvmSkrAddon = cvmskr::CvmSkrAddon;
NODE_API_ADDON(CvmSkrAddon)
