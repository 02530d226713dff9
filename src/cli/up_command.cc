// `nex up`: the one-command local environment. Starts a real nats-server with JetStream on
// loopback and keeps it running until Ctrl-C, then shuts it down cleanly.
#include <signal.h>

#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "nats/connection.h"
#include "nats/local_server.h"

namespace nex::cli {
namespace {

struct UpOptions {
  int port = 4222;
  std::string store_dir;
};

int run_up(const UpOptions& opts) {
  // Block the shutdown signals before any thread starts so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  nats::LocalServerOptions server_options;
  server_options.port = opts.port == 0 ? -1 : opts.port;  // nats-server: -1 = any free port
  if (!opts.store_dir.empty()) server_options.store_dir = std::filesystem::absolute(opts.store_dir);
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
  // Prove it is usable (connect + JetStream answer) before saying it is ready.
  auto conn = nats::Connection::connect({.urls = {server->url()}, .name = "nex up"});
  if (!conn) {
    std::fprintf(stderr, "nex up: started NATS but cannot connect: %s\n",
                 conn.error().message.c_str());
    return 1;
  }

  std::printf("NATS server with JetStream listening on %s\n", server->url().c_str());
  std::printf("JetStream store: %s%s\n", server->store_dir().c_str(),
              opts.store_dir.empty() ? " (temporary, removed on exit)" : "");
  std::printf(
      "\nThis build of nex runs the local NATS server only; the node daemon that\n"
      "accepts workloads (nex node up, nex devrun) comes with the next milestone.\n"
      "Try it with any NATS client meanwhile, e.g.  NATS_URL=%s\n",
      server->url().c_str());
  std::printf("\nPress Ctrl-C to stop.\n");
  std::fflush(stdout);

  int signo = 0;
  sigwait(&signals, &signo);
  std::printf("\nStopping NATS server...\n");
  server->stop();
  std::printf("Stopped.\n");
  return 0;
}

}  // namespace

void register_up_command(CLI::App& app, CommandAction& action) {
  auto opts = std::make_shared<UpOptions>();
  auto* cmd = app.add_subcommand("up", "Run a local NATS server with JetStream, ready for nex");
  cmd->add_option("--port", opts->port,
                  "Client port for the local NATS server (0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--store", opts->store_dir,
                  "JetStream store directory (default: a temporary directory removed on exit)");
  cmd->callback([opts, &action] { action = [opts] { return run_up(*opts); }; });
}

}  // namespace nex::cli
