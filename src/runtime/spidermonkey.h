// What the JavaScript and WebAssembly engines share on SpiderMonkey: a JSContext per worker
// (with its interrupt callback answering the worker's UserCodeWatch), the "home" global each
// engine compiles in, giving memory back, and turning a pending exception or a stop into the
// message an invocation fails with. Only the engines include this; the pool never does.
#pragma once

#include <jsapi.h>

#include <memory>
#include <string>

#include "runtime/engine.h"

namespace nex::runtime::spidermonkey {

// Starts SpiderMonkey for the process, once; aborts if it cannot.
void init_once();

// A global's class: the engine's standard classes and nex's encoding globals are made in it
// when a script first names them.
extern const JSClass kGlobalClass;

// "file:line: Error: message" for a pending exception, and clears it.
std::string take_exception(JSContext* cx);

// A worker's JSContext: destroyed (with the thread's encoding state) when it goes.
struct ContextDeleter {
  void operator()(JSContext* cx) const;
};
using ContextPtr = std::unique_ptr<JSContext, ContextDeleter>;

// A context for the calling thread, with a heap of `memory_bytes`, bound to `host_services`;
// null if the engine cannot start.
ContextPtr new_context(size_t memory_bytes, const HostServices* host_services);

// An engine on one SpiderMonkey context. Derived engines' roots are members of theirs, so they
// go before the context does.
class SpiderMonkeyEngine : public Engine {
 public:
  void shrink() override;
  void interrupt() override;

  // The engine a context belongs to.
  static SpiderMonkeyEngine* of(JSContext* cx);
  // False once the watch stopped the user code: the interrupt callback then ends it.
  bool keep_running() const { return watch_.stop_reason() == StopReason::kRunOn; }

 protected:
  SpiderMonkeyEngine(ContextPtr cx, UserCodeWatch& watch, const FunctionLimits& limits);
  // Makes home_; false (with failure() to say why) if it cannot.
  bool make_home();
  // Why user code failed: its pending exception (cleared), or why the watch stopped it.
  std::string failure();
  // The pending exception, described in the language's terms (and cleared).
  virtual std::string describe_exception() = 0;
  // After an invocation: a collection every `collect_every` invocations, or at once after one
  // was stopped, whose memory is then handed back so the limit is not left tripped.
  void collect(bool stopped, int collect_every);

  ContextPtr context_;  // first: it outlives every root below and in derived engines
  JSContext* cx_;
  UserCodeWatch& watch_;
  const FunctionLimits limits_;
  // The worker's own global: compile errors are reported in it, JavaScript globals share its
  // GC zone, and WebAssembly runs in it.
  JS::PersistentRootedObject home_;

 private:
  int invocations_ = 0;
};

}  // namespace nex::runtime::spidermonkey
