// JavaScript functions on the real SpiderMonkey engine: the seed's echo, fresh globals, return
// types, errors, limits (time, memory) and many invocations at once.
#include "runtime/function.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace nex::runtime {
namespace {

using namespace std::chrono_literals;

struct Logged {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> lines;
  FunctionLogger logger() {
    return [this](std::string_view level, std::string_view text) {
      std::lock_guard lock(mu);
      lines.emplace_back(level, text);
    };
  }
};

std::unique_ptr<Function> make(const std::string& source, FunctionLimits limits = {},
                               FunctionLogger logger = {}) {
  auto f = Function::create({.name = "test.js", .code = source}, limits, std::move(logger));
  EXPECT_TRUE(f) << f.error().message;
  return f ? std::move(*f) : nullptr;
}

TEST(JavaScriptFunction, TheSeedsEchoRepliesWithThePayloadAndLogsTheSubject) {
  Logged log;
  auto f = make("(subject, payload) => {\n  console.log(subject);\n  return payload;\n};", {},
                log.logger());
  ASSERT_TRUE(f);
  for (int i = 0; i < 2; ++i) {  // each invocation's fresh global has its console
    auto r = f->call("js.echo", "heya");
    ASSERT_TRUE(r.ok) << r.body;
    EXPECT_EQ(r.body, "heya");
  }
  std::lock_guard lock(log.mu);
  ASSERT_EQ(log.lines.size(), 2u);
  for (const auto& [level, text] : log.lines) {
    EXPECT_EQ(level, "info");
    EXPECT_EQ(text, "js.echo");
  }
}

TEST(JavaScriptFunction, ConsoleMethodsLogAtTheirLevels) {
  Logged log;
  auto f = make(
      "(s, p) => { console.info('i'); console.warn('w', 2); console.error({e: 1});\n"
      "  console.debug('d'); return ''; }",
      {}, log.logger());
  ASSERT_TRUE(f);
  ASSERT_TRUE(f->call("s", "").ok);
  std::lock_guard lock(log.mu);
  const std::vector<std::pair<std::string, std::string>> want = {
      {"info", "i"}, {"warn", "w 2"}, {"error", "{\"e\":1}"}, {"debug", "d"}};
  EXPECT_EQ(log.lines, want);
}

TEST(JavaScriptFunction, ReturnValuesBecomeBytes) {
  struct Case {
    const char* source;
    std::string expect;
  };
  for (const Case& c : std::vector<Case>{
           {"(s, p) => 'héllo ' + s", "héllo x.y"},
           {"(s, p) => ({n: p.length, ok: true})", "{\"n\":3,\"ok\":true}"},
           {"(s, p) => [1, 'two']", "[1,\"two\"]"},
           {"(s, p) => 42", "42"},
           {"(s, p) => undefined", ""},
           {"(s, p) => new Uint8Array([104, 105])", "hi"},
           {"(s, p) => p.subarray(1)", "bc"},
           {"async (s, p) => { await null; return 'later'; }", "later"},
       }) {
    auto f = make(c.source);
    ASSERT_TRUE(f);
    auto r = f->call("x.y", "abc");
    EXPECT_TRUE(r.ok) << c.source << ": " << r.body;
    EXPECT_EQ(r.body, c.expect) << c.source;
  }
}

TEST(JavaScriptFunction, EveryInvocationGetsAFreshGlobal) {
  auto f = make(
      "(s, p) => { const before = typeof [].extra + typeof console.extra;\n"
      "Array.prototype.extra = 1; console.extra = 1;\n"
      "globalThis.count = (globalThis.count || 0) + 1; return String(globalThis.count) + before; "
      "}");
  ASSERT_TRUE(f);
  for (int i = 0; i < 20; ++i) {
    auto r = f->call("s", "");
    ASSERT_TRUE(r.ok) << r.body;
    EXPECT_EQ(r.body, "1undefinedundefined") << "state leaked into invocation " << i;
  }
}

TEST(JavaScriptFunction, AFunctionFindsNoWayOutOfItsGlobal) {
  // What a script would reach for to touch the host: none of it exists in a function's global.
  auto f = make(
      "(s, p) => ['require', 'process', 'os', 'load', 'read', 'readFile', 'snarf', 'evaluate',\n"
      "  'fetch', 'XMLHttpRequest', 'WebSocket', 'Deno', 'Bun', 'import', 'quit', 'system',\n"
      "  'setTimeout', 'SharedArrayBuffer', 'Atomics']\n"
      "  .filter(name => typeof globalThis[name] !== 'undefined').join(',')");
  ASSERT_TRUE(f);
  auto r = f->call("s", "");
  ASSERT_TRUE(r.ok) << r.body;
  EXPECT_EQ(r.body, "") << "reachable from a function: " << r.body;
  // The one door out is hostServices, which only asks the node (here: no node at all).
  auto host = make(
      "(s, p) => { try { this.hostServices.kv.get('k'); return 'reached'; }\n"
      "  catch (e) { return String(e.message); } }");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->call("s", "").body, "hostServices.kv.get: host services are not available here");
  auto eval_escape =
      make("(s, p) => { try { return String(eval('typeof os')); } catch (e) { return 'threw'; } }");
  ASSERT_TRUE(eval_escape);
  EXPECT_EQ(eval_escape->call("s", "").body, "undefined");
  auto import_escape = make(
      "async (s, p) => { try { await import('fs'); return 'imported'; } catch (e) { return "
      "'refused'; } }");
  ASSERT_TRUE(import_escape);
  EXPECT_EQ(import_escape->call("s", "").body, "refused");
}

TEST(JavaScriptFunction, ThrownErrorsAndRejectionsAreErrorReplies) {
  auto f = make("(s, p) => {\n  if (s === 'bad') throw new Error('boom');\n  return 'fine';\n}");
  ASSERT_TRUE(f);
  auto r = f->call("bad", "");
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.body.find("Error: boom"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("test.js:2"), std::string::npos) << r.body;
  EXPECT_TRUE(f->call("good", "").ok) << "an error does not break the function";

  auto rejected = make("async (s, p) => { throw new TypeError('nope'); }");
  ASSERT_TRUE(rejected);
  auto rr = rejected->call("s", "");
  EXPECT_FALSE(rr.ok);
  EXPECT_NE(rr.body.find("TypeError: nope"), std::string::npos) << rr.body;

  auto never = make("(s, p) => new Promise(() => {})");
  ASSERT_TRUE(never);
  auto nr = never->call("s", "");
  EXPECT_FALSE(nr.ok);
  EXPECT_NE(nr.body.find("never settled"), std::string::npos) << nr.body;
}

TEST(JavaScriptFunction, SourceThatIsNotAFunctionIsRefusedAtDeploy) {
  auto syntax = Function::create({.name = "broken.js", .code = "(s, p) => {"}, {}, {});
  ASSERT_FALSE(syntax);
  EXPECT_NE(syntax.error().message.find("broken.js:1"), std::string::npos)
      << syntax.error().message;
  EXPECT_NE(syntax.error().message.find("SyntaxError"), std::string::npos)
      << syntax.error().message;
  auto value = Function::create({.name = "value.js", .code = "42"}, {}, {});
  ASSERT_FALSE(value);
  EXPECT_NE(value.error().message.find("must evaluate to a function"), std::string::npos);
  auto throws =
      Function::create({.name = "throws.js", .code = "throw new Error('at load')"}, {}, {});
  ASSERT_FALSE(throws);
  EXPECT_NE(throws.error().message.find("at load"), std::string::npos);
}

TEST(JavaScriptFunction, AnInfiniteLoopTimesOutAndTheFunctionKeepsServing) {
  auto f = make("(s, p) => { if (s === 'loop') for (;;) {} return 'ok'; }",
                {.timeout = 300ms, .concurrency = 2});
  ASSERT_TRUE(f);
  const auto start = std::chrono::steady_clock::now();
  auto r = f->call("loop", "");
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.body.find("timed out after 300 ms"), std::string::npos) << r.body;
  EXPECT_LT(took, 2s);
  auto ok = f->call("fine", "");
  EXPECT_TRUE(ok.ok) << ok.body;
  EXPECT_EQ(ok.body, "ok");
}

TEST(JavaScriptFunction, ARunawayInvocationDoesNotBlockOthers) {
  auto f = make("(s, p) => { if (s === 'loop') for (;;) {} return s; }",
                {.timeout = 2000ms, .concurrency = 2});
  ASSERT_TRUE(f);
  std::promise<InvocationResult> looped;
  f->invoke("loop", "", [&](InvocationResult r) { looped.set_value(std::move(r)); });
  const auto start = std::chrono::steady_clock::now();
  auto r = f->call("quick", "");
  EXPECT_TRUE(r.ok) << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << "waited for the runaway";
  EXPECT_FALSE(looped.get_future().get().ok);
}

// Engines are added under load, up to the limit, and the extra ones retire once idle: their
// memory goes back. One always stays, and the function grows again at the next burst.
TEST(JavaScriptFunction, ExtraEnginesRetireWhenIdleAndComeBackUnderLoad) {
  auto f = make("(s, p) => { const t = Date.now(); while (Date.now() - t < 300) {} return s; }",
                {.concurrency = 3, .idle_engine_lifetime = 200ms});
  ASSERT_TRUE(f);
  auto burst = [&] {
    std::vector<std::promise<InvocationResult>> results(6);
    for (auto& p : results) f->invoke("b", "", [&p](InvocationResult r) { p.set_value(r); });
    for (auto& p : results) EXPECT_EQ(p.get_future().get().body, "b");
  };
  burst();
  EXPECT_EQ(f->engines(), 3);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (f->engines() > 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(f->engines(), 1) << "the extra engines did not retire";
  std::this_thread::sleep_for(1500ms);  // past another idle period: the last one stays
  EXPECT_EQ(f->engines(), 1);
  burst();
  EXPECT_EQ(f->engines(), 3);
}

TEST(JavaScriptFunction, WithASourceARunawayInvocationStillDoesNotBlockOthers) {
  // Fed by the test, as the agent's trigger source is by NATS: the function sees arrivals only
  // through backlog().
  auto source = std::make_unique<InvocationQueue>();
  InvocationQueue* feed = source.get();
  auto f = Function::create(
      {.name = "test.js", .code = "(s) => { if (s === 'loop') for (;;) {} return s; }"},
      {.timeout = 2000ms, .concurrency = 2}, {}, std::move(source));
  ASSERT_TRUE(f) << f.error().message;
  EXPECT_EQ((*f)->call("direct", "").body,
            "this function takes its invocations from its trigger subscription");
  std::promise<InvocationResult> looped, quick;
  feed->push({"loop", "", [&](InvocationResult r) { looped.set_value(std::move(r)); }});
  std::this_thread::sleep_for(100ms);  // the only engine is busy
  const auto start = std::chrono::steady_clock::now();
  feed->push({"quick", "", [&](InvocationResult r) { quick.set_value(std::move(r)); }});
  auto r = quick.get_future().get();
  EXPECT_EQ(r.body, "quick");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1500ms) << "waited for the runaway";
  EXPECT_EQ((*f)->engines(), 2);
  EXPECT_FALSE(looped.get_future().get().ok);
}

TEST(JavaScriptFunction, UnboundedAllocationIsAMemoryError) {
  auto f = make(
      "(s, p) => { if (s === 'hog') { const a = []; for (;;) a.push(new Array(100000).fill(1.5)); "
      "} return 'ok'; }",
      {.timeout = 20000ms, .memory_bytes = size_t{256} << 20, .concurrency = 1});
  ASSERT_TRUE(f);
  auto r = f->call("hog", "");
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.body.find("memory") != std::string::npos) << r.body;
  auto ok = f->call("fine", "");
  EXPECT_TRUE(ok.ok) << ok.body;
}

TEST(JavaScriptFunction, AOneMebibytePayloadRoundTrips) {
  auto f = make("(s, p) => p");
  ASSERT_TRUE(f);
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7);
  auto r = f->call("big", payload);
  ASSERT_TRUE(r.ok) << r.body;
  EXPECT_EQ(r.body, payload);
}

TEST(JavaScriptFunction, AThousandInvocationsInParallelAllAnswerCorrectly) {
  constexpr int kCalls = 1000;
  // Declared before the function, so it outlives it: a failed assertion below returns while
  // invocations may still be answering into it.
  std::vector<std::promise<InvocationResult>> results(kCalls);
  auto f = make("(s, p) => s + ':' + p.length", {.concurrency = 4});
  ASSERT_TRUE(f);
  for (int i = 0; i < kCalls; ++i) {
    f->invoke("call." + std::to_string(i), std::string(static_cast<size_t>(i), 'x'),
              [&results, i](InvocationResult r) { results[static_cast<size_t>(i)].set_value(r); });
  }
  for (int i = 0; i < kCalls; ++i) {
    auto r = results[static_cast<size_t>(i)].get_future().get();
    ASSERT_TRUE(r.ok) << r.body;
    EXPECT_EQ(r.body, "call." + std::to_string(i) + ":" + std::to_string(i));
  }
}

}  // namespace
}  // namespace nex::runtime

namespace nex::runtime {
namespace {

// function_limits.isolation "workload": one global per engine, built-ins frozen.
FunctionLimits warm(int concurrency = 1) {
  FunctionLimits l;
  l.reuse_global = true;
  l.concurrency = concurrency;
  return l;
}

TEST(JavaScriptFunctionWarm, StateKeptByTheScriptPersistsBetweenInvocations) {
  const std::string counter = "let n = 0;\n(s, p) => String(++n)";
  auto f = make(counter, warm());
  ASSERT_TRUE(f);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(f->call("s", "").body, std::to_string(i));
  // The default still gives each invocation a fresh global.
  auto fresh = make(counter);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->call("s", "").body, "1");
  EXPECT_EQ(fresh->call("s", "").body, "1");
}

TEST(JavaScriptFunctionWarm, BuiltInsAreFrozenSoNoInvocationChangesThemForTheNext) {
  auto f = make(
      "(s, p) => {\n"
      "  if (s === 'tamper') {\n"
      "    Array.prototype.x = 1; JSON.parse = () => 'evil'; Object.prototype.polluted = true;\n"
      "    try { Array = null; } catch (e) {}\n"
      "    return 'tampered';\n"
      "  }\n"
      "  if (s === 'strict') { 'use strict'; return (() => { 'use strict';\n"
      "    try { Array.prototype.y = 1; return 'assigned'; } catch (e) { return e.name; } })(); }\n"
      "  return JSON.stringify([[].x, JSON.parse('1'), ({}).polluted, typeof Array]);\n"
      "}",
      warm());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->call("tamper", "").body, "tampered");
  EXPECT_EQ(f->call("check", "").body, R"([null,1,null,"function"])");
  EXPECT_EQ(f->call("strict", "").body, "TypeError");
}

TEST(JavaScriptFunctionWarm, AThrowDoesNotBreakTheNextInvocationNorLoseState) {
  auto f = make(
      "let n = 0;\n(s, p) => { n++; if (s === 'boom') throw new Error('boom ' + n);\n"
      "  return String(n); }",
      warm());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->call("a", "").body, "1");
  auto thrown = f->call("boom", "");
  EXPECT_FALSE(thrown.ok);
  EXPECT_NE(thrown.body.find("boom 2"), std::string::npos) << thrown.body;
  EXPECT_EQ(f->call("a", "").body, "3");
}

TEST(JavaScriptFunctionWarm, ATimedOutInvocationStartsAFreshGlobal) {
  FunctionLimits l = warm();
  l.timeout = 200ms;
  auto f =
      make("let n = 0;\n(s, p) => { n++; if (s === 'loop') for (;;) {}\n return String(n); }", l);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->call("a", "").body, "1");
  EXPECT_EQ(f->call("a", "").body, "2");
  auto looped = f->call("loop", "");
  EXPECT_FALSE(looped.ok);
  EXPECT_NE(looped.body.find("timed out"), std::string::npos) << looped.body;
  EXPECT_EQ(f->call("a", "").body, "1") << "the interrupted global was given up";
}

}  // namespace
}  // namespace nex::runtime
