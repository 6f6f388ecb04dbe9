// Non-Linux builds: the addon loads and says the hardware backends are unsupported, so `npm install` succeeds
// and the library still runs against the emulator.
#include <napi.h>

namespace {

Napi::Value Unsupported(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  Napi::Error error = Napi::Error::New(env, "the cvm-skr device backends run on Linux only");
  error.Set("kind", Napi::String::New(env, "unsupported"));
  deferred.Reject(error.Value());
  return deferred.Promise();
}

Napi::Value PeerCredentialsUnsupported(const Napi::CallbackInfo& info) {
  Napi::Error error = Napi::Error::New(info.Env(), "peer credentials (SO_PEERCRED) are read on Linux only");
  error.Set("kind", Napi::String::New(info.Env(), "unsupported"));
  throw error;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", Napi::Boolean::New(env, false));
  exports.Set("openTpm", Napi::Function::New(env, Unsupported, "openTpm"));
  exports.Set("snpGetReport", Napi::Function::New(env, Unsupported, "snpGetReport"));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentialsUnsupported, "peerCredentials"));
  return exports;
}

}  // namespace

NODE_API_MODULE(cvm_skr, Init)
