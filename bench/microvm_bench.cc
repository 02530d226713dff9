// The microvm sandbox beside the namespace sandbox, on real processes: a local nats-server, the
// node's internal NATS, Debian's kernel unpacked for the guest, and QEMU.
//
//   sudo build/bin/microvm_bench [--boots N] [--deploys N]
//
// Prints, per driver:
// - boot to handshake: the driver starts a sandbox until its agent's handshake arrives on the
//   internal NATS (a VM: QEMU, the guest kernel, the initramfs, init, the agent);
// - devrun to first answer, warm pool: a deploy of the echo service (NATS_URL on the host's
//   loopback) until it answers, taking an agent the pool had ready;
// - devrun to first answer, empty pool: the same right after another deploy took the warm
//   agent, so this one waits for a sandbox to boot;
// - echo round trip: request to reply with the echo service in the sandbox, 500 times;
// - memory per idle sandbox: the VMM (or the agent) of each warm sandbox, as RSS, and as its
//   private memory (what one more costs; RSS also counts the kernel image's page cache, which
//   every VM shares).
// The accelerator the microvm driver picked, and why, is printed first.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>

#include "bench_support.h"
#include "node/internal_server.h"
#include "node/node.h"
#include "node/sandbox_setup.h"
#include "testing/microvm_host.h"
#include "testing/sandbox_host.h"

using namespace nex;
using bench::Memory;
using bench::ms;
using bench::percentile;
using bench::wait_for_answer;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

// GET http://127.0.0.1:PORT/metrics, the value of one unlabelled metric.
std::optional<double> scrape(const std::string& url, const std::string& metric) {
  const int port = std::stoi(url.substr(url.rfind(':') + 1));
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return std::nullopt;
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string body;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) body.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t at = body.find("\n" + metric + " ");
  if (at == std::string::npos) return std::nullopt;
  return std::stod(body.substr(at + metric.size() + 2));
}

// The VMMs (or agents) of warm sandboxes: children of this process with no workload.
std::vector<pid_t> sandbox_processes(const std::string& exe) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::error_code ec;
    if (fs::read_symlink(e.path() / "exe", ec).filename() != exe) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == getpid()) out.push_back(std::stoi(name));
  }
  return out;
}

struct Row {
  std::string driver;
  std::vector<double> boot_ms, warm_ms, cold_ms, echo_ms;
  std::vector<Memory> idle;
};

// Boot to handshake, `n` times, with the driver alone and an internal NATS.
void measure_boots(sandbox::Driver& driver, const fs::path& dir, int n, Row& row) {
  auto internal = node::InternalServer::start(dir / "internal", driver.internal_listen_host());
  if (!internal) {
    std::fprintf(stderr, "internal NATS: %s\n", internal.error().message.c_str());
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  std::set<std::string> shaken;
  auto sub = (*internal)->connection().subscribe("hostint.*.handshake", [&](nats::Message m) {
    if (!m.reply().empty()) (void)(*internal)->connection().publish(m.reply(), "{}");
    std::lock_guard lock(mu);
    shaken.insert(std::string(m.subject().substr(8, m.subject().size() - 8 - 10)));
    cv.notify_all();
  });
  for (int i = 0; i < n; ++i) {
    const std::string id = "bench" + std::to_string(i) + "x" + std::to_string(getpid());
    auto seeds = (*internal)->add_workloads({id});
    if (!seeds) continue;
    const auto t0 = Clock::now();
    auto sandbox = driver.start({.workload_id = id,
                                 .agent_binary = bench::kBinDir / "nex-agent",
                                 .work_dir = dir / id,
                                 .artifact_name = "workload",
                                 .env = {std::string(api::kEnvWorkloadId) + "=" + id,
                                         std::string(api::kEnvNatsSeed) + "=" + seeds->at(id)},
                                 .log_file = dir / (id + ".log"),
                                 .internal_nats_port = (*internal)->port()});
    if (!sandbox) {
      std::fprintf(stderr, "start: %s\n", sandbox.error().message.c_str());
      continue;
    }
    std::unique_lock lock(mu);
    if (cv.wait_for(lock, std::chrono::seconds(120), [&] { return shaken.count(id) > 0; }))
      row.boot_ms.push_back(ms(Clock::now() - t0));
    lock.unlock();
    (*sandbox)->stop(std::chrono::seconds(1));
    (void)(*internal)->remove_workload(id);
  }
}

// devrun to first answer with a warm agent, then with none (right after another deploy).
void measure_deploys(node::NodeConfig config, const std::string& vmm_exe, const std::string& url,
                     const nats::Connection& conn, const bench::Requester& requester,
                     const fs::path& state, int n, Row& row) {
  config.machine_pool_size = 3;
  auto node = node::Node::start({.config = config,
                                 .control = {.urls = {url}},
                                 .state_dir = state,
                                 .version = "bench",
                                 .metrics_listen = "127.0.0.1:0"});
  if (!node) {
    std::fprintf(stderr, "node: %s\n", node.error().message.c_str());
    return;
  }
  auto wait_pool = [&](double want) {
    const auto deadline = Clock::now() + std::chrono::seconds(300);
    while (Clock::now() < deadline) {
      if (scrape((*node)->metrics_url(), "nex_warm_agents").value_or(0) >= want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  };
  if (!wait_pool(3)) return;
  for (Memory m : [&] {
         std::vector<Memory> v;
         for (pid_t p : sandbox_processes(vmm_exe)) v.push_back(bench::memory_of(p));
         return v;
       }())
    row.idle.push_back(m);
  auto deploy = [&](int i) -> std::optional<double> {
    const std::string subject = "bench.vm." + std::to_string(i);
    json req =
        requester.deploy_request((*node)->xkey(), "echo" + std::to_string(i), "native",
                                 "echoservice", {{"NATS_URL", url}, {"ECHO_SUBJECT", subject}});
    const auto t0 = Clock::now();
    auto r = conn.request("$NEX.DEPLOY.default." + (*node)->id(),
                          requester.sign(req, (*node)->id()).dump(), std::chrono::seconds(180));
    if (!r || !json::parse(r->data())["error"].is_null()) {
      std::fprintf(stderr, "deploy: %s\n",
                   r ? std::string(r->data()).c_str() : r.error().message.c_str());
      return std::nullopt;
    }
    if (!wait_for_answer(conn, subject, std::chrono::seconds(60))) return std::nullopt;
    return ms(Clock::now() - t0);
  };
  // The echo service's round trip through the sandbox's network (for a VM: the guest's
  // loopback, the agent's forwarder, QEMU's user network, the gateway).
  if (deploy(1000)) {
    for (int i = 0; i < 500; ++i) {
      const auto t0 = Clock::now();
      if (conn.request("bench.vm.1000", "ping", std::chrono::seconds(5)))
        row.echo_ms.push_back(ms(Clock::now() - t0));
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!wait_pool(3)) break;
    // Three warm agents: the first two deploys take warm ones, the fourth finds none.
    if (auto t = deploy(4 * i)) row.warm_ms.push_back(*t);
    (void)deploy(4 * i + 1);
    (void)deploy(4 * i + 2);
    if (auto t = deploy(4 * i + 3)) row.cold_ms.push_back(*t);
  }
}

void print(const Row& r) {
  auto cell = [](const std::vector<double>& v, const char* format = "%.0f / %.0f ms") {
    char buf[64];
    if (v.empty()) return std::string("-");
    std::snprintf(buf, sizeof buf, format, percentile(v, 0.5), percentile(v, 0.99));
    return std::string(buf);
  };
  int64_t rss = 0, priv = 0;
  for (const auto& m : r.idle) {
    rss += m.rss;
    priv += m.private_;
  }
  const size_t k = std::max<size_t>(1, r.idle.size());
  std::printf("| %-9s | %-19s | %-19s | %-19s | %-17s | %5.1f MiB | %5.1f MiB |\n",
              r.driver.c_str(), cell(r.boot_ms).c_str(), cell(r.warm_ms).c_str(),
              cell(r.cold_ms).c_str(), cell(r.echo_ms, "%.2f / %.2f ms").c_str(),
              static_cast<double>(rss) / k / (1 << 20), static_cast<double>(priv) / k / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
  int boots = 10, deploys = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--boots") == 0) boots = std::stoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--deploys") == 0) deploys = std::stoi(argv[i + 1]);
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "microvm_bench needs root (both sandboxes do)\n");
    return 1;
  }
  const fs::path dir =
      fs::temp_directory_path() / ("nex-microvm-bench-" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  struct Cleanup {
    fs::path d;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(d, ec);
    }
  } cleanup{dir};

  // The tests' set-ups: a guest (Debian's kernel, an initramfs, a rootfs image) and a CNI
  // network with a rootfs directory, each in a temporary directory of its own.
  const auto& guest = testing::MicrovmHost::get();
  if (guest.unavailable()) {
    std::fprintf(stderr, "microvm: %s\n", guest.unavailable()->c_str());
    return 1;
  }
  const node::NodeConfig vm = guest.config();
  const auto& host = testing::SandboxHost::get();
  if (host.unavailable()) {
    std::fprintf(stderr, "namespace: %s\n", host.unavailable()->c_str());
    return 1;
  }
  const node::NodeConfig ns = host.config();

  auto local = bench::start_nats_with_files({{"echoservice", bench::kBinDir / "echoservice"}});
  if (!local) return 1;
  const bench::Requester requester;
  std::vector<Row> rows;
  for (auto& [name, config, exe] :
       std::vector<std::tuple<std::string, node::NodeConfig, std::string>>{
           {"namespace", ns, "nex-agent"}, {"microvm", vm, "qemu-system-x86_64"}}) {
    Row row{name};
    auto driver = node::make_sandbox_driver(config, bench::kBinDir / "nex-agent",
                                            "bench" + std::to_string(getpid()) + name);
    if (!driver) {
      std::fprintf(stderr, "%s driver skipped: %s\n", name.c_str(), driver.error().message.c_str());
      continue;
    }
    if (!(*driver)->details().empty())
      std::printf("%s: %s\n", name.c_str(), (*driver)->details().c_str());
    std::fprintf(stderr, "%s: %d boots\n", name.c_str(), boots);
    measure_boots(**driver, dir / (name + "-boots"), boots, row);
    driver->reset();
    std::fprintf(stderr, "%s: %d rounds of deploys\n", name.c_str(), deploys);
    measure_deploys(config, exe, local->server.url(), local->conn, requester,
                    dir / (name + "-node"), deploys, row);
    rows.push_back(std::move(row));
  }
  std::printf("\nguest kernel %s; p50 / p99 over %d boots and %d deploys of each kind\n\n",
              guest.kernel_release().c_str(), boots, deploys);
  std::printf(
      "| driver    | boot to handshake   | devrun, warm pool   | devrun, empty pool  "
      "| echo round trip   |  idle RSS | idle priv |\n");
  std::printf(
      "|-----------|---------------------|---------------------|---------------------"
      "|-------------------|-----------|-----------|\n");
  for (const auto& r : rows) print(r);
  return 0;
}
