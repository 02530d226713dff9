// The function runtime's own cost per invocation, in-process, without NATS: what an engine pays
// for a fresh global (JavaScript) or instance (WebAssembly), the call and the collection of what
// it left, and what a thread hand-off adds.
//
//   build/bin/function_runtime_bench [--invocations N] [--only LABEL-SUBSTRING]
//
// Prints, per target, the time per invocation:
// - pipelined: N invocations queued at once to one engine (the engine never waits; this is its
//   cost per invocation, fresh global or instance included), in wall time and in the CPU time
//   of the whole process (every thread: the engine, its collector's helpers, the watchdog);
//   compare the JavaScript echo's CPU with fresh_global_bench's, the engine's own floor;
// - sequential: one invocation after another from this thread, each waiting for the previous
//   reply (adds the two thread wake-ups an invocation from NATS also pays).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>

#include "bench_support.h"
#include "runtime/function.h"

using namespace nex;
using Clock = std::chrono::steady_clock;

namespace {

struct Row {
  const char* label;
  runtime::FunctionSpec spec;
  bool warm = false;  // function_limits.isolation "workload": one global, reused
};

// A handler of the size functions are written at: helpers, string and array work, JSON out.
constexpr const char* kHandler = R"((() => {
  const decode = (bytes) => {
    let s = '';
    for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return s;
  };
  const words = (text) => text.split(/\s+/).filter((w) => w.length > 0);
  function summarize(list) {
    const counts = {};
    for (const w of list) counts[w] = (counts[w] || 0) + 1;
    return Object.keys(counts)
      .sort()
      .map((w) => ({word: w, count: counts[w]}));
  }
  function route(subject) {
    const parts = subject.split('.');
    if (parts.length < 2) throw new Error('unexpected subject ' + subject);
    return {service: parts[0], method: parts.slice(1).join('.')};
  }
  return (subject, payload) => {
    const text = decode(payload);
    const {service, method} = route(subject);
    const list = words(text);
    return {
      service,
      method,
      length: text.length,
      upper: text.toUpperCase(),
      words: summarize(list),
    };
  };
})()
)";

double us_per(Clock::duration d, int n) {
  return std::chrono::duration<double, std::micro>(d).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 20000;
  std::string only;  // measure only rows whose label contains this
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--invocations") == 0) n = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--only") == 0) only = argv[i + 1];
  }
  std::ifstream wasm_in(bench::kBinDir / "wasm" / "echo.wasm", std::ios::binary);
  if (!wasm_in) {
    std::fprintf(stderr, "%s/wasm/echo.wasm is missing: build with clang and wasi-libc installed\n",
                 bench::kBinDir.c_str());
    return 1;
  }
  const std::string wasm((std::istreambuf_iterator<char>(wasm_in)), {});
  const Row rows[] = {
      {"JavaScript echo (fresh global per call)",
       {.language = runtime::Language::kJavaScript,
        .name = "echo.js",
        .code = "(subject, payload) => payload;\n"}},
      {"JavaScript, 30-line handler (fresh global)",
       {.language = runtime::Language::kJavaScript, .name = "handler.js", .code = kHandler}},
      {"WebAssembly echo (fresh instance per call)",
       {.language = runtime::Language::kWasm, .name = "echo.wasm", .code = wasm}},
      {"JavaScript echo (warm global)",
       {.language = runtime::Language::kJavaScript,
        .name = "echo.js",
        .code = "(subject, payload) => payload;\n"},
       true},
      {"JavaScript, 30-line handler (warm global)",
       {.language = runtime::Language::kJavaScript, .name = "handler.js", .code = kHandler},
       true},
  };
  std::printf(
      "\nFunction runtime, one engine, %d invocations per measurement, payload \"hello\"\n\n", n);
  std::printf("| %-42s | pipelined (us/call) | pipelined CPU (us/call) | sequential (us/call) |\n",
              "target");
  std::printf(
      "|--------------------------------------------|---------------------|------------------------"
      "-"
      "|----------------------|\n");
  for (const Row& row : rows) {
    if (std::string_view(row.label).find(only) == std::string_view::npos) continue;
    auto f =
        runtime::Function::create(row.spec, {.concurrency = 1, .reuse_global = row.warm}, nullptr);
    if (!f) {
      std::fprintf(stderr, "%s: %s\n", row.label, f.error().message.c_str());
      return 1;
    }
    for (int i = 0; i < 500; ++i) (void)(*f)->call("bench.echo", "hello");  // warm up
    std::atomic<int> left{n}, failed{0};
    const double cpu0 = bench::process_cpu_seconds();
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) {
      (*f)->invoke("bench.echo", "hello", [&](runtime::InvocationResult r) {
        if (!r.ok) failed++;
        if (--left == 0) left.notify_all();
      });
    }
    // Waits without polling: a thread waking every 100 us costs the engine's core ~5 us a call.
    for (int l = left.load(); l > 0; l = left.load()) left.wait(l);
    const double pipelined = us_per(Clock::now() - t0, n);
    const double cpu = (bench::process_cpu_seconds() - cpu0) * 1e6 / n;
    t0 = Clock::now();
    for (int i = 0; i < n; ++i)
      if (!(*f)->call("bench.echo", "hello").ok) failed++;
    const double sequential = us_per(Clock::now() - t0, n);
    std::printf("| %-42s | %19.1f | %23.1f | %20.1f |\n", row.label, pipelined, cpu, sequential);
    if (failed.load() > 0) std::printf("  (%d invocations failed)\n", failed.load());
  }
  return 0;
}
