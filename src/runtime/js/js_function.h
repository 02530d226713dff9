// JsFunction: a JavaScript function workload on SpiderMonkey (Nex's "v8" type). The source is
// compiled once per engine, to a stencil; each invocation instantiates it in a fresh global (so
// nothing leaks between invocations) and calls the function it evaluates to with (subject, payload
// as Uint8Array). Invocations run on worker threads, each with its own engine (SpiderMonkey
// stencils cannot be shared between engines), started on demand up to `concurrency`; a worker
// prepares its next global while idle, so an invocation does not pay for it.
//
// Results: a string or any ArrayBuffer view is the reply's bytes, undefined is empty, anything
// else is JSON. A Promise (an async function) is awaited. A throw, a time-out or running out of
// memory is an error with a message; the worker stays usable.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"

namespace nex::runtime {

struct FunctionLimits {
  std::chrono::milliseconds timeout{5000};  // per invocation
  size_t memory_bytes = size_t{256} << 20;  // engine heap per worker
  int concurrency = 4;                      // invocations served at once
};

// A line the function wrote with console.log/info/warn/error/debug.
using FunctionLogger = std::function<void(std::string_view level, std::string_view text)>;

struct InvocationResult {
  bool ok = false;
  std::string body;  // the reply when ok, else the error message
};

class JsFunction {
 public:
  // Compiles `source`; kInvalidArgument with the engine's message (file:line) if it does not
  // compile or does not evaluate to a function.
  static Result<std::unique_ptr<JsFunction>> create(const std::string& name,
                                                    const std::string& source,
                                                    const FunctionLimits& limits,
                                                    FunctionLogger logger);
  ~JsFunction();

  // Runs the function; `done` is called once, on a worker thread. Never blocks on the invocation.
  void invoke(std::string subject, std::string payload, std::function<void(InvocationResult)> done);

  // Blocking convenience for tests and tools.
  InvocationResult call(std::string subject, std::string payload);

  class Impl;

 private:
  explicit JsFunction(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nex::runtime
