// `nex up`: the one-command local environment. Starts a real nats-server with JetStream on
// loopback and a node using it, keeps both running until Ctrl-C, then shuts them down cleanly.
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/local_keys.h"
#include "cli/node_runner.h"
#include "cli/subcommands.h"
#include "core/subprocess.h"
#include "nats/local_server.h"
#include "node/node.h"

namespace nex::cli {
namespace {

namespace fs = std::filesystem;

struct UpOptions {
  std::string config;
  int port = 4222;
  std::string store_dir;
  std::string state_dir;
  std::string metrics;
};

// `file` as the user types it from where they are: relative to the working directory when it
// lies below it ("./" first when it is right there, so the shell does not search PATH), else
// absolute; nullopt when there is no such file.
std::optional<std::string> as_typed_from_cwd(const fs::path& file) {
  std::error_code ec;
  const fs::path target = fs::canonical(file, ec);
  if (ec || !fs::is_regular_file(target)) return std::nullopt;
  const fs::path cwd = fs::current_path(ec);
  if (!ec) {
    const fs::path relative = target.lexically_relative(cwd);
    if (!relative.empty() && *relative.begin() != "..")
      return relative.has_parent_path() ? relative.string() : "./" + relative.string();
  }
  return target.string();
}

// Nex's echo service, built next to nex.
std::optional<std::string> echo_service() {
  return as_typed_from_cwd(program_beside_self("echoservice"));
}

// The example JavaScript function, in the source tree nex was built from: found beside the
// build directory when nex runs from there (build/bin/nex), else where it was at build time.
std::optional<std::string> echo_function() {
  const fs::path in_examples = "echofunction/echo.js";
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe").parent_path();
  for (const fs::path& examples : {exe_dir / "../../examples", fs::path(NEX_EXAMPLES_DIR)}) {
    if (auto typed = as_typed_from_cwd(examples / in_examples)) return typed;
  }
  return std::nullopt;
}

// What to try next, with files named so that they work from where the user is; a file this nex
// cannot find (an installed nex, without the source tree) is left out rather than misnamed.
void print_hints(const std::string& url, const node::Node& node) {
  std::printf("\nTry, in another terminal:\n  export NATS_URL=%s\n  nex node ls\n", url.c_str());
  if (auto service = echo_service())
    std::printf("  nex devrun %s NATS_URL=%s\n", service->c_str(), url.c_str());
  std::printf("  nex node info %s\n", node.id().c_str());
  if (auto function = echo_function())
    std::printf("  nex devrun %s --trigger_subject=js.echo   # a function\n", function->c_str());
  std::printf(
      "  nex logs        # the workloads' output, live\n"
      "  nex events      # deploys, stops and node events, live\n"
      "  nex cmd send %s --method hello   # a durable command, by node name\n"
      "  nex keys        # the issuer key a node's valid_issuers lists\n"
      "\nPress Ctrl-C to stop.\n",
      node.name().c_str());
}

int run_up(const UpOptions& opts) {
  // Block the shutdown signals before any thread starts so only run_node's sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  nats::LocalServerOptions server_options;
  server_options.port = opts.port == 0 ? -1 : opts.port;  // nats-server: -1 = any free port
  if (!opts.store_dir.empty()) server_options.store_dir = fs::absolute(opts.store_dir);
  auto server = nats::LocalNatsServer::start(server_options);
  if (!server) {
    std::fprintf(stderr, "nex up: cannot start the local NATS server: %s\n",
                 server.error().message.c_str());
    if (opts.port == 4222) {
      std::fprintf(stderr,
                   "If another NATS server already uses port 4222, try `nex up --port 0`.\n");
    }
    return 1;
  }
  std::string why_unsandboxed;
  auto loaded = node_config_for(opts.config, why_unsandboxed);
  if (!loaded) {
    std::fprintf(stderr, "nex up: %s\n", loaded.error().message.c_str());
    return 1;
  }
  const node::NodeConfig& config = *loaded;
  const std::string url = server->url();
  const int rc = run_node(
      {.urls = {url}, .name = "nex up node"}, config, opts.state_dir, opts.metrics,
      [&](const node::Node& node) {
        std::printf("NATS server with JetStream listening on %s\n", url.c_str());
        std::printf("JetStream store: %s%s\n", server->store_dir().c_str(),
                    opts.store_dir.empty() ? " (temporary, removed on exit)" : "");
        if (config.no_sandbox) {
          std::printf("Node %s is up (no sandbox, %s: workloads run as processes of this user)\n",
                      node.id().c_str(), why_unsandboxed.c_str());
        } else if (config.sandbox == "microvm") {
          std::printf("Node %s is up (microvm sandbox: each workload in a VM of its own)\n",
                      node.id().c_str());
        } else {
          std::printf("Node %s is up (namespace sandbox: workloads run isolated, as nobody)\n",
                      node.id().c_str());
        }
        print_hints(url, node);
        std::fflush(stdout);
      });
  std::printf("\nStopping NATS server...\n");
  server->stop();
  std::printf("Stopped.\n");
  return rc;
}

}  // namespace

void register_up_subcommand(CLI::App& app, SubcommandAction& action) {
  auto opts = std::make_shared<UpOptions>();
  auto* cmd = app.add_subcommand(
      "up", "Run a local NATS server with JetStream and a node, ready for nex devrun");
  cmd->add_option("--config", opts->config,
                  "node configuration file (JSON; default: microVMs with hardware "
                  "virtualization and a guest in /tmp/wd, else the namespace sandbox when this "
                  "host passes `nex node preflight`, else no sandbox)");
  cmd->add_option("--port", opts->port,
                  "Client port for the local NATS server (0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--store", opts->store_dir,
                  "JetStream store directory (default: a temporary directory removed on exit)");
  opts->state_dir = default_state_dir();
  cmd->add_option("--state-dir", opts->state_dir, "where the node keeps its identity")
      ->capture_default_str();
  cmd->add_option("--metrics", opts->metrics,
                  "serve the node's Prometheus metrics at http://HOST:PORT/metrics");
  on_parsed(cmd, action, [opts] { return run_up(*opts); });
}

}  // namespace nex::cli
