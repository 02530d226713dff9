// Function: a function workload on SpiderMonkey, JavaScript (Nex's "v8" type) or WebAssembly.
// Invocations run on worker threads (worker_pool.h), each with its own engine (engine.h:
// SpiderMonkey's compiled code cannot be shared between engines), started on demand up to
// `concurrency`; the code is compiled once per engine.
//
// JavaScript: each invocation instantiates the compiled script in a fresh global (so nothing
// leaks between invocations; the worker prepares it while idle; FunctionLimits::reuse_global
// keeps one per engine instead) and calls the function it
// evaluates to with (subject, payload as Uint8Array). A string or any ArrayBuffer view is the
// reply's bytes, undefined is empty, anything else is JSON; a Promise is awaited.
//
// WebAssembly: a WASI preview1 command module (see wasi.h); each invocation is a fresh instance
// with a memory as the module declares it (small memories are recycled, zeroed, rather than
// mapped anew: see wasm_binary.h).
//
// A throw, a trap, a non-zero exit, a time-out or running out of memory is an error with a
// message; the worker stays usable.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/error.h"
#include "runtime/host_services.h"

namespace nex::runtime {

int default_concurrency();

struct FunctionLimits {
  std::chrono::milliseconds timeout{5000};  // per invocation (api::kDefaultFunctionTimeoutMs)
  size_t memory_bytes = size_t{256} << 20;  // engine heap per worker
  // Invocations served at once (one engine each): as many as the host has cores, at most 4.
  // More engines than cores add memory, not throughput, unless invocations wait (sleep).
  int concurrency = default_concurrency();
  // An engine beyond the first that has had no work for this long (after giving back its spare
  // memory, a second into idleness) retires, and its memory goes back with it.
  std::chrono::milliseconds idle_engine_lifetime{30000};
  // JavaScript, opt-in (function_limits.isolation "workload"): each engine keeps one global for
  // every invocation it runs, with the built-ins (Object, Array, ... and their prototypes)
  // frozen before the script runs. What the script keeps in its own variables or on the global
  // persists between invocations, as in Cloudflare Workers; a throw keeps it, a time-out or
  // running out of memory starts a fresh global.
  bool reuse_global = false;
};

// A line the function wrote with console.log/info/warn/error/debug.
using FunctionLogger = std::function<void(std::string_view level, std::string_view text)>;

struct InvocationResult {
  bool ok = false;
  std::string body;  // the reply when ok, else the error message
};

// The error an invocation gets when its function stops before running it.
inline constexpr const char* kFunctionStopped = "the function was stopped";

// One invocation: `done` is called once, on a worker thread, with its result.
struct Invocation {
  std::string subject;
  std::string payload;
  std::function<void(InvocationResult)> done;
};

// Where a function's workers take their invocations from. Without one, the function has its
// own queue, fed by invoke(); with one (the agent's trigger subscription), a worker takes each
// invocation where it arrived, with no thread in between to hand it on.
class InvocationSource {
 public:
  enum class Next { kInvocation, kTimeout, kClosed };
  virtual ~InvocationSource() = default;
  // Waits up to `wait` for the next invocation. Called by several workers at once; kClosed
  // once closed and what had arrived before was taken, or once nothing can arrive any more.
  virtual Next next(std::chrono::milliseconds wait, Invocation& out) = 0;
  // Invocations that arrived and wait for a worker: the function adds an engine, up to its
  // limit, when more wait than there are idle workers.
  virtual size_t backlog() = 0;
  // No more invocations arrive; a worker waiting in next() returns once none is left. The
  // function answers those left with an error.
  virtual void close() = 0;
};

// A queue of invocations: a function's own, fed by invoke(), or any other feeder's.
// What was pushed before close() still comes out of next(); a push after it is answered at once
// with an error.
class InvocationQueue final : public InvocationSource {
 public:
  void push(Invocation invocation);
  Next next(std::chrono::milliseconds wait, Invocation& out) override;
  size_t backlog() override;
  void close() override;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Invocation> queue_;
  bool closed_ = false;
};

// The engine that runs a function's code (engine.h; kEngines in engine.cc maps each to its
// engine).
enum class Language { kJavaScript, kWasm };

class WorkerPool;

struct FunctionSpec {
  Language language = Language::kJavaScript;
  std::string name;  // JavaScript: the file name in error messages; WebAssembly: argv[0]
  std::string code;  // JavaScript source or WebAssembly module bytes
  std::map<std::string, std::string> environment;  // WebAssembly's environ
  HostServices host_services;  // what this.hostServices and the "nex" imports call; may be empty
};

class Function {
 public:
  // Compiles the code; kInvalidArgument with the engine's message (file:line) if it does not
  // compile, does not evaluate to a function (JavaScript) or is not a WASI command that needs
  // only what nex provides (WebAssembly).
  // With a `source`, the workers take their invocations from it (and invoke() is refused);
  // the function closes it when it is destroyed, before it stops its workers.
  static Result<std::unique_ptr<Function>> create(
      const FunctionSpec& spec, const FunctionLimits& limits, FunctionLogger logger,
      std::unique_ptr<InvocationSource> source = nullptr);
  ~Function();

  // Runs the function; `done` is called once, on a worker thread. Never blocks on the invocation.
  void invoke(std::string subject, std::string payload, std::function<void(InvocationResult)> done);

  // Blocking convenience for tests and tools.
  InvocationResult call(std::string subject, std::string payload);

  // Engines (workers) alive: one when idle, up to the concurrency limit under load.
  int engines() const;

 private:
  explicit Function(std::unique_ptr<WorkerPool> pool);
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace nex::runtime
