// `nex node up`: run this host as a nex node until SIGINT/SIGTERM.
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/connection_flags.h"
#include "node/node.h"

namespace nex::cli {
namespace {

struct NodeUpOptions {
  std::string config;
  std::string state_dir;
};

}  // namespace

std::string default_state_dir() {
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/tmp") + "/.nex/node";
}

int run_node(const nats::ConnectOptions& control, const node::NodeConfig& config,
             const std::string& state_dir, const std::function<void(const node::Node&)>& on_ready) {
  // Block the shutdown signals before any thread starts so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto node = node::Node::start(
      {.config = config, .control = control, .state_dir = state_dir, .version = NEX_VERSION});
  if (!node) {
    std::fprintf(stderr, "nex node up: %s\n", node.error().message.c_str());
    return 1;
  }
  if (on_ready) on_ready(**node);
  int signo = 0;
  sigwait(&signals, &signo);
  (*node)->stop();
  return 0;
}

void register_node_command(CLI::App& app, CommandAction& action, ConnectionFlags& flags) {
  auto* node = app.add_subcommand("node", "Run and inspect nex nodes");
  node->require_subcommand(1);
  auto opts = std::make_shared<NodeUpOptions>();
  auto* up =
      node->add_subcommand("up", "Run this host as a nex node, accepting workloads over NATS");
  up->add_option("--config", opts->config, "node configuration file (JSON)");
  up->add_option("--state-dir", opts->state_dir,
                 "where the node keeps its identity (default ~/.nex/node)");
  up->callback([opts, &action, &flags] {
    action = [opts, &flags] {
      node::NodeConfig config;
      config.no_sandbox = true;  // without a file: the process driver, the one this build has
      if (!opts->config.empty()) {
        auto loaded = node::load_node_config(opts->config);
        if (!loaded) {
          std::fprintf(stderr, "nex node up: %s\n", loaded.error().message.c_str());
          return 1;
        }
        config = std::move(*loaded);
      }
      auto control = flags.options("nex-node");
      if (!control) {
        std::fprintf(stderr, "nex node up: %s\n", control.error().message.c_str());
        return 1;
      }
      return run_node(*control, config,
                      opts->state_dir.empty() ? default_state_dir() : opts->state_dir, {});
    };
  });
}

}  // namespace nex::cli
