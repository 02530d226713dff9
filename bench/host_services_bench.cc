// host_services_bench: what a host-service call costs a function. One node on a local
// nats-server with JetStream runs the test fixtures that call host services
// (tests/fixtures/js/host_services.js, tests/fixtures/wasm/host_services.c) and plain echo
// functions; one requester sends each kind of invocation in turn and times the round trip.
// "call" is the round trip's p50 minus the echo function's: the host call's own cost.
//
//   build/bin/host_services_bench [--requests N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bench_support.h"
#include "node/node.h"

using namespace nex;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

using bench::kSourceDir;

struct Row {
  std::string label, subject, payload;
  std::vector<double> ms;
  int errors = 0;
};

void measure(const nats::Connection& conn, Row& row, int requests) {
  const auto end = Clock::now() + std::chrono::seconds(10);
  for (int i = 0; i < requests && Clock::now() < end; ++i) {
    const auto t0 = Clock::now();
    auto r = conn.request(row.subject, row.payload, std::chrono::seconds(5));
    const double ms = bench::ms(Clock::now() - t0);
    if (!r || r->header("Nats-Service-Error")) {
      ++row.errors;
      continue;
    }
    row.ms.push_back(ms);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 1000;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::strcmp(argv[i], "--requests") == 0) requests = std::max(1, std::atoi(argv[i + 1]));
  const fs::path hs_wasm = bench::kBinDir / "wasm" / "host_services.wasm";
  const fs::path echo_wasm = bench::kBinDir / "wasm" / "echo.wasm";
  if (!fs::exists(hs_wasm) || !fs::exists(echo_wasm)) {
    std::fprintf(stderr,
                 "the wasm modules are missing: build with clang and wasi-libc installed\n");
    return 1;
  }
  const fs::path work = fs::temp_directory_path() / ("nex-hs-bench-" + std::to_string(getpid()));
  fs::create_directories(work);
  std::ofstream(work / "echo.js") << "(subject, payload) => payload;\n";
  auto local = bench::start_nats_with_files(
      {{"hs.js", kSourceDir / "tests" / "fixtures" / "js" / "host_services.js"},
       {"hs.wasm", hs_wasm},
       {"echo.js", work / "echo.js"},
       {"echo.wasm", echo_wasm}});
  if (!local) return 1;
  const nats::Connection& conn = local->conn;
  node::NodeConfig config;
  config.no_sandbox = true;
  config.machine_pool_size = 4;
  std::fprintf(stderr, "starting the node (its log follows on stderr)\n");
  auto node = node::Node::start({.config = config,
                                 .control = {.urls = {local->server.url()}},
                                 .state_dir = work / "state",
                                 .version = "bench"});
  if (!node) {
    std::fprintf(stderr, "node: %s\n", node.error().message.c_str());
    return 1;
  }
  const bench::Requester requester;
  auto deploy = [&](const std::string& name, const std::string& type, const std::string& key,
                    const std::string& trigger) {
    return bench::deploy(conn, (*node)->id(),
                         requester.sign(requester.deploy_request((*node)->xkey(), name, type, key,
                                                                 json::object(), {trigger}),
                                        (*node)->id()))
        .has_value();
  };
  if (!deploy("hsjs", "v8", "hs.js", "bench.hs.js") ||
      !deploy("hswasm", "wasm", "hs.wasm", "bench.hs.wasm") ||
      !deploy("echojs", "v8", "echo.js", "bench.echo.js") ||
      !deploy("echowasm", "wasm", "echo.wasm", "bench.echo.wasm"))
    return 1;
  auto sink = *conn.subscribe("bench.sink", [](nats::Message) {});

  std::vector<Row> rows = {
      {"JavaScript: echo, no host call", "bench.echo.js", "x"},
      {"JavaScript: kv.set", "bench.hs.js", R"({"op":"kv.set","key":"bench","value":"value"})"},
      {"JavaScript: kv.get", "bench.hs.js", R"({"op":"kv.get","key":"bench"})"},
      {"JavaScript: messaging.publish", "bench.hs.js",
       R"({"op":"pub","subject":"bench.sink","value":"x"})"},
      {"WebAssembly: echo, no host call", "bench.echo.wasm", "x"},
      {"WebAssembly: kv_set", "bench.hs.wasm", "kv_set\nbench\nvalue"},
      {"WebAssembly: kv_get", "bench.hs.wasm", "kv_get\nbench\n"},
      {"WebAssembly: publish", "bench.hs.wasm", "publish\nbench.sink\nx"},
  };
  for (auto& row : rows) {
    for (int i = 0; i < 50; ++i)
      (void)conn.request(row.subject, row.payload, std::chrono::seconds(5));
    measure(conn, row, requests);
  }
  std::printf("\nHost-service calls from functions: one requester, %d requests each, one node\n\n",
              requests);
  std::printf("| invocation | p50 ms | p99 ms | call p50 ms | errors |\n|---|---|---|---|---|\n");
  double baseline = 0;
  for (const auto& row : rows) {
    const double p50 = bench::percentile(row.ms, 0.5);
    const bool is_baseline = row.label.find("no host call") != std::string::npos;
    if (is_baseline) baseline = p50;
    std::printf(
        "| %s | %.3f | %.3f | %s | %d |\n", row.label.c_str(), p50, bench::percentile(row.ms, 0.99),
        is_baseline ? "-" : std::to_string(p50 - baseline).substr(0, 5).c_str(), row.errors);
  }
  node->reset();
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
