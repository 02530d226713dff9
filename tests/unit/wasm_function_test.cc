// WebAssembly functions (WASI preview1 commands) on the real SpiderMonkey engine, with modules
// the test build compiles from C (clang, wasm32-wasi) and WAT (wat2wasm).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <vector>

#include "runtime/function.h"

namespace nex::runtime {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// The module's bytes; skips the test (saying why) when the test build could not make it.
#define LOAD_MODULE(var, stem)                                                                 \
  std::string var;                                                                             \
  do {                                                                                         \
    const fs::path path = fs::path(NEX_WASM_DIR) / (std::string(stem) + ".wasm");              \
    if (!fs::exists(path))                                                                     \
      GTEST_SKIP() << path << " was not built: clang with wasi-libc, or wat2wasm, is missing"; \
    std::ifstream in(path, std::ios::binary);                                                  \
    std::stringstream ss;                                                                      \
    ss << in.rdbuf();                                                                          \
    var = ss.str();                                                                            \
  } while (0)

struct Logged {
  std::mutex mu;
  std::vector<std::string> lines;
  FunctionLogger logger() {
    return [this](std::string_view level, std::string_view text) {
      std::lock_guard lock(mu);
      lines.push_back(std::string(level) + ": " + std::string(text));
    };
  }
};

std::unique_ptr<Function> make(const std::string& code, FunctionLimits limits = {},
                               FunctionLogger logger = {},
                               std::map<std::string, std::string> env = {}) {
  auto f = Function::create(
      {.language = Language::kWasm, .name = "fn.wasm", .code = code, .environment = env}, limits,
      std::move(logger));
  EXPECT_TRUE(f) << f.error().message;
  return f ? std::move(*f) : nullptr;
}

TEST(WasmFunction, TheSeedsEchoRepliesWithPayloadThenSubject) {
  LOAD_MODULE(code, "echo");
  auto f = make(code);
  ASSERT_TRUE(f);
  auto r = f->call("wasm.echo", "hello");
  ASSERT_TRUE(r.ok) << r.body;
  EXPECT_EQ(r.body, "hellowasm.echo");  // as the WebAssembly walkthrough shows
  auto again = f->call("other.subject", "");
  EXPECT_EQ(again.body, "other.subject") << "an instance's state leaked";
}

TEST(WasmFunction, WasiBasicsWorkAndTheHostIsOutOfReach) {
  LOAD_MODULE(code, "wasi_tour");
  auto f = make(code, {}, {}, {{"GREETING", "hi there"}});
  ASSERT_TRUE(f);
  auto r = f->call("tour", "");
  ASSERT_TRUE(r.ok) << r.body;
  for (const char* line :
       {"argc=2 subject=tour\n", "GREETING=hi there\n", "slept_at_least_20ms=1\n",
        "wall_clock_after_2020=1\n", "random_differs=1\n", "open_etc_passwd=refused\n"}) {
    EXPECT_NE(r.body.find(line), std::string::npos) << line << "\n" << r.body;
  }
}

TEST(WasmFunction, TrapsAndNonZeroExitsAreErrorsAndStderrIsLogged) {
  LOAD_MODULE(trap, "trap");
  auto t = make(trap);
  ASSERT_TRUE(t);
  auto r = t->call("s", "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.body, "fn.wasm trapped in function _start: unreachable executed");

  LOAD_MODULE(exit3, "exit3");
  Logged log;
  auto e = make(exit3, {}, log.logger());
  ASSERT_TRUE(e);
  auto x = e->call("s", "");
  EXPECT_FALSE(x.ok);
  EXPECT_EQ(x.body, "exited with code 3");
  std::lock_guard lock(log.mu);
  ASSERT_EQ(log.lines.size(), 1u);
  EXPECT_EQ(log.lines[0], "error: giving up");
}

// A trap names the function it happened in (by its name when the module keeps names, else by
// its export or index) and what happened, not where the engine compiled the module.
TEST(WasmFunction, ATrapSaysWhichFunctionAndWhatHappened) {
  LOAD_MODULE(divide, "divide");
  auto f = make(divide);
  ASSERT_TRUE(f);
  auto r = f->call("s", "");
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.body, "fn.wasm trapped in function divide: integer divide by zero");
}

TEST(WasmFunction, AnInfiniteLoopTimesOutAndTheFunctionKeepsServing) {
  LOAD_MODULE(code, "loop");
  auto f = make(code, {.timeout = 300ms, .concurrency = 2});
  ASSERT_TRUE(f);
  for (int i = 0; i < 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = f->call("s", "");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.body, "timed out after 300 ms");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  }
}

TEST(WasmFunction, ModulesThatAreNotWasiCommandsAreRefusedAtDeploy) {
  LOAD_MODULE(no_start, "no_start");
  auto f =
      Function::create({.language = Language::kWasm, .name = "x.wasm", .code = no_start}, {}, {});
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().message,
            "x.wasm: the module exports no _start function: build it as a WASI command "
            "(clang --target=wasm32-wasi, or cargo build --target wasm32-wasi)");
  auto garbage =
      Function::create({.language = Language::kWasm, .name = "x.wasm", .code = "not wasm"}, {}, {});
  ASSERT_FALSE(garbage);
  // What the engine found wrong, at which byte of the user's module; nothing of nex's own.
  EXPECT_EQ(garbage.error().message,
            "x.wasm is not a valid WebAssembly module: at offset 4: failed to match magic number");
}

// Memories up to 1.25 MiB are recycled between instances, larger ones are new each time; either
// way an invocation finds the memory as its module declares it, whatever the last one did.
TEST(WasmFunction, EveryInvocationFindsAFreshMemory) {
  LOAD_MODULE(small, "remembers");
  // The same module with a 4 MiB memory (64 pages, at most 80): its memory section patched.
  const std::string section("\x05\x04\x01\x01\x01\x04", 6);
  const size_t at = small.find(section);
  ASSERT_NE(at, std::string::npos);
  std::string large = small;
  large.replace(at, section.size(), std::string("\x05\x04\x01\x01\x40\x50", 6));
  for (const auto& [code, expect] : {std::pair{small, "A11"}, std::pair{large, "A1p"}}) {
    auto f = make(code, {.concurrency = 2});
    ASSERT_TRUE(f);
    // A longer subject makes the memory grow.
    for (const char* subject : {"s", "s", "grow", "s", "grow", "grow", "s"}) {
      auto r = f->call(subject, "");
      ASSERT_TRUE(r.ok) << r.body;
      EXPECT_EQ(r.body, expect) << "after a call on " << subject;
    }
    std::vector<std::promise<InvocationResult>> results(50);
    for (size_t i = 0; i < results.size(); ++i) {
      f->invoke(i % 3 ? "s" : "grow", "",
                [&p = results[i]](InvocationResult r) { p.set_value(r); });
    }
    for (auto& p : results) EXPECT_EQ(p.get_future().get().body, expect);
  }
}

TEST(WasmFunction, AOneMebibytePayloadAndAThousandParallelCalls) {
  LOAD_MODULE(code, "echo");
  auto f = make(code, {.concurrency = 4});
  ASSERT_TRUE(f);
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 31 + 7);
  auto big = f->call("b", payload);
  ASSERT_TRUE(big.ok) << big.body;
  EXPECT_TRUE(big.body == payload + "b");

  constexpr int kCalls = 1000;
  std::vector<std::promise<InvocationResult>> results(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    f->invoke("s" + std::to_string(i), std::to_string(i) + ":",
              [&results, i](InvocationResult r) { results[static_cast<size_t>(i)].set_value(r); });
  }
  for (int i = 0; i < kCalls; ++i) {
    auto r = results[static_cast<size_t>(i)].get_future().get();
    ASSERT_TRUE(r.ok) << r.body;
    EXPECT_EQ(r.body, std::to_string(i) + ":s" + std::to_string(i));
  }
}

}  // namespace
}  // namespace nex::runtime
