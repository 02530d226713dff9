// Scale: many nodes on one nats-server, and many workloads on one node. How long until every
// node has answered a `nex node ls` ping and an auction, and how long an INFO takes while one
// node runs 500 workloads (DESIGN: < 50 ms). Nodes are real (in this process, process driver,
// a warm pool of one, durable commands off so 100 nodes make no 600 consumers).
//
//   build/bin/scale_bench [--nodes N] [--workloads N] [--rounds N]
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

#include "bench_support.h"
#include "core/nuid.h"
#include "node/node.h"

using namespace nex;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

// Publishes `subject` with a reply inbox and times the answers: until the first and the n-th.
std::pair<double, double> gather(const nats::Connection& conn, const std::string& subject,
                                 const std::string& body, size_t n) {
  const std::string inbox = "_INBOX." + next_nuid();
  auto sub = conn.subscribe_sync(inbox);
  if (!sub) return {-1, -1};
  (void)conn.flush();
  const auto t0 = Clock::now();
  (void)conn.publish(subject, body, inbox);
  double first = -1;
  size_t got = 0;
  while (got < n) {
    auto m = sub->next(5s);
    if (!m) return {first, -1};
    if (++got == 1) first = bench::ms(Clock::now() - t0);
  }
  return {first, bench::ms(Clock::now() - t0)};
}

}  // namespace

int main(int argc, char** argv) {
  int nodes = 100;
  int workloads = 500;
  int rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--nodes")) nodes = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--workloads")) workloads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
  }
  auto local = bench::start_nats_with_files({{"echoservice", bench::kBinDir / "echoservice"}});
  if (!local) return 1;
  const std::string url = local->server.url();
  const nats::Connection& conn = local->conn;
  const fs::path scratch =
      fs::temp_directory_path() / ("nex-scale-bench-" + std::to_string(getpid()));

  node::NodeConfig config;
  config.no_sandbox = true;
  config.machine_pool_size = 1;
  config.commands.enabled = false;
  std::vector<std::unique_ptr<node::Node>> all;
  const auto started = Clock::now();
  for (int i = 0; i < nodes; ++i) {
    config.node_name = "scale" + std::to_string(i);
    auto n = node::Node::start({.config = config,
                                .control = {.urls = {url}},
                                .state_dir = scratch / config.node_name,
                                .version = "bench"});
    if (!n) {
      std::fprintf(stderr, "node %d: %s\n", i, n.error().message.c_str());
      return 1;
    }
    all.push_back(std::move(*n));
  }
  const double start_ms = bench::ms(Clock::now() - started);

  std::vector<double> ping_first, ping_all, auction_first, auction_all;
  const std::string auction = json{{"os", "linux"}, {"workload_types", {"native"}}}.dump();
  for (int r = 0; r < rounds; ++r) {
    auto [pf, pa] = gather(conn, "$NEX.PING", "", all.size());
    auto [af, aa] = gather(conn, "$NEX.AUCTION", auction, all.size());
    if (pa < 0 || aa < 0) {
      std::fprintf(stderr, "not every node answered in round %d\n", r);
      return 1;
    }
    ping_first.push_back(pf);
    ping_all.push_back(pa);
    auction_first.push_back(af);
    auction_all.push_back(aa);
  }

  // One node with many workloads.
  const bench::Requester requester;
  node::Node& big = *all.front();
  const auto deploying = Clock::now();
  for (int i = 0; i < workloads; ++i) {
    const std::string name = "idle" + std::to_string(i);
    if (!bench::deploy(conn, big.id(),
                       requester.sign(requester.deploy_request(
                                          big.xkey(), name, "native", "echoservice",
                                          {{"NATS_URL", url},
                                           {"ECHO_SUBJECT", "scale.idle." + std::to_string(i)}}),
                                      big.id())))
      return 1;
  }
  const double deploy_all_ms = bench::ms(Clock::now() - deploying);
  std::vector<double> info;
  size_t machines = 0;
  for (int i = 0; i < 100; ++i) {
    const auto t0 = Clock::now();
    auto r = conn.request("$NEX.INFO.default." + big.id(), "", 10s);
    if (!r) return 1;
    info.push_back(bench::ms(Clock::now() - t0));
    machines = json::parse(r->data())["data"]["machines"].size();
  }

  std::printf("\nScale (one nats-server on loopback, this machine: %u cores)\n\n",
              std::thread::hardware_concurrency());
  std::printf("| %-52s | %9s | %9s |\n", "measure", "p50", "p99");
  std::printf("|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str());
  auto row = [](const std::string& what, const std::vector<double>& v) {
    std::printf("| %-52s | %6.2f ms | %6.2f ms |\n", what.c_str(), bench::percentile(v, 0.5),
                bench::percentile(v, 0.99));
  };
  const std::string n = std::to_string(all.size());
  row("PING (nex node ls): first of " + n + " nodes answers", ping_first);
  row("PING (nex node ls): all " + n + " nodes answered", ping_all);
  row("AUCTION: first bid of " + n + " nodes", auction_first);
  row("AUCTION: all " + n + " bids", auction_all);
  row("INFO of a node running " + std::to_string(machines) + " workloads", info);
  std::printf("\n%s nodes started in %.0f ms; %d workloads deployed one after another in %.0f ms\n",
              n.c_str(), start_ms, workloads, deploy_all_ms);
  std::fflush(stdout);
  all.clear();
  fs::remove_all(scratch);
  return 0;
}
