// Node benchmarks on real processes: a local nats-server with JetStream and a node in this
// process, deploying the static echo service over $NEX.DEPLOY; once with the process driver and,
// when this host can (root), once with the namespace sandbox, side by side.
//
//   build/bin/node_bench [--deploys N] [--workloads N]
//
// Prints: deploy latency (request sent -> first request answered on the service's subject) over
// N deploys, p50/p99, beside the time from starting the same binary directly to its first
// answer; INFO latency with M workloads running; memory per idle workload (the agent, and the
// service it runs) as RSS, PSS and private memory. RSS counts the shared libraries every agent
// maps in full; private memory is what one more workload adds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>
#include <tuple>

#include "api/control.h"
#include "bench_support.h"
#include "core/encoding.h"
#include "core/subprocess.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "node/node.h"
#include "sandbox/cni.h"
#include "sandbox/rootfs.h"

using namespace nex;
using bench::Memory;
using bench::memory_of;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

using bench::ms;
using bench::wait_for_answer;

// Memory of this node's agents that run a workload (the node runs in this process, so they are
// its children, whichever the driver), and of the workloads they run.
std::pair<std::vector<Memory>, std::vector<Memory>> agent_memory() {
  std::multimap<pid_t, pid_t> children;
  std::vector<pid_t> agents;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    if (auto close = line.rfind(')'); close != std::string::npos) {
      std::istringstream rest(line.substr(close + 2));
      char state;
      pid_t ppid;
      if (rest >> state >> ppid) children.emplace(ppid, std::stoi(name));
    }
    std::error_code ec;
    if (fs::read_symlink(e.path() / "exe", ec).filename() != "nex-agent") continue;
    agents.push_back(std::stoi(name));
  }
  std::vector<Memory> agent_mem, workload_mem;
  for (pid_t a : agents) {
    bool ours = false;
    auto [plo, phi] = children.equal_range(getpid());
    for (auto it = plo; it != phi; ++it) ours = ours || it->second == a;
    if (!ours) continue;
    auto [lo, hi] = children.equal_range(a);
    if (lo == hi) continue;  // a warm agent with no workload yet
    agent_mem.push_back(memory_of(a));
    for (auto it = lo; it != hi; ++it) workload_mem.push_back(memory_of(it->second));
  }
  return {agent_mem, workload_mem};
}

// A node configuration for the namespace driver: a root filesystem directory built from this
// build's agent and a CNI network of the bench's own, in a temporary directory. Empty, with the
// reason on stderr, when this host cannot run it.
std::optional<node::NodeConfig> namespace_config(const fs::path& dir) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "namespace driver skipped: it needs root\n");
    return std::nullopt;
  }
  node::NodeConfig c;
  c.no_sandbox = false;
  c.rootfs_filepath = dir / "rootfs";
  c.cni.network_name = "nexbench" + std::to_string(getpid() % 100000);
  c.cni.conf_dir = dir / "cni";
  fs::create_directories(c.cni.conf_dir);
  auto conflist = sandbox::default_conflist(c.cni.network_name);
  conflist["plugins"][0]["ipam"]["subnet"] = "10.232." + std::to_string(getpid() % 250) + ".0/24";
  std::ofstream(c.cni.conf_dir / (c.cni.network_name + ".conflist")) << conflist.dump();
  if (auto r = sandbox::build_rootfs_tree({.agent_binary = bench::kBinDir / "nex-agent"},
                                          c.rootfs_filepath);
      !r) {
    std::fprintf(stderr, "namespace driver skipped: %s\n", r.error().message.c_str());
    return std::nullopt;
  }
  return c;
}

struct Figures {
  std::string driver;
  std::vector<double> deploy_ms, direct_ms, info_ms;
  double sequential_ms = 0, concurrent_ms = 0;  // 20 deploys until all answer
  size_t machines = 0;
  std::vector<Memory> agent_mem, workload_mem;
};

}  // namespace

int main(int argc, char** argv) {
  int deploys = 50;
  int workloads = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--deploys") == 0) deploys = std::stoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--workloads") == 0) workloads = std::stoi(argv[i + 1]);
  }
  auto local = bench::start_nats_with_files({{"echoservice", bench::kBinDir / "echoservice"}});
  if (!local) return 1;
  const std::string url = local->server.url();
  const nats::Connection& conn = local->conn;
  const fs::path scratch =
      fs::temp_directory_path() / ("nex-node-bench-" + std::to_string(getpid()));
  const bench::Requester requester;

  auto measure = [&](const std::string& driver, node::NodeConfig config) -> std::optional<Figures> {
    Figures f{driver};
    const fs::path state = scratch / driver;
    std::fprintf(stderr, "starting the node, %s driver (its log follows on stderr)\n",
                 driver.c_str());
    config.machine_pool_size = 4;
    auto node = node::Node::start(
        {.config = config, .control = {.urls = {url}}, .state_dir = state, .version = "bench"});
    if (!node) {
      std::fprintf(stderr, "node: %s\n", node.error().message.c_str());
      return std::nullopt;
    }
    auto deploy = [&](const std::string& name, const std::string& subject) -> std::string {
      return bench::deploy(conn, (*node)->id(),
                           requester.sign(requester.deploy_request(
                                              (*node)->xkey(), name, "native", "echoservice",
                                              {{"NATS_URL", url}, {"ECHO_SUBJECT", subject}}),
                                          (*node)->id()))
          .value_or("");
    };
    auto stop = [&](const std::string& name, const std::string& id) {
      (void)conn.request("$NEX.STOP.default." + (*node)->id(),
                         requester.stop_request((*node)->id(), id, name), std::chrono::seconds(30));
    };

    // 1. Deploy latency vs starting the binary by hand.
    for (int i = 0; i < deploys; ++i) {
      const std::string subject = "bench.deploy." + std::to_string(i);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the warm pool refill
      const auto t0 = Clock::now();
      const std::string id = deploy("bench", subject);
      if (id.empty() || !wait_for_answer(conn, subject)) return std::nullopt;
      f.deploy_ms.push_back(ms(Clock::now() - t0));
      stop("bench", id);

      const std::string direct_subject = "bench.direct." + driver + std::to_string(i);
      const auto t1 = Clock::now();
      auto p = Subprocess::spawn({.argv = {(bench::kBinDir / "echoservice").string()},
                                  .env = {"NATS_URL=" + url, "ECHO_SUBJECT=" + direct_subject},
                                  .stdout_path = "/dev/null"});
      if (!p || !wait_for_answer(conn, direct_subject)) return std::nullopt;
      f.direct_ms.push_back(ms(Clock::now() - t1));
    }

    // 4. Twenty deploys one after another, then twenty sent at once: until all have answered.
    auto twenty = [&](const std::string& tag, bool at_once) -> std::optional<double> {
      constexpr int kCount = 20;
      std::vector<std::string> ids(kCount);
      auto one = [&](int i) {
        ids[i] = deploy(tag + std::to_string(i), "bench." + tag + "." + std::to_string(i));
      };
      std::this_thread::sleep_for(std::chrono::seconds(1));  // the warm pool refilled
      const auto t0 = Clock::now();
      if (at_once) {
        std::vector<std::thread> senders;
        for (int i = 0; i < kCount; ++i) senders.emplace_back(one, i);
        for (auto& t : senders) t.join();
      } else {
        for (int i = 0; i < kCount; ++i) one(i);
      }
      for (int i = 0; i < kCount; ++i) {
        if (ids[i].empty() || !wait_for_answer(conn, "bench." + tag + "." + std::to_string(i)))
          return std::nullopt;
      }
      const double total = ms(Clock::now() - t0);
      for (int i = 0; i < kCount; ++i) stop(tag + std::to_string(i), ids[i]);
      return total;
    };
    auto sequential = twenty("seq", false);
    auto concurrent = twenty("par", true);
    if (!sequential || !concurrent) return std::nullopt;
    f.sequential_ms = *sequential;
    f.concurrent_ms = *concurrent;

    // 2 and 3. Many idle workloads: memory per workload, INFO latency.
    for (int i = 0; i < workloads; ++i) {
      if (deploy("idle" + std::to_string(i), "bench.idle." + std::to_string(i)).empty())
        return std::nullopt;
    }
    for (int i = 0; i < workloads; ++i) {
      if (!wait_for_answer(conn, "bench.idle." + std::to_string(i))) return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
    std::tie(f.agent_mem, f.workload_mem) = agent_memory();
    for (int i = 0; i < 200; ++i) {
      const auto t0 = Clock::now();
      auto r = conn.request("$NEX.INFO.default." + (*node)->id(), "", std::chrono::seconds(5));
      if (!r) return std::nullopt;
      f.info_ms.push_back(ms(Clock::now() - t0));
      f.machines = json::parse(r->data())["data"]["machines"].size();
    }
    (*node)->stop();
    node->reset();
    return f;
  };

  std::vector<Figures> all;
  node::NodeConfig process;
  process.no_sandbox = true;
  if (auto f = measure("process", process)) all.push_back(std::move(*f));
  if (auto c = namespace_config(scratch / "host")) {
    if (auto f = measure("namespace", *c)) all.push_back(std::move(*f));
  }
  fs::remove_all(scratch);
  fs::remove_all("/var/lib/cni/networks/nexbench" + std::to_string(getpid() % 100000));
  if (all.empty()) return 1;

  auto mean_mib = [](const std::vector<Memory>& v, int64_t Memory::*field) {
    double sum = 0;
    for (const auto& m : v) sum += static_cast<double>(m.*field);
    return v.empty() ? 0.0 : sum / static_cast<double>(v.size()) / (1024.0 * 1024.0);
  };
  std::printf("\nNode benchmarks (nats-server on loopback, this machine: %u cores)\n\n",
              std::thread::hardware_concurrency());
  std::printf("| %-10s | %-46s | %9s | %9s |\n", "driver", "measure", "p50", "p99");
  std::printf("|%s|%s|%s|%s|\n", std::string(12, '-').c_str(), std::string(48, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str());
  for (const auto& f : all) {
    std::printf("| %-10s | %-46s | %7.2f ms | %7.2f ms |\n", f.driver.c_str(),
                ("deploy -> first answer, " + std::to_string(deploys) + " deploys").c_str(),
                bench::percentile(f.deploy_ms, 0.5), bench::percentile(f.deploy_ms, 0.99));
    std::printf("| %-10s | %-46s | %7.2f ms | %7.2f ms |\n", f.driver.c_str(),
                "start the binary by hand -> first answer", bench::percentile(f.direct_ms, 0.5),
                bench::percentile(f.direct_ms, 0.99));
    std::printf("| %-10s | %-46s | %7.2f ms | %7.2f ms |\n", f.driver.c_str(),
                ("INFO request with " + std::to_string(f.machines) + " workloads running").c_str(),
                bench::percentile(f.info_ms, 0.5), bench::percentile(f.info_ms, 0.99));
  }
  std::printf("\n| %-10s | %-46s | %12s |\n", "driver", "20 deploys until all answer (pool of 4)",
              "total");
  std::printf("|%s|%s|%s|\n", std::string(12, '-').c_str(), std::string(48, '-').c_str(),
              std::string(14, '-').c_str());
  for (const auto& f : all) {
    std::printf("| %-10s | %-46s | %9.1f ms |\n", f.driver.c_str(), "one after another",
                f.sequential_ms);
    std::printf("| %-10s | %-46s | %9.1f ms |\n", f.driver.c_str(), "sent at once",
                f.concurrent_ms);
  }
  std::printf("\n| %-10s | %-42s | %9s | %9s | %9s |\n", "driver",
              "memory per idle workload, mean (MiB)", "RSS", "PSS", "private");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(12, '-').c_str(), std::string(44, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str());
  for (const auto& f : all) {
    std::printf("| %-10s | %-42s | %9.2f | %9.2f | %9.2f |\n", f.driver.c_str(),
                ("nex-agent, over " + std::to_string(f.agent_mem.size()) + " workloads").c_str(),
                mean_mib(f.agent_mem, &Memory::rss), mean_mib(f.agent_mem, &Memory::pss),
                mean_mib(f.agent_mem, &Memory::private_));
    std::printf("| %-10s | %-42s | %9.2f | %9.2f | %9.2f |\n", f.driver.c_str(),
                "the echo service it runs", mean_mib(f.workload_mem, &Memory::rss),
                mean_mib(f.workload_mem, &Memory::pss),
                mean_mib(f.workload_mem, &Memory::private_));
  }
  std::fflush(stdout);
  return 0;
}
