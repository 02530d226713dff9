// WASI preview1 for function workloads, as host functions on SpiderMonkey's WebAssembly: argv
// (the workload's name, then the subject), the workload's environment, stdin = the payload,
// stdout = the reply (every write, in order), stderr lines = error logs, clocks, randomness,
// proc_exit and poll_oneoff on clocks. No directories are preopened and nothing reaches the
// host's files or network: those calls fail with ENOTCAPABLE / EBADF.
#pragma once

#include <jsapi.h>

#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/engine.h"

namespace nex::runtime::wasi {

inline constexpr const char* kModule = "wasi_snapshot_preview1";

// One invocation's view of the world.
struct Invocation {
  std::vector<std::string> args;
  std::vector<std::string> environ;  // "KEY=VALUE"
  std::string_view stdin_data;
  size_t stdin_offset = 0;
  std::string stdout_data;
  std::string stderr_pending;  // an unfinished stderr line
  std::function<void(std::string_view line)> stderr_line;
  std::optional<int> exit_code;                   // set by proc_exit
  const std::atomic<StopReason>* stop = nullptr;  // not kRunOn: stop sleeping (time-out, memory)
  JS::RootedObject* memory = nullptr;             // the instance's exported memory, once known
  // The "nex" host-services imports: the last call's result (or error message), and the last
  // HTTP response's status.
  std::string host_result;
  int http_status = 0;
};

// The invocation this thread serves, if any.
Invocation* current();
// The bytes of a WebAssembly.Memory as they are now (growing replaces them): null data when the
// engine cannot tell (its error is cleared). Valid until the engine next runs or collects.
struct MemoryBytes {
  uint8_t* data = nullptr;
  size_t length = 0;
};
MemoryBytes memory_bytes(JSContext* cx, JS::HandleObject memory);

// Copies guest memory [ptr, ptr + len) into `out`; false when out of bounds.
bool read_memory(JSContext* cx, Invocation& inv, uint32_t ptr, uint32_t len, std::string& out);
// Copies `data` into guest memory at `ptr`; false when out of bounds.
bool write_memory(JSContext* cx, Invocation& inv, uint32_t ptr, std::string_view data);

// Makes `inv` the invocation this thread's host functions serve, for the scope's lifetime.
class ActiveInvocation {
 public:
  explicit ActiveInvocation(Invocation& inv);
  ~ActiveInvocation();
  ActiveInvocation(const ActiveInvocation&) = delete;
  ActiveInvocation& operator=(const ActiveInvocation&) = delete;
};

// An object with every preview1 function, for the import object's kModule entry.
JSObject* make_imports(JSContext* cx);

// Flushes a final stderr line without a newline.
void finish(Invocation& inv);

}  // namespace nex::runtime::wasi
