// Engine: what runs a function's code on one worker thread. The worker pool (worker_pool.h) owns
// the threads, the invocations, the deadlines and the memory watch; an engine owns everything
// about one language: its interpreter, compiling the code, running one invocation, giving
// memory back. The pool knows engines only through this interface.
//
// Engines: JavaScript (js_engine.cc) and WebAssembly (wasm_engine.cc), both on SpiderMonkey
// (spidermonkey.h). A third engine is one new file that defines its EngineFactory and a
// function making it, plus one line in kEngines in engine.cc (and its value in Language,
// function.h).
#pragma once

#include <atomic>
#include <memory>

#include "core/error.h"
#include "runtime/function.h"

namespace nex::runtime {

// Why a worker's user code is being stopped.
enum class StopReason { kRunOn, kTimedOut, kOutOfMemory, kShuttingDown };

// A worker's watch over the user code it runs, kept by the pool. The engine runs user code
// through guarded(), which puts it under the deadline and the memory limit; when either trips,
// the pool sets stop_reason() and calls Engine::interrupt(), and the engine ends the code.
class UserCodeWatch {
 public:
  template <typename F>
  bool guarded(F&& body) {
    enter();
    const bool ok = body();
    leave();
    return ok;
  }
  StopReason stop_reason() const { return stop_.load(); }
  // For code that waits on its own (WASI's poll_oneoff): it stops waiting once this is set.
  const std::atomic<StopReason>* stop_flag() const { return &stop_; }

 protected:
  ~UserCodeWatch() = default;
  virtual void enter() = 0;  // resets the stop reason and starts the deadline
  virtual void leave() = 0;
  std::atomic<StopReason> stop_{StopReason::kRunOn};
};

// One worker's engine. Made, used and destroyed on that worker's thread, except interrupt().
class Engine {
 public:
  virtual ~Engine() = default;
  // Compiles the function's code in this engine (compiled code is not shared between engines):
  // kInvalidArgument with the engine's message. The first worker's verdict is the deploy's.
  virtual Status compile() = 0;
  // Called while idle, before the worker waits for its next invocation.
  virtual void prepare() {}
  // Runs one invocation; a throw, trap, time-out or memory overrun is a result, not a failure.
  virtual InvocationResult run(const Invocation& job) = 0;
  // After each invocation was answered: `stopped` when the watch stopped it midway.
  virtual void finish(bool stopped) = 0;
  // Idle for a while: gives spare memory back.
  virtual void shrink() = 0;
  // Asks the user code running now to stop. Called from the pool's watchdog thread.
  virtual void interrupt() = 0;
};

// Makes a function's engines, one per worker, from its code and settings.
class EngineFactory {
 public:
  virtual ~EngineFactory() = default;
  // An engine for the calling worker thread, which it stays on; kInternal if it cannot start.
  virtual Result<std::unique_ptr<Engine>> new_engine(UserCodeWatch& watch) = 0;
};

// The factory for spec.language (see kEngines in engine.cc).
Result<std::unique_ptr<EngineFactory>> make_engine_factory(const FunctionSpec& spec,
                                                           const FunctionLimits& limits,
                                                           FunctionLogger logger);

}  // namespace nex::runtime
