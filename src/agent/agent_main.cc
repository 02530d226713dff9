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

}  // namespace

int main() {
  using namespace nex;
  // Not dumpable: the workload (same user, in a sandbox) cannot read this process's memory or
  // its initial environment, which holds the agent's internal-NATS seed.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // A namespace sandbox starts the agent from a descriptor, which some kernels name the process
  // after ("3"): name it so that `ps` inside the sandbox says what it is.
  prctl(PR_SET_NAME, "nex-agent", 0, 0, 0);
  // SIGTERM and SIGINT stop the agent (and its workload) in order. As pid 1 of a namespace
  // sandbox it would otherwise ignore them. Blocked before any thread starts; a thread below
  // waits for them. (Workloads start with an empty mask: Subprocess resets it.)
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  const std::string id = take_env(api::kEnvWorkloadId);
  const std::string host = take_env(api::kEnvNatsHost);
  const std::string port = take_env(api::kEnvNatsPort);
  const std::string seed = take_env(api::kEnvNatsSeed);
  const std::string artifact = take_env(api::kEnvArtifactPath);
  const agent::VmSetting vm{.fetch_artifact = !take_env(api::kEnvArtifactFetch).empty(),
                            .loopback_gateway = take_env(api::kEnvLoopbackGateway)};
  // The node's trigger channel, when it handed one over; nothing the agent starts inherits it.
  UniqueFd trigger_channel;
  if (const std::string fd = take_env(api::kEnvTriggerFd); !fd.empty()) {
    const int n = std::atoi(fd.c_str());
    if (n < 3 || fcntl(n, F_SETFD, FD_CLOEXEC) != 0) {
      std::fprintf(stderr, "nex-agent: %s=%s is not an open descriptor\n", api::kEnvTriggerFd,
                   fd.c_str());
      return 2;
    }
    trigger_channel.reset(n);
  }
  if (id.empty() || host.empty() || port.empty() || seed.empty()) {
    std::fprintf(
        stderr,
        "nex-agent: missing bootstrap environment (%s, %s, %s, %s); it is started by a nex node\n",
        api::kEnvWorkloadId, api::kEnvNatsHost, api::kEnvNatsPort, api::kEnvNatsSeed);
    return 2;
  }
  const nats::ConnectOptions options{.urls = {"nats://" + host + ":" + port},
                                     .name = "nex-agent " + id,
                                     .nkey_seed = seed,
                                     .inbox_prefix = "_INBOX_" + id,
                                     .send_asap = true,
                                     .reconnect = false};
  // The node admits the agent's user by reloading its internal server, and a connection made
  // while a reload is under way can be dropped by it: the handshake then fails with a send
  // error on a closed connection. A dropped connection is made again, and the handshake
  // repeated, within the same patience; any other failure ends the agent.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::optional<nats::Connection> conn;
  std::optional<agent::Agent> started;
  for (;;) {
    const auto patience = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    auto connected = agent::connect_to_node(options, patience);
    if (!connected) {
      std::fprintf(stderr, "nex-agent %s: %s\n", id.c_str(), connected.error().message.c_str());
      return 1;
    }
    conn = std::move(*connected);
    started.emplace(*conn, options, id, artifact, vm, trigger_channel.get());
    auto st = started->start();
    if (st) break;
    const bool dropped = !conn->connected();
    started.reset();
    if (!dropped || std::chrono::steady_clock::now() >= deadline) {
      std::fprintf(stderr, "nex-agent %s: %s\n", id.c_str(), st.error().message.c_str());
      return 1;
    }
    std::fprintf(stderr, "nex-agent %s: %s; connecting again\n", id.c_str(),
                 st.error().message.c_str());
  }
  agent::Agent& agent = *started;
  static std::mutex stop_mu;
  static agent::Agent* stop_target = &agent;  // cleared before `agent` goes away
  std::thread([stop_signals] {
    int signo = 0;
    sigwait(&stop_signals, &signo);
    std::lock_guard lock(stop_mu);
    if (stop_target) stop_target->request_stop();
  }).detach();
  agent.run_until_stopped();
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
