#include <cstdio>
#include <exception>

#include "cli/subcommands.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"nex: the NATS Execution Engine. Deploy services and functions to nodes over NATS."};
  app.name("nex");
  app.require_subcommand(1);
  app.footer(
      "Start here: `nex up` runs a local NATS server and a node; then, in another terminal,\n"
      "`nex node ls`, `nex devrun ./echoservice NATS_URL=nats://127.0.0.1:4222`, `nex logs`.\n"
      "`nex COMMAND --help` shows a command's arguments. Exit codes: 0 success, 1 error, 2 usage.");
  app.fallthrough();  // global flags (-s, --creds, ...) may follow the subcommand, as users type
                      // them
  nex::cli::SubcommandAction action;
  nex::cli::ConnectionFlags flags;
  flags.add_to(app);
  nex::cli::register_version_subcommand(app, action);
  nex::cli::register_up_subcommand(app, action);
  nex::cli::register_node_subcommand(app, action, flags);
  nex::cli::register_workload_subcommands(app, action, flags);
  nex::cli::register_observe_subcommands(app, action, flags);
  nex::cli::register_cmd_subcommand(app, action, flags);
  nex::cli::register_keys_subcommand(app, action, flags);
  nex::cli::register_rootfs_subcommand(app, action);
  nex::cli::register_completion_subcommand(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (!action) return 0;
  if (auto st = flags.apply_context(); !st) {
    std::fprintf(stderr, "nex: %s\n", st.error().message.c_str());
    return 1;
  }
  return action();
}

}  // namespace

int main(int argc, char** argv) {
  // What no command expected still ends as an error a user can report, never as an abort.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nex: internal error: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "nex: internal error: an unknown exception\n");
  }
  return 1;
}
