// Host services for functions: key-value, object store, messaging and HTTP, served by the node
// (docs/wire.md "Host services"). The runtime turns a function's call into a HostCall and
// hands it to the HostServices callback the agent provides, which asks the node and blocks for
// the answer.
//
// JavaScript sees them as this.hostServices.{kv, objectStore, messaging, http}, as Nex's seed
// documents them; WebAssembly imports them from the module "nex" (docs/host-services.md, and
// sdk/wasm/nex.h for C guests).
#pragma once

#include <jsapi.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace nex::runtime {

struct HostCall {
  std::string service;  // kv, objectstore, messaging, http
  std::string method;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HostReply {
  int code = 500;       // x-nex-hs-code: 200 on success
  std::string message;  // why it failed
  std::string body;
};

using HostServices = std::function<HostReply(const HostCall&)>;

namespace host {

// Binds the calling worker thread to `services` (null: every call fails, saying host services
// are not available).
void bind_thread(const HostServices* services);

// Gives a fresh JavaScript global its `hostServices` property, built on first use so that
// functions which never use it do not pay for it.
bool define_js(JSContext* cx, JS::HandleObject global);

inline constexpr const char* kWasmModule = "nex";
// The functions of the "nex" import module for WebAssembly.
JSObject* make_wasm_imports(JSContext* cx);

}  // namespace host
}  // namespace nex::runtime
