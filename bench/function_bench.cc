// Function benchmark, side by side in one run: the native echo service, a JavaScript function
// (fresh global per invocation, and with `isolation: workload`, one warm global per engine) and
// a WebAssembly function on nex nodes, on every route a trigger can take, on three nats-servers:
// - without credentials: triggers taken directly by the agent (process driver), or relayed by
//   the node (function_triggers relay); and a peer function host in Node.js (the `nats` npm
//   client; the same JavaScript with `vm`, the same WebAssembly with `node:wasi`, see
//   bench/peer/function_peer.mjs);
// - with users and passwords: the node relays (it has nothing to sign agents' logins with), or
//   the function takes them with a login of its own that its deployer gave it (NATS_URL);
// - in operator mode (every login has creds): the node relays, or agents log in as users the
//   node signed (trigger_signing_key_file); both again in the namespace sandbox when the host
//   can run it (root, preflight).
// Each function is compared with the native service on its own server, in the same run.
//
// The sandboxed functions are also compared with a native echo service in the same sandbox: the
// host's scheduler gives each sandbox's cgroup one share of the CPU, whatever runs in it.
//
//   build/bin/function_bench [--requests N] [--seconds S] [--rounds R] [--only LABEL-SUBSTRING]
//
// Prints, per target: cold start (deploy request, or the peer's process start, to the first
// answer), then request/reply latency p50/p99 and throughput with 1 and with 32 concurrent
// requesters, each the median of R rounds (every target is measured once per round, so the
// machine's slower moments fall on all of them alike). Every reply is checked. Load is bounded:
// N requests per requester, at most S seconds per measurement.
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
#include "core/xid.h"
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

// A nats-server the targets run on, and how a native echo service logs in to it.
struct Server {
  std::string url;
  nats::Connection conn;                // the requesters'
  std::string service_url;              // the echo service's NATS_URL
  json service_login = json::object();  // and what else its environment needs to log in
  std::string function_login;           // a function's own login, as NATS_URL (user/password)
};

struct Target {
  std::string label;
  std::string subject;
  const Server* server = nullptr;
  node::Node* node = nullptr;  // nullptr: the Node.js peer
  std::string type;            // native, v8, wasm
  json limits = nullptr;       // function_limits
  bool own_login = false;      // functions: NATS_URL gives it its server's function_login
  std::string expect_suffix;   // the wasm echo appends the subject
  double cold_ms = 0;
  std::string workload_id;
  std::string group;  // "open", "users", "creds" or "sandbox": the server and the isolation
  size_t native = 0;  // the native service of the same group, which it is compared with
};

struct Load {
  double p50 = 0, p99 = 0, per_second = 0;
  int64_t errors = 0;
  bool measured = false;  // false: left out with --only
};

// The median of each figure over rounds; errors add up.
Load median(const std::vector<Load>& rounds) {
  if (rounds.empty()) return {};
  auto mid = [&](double Load::*field) {
    std::vector<double> v;
    for (const auto& r : rounds) v.push_back(r.*field);
    return bench::percentile(std::move(v), 0.5);
  };
  Load out{mid(&Load::p50), mid(&Load::p99), mid(&Load::per_second), 0, true};
  for (const auto& r : rounds) out.errors += r.errors;
  return out;
}

// `requesters` threads, each sending up to `requests` requests one after another, for at most
// `seconds`; every reply checked.
Load measure(const Target& t, int requesters, int requests, double seconds) {
  const nats::Connection& conn = t.server->conn;
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
  const nats::Connection& conn = t.server->conn;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < deadline) {
    auto r = conn.request(t.subject, "x", std::chrono::milliseconds(500));
    if (r && r->data() == "x" + t.expect_suffix) return ms(Clock::now() - since);
    if (!r) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return std::nullopt;
}

// A node for the bench, or nullptr after saying why.
std::unique_ptr<node::Node> start_node(const node::NodeConfig& config,
                                       const nats::ConnectOptions& control,
                                       const fs::path& state_dir) {
  auto n = node::Node::start(
      {.config = config, .control = control, .state_dir = state_dir, .version = "bench"});
  if (!n) {
    std::fprintf(stderr, "node: %s\n", n.error().message.c_str());
    return nullptr;
  }
  return std::move(*n);
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 2000;
  double seconds = 5;
  int rounds = 3;
  std::string only;  // measure only targets whose label contains this
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--only") == 0) only = argv[i + 1];
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::max(1, std::atoi(argv[i + 1]));
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
  const std::map<std::string, fs::path> files = {{"echoservice", bench::kBinDir / "echoservice"},
                                                 {"echo.js", work / "echo.js"},
                                                 {"echo.wasm", wasm}};

  // The servers. Without credentials:
  auto local = bench::start_nats_with_files(files);
  if (!local) return 1;
  Server open{local->server.url(), local->conn, local->server.url()};
  // With users and passwords (nats-server's authorization block):
  const std::string password = next_xid();  // letters and digits: fine in a URL
  std::ofstream(work / "users.conf")
      << "authorization {\n  users = [\n    {user: node, password: \"" << password
      << "\"}\n    {user: bench, password: \"" << password << "\"}\n    {user: echo, password: \""
      << password << "\"}\n    {user: fn, password: \"" << password
      << "\", permissions: {subscribe: [\"b.users.own.>\"], publish: {deny: \">\"}, "
         "allow_responses: true}}\n  ]\n}\n";
  auto users_server = nats::LocalNatsServer::start({.config_file = work / "users.conf"});
  if (!users_server) {
    std::fprintf(stderr, "user/password nats-server: %s\n", users_server.error().message.c_str());
    return 1;
  }
  auto users_conn = nats::Connection::connect(
      {.urls = {users_server->url()}, .user = "bench", .password = password});
  if (!users_conn || !bench::put_files(*users_conn, files)) return 1;
  // nats://USER:PASSWORD@host:port, as a deployer writes NATS_URL.
  auto login_url = [&](const std::string& user) {
    return "nats://" + user + ":" + password + "@" +
           users_server->url().substr(std::string("nats://").size());
  };
  Server users{users_server->url(), *users_conn, login_url("echo")};
  users.function_login = login_url("fn");
  // In operator mode: an account with JetStream, a user each for the node, the requesters and
  // the echo service (a bearer user, NATS_JWT, as in seed 003), and the account's key for
  // trigger_signing_key_file.
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
  auto secured_conn =
      nats::Connection::connect({.urls = {secured->url()}, .creds_file = work / "bench.creds"});
  if (!secured_conn || !bench::put_files(*secured_conn, files)) return 1;
  Server creds{secured->url(),
               *secured_conn,
               secured->url(),
               {{"NATS_JWT", account.user("echo", json::object(), /*bearer=*/true).jwt}}};

  // The nodes, one per route.
  std::fprintf(stderr, "starting the nodes (their logs follow on stderr)\n");
  node::NodeConfig plain;
  plain.no_sandbox = true;
  plain.machine_pool_size = 2;
  node::NodeConfig relaying = plain;
  relaying.function_triggers = "relay";
  node::NodeConfig signing = plain;
  signing.trigger_signing_key_file = work / "account.nk";
  const nats::ConnectOptions node_creds = {.urls = {secured->url()},
                                           .creds_file = work / "node.creds"};
  auto open_direct = start_node(plain, {.urls = {open.url}}, work / "open-direct");
  auto open_relay = start_node(relaying, {.urls = {open.url}}, work / "open-relay");
  auto users_relay = start_node(plain, {.urls = {users.url}, .user = "node", .password = password},
                                work / "users-relay");
  auto creds_relay = start_node(plain, node_creds, work / "creds-relay");
  auto creds_signed = start_node(signing, node_creds, work / "creds-signed");
  if (!open_direct || !open_relay || !users_relay || !creds_relay || !creds_signed) return 1;
  std::unique_ptr<node::Node> sandbox_relay, sandbox_signed;
  const auto& sandbox_host = testing::SandboxHost::get();
  if (sandbox_host.unavailable()) {
    std::fprintf(stderr, "no namespace-sandbox rows: %s\n", sandbox_host.unavailable()->c_str());
  } else {
    node::NodeConfig sc = sandbox_host.config();
    sc.machine_pool_size = 2;
    sandbox_relay = start_node(sc, node_creds, work / "sandbox-relay");
    sc.trigger_signing_key_file = work / "account.nk";
    sandbox_signed = start_node(sc, node_creds, work / "sandbox-signed");
    if (!sandbox_relay || !sandbox_signed) return 1;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // the warm pools fill

  const json warm = {{"isolation", "workload"}};
  std::vector<Target> targets = {
      {"native echo service (open)", "b.open.native", &open, open_direct.get(), "native"},
      {"JavaScript function (open, direct)", "b.open.js", &open, open_direct.get(), "v8"},
      {"WebAssembly function (open, direct)", "b.open.wasm", &open, open_direct.get(), "wasm"},
      {"JavaScript warm global (open, direct)", "b.open.warm", &open, open_direct.get(), "v8",
       warm},
      {"JavaScript function (Node.js vm peer)", "bench.peer.js", &open},
      {"WebAssembly function (Node.js wasi peer)", "bench.peer.wasm", &open},
      {"JavaScript function (open, node relays)", "b.open.relay.js", &open, open_relay.get(), "v8"},
      {"WebAssembly function (open, node relays)", "b.open.relay.wasm", &open, open_relay.get(),
       "wasm"},
      {"native echo service (user/password)", "b.users.native", &users, users_relay.get(),
       "native"},
      {"JavaScript function (user/password)", "b.users.js", &users, users_relay.get(), "v8"},
      {"WebAssembly function (user/password)", "b.users.wasm", &users, users_relay.get(), "wasm"},
      {"JavaScript warm global (user/password)", "b.users.warm", &users, users_relay.get(), "v8",
       warm},
      {"JavaScript function (user/password, own login)", "b.users.own.js", &users,
       users_relay.get(), "v8", nullptr, true},
      {"WebAssembly function (user/password, own login)", "b.users.own.wasm", &users,
       users_relay.get(), "wasm", nullptr, true},
      {"JavaScript warm global (user/password, own login)", "b.users.own.warm", &users,
       users_relay.get(), "v8", warm, true},
      {"native echo service (creds)", "b.creds.native", &creds, creds_relay.get(), "native"},
      {"JavaScript function (creds, node relays)", "b.creds.relay.js", &creds, creds_relay.get(),
       "v8"},
      {"WebAssembly function (creds, node relays)", "b.creds.relay.wasm", &creds, creds_relay.get(),
       "wasm"},
      {"JavaScript warm global (creds, node relays)", "b.creds.relay.warm", &creds,
       creds_relay.get(), "v8", warm},
      {"JavaScript function (creds, signed user)", "b.creds.signed.js", &creds, creds_signed.get(),
       "v8"},
      {"WebAssembly function (creds, signed user)", "b.creds.signed.wasm", &creds,
       creds_signed.get(), "wasm"},
      {"JavaScript warm global (creds, signed user)", "b.creds.signed.warm", &creds,
       creds_signed.get(), "v8", warm}};
  if (sandbox_relay) {
    targets.insert(targets.end(), {{"native echo service (sandbox)", "b.sb.native", &creds,
                                    sandbox_relay.get(), "native"},
                                   {"JavaScript function (sandbox, node relays)", "b.sb.relay.js",
                                    &creds, sandbox_relay.get(), "v8"},
                                   {"WebAssembly function (sandbox, node relays)",
                                    "b.sb.relay.wasm", &creds, sandbox_relay.get(), "wasm"},
                                   {"JavaScript warm global (sandbox, node relays)",
                                    "b.sb.relay.warm", &creds, sandbox_relay.get(), "v8", warm},
                                   {"JavaScript function (sandbox, signed user)", "b.sb.signed.js",
                                    &creds, sandbox_signed.get(), "v8"},
                                   {"WebAssembly function (sandbox, signed user)",
                                    "b.sb.signed.wasm", &creds, sandbox_signed.get(), "wasm"},
                                   {"JavaScript warm global (sandbox, signed user)",
                                    "b.sb.signed.warm", &creds, sandbox_signed.get(), "v8", warm}});
  }
  for (Target& t : targets) {
    if (t.type == "wasm" || t.label.find("wasi peer") != std::string::npos)
      t.expect_suffix = t.subject;
    const bool sandboxed =
        t.node && (t.node == sandbox_relay.get() || t.node == sandbox_signed.get());
    t.group = sandboxed            ? "sandbox"
              : t.server == &open  ? "open"
              : t.server == &users ? "users"
                                   : "creds";
  }
  for (Target& t : targets) {
    for (size_t n = 0; n < targets.size(); ++n)
      if (targets[n].type == "native" && targets[n].group == t.group) t.native = n;
  }

  const bench::Requester requester;
  for (Target& t : targets) {
    if (!t.node) continue;  // the peer
    const bool native = t.type == "native";
    json env = json::object();
    if (native) {
      env = t.server->service_login;
      env["NATS_URL"] = t.server->service_url;
      env["ECHO_SUBJECT"] = t.subject;
    }
    if (t.own_login) env["NATS_URL"] = t.server->function_login;
    const std::string key = native ? "echoservice" : t.type == "v8" ? "echo.js" : "echo.wasm";
    json req = requester.deploy_request(
        t.node->xkey(), "bench" + t.type, t.type, key, env,
        native ? std::vector<std::string>{} : std::vector<std::string>{t.subject});
    if (!t.limits.is_null()) req["function_limits"] = t.limits;
    const auto t0 = Clock::now();
    auto id = bench::deploy(t.server->conn, t.node->id(), requester.sign(req, t.node->id()));
    if (!id) return 1;
    t.workload_id = *id;
    auto first = time_to_first_answer(t, t0);
    if (!first) {
      std::fprintf(stderr, "%s never answered\n", t.label.c_str());
      return 1;
    }
    t.cold_ms = *first;
  }

  // The peer: a process start to its first answer is its cold start.
  const auto peer_start = Clock::now();
  auto peer =
      Subprocess::spawn({.argv = {"node", (kSourceDir / "bench/peer/function_peer.mjs").string(),
                                  (work / "echo.js").string(), wasm.string()},
                         .env = {"NATS_URL=" + open.url, "NEX_NPM_DIR=" + npm_dir.string()},
                         .stdout_path = (work / "peer.log").string(),
                         .stderr_path = (work / "peer.log").string(),
                         .die_with_parent = true});
  if (!peer) {
    std::fprintf(stderr, "node: %s\n", peer.error().message.c_str());
    return 1;
  }
  for (Target& t : targets) {
    if (t.node) continue;
    auto first = time_to_first_answer(t, peer_start);
    if (!first) {
      std::fprintf(stderr, "the Node.js peer did not answer on %s\n", t.subject.c_str());
      return 1;
    }
    t.cold_ms = *first;
  }

  auto wanted = [&](const Target& t) {
    return t.type == "native" || t.label.find(only) != std::string::npos;
  };
  for (const auto& t : targets) {
    if (wanted(t)) (void)measure(t, 4, 200, 2);  // warm up (JIT, engines, pools)
  }
  std::vector<std::vector<Load>> ones(targets.size()), manys(targets.size());
  for (int round = 1; round <= rounds; ++round) {
    for (size_t i = 0; i < targets.size(); ++i) {
      if (!wanted(targets[i])) continue;
      std::fprintf(stderr, "round %d: measuring %s\n", round, targets[i].label.c_str());
      ones[i].push_back(measure(targets[i], 1, requests, seconds));
      manys[i].push_back(measure(targets[i], 32, std::max(1, requests / 8), seconds));
    }
  }
  std::vector<std::pair<Load, Load>> loads;
  for (size_t i = 0; i < targets.size(); ++i) loads.emplace_back(median(ones[i]), median(manys[i]));
  (void)peer->terminate(std::chrono::seconds(2));

  std::printf(
      "\nFunction round trips, %d requests per requester (at most %.0f s), medians of %d rounds; "
      "each group's native echo service first\n\n",
      requests, seconds, rounds);
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
      "\nAgainst the native service of the same group (1-requester p50 ratio, 32-requester "
      "throughput ratio):\n");
  size_t creds_native = 0;
  for (size_t i = 0; i < targets.size(); ++i)
    if (targets[i].type == "native" && targets[i].group == "creds") creds_native = i;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i].type == "native" || !loads[i].first.measured) continue;
    const auto& native = loads[targets[i].native];
    std::printf("  %-48s p50 %.2fx, throughput %.2fx", targets[i].label.c_str(),
                loads[i].first.p50 / native.first.p50,
                loads[i].second.per_second / native.second.per_second);
    if (targets[i].group == "sandbox") {  // and against the unsandboxed one on its server
      const auto& outside = loads[creds_native];
      std::printf(" (the unsandboxed native's: p50 %.2fx, throughput %.2fx)",
                  loads[i].first.p50 / outside.first.p50,
                  loads[i].second.per_second / outside.second.per_second);
    }
    std::printf("\n");
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
  for (auto* n : {open_direct.get(), open_relay.get(), users_relay.get(), creds_relay.get(),
                  creds_signed.get(), sandbox_relay.get(), sandbox_signed.get()})
    if (n) n->stop();
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
