// nex-agent: started by the node inside a sandbox, one per workload. Reads its bootstrap from
// the environment (NEX_WORKLOADID, NEX_NODE_NATS_HOST/PORT, NEX_NODE_NATS_NKEY_SEED).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <thread>

#include "agent/agent.h"
#include "core/unique_fd.h"

namespace {

std::string take_env(const char* name) {
  const char* v = std::getenv(name);
  std::string out = v ? v : "";
  unsetenv(name);  // nothing the agent starts later inherits its bootstrap secrets
  return out;
}

// SIGTERM and SIGINT stop the agent (and its workload) in order. As pid 1 of a namespace
// sandbox it would otherwise ignore them. Blocked before any thread starts; a thread waits for
// them (stop_on_signals). (Workloads start with an empty mask: Subprocess resets it.)
sigset_t block_stop_signals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// What the node hands the agent in its environment.
struct Bootstrap {
  std::string id, host, port, seed, artifact;
  nex::agent::VmSetting vm;
  nex::UniqueFd trigger_channel;  // the node's trigger channel, when it handed one over
};

// The bootstrap, taken out of the environment; nullopt (said on stderr) when it is incomplete.
std::optional<Bootstrap> take_bootstrap() {
  namespace api = nex::api;
  Bootstrap b{.id = take_env(api::kEnvWorkloadId),
              .host = take_env(api::kEnvNatsHost),
              .port = take_env(api::kEnvNatsPort),
              .seed = take_env(api::kEnvNatsSeed),
              .artifact = take_env(api::kEnvArtifactPath),
              .vm = {.fetch_artifact = !take_env(api::kEnvArtifactFetch).empty(),
                     .loopback_gateway = take_env(api::kEnvLoopbackGateway)},
              .trigger_channel = {}};
  // Nothing the agent starts inherits the trigger channel.
  if (const std::string fd = take_env(api::kEnvTriggerFd); !fd.empty()) {
    const int n = std::atoi(fd.c_str());
    if (n < 3 || fcntl(n, F_SETFD, FD_CLOEXEC) != 0) {
      std::fprintf(stderr, "nex-agent: %s=%s is not an open descriptor\n", api::kEnvTriggerFd,
                   fd.c_str());
      return std::nullopt;
    }
    b.trigger_channel.reset(n);
  }
  if (b.id.empty() || b.host.empty() || b.port.empty() || b.seed.empty()) {
    std::fprintf(
        stderr,
        "nex-agent: missing bootstrap environment (%s, %s, %s, %s); it is started by a nex node\n",
        api::kEnvWorkloadId, api::kEnvNatsHost, api::kEnvNatsPort, api::kEnvNatsSeed);
    return std::nullopt;
  }
  return b;
}

// Connects to the node and starts the agent (its handshake). The node admits the agent's user
// by reloading its internal server, and a connection made while a reload is under way can be
// dropped by it: the handshake then fails with a send error on a closed connection. A dropped
// connection is made again, and the handshake repeated, within the same patience; any other
// failure ends the agent (false, said on stderr).
bool start_agent(const Bootstrap& b, const nex::nats::ConnectOptions& options,
                 std::optional<nex::nats::Connection>& conn,
                 std::optional<nex::agent::Agent>& started) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const auto patience = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto connected = nex::agent::connect_to_node(options, patience);
    if (!connected) {
      std::fprintf(stderr, "nex-agent %s: %s\n", b.id.c_str(), connected.error().message.c_str());
      return false;
    }
    conn = std::move(*connected);
    started.emplace(*conn, options, b.id, b.artifact, b.vm, b.trigger_channel.get());
    auto st = started->start();
    if (st) return true;
    const bool dropped = !conn->connected();
    started.reset();
    if (!dropped || std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "nex-agent %s: %s\n", b.id.c_str(), st.error().message.c_str());
      return false;
    }
    std::fprintf(stderr, "nex-agent %s: %s; connecting again\n", b.id.c_str(),
                 st.error().message.c_str());
  }
}

std::mutex stop_mu;
nex::agent::Agent* stop_target = nullptr;  // cleared before the agent goes away

// A thread that waits for a stop signal and asks the agent to stop.
void stop_on_signals(sigset_t stop_signals, nex::agent::Agent& agent) {
  {
    std::lock_guard lock(stop_mu);
    stop_target = &agent;
  }
  std::thread([stop_signals] {
    int signo = 0;
    sigwait(&stop_signals, &signo);
    std::lock_guard lock(stop_mu);
    if (stop_target) stop_target->request_stop();
  }).detach();
}

}  // namespace

int main() {
  using namespace nex;
  // Not dumpable: the workload (same user, in a sandbox) cannot read this process's memory or
  // its initial environment, which holds the agent's internal-NATS seed.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // A namespace sandbox starts the agent from a descriptor, which some kernels name the process
  // after ("3"): name it so that `ps` inside the sandbox says what it is.
  prctl(PR_SET_NAME, "nex-agent", 0, 0, 0);
  const sigset_t stop_signals = block_stop_signals();
  const std::optional<Bootstrap> bootstrap = take_bootstrap();
  if (!bootstrap) return 2;
  const std::string& id = bootstrap->id;
  const nats::ConnectOptions options{.urls = {"nats://" + bootstrap->host + ":" + bootstrap->port},
                                     .name = "nex-agent " + id,
                                     .nkey_seed = bootstrap->seed,
                                     .inbox_prefix = "_INBOX_" + id,
                                     .send_asap = true,
                                     .reconnect = false};
  std::optional<nats::Connection> conn;
  std::optional<agent::Agent> started;
  if (!start_agent(*bootstrap, options, conn, started)) return 1;
  stop_on_signals(stop_signals, *started);
  started->run_until_stopped();
  {
    std::lock_guard lock(stop_mu);
    stop_target = nullptr;
  }
  if (!conn->connected()) {
    std::fprintf(stderr, "nex-agent %s: lost the connection to the node; exiting\n", id.c_str());
    return 1;
  }
  return 0;
}
