// JavaScript functions through a real node and nats-server: the seed's echo on its trigger
// subject, logs and events, error replies, time-outs, a bad script refused at deploy, a 1 MiB
// payload and a thousand requests at once.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "api/events.h"
#include "core/nuid.h"
#include "testing/node_fixture.h"

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::Collector;
namespace fs = std::filesystem;

constexpr const char* kSeedEcho =
    "(subject, payload) => {\n  console.log(subject);\n  return payload;\n};\n";

class FunctionTest : public testing::NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const auto& [key, source] : std::map<std::string, std::string>{
             {"echo.js", kSeedEcho},
             {"fails.js",
              "(subject, payload) => {\n  if (subject.endsWith('.loop')) for (;;) {}\n"
              "  throw new Error('boom: ' + subject);\n}"},
             {"broken.js", "(subject, payload) => {"},
             {"slow.js",
              "(subject, payload) => {\n  const end = Date.now() + 250;\n"
              "  while (Date.now() < end) {}\n  return payload;\n}"},
         }) {
      ASSERT_OK(files_->put_bytes(key, source));
    }
    NodeConfig config;  // native, v8 and wasm by default
    config.function_triggers = route();
    start_node(config);
  }
  // How triggers reach the agent: on their own ("direct", the default) or through the node.
  virtual std::string route() const { return "direct"; }

  // Stops a function that takes 250 ms per trigger while 40 triggers wait for its one engine
  // (with a stop request, or by shutting the node down): every caller hears back, with the
  // reply or "the function was stopped", instead of waiting out its time-out. No time limit
  // here measures that (a loaded machine stretches any): the backlog takes 10 s to run, so
  // callers told "stopped" were answered by the stop, and the others by their run.
  enum class StopBy { kRequest, kNodeShutdown };
  void ExpectTriggersWaitingAtStopToBeAnswered(const std::vector<std::string>& subjects,
                                               StopBy stop_by = StopBy::kRequest) {
    json r = deploy(function_request("slow", "slow.js", subjects, {{"concurrency", 1}}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    const std::string id = r["data"]["id"];
    constexpr int kTriggers = 40;
    const std::string inbox = "_INBOX." + next_nuid();
    std::mutex mu;
    std::condition_variable cv;
    std::map<int, std::pair<std::string, std::string>> answers;  // trigger -> body, error
    auto sub = conn_->subscribe(inbox + ".*", [&](nats::Message m) {
      const int i = std::stoi(std::string(m.subject().substr(inbox.size() + 1)));
      std::lock_guard lock(mu);
      answers[i] = {std::string(m.data()), m.header("Nats-Service-Error").value_or("")};
      cv.notify_all();
    });
    ASSERT_TRUE(sub);
    ASSERT_OK(conn_->flush());
    for (int i = 0; i < kTriggers; ++i) {
      ASSERT_OK(conn_->publish(subjects[i % subjects.size()], "p" + std::to_string(i),
                               inbox + "." + std::to_string(i)));
    }
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return !answers.empty(); }));
    }
    if (stop_by == StopBy::kNodeShutdown) {
      node_->stop();
    } else {
      json stopped = stop(id, "slow");
      ASSERT_TRUE(stopped["error"].is_null()) << stopped.dump();
    }
    std::unique_lock lock(mu);
    // Without the stop's answers, the callers left waiting would never hear back.
    EXPECT_TRUE(cv.wait_for(lock, 30s, [&] { return answers.size() == kTriggers; }))
        << answers.size() << " of " << kTriggers << " triggers were answered";
    int ran = 0, refused = 0;
    for (const auto& [i, answer] : answers) {
      const auto& [body, error] = answer;
      if (error.empty()) {
        EXPECT_EQ(body, "p" + std::to_string(i));
        ++ran;
      } else {
        EXPECT_EQ(error, "the function was stopped") << "trigger " << i;
        ++refused;
      }
    }
    EXPECT_GT(ran, 0);
    EXPECT_GT(refused, 0) << "the stop came after the whole backlog ran: nothing was tested";
  }

  // A reply larger than the caller's server takes cannot reach the caller: the caller hears why
  // instead of timing out, the invocation is a failure, and the workload's log says so.
  void ExpectAnOversizedReplyToBeAFailureThatIsExplained() {
    ASSERT_OK(files_->put_bytes("big.js", "(subject, payload) => 'x'.repeat(2 * 1024 * 1024)"));
    Collector logs(*conn_, "$NEX.logs.default.*.big.*");
    Collector events(*conn_, "$NEX.events.default.*");
    json r = deploy(function_request("big", "big.js", {"fn.big"}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    auto reply = conn_->request("fn.big", "", 10s);
    ASSERT_TRUE(reply) << reply.error().message;
    const std::string error = reply->header("Nats-Service-Error").value_or("");
    EXPECT_NE(error.find("2097152 bytes"), std::string::npos) << error;
    EXPECT_NE(error.find("max_payload 1048576"), std::string::npos) << error;
    auto failed = events.wait_for(api::event_type::kFunctionExecFailed);
    ASSERT_TRUE(failed) << "no function_exec_failed event";
    EXPECT_NE(json::parse(failed->second)["data"].value("error", "").find("max_payload"),
              std::string::npos)
        << failed->second;
    EXPECT_TRUE(events.bodies_with(api::event_type::kFunctionExecSucceeded).empty());
    EXPECT_TRUE(logs.wait_for("max_payload 1048576")) << "the workload's log does not say why";
  }
};

TEST_F(FunctionTest, TheSeedsJavaScriptEchoAnswersOnItsTriggerSubject) {
  Collector logs(*conn_, "$NEX.logs.default.*.echofunctionjs.*");
  Collector events(*conn_, "$NEX.events.default.*");
  json r = deploy(function_request("echofunctionjs", "echo.js", {"js.echo"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  const std::string id = r["data"]["id"];

  // `nats req js.echo 'heya'`
  auto reply = conn_->request("js.echo", "heya", 5s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->data(), "heya");
  EXPECT_TRUE(reply->header("x-nex-runtime-ns").has_value());
  EXPECT_FALSE(reply->header("Nats-Service-Error").has_value());
  EXPECT_TRUE(logs.wait_for("js.echo")) << "console.log(subject) did not reach the logs";
  auto ev = events.wait_for(api::event_type::kFunctionExecSucceeded);
  ASSERT_TRUE(ev);
  auto event = json::parse(ev->second);
  EXPECT_EQ(event["data"]["trigger_subject"], "js.echo");
  EXPECT_EQ(event["data"]["workload_name"], "echofunctionjs");
  EXPECT_GT(event["data"]["elapsed_nanos"].get<int64_t>(), 0);

  json machines = info()["data"]["machines"];
  ASSERT_EQ(machines.size(), 1u);
  EXPECT_EQ(machines[0]["workload"]["type"], "v8");
  EXPECT_EQ(machines[0]["function_invocations"], 1);
  EXPECT_GT(machines[0]["function_runtime_ns"].get<int64_t>(), 0);

  json stopped = stop(id, "echofunctionjs");
  ASSERT_TRUE(stopped["error"].is_null()) << stopped.dump();
  auto after = conn_->request("js.echo", "heya", 500ms);
  EXPECT_FALSE(after) << "the trigger subject still answers after stop";
}

// The node listens to its agents until they are undeployed: what the last invocations report
// still reaches the event stream, however the function stops.
TEST_F(FunctionTest, EveryInvocationsEventGetsOutWhenItStops) {
  for (const bool node_shuts_down : {false, true}) {
    SCOPED_TRACE(node_shuts_down ? "node shuts down" : "stop request");
    Collector events(*conn_, "$NEX.events.default.*");
    json r = deploy(function_request("echofunctionjs", "echo.js", {"js.echo"}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
    constexpr int kRequests = 300;
    const std::string inbox = "_INBOX." + next_nuid();
    std::mutex mu;
    std::condition_variable cv;
    int answered = 0;
    auto sub = conn_->subscribe(inbox, [&](nats::Message) {
      std::lock_guard lock(mu);
      ++answered;
      cv.notify_all();
    });
    ASSERT_TRUE(sub);
    ASSERT_OK(conn_->flush());
    for (int i = 0; i < kRequests; ++i) ASSERT_OK(conn_->publish("js.echo", "x", inbox));
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return answered == kRequests; })) << answered;
    }
    if (node_shuts_down) {
      node_->stop();
    } else {
      json stopped = stop(r["data"]["id"], "echofunctionjs");
      ASSERT_TRUE(stopped["error"].is_null()) << stopped.dump();
    }
    EXPECT_EQ(events.wait_for_count(api::event_type::kFunctionExecSucceeded, kRequests, 2s),
              size_t{kRequests});
  }
}

TEST_F(FunctionTest, ThrowsAndTimeoutsAreErrorRepliesAndTheFunctionKeepsServing) {
  Collector events(*conn_, "$NEX.events.default.*");
  json r = deploy(function_request("fails", "fails.js", {"fn.fail.*"}, {{"timeout_ms", 300}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto thrown = conn_->request("fn.fail.now", "x", 5s);
  ASSERT_TRUE(thrown) << thrown.error().message;
  auto error = thrown->header("Nats-Service-Error");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("Error: boom: fn.fail.now"), std::string::npos) << *error;
  EXPECT_EQ(thrown->header("Nats-Service-Error-Code"), "500");
  auto ev = events.wait_for(api::event_type::kFunctionExecFailed);
  ASSERT_TRUE(ev);
  EXPECT_NE(ev->second.find("boom: fn.fail.now"), std::string::npos) << ev->second;

  const auto start = std::chrono::steady_clock::now();
  auto looped = conn_->request("fn.fail.loop", "x", 5s);
  ASSERT_TRUE(looped) << "an infinite loop must end in an error reply, not silence";
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  ASSERT_TRUE(looped->header("Nats-Service-Error"));
  EXPECT_NE(looped->header("Nats-Service-Error")->find("timed out after 300 ms"),
            std::string::npos);
  auto again = conn_->request("fn.fail.again", "x", 5s);
  ASSERT_TRUE(again);
  EXPECT_NE(again->header("Nats-Service-Error").value_or("").find("boom: fn.fail.again"),
            std::string::npos);
}

TEST_F(FunctionTest, WorkloadIsolationKeepsTheScriptsStateAcrossTriggers) {
  ASSERT_OK(files_->put_bytes("counter.js", "let n = 0;\n(subject, payload) => String(++n)"));
  json r = deploy(function_request("warm", "counter.js", {"fn.warm"},
                                   {{"isolation", "workload"}, {"concurrency", 1}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  for (int i = 1; i <= 3; ++i) {
    auto reply = conn_->request("fn.warm", "", 5s);
    ASSERT_TRUE(reply) << reply.error().message;
    EXPECT_EQ(reply->data(), std::to_string(i));
  }
  json cold = deploy(function_request("cold", "counter.js", {"fn.cold"}));
  ASSERT_TRUE(cold["error"].is_null()) << cold.dump();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(conn_->request("fn.cold", "", 5s)->data(), "1");
}

TEST_F(FunctionTest, AScriptThatDoesNotCompileIsRefusedAtDeployAndLeavesNothing) {
  json r = deploy(function_request("broken", "broken.js", {"fn.broken"}));
  ASSERT_TRUE(r["error"].is_string()) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("SyntaxError"), std::string::npos) << r.dump();
  EXPECT_TRUE(info()["data"]["machines"].empty());
  EXPECT_TRUE(nothing_answers("fn.broken"));
  json bad = deploy(function_request("echo", "echo.js", {"fn.echo"}, {{"timeout_ms", 0.5}}));
  EXPECT_NE(bad["error"].get<std::string>().find("function_limits"), std::string::npos)
      << bad.dump();
  json big = deploy(function_request("echo", "echo.js", {"fn.echo"}, {{"timeout_ms", 999999}}));
  EXPECT_NE(big["error"].get<std::string>().find("between 1 and 300000"), std::string::npos)
      << big.dump();
}

TEST_F(FunctionTest, AOneMebibytePayloadRoundTrips) {
  json r = deploy(function_request("echo", "echo.js", {"fn.big"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  std::string payload(1 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 13 + 1);
  auto reply = conn_->request("fn.big", payload, 10s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->data().size(), payload.size());
  EXPECT_TRUE(reply->data() == payload);
}

TEST_F(FunctionTest, AReplyOverTheServersMaxPayloadIsAnExplainedFailure) {
  ExpectAnOversizedReplyToBeAFailureThatIsExplained();
}

TEST_F(FunctionTest, AThousandRequestsInParallelAreAllAnsweredCorrectly) {
  json r = deploy(function_request("echo", "echo.js", {"fn.many"}, {{"concurrency", 4}}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  constexpr int kRequests = 1000;
  const std::string inbox = "_INBOX." + next_nuid();
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, std::string> answers;  // reply subject -> body
  auto sub = conn_->subscribe(inbox + ".*", [&](nats::Message m) {
    std::lock_guard lock(mu);
    answers[std::string(m.subject())] = std::string(m.data());
    cv.notify_all();
  });
  ASSERT_TRUE(sub);
  ASSERT_OK(conn_->flush());
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_OK(
        conn_->publish("fn.many", "payload " + std::to_string(i), inbox + "." + std::to_string(i)));
  }
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return answers.size() == kRequests; }))
      << answers.size() << " of " << kRequests << " answered";
  for (int i = 0; i < kRequests; ++i)
    EXPECT_EQ(answers[inbox + "." + std::to_string(i)], "payload " + std::to_string(i));
}

TEST_F(FunctionTest, TriggersWaitingWhenItStopsAreAnswered) {
  ExpectTriggersWaitingAtStopToBeAnswered({"fn.slow"});
}

// Several subjects reach the function through the agent's own queue instead of its workers.
TEST_F(FunctionTest, TriggersWaitingOnSeveralSubjectsWhenItStopsAreAnswered) {
  ExpectTriggersWaitingAtStopToBeAnswered({"fn.slow.one", "fn.slow.two"});
}

TEST_F(FunctionTest, TriggersWaitingWhenTheNodeShutsDownAreAnswered) {
  ExpectTriggersWaitingAtStopToBeAnswered({"fn.slow"}, StopBy::kNodeShutdown);
}

TEST_F(FunctionTest, CopiesShareTheLoadAndEveryTriggerSubjectWorks) {
  // Two copies of one function, each on two subjects: queue groups split the requests.
  for (const char* name : {"echo-a", "echo-b"}) {
    json r = deploy(function_request(name, "echo.js", {"fn.shared.one", "fn.shared.two"}));
    ASSERT_TRUE(r["error"].is_null()) << r.dump();
  }
  for (int i = 0; i < 100; ++i) {
    const std::string subject = i % 2 ? "fn.shared.one" : "fn.shared.two";
    auto reply = conn_->request(subject, "n" + std::to_string(i), 5s);
    ASSERT_TRUE(reply) << subject << ": " << reply.error().message;
    EXPECT_EQ(reply->data(), "n" + std::to_string(i));
  }
  // The counts come from the function_exec events, which may trail the last reply a little.
  json machines;
  const auto total = [&] {
    int64_t sum = 0;
    for (const auto& m : machines) sum += m.value("function_invocations", int64_t{0});
    return sum;
  };
  for (int i = 0; i < 100 && (machines.size() != 2 || total() < 100); ++i) {
    machines = info()["data"]["machines"];
    if (total() < 100) std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(machines.size(), 2u);
  EXPECT_EQ(total(), 100) << "a request was answered twice or not at all";
  for (const auto& m : machines) {
    EXPECT_GT(m["function_invocations"].get<int64_t>(), 10)
        << m["workload"]["name"] << " got almost nothing: the load was not shared";
  }
}

// The same guarantees when the node relays triggers (as it must when its NATS needs credentials).
class RelayedFunctionTest : public FunctionTest {
  std::string route() const override { return "relay"; }
};

TEST_F(RelayedFunctionTest, EchoErrorsAndAThousandRequestsThroughTheNode) {
  json r = deploy(function_request("echo", "echo.js", {"relay.echo"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  r = deploy(function_request("fails", "fails.js", {"relay.fail"}));
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto reply = conn_->request("relay.echo", "heya", 5s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->data(), "heya");
  auto failed = conn_->request("relay.fail", "x", 5s);
  ASSERT_TRUE(failed);
  EXPECT_NE(failed->header("Nats-Service-Error").value_or("").find("boom: relay.fail"),
            std::string::npos);
  EXPECT_EQ(failed->header("Nats-Service-Error-Code"), "500");
  std::atomic<int> right{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < 125; ++i) {
        const std::string body = std::to_string(t) + "/" + std::to_string(i);
        auto a = conn_->request("relay.echo", body, 10s);
        if (a && a->data() == body) right++;
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(right.load(), 1000);
}

// The operator's "function_triggers": "relay" holds even for a function with a login of its own
// (here one no server answers at): the node relays it.
TEST_F(RelayedFunctionTest, AReplyOverTheServersMaxPayloadIsAnExplainedFailure) {
  ExpectAnOversizedReplyToBeAFailureThatIsExplained();
}

TEST_F(RelayedFunctionTest, ANodeThatRelaysIgnoresAFunctionsOwnLogin) {
  json req = function_request("own", "echo.js", {"relay.own"});
  req["environment"] = deploy_request("own", {{"NATS_URL", "nats://127.0.0.1:1"}})["environment"];
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto reply = conn_->request("relay.own", "heya", 5s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->data(), "heya");
}

// Where a function takes its triggers itself, the login its deployer gave it is used, and one
// that cannot connect is a refused deploy that says why, not a function that never answers.
TEST_F(FunctionTest, AFunctionsOwnLoginThatCannotConnectIsARefusedDeploy) {
  json req = function_request("own", "echo.js", {"fn.own"});
  req["environment"] = deploy_request("own", {{"NATS_URL", "nats://127.0.0.1:1"}})["environment"];
  json r = deploy(req);
  ASSERT_TRUE(r["error"].is_string()) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("trigger NATS: cannot connect to NATS at "
                                               "nats://127.0.0.1:1"),
            std::string::npos)
      << r.dump();
}

TEST_F(RelayedFunctionTest, TriggersWaitingWhenItStopsAreAnswered) {
  ExpectTriggersWaitingAtStopToBeAnswered({"relay.slow"});
}

TEST_F(RelayedFunctionTest, TriggersWaitingWhenTheNodeShutsDownAreAnswered) {
  ExpectTriggersWaitingAtStopToBeAnswered({"relay.slow"}, StopBy::kNodeShutdown);
}

TEST_F(FunctionTest, WebAssemblyFunctionsRunOnTheirTriggerSubjects) {
  const fs::path dir = NEX_WASM_DIR;
  if (!fs::exists(dir / "echo.wasm") || !fs::exists(dir / "exit3.wasm"))
    GTEST_SKIP() << "the wasm test modules were not built (clang with wasi-libc missing)";
  ASSERT_OK(files_->put_file("echo.wasm", dir / "echo.wasm"));
  ASSERT_OK(files_->put_file("exit3.wasm", dir / "exit3.wasm"));
  Collector logs(*conn_, "$NEX.logs.default.*.quitter.*");
  auto echo = function_request("echofunctionwasm", "echo.wasm", {"wasm.echo"});
  echo["type"] = "wasm";
  json r = deploy(echo);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto reply = conn_->request("wasm.echo", "hello", 5s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_EQ(reply->data(), "hellowasm.echo");

  auto quitter = function_request("quitter", "exit3.wasm", {"wasm.quit"});
  quitter["type"] = "wasm";
  r = deploy(quitter);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto failed = conn_->request("wasm.quit", "", 5s);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->header("Nats-Service-Error"), "exited with code 3");
  EXPECT_TRUE(logs.wait_for("giving up"));

  auto wrong = function_request("wrong", "echo.js", {"wasm.wrong"});
  wrong["type"] = "wasm";  // JavaScript is not a module
  r = deploy(wrong);
  ASSERT_TRUE(r["error"].is_string()) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("wrong.wasm is not a valid WebAssembly module: at "
                                               "offset 4: failed to match magic number"),
            std::string::npos)
      << r.dump();
}

// A WebAssembly trap reaches the caller as which function trapped and why, and a module that is
// no WASI command is refused at deploy saying how to build one; neither carries the engine's
// own locations ("g.wasm line 6 > WebAssembly.Module:68").
TEST_F(FunctionTest, WasmTrapsAndRefusedModulesSayWhatHappenedWithoutEngineNoise) {
  const fs::path dir = NEX_WASM_DIR;
  if (!fs::exists(dir / "divide.wasm") || !fs::exists(dir / "no_start.wasm"))
    GTEST_SKIP() << "the wasm test modules were not built (wat2wasm missing)";
  ASSERT_OK(files_->put_file("divide.wasm", dir / "divide.wasm"));
  ASSERT_OK(files_->put_file("no_start.wasm", dir / "no_start.wasm"));
  auto divide = function_request("divide", "divide.wasm", {"wasm.divide"});
  divide["type"] = "wasm";
  json r = deploy(divide);
  ASSERT_TRUE(r["error"].is_null()) << r.dump();
  auto trapped = conn_->request("wasm.divide", "", 5s);
  ASSERT_TRUE(trapped) << trapped.error().message;
  const std::string error = trapped->header("Nats-Service-Error").value_or("");
  EXPECT_NE(error.find("trapped in function divide: integer divide by zero"), std::string::npos)
      << error;
  for (const char* noise : {"WebAssembly.Module", " line ", " > "})
    EXPECT_EQ(error.find(noise), std::string::npos) << error;

  auto no_start = function_request("nostart", "no_start.wasm", {"wasm.nostart"});
  no_start["type"] = "wasm";
  r = deploy(no_start);
  ASSERT_TRUE(r["error"].is_string()) << r.dump();
  const std::string refused = r["error"];
  EXPECT_NE(refused.find("the module exports no _start function: build it as a WASI command"),
            std::string::npos)
      << refused;
  for (const char* noise : {"WebAssembly.Module", " line ", ".cc:", ".c:"})
    EXPECT_EQ(refused.find(noise), std::string::npos) << refused;
}

}  // namespace
}  // namespace nex::node
