// Node benchmarks on real processes: a local nats-server with JetStream and a node (process
// driver) in this process, deploying the static echo service over $NEX.DEPLOY.
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
#include <sstream>
#include <thread>

#include "api/control.h"
#include "bench_support.h"
#include "core/encoding.h"
#include "core/subprocess.h"
#include "crypto/jwt.h"
#include "crypto/xkeys.h"
#include "node/node.h"

using namespace nex;
using bench::Memory;
using bench::memory_of;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Polls `subject` until the echo service answers; returns when it did.
bool wait_for_answer(const nats::Connection& c, const std::string& subject) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    auto r = c.request(subject, "ping", std::chrono::milliseconds(200));
    if (r && r->data() == "ping") return true;
    if (!r && r.error().code != ErrorCode::kNoResponders)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return false;
}

// Memory of this node's agents that run a workload (found by their sandbox paths), and of the
// workloads they run.
std::pair<std::vector<Memory>, std::vector<Memory>> agent_memory(const std::string& state_dir) {
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
    std::ifstream env(e.path() / "environ");
    std::string environ((std::istreambuf_iterator<char>(env)), std::istreambuf_iterator<char>());
    if (environ.find(state_dir) != std::string::npos) agents.push_back(std::stoi(name));
  }
  std::vector<Memory> agent_mem, workload_mem;
  for (pid_t a : agents) {
    auto [lo, hi] = children.equal_range(a);
    if (lo == hi) continue;  // a warm agent with no workload yet
    agent_mem.push_back(memory_of(a));
    for (auto it = lo; it != hi; ++it) workload_mem.push_back(memory_of(it->second));
  }
  return {agent_mem, workload_mem};
}

}  // namespace

int main(int argc, char** argv) {
  int deploys = 50;
  int workloads = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--deploys") == 0) deploys = std::stoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--workloads") == 0) workloads = std::stoi(argv[i + 1]);
  }
  auto local = bench::start_nats_with_files({{"echoservice", bench::kBinDir / "echoservice"}});
  if (!local) return 1;
  const std::string url = local->server.url();
  const nats::Connection& conn = local->conn;
  const fs::path state = fs::temp_directory_path() / ("nex-node-bench-" + std::to_string(getpid()));
  std::fprintf(stderr, "starting the node (its log follows on stderr)\n");
  node::NodeConfig config;
  config.no_sandbox = true;
  config.machine_pool_size = 4;
  auto node = node::Node::start(
      {.config = config, .control = {.urls = {url}}, .state_dir = state, .version = "bench"});
  if (!node) {
    std::fprintf(stderr, "node: %s\n", node.error().message.c_str());
    return 1;
  }
  const bench::Requester requester;
  const auto& issuer = requester.issuer;
  const std::string deploy_subject = "$NEX.DEPLOY.default." + (*node)->id();
  auto deploy_request = [&](const std::string& name, const std::string& subject) {
    return requester
        .deploy_request((*node)->xkey(), name, "native", "echoservice",
                        {{"NATS_URL", url}, {"ECHO_SUBJECT", subject}})
        .dump();
  };
  auto deploy = [&](const std::string& name, const std::string& subject) -> std::string {
    auto r = conn.request(deploy_subject, deploy_request(name, subject), std::chrono::seconds(30));
    if (!r) return {};
    json j = json::parse(r->data());
    if (!j["error"].is_null()) {
      std::fprintf(stderr, "deploy refused: %s\n", j["error"].get<std::string>().c_str());
      for (const auto& e : fs::directory_iterator(state / "run" / "sandboxes")) {
        if (e.path().extension() == ".log" && fs::file_size(e.path()) > 0) {
          std::ifstream log(e.path());
          std::fprintf(stderr, "%s: %s\n", e.path().filename().c_str(),
                       std::string(std::istreambuf_iterator<char>(log), {}).c_str());
        }
      }
      return {};
    }
    return j["data"]["id"];
  };
  auto stop = [&](const std::string& name, const std::string& id) {
    const std::string jwt = crypto::encode_jwt({.sub = name, .nats = {{"type", "stop"}}}, issuer);
    (void)conn.request("$NEX.STOP.default." + (*node)->id(),
                       json{{"workload_id", id}, {"workload_jwt", jwt}}.dump(),
                       std::chrono::seconds(30));
  };

  // 1. Deploy latency vs starting the binary by hand.
  std::vector<double> deploy_ms, direct_ms;
  for (int i = 0; i < deploys; ++i) {
    const std::string subject = "bench.deploy." + std::to_string(i);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the warm pool refill
    const auto t0 = Clock::now();
    const std::string id = deploy("bench", subject);
    if (id.empty() || !wait_for_answer(conn, subject)) return 1;
    deploy_ms.push_back(ms(Clock::now() - t0));
    stop("bench", id);

    const std::string direct_subject = "bench.direct." + std::to_string(i);
    const auto t1 = Clock::now();
    auto p = Subprocess::spawn({.argv = {(bench::kBinDir / "echoservice").string()},
                                .env = {"NATS_URL=" + url, "ECHO_SUBJECT=" + direct_subject},
                                .stdout_path = "/dev/null"});
    if (!p || !wait_for_answer(conn, direct_subject)) return 1;
    direct_ms.push_back(ms(Clock::now() - t1));
  }

  // 2 and 3. Many idle workloads: memory per workload, INFO latency.
  std::vector<std::string> ids;
  for (int i = 0; i < workloads; ++i) {
    const std::string id = deploy("idle" + std::to_string(i), "bench.idle." + std::to_string(i));
    if (id.empty()) return 1;
    ids.push_back(id);
  }
  for (int i = 0; i < workloads; ++i) {
    if (!wait_for_answer(conn, "bench.idle." + std::to_string(i))) return 1;
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto [agent_mem, workload_mem] = agent_memory(state.string());
  std::vector<double> info_ms;
  size_t machines = 0;
  for (int i = 0; i < 200; ++i) {
    const auto t0 = Clock::now();
    auto r = conn.request("$NEX.INFO.default." + (*node)->id(), "", std::chrono::seconds(5));
    if (!r) return 1;
    info_ms.push_back(ms(Clock::now() - t0));
    machines = json::parse(r->data())["data"]["machines"].size();
  }
  auto mean_mib = [](const std::vector<Memory>& v, int64_t Memory::*field) {
    double sum = 0;
    for (const auto& m : v) sum += static_cast<double>(m.*field);
    return v.empty() ? 0.0 : sum / static_cast<double>(v.size()) / (1024.0 * 1024.0);
  };

  std::printf(
      "\nNode benchmarks (process driver, nats-server on loopback, this machine: %u cores)\n\n",
      std::thread::hardware_concurrency());
  std::printf("| %-58s | %9s | %9s |\n", "measure", "p50", "p99");
  std::printf("|%s|%s|%s|\n", std::string(60, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str());
  std::printf("| %-58s | %7.2f ms | %7.2f ms |\n",
              ("deploy -> first answer, " + std::to_string(deploys) + " deploys").c_str(),
              bench::percentile(deploy_ms, 0.5), bench::percentile(deploy_ms, 0.99));
  std::printf("| %-58s | %7.2f ms | %7.2f ms |\n", "start the binary by hand -> first answer",
              bench::percentile(direct_ms, 0.5), bench::percentile(direct_ms, 0.99));
  std::printf("| %-58s | %7.2f ms | %7.2f ms |\n",
              ("INFO request with " + std::to_string(machines) + " workloads running").c_str(),
              bench::percentile(info_ms, 0.5), bench::percentile(info_ms, 0.99));
  std::printf("\n| %-42s | %9s | %9s | %9s |\n", "memory per idle workload, mean (MiB)", "RSS",
              "PSS", "private");
  std::printf("|%s|%s|%s|%s|\n", std::string(44, '-').c_str(), std::string(11, '-').c_str(),
              std::string(11, '-').c_str(), std::string(11, '-').c_str());
  std::printf("| %-42s | %9.2f | %9.2f | %9.2f |\n",
              ("nex-agent, over " + std::to_string(agent_mem.size()) + " workloads").c_str(),
              mean_mib(agent_mem, &Memory::rss), mean_mib(agent_mem, &Memory::pss),
              mean_mib(agent_mem, &Memory::private_));
  std::printf("| %-42s | %9.2f | %9.2f | %9.2f |\n", "the echo service it runs",
              mean_mib(workload_mem, &Memory::rss), mean_mib(workload_mem, &Memory::pss),
              mean_mib(workload_mem, &Memory::private_));
  std::fflush(stdout);
  (*node)->stop();
  node->reset();
  fs::remove_all(state);
  return 0;
}
