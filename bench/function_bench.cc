// Function benchmark, side by side in one run: the native echo service, a
// JavaScript function (fresh global per invocation, and with `isolation: workload`, one warm
// global per engine) and a WebAssembly function on a nex node (process driver), and a peer
// function host in Node.js (the `nats` npm client; the same JavaScript with `vm`, the same
// WebAssembly with `node:wasi`, see bench/peer/function_peer.mjs), on a nats-server without
// credentials; then on a second one in operator mode (every login has creds): the native
// service, functions whose triggers the node relays, functions whose agents log in as users the
// node signed (trigger_signing_key_file), and those in the namespace sandbox when the host can
// run it (root, preflight). Each function is compared with the native service on its server.
//
//   build/bin/function_bench [--requests N] [--seconds S] [--only LABEL-SUBSTRING]
//
// Prints, per target: cold start (deploy request, or the peer's process start, to the first
// answer), then request/reply latency p50/p99 and throughput with 1 and with 32 concurrent
// requesters. Every reply is checked. Load is bounded: N requests per requester, at most S
// seconds per measurement.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bench_support.h"
#include "core/encoding.h"
#include "core/subprocess.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "nats/object_store.h"
#include "node/node.h"
#include "testing/operator_chain.h"
#include "testing/sandbox_host.h"

using namespace nex;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

using bench::kSourceDir;

// The echo function without console.log: a log line per request would measure the log path.
constexpr const char* kEchoJs = "(subject, payload) => payload;\n";

using bench::ms;

struct Target {
  std::string label;
  std::string subject;
  std::string expect_suffix;  // the wasm echo appends the subject
  double cold_ms = 0;
  std::string workload_id;                 // nex targets
  const nats::Connection* conn = nullptr;  // the requesters' (default: the open server's)
  size_t native = 0;                       // the native service it is compared with
};

struct Load {
  double p50 = 0, p99 = 0, per_second = 0;
  int64_t errors = 0;
  bool measured = false;  // false: left out with --only
};

// `requesters` threads, each sending up to `requests` requests one after another, for at most
// `seconds`; every reply checked.
Load measure(const Target& t, int requesters, int requests, double seconds) {
  const nats::Connection& conn = *t.conn;
  std::vector<std::vector<double>> lat(static_cast<size_t>(requesters));
  std::atomic<int64_t> errors{0};
  const auto start = Clock::now();
  const auto stop_at =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (int r = 0; r < requesters; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < requests && Clock::now() < stop_at; ++i) {
        const std::string payload = "payload-" + std::to_string(r) + "-" + std::to_string(i);
        const auto t0 = Clock::now();
        auto reply = conn.request(t.subject, payload, std::chrono::seconds(5));
        const auto t1 = Clock::now();
        if (!reply || reply->data() != payload + t.expect_suffix) {
          errors++;
          continue;
        }
        lat[static_cast<size_t>(r)].push_back(ms(t1 - t0));
      }
    });
  }
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : lat) all.insert(all.end(), l.begin(), l.end());
  return {bench::percentile(all, 0.50), bench::percentile(all, 0.99),
          static_cast<double>(all.size()) / elapsed, errors.load(), true};
}

// Requests until the target answers correctly; the time it took.
std::optional<double> time_to_first_answer(const Target& t, Clock::time_point since) {
  const nats::Connection& conn = *t.conn;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    auto r = conn.request(t.subject, "x", std::chrono::milliseconds(500));
    if (r && r->data() == "x" + t.expect_suffix) return ms(Clock::now() - since);
    if (!r) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 2000;
  double seconds = 5;
  std::string only;  // measure only targets whose label contains this
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--only") == 0) only = argv[i + 1];
    if (std::strcmp(argv[i], "--requests") == 0) requests = std::max(1, std::atoi(argv[i + 1]));
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::max(0.5, std::atof(argv[i + 1]));
  }
  const fs::path wasm = bench::kBinDir / "wasm" / "echo.wasm";
  const fs::path npm_dir = kSourceDir / "tests" / "interop";
  if (!fs::exists(wasm)) {
    std::fprintf(stderr, "%s is missing: build with clang and wasi-libc installed\n", wasm.c_str());
    return 1;
  }
  if (!fs::exists(npm_dir / "node_modules" / "nats")) {
    std::fprintf(stderr, "the nats npm package is missing: run `npm ci` in %s\n", npm_dir.c_str());
    return 1;
  }
  const fs::path work =
      fs::temp_directory_path() / ("nex-function-bench-" + std::to_string(getpid()));
  fs::create_directories(work);
  std::ofstream(work / "echo.js") << kEchoJs;
  auto local = bench::start_nats_with_files({{"echoservice", bench::kBinDir / "echoservice"},
                                             {"echo.js", work / "echo.js"},
                                             {"echo.wasm", wasm}});
  if (!local) return 1;
  const std::string url = local->server.url();
  const nats::Connection& conn = local->conn;
  // Two nodes: one whose agents take triggers directly (the default), one that relays them.
  node::NodeConfig config;
  config.no_sandbox = true;
  config.machine_pool_size = 3;
  std::fprintf(stderr, "starting the nodes (their logs follow on stderr)\n");
  auto node = node::Node::start({.config = config,
                                 .control = {.urls = {url}},
                                 .state_dir = work / "state",
                                 .version = "bench"});
  config.function_triggers = "relay";
  config.machine_pool_size = 2;
  auto relay_node = node::Node::start({.config = config,
                                       .control = {.urls = {url}},
                                       .state_dir = work / "state-relay",
                                       .version = "bench"});
  if (!node || !relay_node) {
    std::fprintf(stderr, "node: %s\n", (node ? relay_node.error() : node.error()).message.c_str());
    return 1;
  }
  // The same on a server in operator mode, where every login has credentials: a node that
  // relays (it never hands out its own), one that signs a user per function (direct), and, when
  // this host can run it, the namespace sandbox with signed users.
  testing::OperatorChain chain;
  const auto account = chain.account("bench", /*jetstream=*/true);
  std::ofstream(work / "operator.conf") << chain.server_config();
  auto secured = nats::LocalNatsServer::start({.config_file = work / "operator.conf"});
  if (!secured) {
    std::fprintf(stderr, "operator-mode nats-server: %s\n", secured.error().message.c_str());
    return 1;
  }
  account.user("node").write_creds(work / "node.creds");
  account.user("bench").write_creds(work / "bench.creds");
  std::ofstream(work / "account.nk") << account.key.seed() << "\n";
  const std::string echo_jwt =
      account.user("echo", json::object(), /*bearer=*/true).jwt;  // NATS_JWT, as in seed 003
  auto secured_conn =
      nats::Connection::connect({.urls = {secured->url()}, .creds_file = work / "bench.creds"});
  if (!secured_conn) return 1;
  {
    auto js = nats::JetStream::create(*secured_conn);
    auto store = js ? nats::ObjectStore::create(*js, {.bucket = "NEXCLIFILES"}) : fail(js.error());
    for (const auto& [key, file] :
         std::map<std::string, fs::path>{{"echoservice", bench::kBinDir / "echoservice"},
                                         {"echo.js", work / "echo.js"},
                                         {"echo.wasm", wasm}}) {
      if (!store || !store->put_file(key, file)) {
        std::fprintf(stderr, "cannot upload %s to the operator-mode server\n", key.c_str());
        return 1;
      }
    }
  }
  const nats::ConnectOptions node_login = {.urls = {secured->url()},
                                           .creds_file = work / "node.creds"};
  config = {};
  config.no_sandbox = true;
  config.machine_pool_size = 2;
  auto creds_relay = node::Node::start({.config = config,
                                        .control = node_login,
                                        .state_dir = work / "state-creds-relay",
                                        .version = "bench"});
  config.trigger_signing_key_file = work / "account.nk";
  auto creds_direct = node::Node::start({.config = config,
                                         .control = node_login,
                                         .state_dir = work / "state-creds-direct",
                                         .version = "bench"});
  if (!creds_relay || !creds_direct) {
    std::fprintf(stderr, "node: %s\n",
                 (creds_relay ? creds_direct.error() : creds_relay.error()).message.c_str());
    return 1;
  }
  std::unique_ptr<node::Node> sandboxed;
  const auto& sandbox_host = testing::SandboxHost::get();
  if (sandbox_host.unavailable()) {
    std::fprintf(stderr, "no namespace-sandbox rows: %s\n", sandbox_host.unavailable()->c_str());
  } else {
    node::NodeConfig sc = sandbox_host.config();
    sc.machine_pool_size = 2;
    sc.trigger_signing_key_file = work / "account.nk";
    auto n = node::Node::start({.config = sc,
                                .control = node_login,
                                .state_dir = work / "state-sandboxed",
                                .version = "bench"});
    if (!n) {
      std::fprintf(stderr, "sandboxed node: %s\n", n.error().message.c_str());
      return 1;
    }
    sandboxed = std::move(*n);
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the warm pools fill

  std::vector<Target> targets = {
      {"native echo service (nex)", "bench.native", ""},
      {"JavaScript function (nex)", "bench.js", ""},
      {"WebAssembly function (nex)", "bench.wasm", "bench.wasm"},
      {"JavaScript function (Node.js vm peer)", "bench.peer.js", ""},
      {"WebAssembly function (Node.js wasi peer)", "bench.peer.wasm", "bench.peer.wasm"},
      {"JavaScript function (nex, node relays)", "bench.relay.js", ""},
      {"WebAssembly function (nex, node relays)", "bench.relay.wasm", "bench.relay.wasm"},
      {"JavaScript function (nex, warm global)", "bench.warm.js", ""},
      {"native echo service (creds)", "bench.creds.native", ""},
      {"JavaScript function (creds, node relays)", "bench.creds.relay.js", ""},
      {"WebAssembly function (creds, node relays)", "bench.creds.relay.wasm",
       "bench.creds.relay.wasm"},
      {"JavaScript function (creds, signed user)", "bench.creds.direct.js", ""},
      {"WebAssembly function (creds, signed user)", "bench.creds.direct.wasm",
       "bench.creds.direct.wasm"},
      {"JavaScript warm global (creds, signed user)", "bench.creds.warm.js", ""},
      {"JavaScript function (creds, namespace sandbox)", "bench.creds.sandbox.js", ""},
      {"WebAssembly function (creds, namespace sandbox)", "bench.creds.sandbox.wasm",
       "bench.creds.sandbox.wasm"},
      {"JavaScript warm global (creds, namespace sandbox)", "bench.creds.sandbox.warm.js", ""}};
  constexpr size_t kCredsNative = 8, kFirstSandboxed = 14;
  for (size_t i = 0; i < targets.size(); ++i) {
    const bool creds = i >= kCredsNative;
    targets[i].conn = creds ? &*secured_conn : &conn;
    targets[i].native = creds ? kCredsNative : 0;
  }
  if (!sandboxed) targets.resize(kFirstSandboxed);

  const bench::Requester requester;
  auto deploy = [&](node::Node& n, Target& t, const std::string& type, const std::string& key,
                    const json& limits = nullptr) -> bool {
    const bool native = type == "native";
    json env = json::object();
    if (native) {
      env = {{"NATS_URL", t.conn == &conn ? url : secured->url()}, {"ECHO_SUBJECT", t.subject}};
      if (t.conn != &conn) env["NATS_JWT"] = echo_jwt;
    }
    json req = requester.deploy_request(
        n.xkey(), "bench" + type, type, key, env,
        native ? std::vector<std::string>{} : std::vector<std::string>{t.subject});
    if (!limits.is_null()) req["function_limits"] = limits;
    const auto t0 = Clock::now();
    auto id = bench::deploy(*t.conn, n.id(), req);
    if (!id) return false;
    t.workload_id = *id;
    auto first = time_to_first_answer(t, t0);
    if (!first) return false;
    t.cold_ms = *first;
    return true;
  };
  if (!deploy(**node, targets[0], "native", "echoservice") ||
      !deploy(**node, targets[1], "v8", "echo.js") ||
      !deploy(**node, targets[2], "wasm", "echo.wasm") ||
      !deploy(**relay_node, targets[5], "v8", "echo.js") ||
      !deploy(**relay_node, targets[6], "wasm", "echo.wasm") ||
      !deploy(**node, targets[7], "v8", "echo.js", {{"isolation", "workload"}}) ||
      !deploy(**creds_direct, targets[8], "native", "echoservice") ||
      !deploy(**creds_relay, targets[9], "v8", "echo.js") ||
      !deploy(**creds_relay, targets[10], "wasm", "echo.wasm") ||
      !deploy(**creds_direct, targets[11], "v8", "echo.js") ||
      !deploy(**creds_direct, targets[12], "wasm", "echo.wasm") ||
      !deploy(**creds_direct, targets[13], "v8", "echo.js", {{"isolation", "workload"}}))
    return 1;
  if (sandboxed && (!deploy(*sandboxed, targets[14], "v8", "echo.js") ||
                    !deploy(*sandboxed, targets[15], "wasm", "echo.wasm") ||
                    !deploy(*sandboxed, targets[16], "v8", "echo.js", {{"isolation", "workload"}})))
    return 1;

  // The peer: a process start to its first answer is its cold start.
  const auto peer_start = Clock::now();
  auto peer =
      Subprocess::spawn({.argv = {"node", (kSourceDir / "bench/peer/function_peer.mjs").string(),
                                  (work / "echo.js").string(), wasm.string()},
                         .env = {"NATS_URL=" + url, "NEX_NPM_DIR=" + npm_dir.string()},
                         .stdout_path = (work / "peer.log").string(),
                         .stderr_path = (work / "peer.log").string(),
                         .die_with_parent = true});
  if (!peer) {
    std::fprintf(stderr, "node: %s\n", peer.error().message.c_str());
    return 1;
  }
  for (int i : {3, 4}) {
    auto first = time_to_first_answer(targets[static_cast<size_t>(i)], peer_start);
    if (!first) {
      std::fprintf(stderr, "the Node.js peer did not answer on %s\n",
                   targets[static_cast<size_t>(i)].subject.c_str());
      return 1;
    }
    targets[static_cast<size_t>(i)].cold_ms = *first;
  }

  std::vector<std::pair<Load, Load>> loads;
  for (const auto& t : targets) {
    if (t.label.find(only) == std::string::npos && t.label.find("native") == std::string::npos) {
      loads.emplace_back();
      continue;
    }
    std::fprintf(stderr, "measuring %s\n", t.label.c_str());
    (void)measure(t, 4, 200, 2);  // warm up (JIT, pools)
    Load one = measure(t, 1, requests, seconds);
    Load many = measure(t, 32, std::max(1, requests / 8), seconds);
    loads.emplace_back(one, many);
  }
  (void)peer->terminate(std::chrono::seconds(2));

  std::printf(
      "\nFunction round trips through one nats-server (%s), %d requests per requester (at most "
      "%.0f s)\n\n",
      url.c_str(), requests, seconds);
  std::printf("| %-48s | %10s | %9s | %9s | %11s | %9s | %9s | %11s | %6s |\n", "target",
              "cold start", "1: p50", "1: p99", "1: req/s", "32: p50", "32: p99", "32: req/s",
              "errors");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(50, '-').c_str(),
              std::string(12, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str(), std::string(13, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str(),
              std::string(13, '-').c_str(), std::string(8, '-').c_str());
  for (size_t i = 0; i < targets.size(); ++i) {
    const auto& [one, many] = loads[i];
    if (!one.measured) continue;
    std::printf(
        "| %-48s | %7.1f ms | %6.3f ms | %6.3f ms | %11.0f | %6.3f ms | %6.3f ms | %11.0f | %6lld "
        "|\n",
        targets[i].label.c_str(), targets[i].cold_ms, one.p50, one.p99, one.per_second, many.p50,
        many.p99, many.per_second, static_cast<long long>(one.errors + many.errors));
  }
  std::printf(
      "\nAgainst the native service on the same server (1-requester p50 ratio, 32-requester "
      "throughput ratio):\n");
  for (size_t i = 0; i < targets.size(); ++i) {
    if (i == 3 || i == 4 || i == targets[i].native || !loads[i].first.measured) continue;
    const auto& native = loads[targets[i].native];
    std::printf("  %-48s p50 %.2fx, throughput %.2fx\n", targets[i].label.c_str(),
                loads[i].first.p50 / native.first.p50,
                loads[i].second.per_second / native.second.per_second);
  }
  // Memory of an idle function workload: its agent, after the load, once it has gone quiet.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::printf("\n| %-40s | %9s | %9s | %9s |\n", "memory per idle workload (MiB)", "RSS", "PSS",
              "private");
  std::printf("|%s|%s|%s|%s|\n", std::string(42, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str());
  for (size_t i : {1, 2}) {
    const pid_t pid = bench::agent_pid(targets[i].workload_id);
    const bench::Memory m = bench::memory_of(pid);
    std::printf("| %-40s | %9.2f | %9.2f | %9.2f |\n", (targets[i].label + ", its agent").c_str(),
                static_cast<double>(m.rss) / (1 << 20), static_cast<double>(m.pss) / (1 << 20),
                static_cast<double>(m.private_) / (1 << 20));
  }
  (*node)->stop();
  (*relay_node)->stop();
  (*creds_relay)->stop();
  (*creds_direct)->stop();
  if (sandboxed) sandboxed->stop();
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
