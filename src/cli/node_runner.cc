#include "cli/node_runner.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/subprocess.h"
#include "microvm/microvm_driver.h"
#include "node/preflight.h"

namespace nex::cli {
namespace fs = std::filesystem;

fs::path agent_next_to_nex() { return program_beside_self("nex-agent"); }

node::NodeConfig default_node_config() { return *node::parse_node_config("{}"); }

Result<node::NodeConfig> node_config_for(const std::string& file, std::string& why_unsandboxed) {
  if (!file.empty()) {
    why_unsandboxed = "\"no_sandbox\": true in " + file;
    return node::load_node_config(file);
  }
  node::NodeConfig config = default_node_config();
  // A VM per workload when the host has hardware virtualization and /tmp/wd holds a guest (as
  // `preflight --init` with "sandbox": "microvm" leaves it); under emulation a VM boots in
  // seconds, so the namespace sandbox stays the default there.
  node::NodeConfig vm = config;
  vm.sandbox = "microvm";
  if (geteuid() == 0 && microvm::choose_accelerator().accelerator == "kvm" &&
      node::preflight_passes(vm, agent_next_to_nex()))
    return vm;
  if (geteuid() != 0) {
    why_unsandboxed = "not running as root";
  } else if (!node::preflight_passes(config, agent_next_to_nex())) {
    why_unsandboxed =
        "`nex node preflight` does not pass; `sudo nex node preflight --init` fixes that";
  }
  config.no_sandbox = !why_unsandboxed.empty();
  return config;
}

namespace {

// Whether a node that could not start may start on a later try: its NATS server was away.
bool may_pass(const Error& e) {
  return e.code == ErrorCode::kUnavailable || e.code == ErrorCode::kTimeout;
}

// Starts a node, trying again with backoff (1 s, doubling, up to 30 s) while `retry` and the
// NATS server is away. Null when it did not start: the error was printed, or `signals` came.
std::unique_ptr<node::Node> start_node(const node::NodeOptions& options, bool retry,
                                       const sigset_t& signals) {
  for (auto wait = std::chrono::seconds(1);; wait = std::min(wait * 2, std::chrono::seconds(30))) {
    auto node = node::Node::start(options);
    if (node) return std::move(*node);
    if (!retry || !may_pass(node.error())) {
      std::fprintf(stderr, "nex node up: %s\n", node.error().message.c_str());
      return nullptr;
    }
    std::fprintf(stderr, "nex node up: %s; trying again in %lld s (--connect-retry)\n",
                 node.error().message.c_str(), static_cast<long long>(wait.count()));
    const timespec timeout{.tv_sec = static_cast<time_t>(wait.count()), .tv_nsec = 0};
    if (sigtimedwait(&signals, nullptr, &timeout) > 0) return nullptr;  // asked to stop
  }
}

}  // namespace

int run_node(const nats::ConnectOptions& control, const node::NodeConfig& config,
             const std::string& state_dir, const std::string& metrics_listen,
             const std::function<void(const node::Node&)>& on_ready, bool connect_retry) {
  // Block the shutdown signals before any thread starts so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto node = start_node({.config = config,
                          .control = control,
                          .state_dir = state_dir,
                          .version = NEX_VERSION,
                          .metrics_listen = metrics_listen},
                         connect_retry, signals);
  if (!node) return 1;
  if (on_ready) on_ready(*node);
  int signo = 0;
  sigwait(&signals, &signo);
  node->stop();
  return 0;
}

}  // namespace nex::cli
