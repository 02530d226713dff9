// The CLI's subcommands (`nex node`, `nex devrun`, `nex cmd`, ...): each group registers its
// subcommands on the root CLI11 app. Handlers return the process exit code: 0 success, 1 user or
// runtime error, 2 usage (CLI11 reports those itself). ("Command" alone, in this code, means a
// durable command: `nex cmd` and src/commands/.)
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>

#include "cli/connection_flags.h"
#include "core/error.h"
#include "core/terminal_text.h"

namespace nex::cli {

// Set by a subcommand's callback; run after parsing so errors propagate as exit codes.
using SubcommandAction = std::function<int()>;

// Makes `run` the action when `cmd` is the subcommand the user typed.
inline void on_parsed(CLI::App* cmd, SubcommandAction& action, SubcommandAction run) {
  cmd->callback([&action, run = std::move(run)] { action = run; });
}

// Prints "nex: <message>" to stderr; returns exit code 1. Errors carry what nodes and workloads
// answered (a function's compile error, say), hence the terminal-safe text.
inline int report(const Error& e) {
  std::fprintf(stderr, "nex: %s\n", terminal_safe(e.message, LineBreaks::kKeep).c_str());
  return 1;
}

void register_version_subcommand(CLI::App& app, SubcommandAction& action);
void register_up_subcommand(CLI::App& app, SubcommandAction& action);
void register_node_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags);
void register_workload_subcommands(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags);
void register_observe_subcommands(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags);
void register_keys_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags);
void register_cmd_subcommand(CLI::App& app, SubcommandAction& action, ConnectionFlags& flags);
void register_preflight_subcommand(CLI::App& node, SubcommandAction& action);
void register_rootfs_subcommand(CLI::App& app, SubcommandAction& action);
// Registered last: it describes the subcommands registered before it.
void register_completion_subcommand(CLI::App& app, SubcommandAction& action);

}  // namespace nex::cli
