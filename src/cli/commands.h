// Each command group registers its subcommands on the root CLI11 app. Handlers return the
// process exit code: 0 success, 1 user or runtime error, 2 usage (CLI11 reports those itself).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "cli/connection_flags.h"
#include "cli/control_client.h"
#include "crypto/nkeys.h"
#include "node/node.h"

namespace nex::cli {

// Set by a command's callback; run after parsing so errors propagate as exit codes.
using CommandAction = std::function<int()>;

// Makes `run` the action when `cmd` is the command the user typed.
inline void on_parsed(CLI::App* cmd, CommandAction& action, CommandAction run) {
  cmd->callback([&action, run = std::move(run)] { action = run; });
}

void register_version_command(CLI::App& app, CommandAction& action);
void register_up_command(CLI::App& app, CommandAction& action);
void register_node_command(CLI::App& app, CommandAction& action, ConnectionFlags& flags);
void register_workload_commands(CLI::App& app, CommandAction& action, ConnectionFlags& flags);
void register_observe_commands(CLI::App& app, CommandAction& action, ConnectionFlags& flags);
void register_keys_command(CLI::App& app, CommandAction& action, ConnectionFlags& flags);
void register_preflight_command(CLI::App& node, CommandAction& action);
void register_rootfs_command(CLI::App& app, CommandAction& action);
// Registered last: it describes the commands registered before it.
void register_completion_command(CLI::App& app, CommandAction& action);

// Connects to the control NATS the flags name. Most commands do not reconnect: a CLI reports
// and exits. Deploys and stops do, and send their request again once reconnected
// (ControlClient::request_resending): their answer may come long after, and a server restart
// meanwhile must not lose it.
enum class Reconnect { kNo, kYes };
Result<ControlClient> connect_control(const ConnectionFlags& flags,
                                      Reconnect reconnect = Reconnect::kNo);
// Prints "nex: <message>" to stderr; returns exit code 1.
int report(const Error& e);

// ~/.nex: the CLI's keys (issuer.nk, publisher.xk) and, in node/, a node's identity.
std::filesystem::path nex_home();
// The first nkey seed in `path`; or, with seed_file, one made by `make` (mode 0600) when the file
// is missing (saying which on `say`).
Result<std::string> read_seed(const std::filesystem::path& path, const char* what);
Result<std::string> seed_file(const std::filesystem::path& path, const char* what,
                              const std::function<std::string()>& make, std::FILE* say = stdout);
// ~/.nex/issuer.nk, made when missing: the account key that signs deploys and commands.
Result<crypto::KeyPair> default_issuer();
void register_cmd_command(CLI::App& app, CommandAction& action, ConnectionFlags& flags);
// ~/.nex/node: where a node keeps its identity unless told otherwise.
std::string default_state_dir();

// The agent installed next to the running nex binary.
std::filesystem::path agent_next_to_nex();
// The node configuration `nex up` and `nex node up` run with: `file`'s when one is given;
// without, microVMs when this host has KVM with hardware virtualization and a guest in /tmp/wd,
// else the namespace sandbox when this host can run it. When the result has no sandbox,
// `why_unsandboxed` says why.
Result<node::NodeConfig> node_config_for(const std::string& file, std::string& why_unsandboxed);

// Runs a node until SIGINT/SIGTERM, then stops it gracefully; `on_ready` runs once it serves.
// With `connect_retry`, a NATS server that cannot be reached yet is tried again with backoff
// (saying so) until it answers or a signal comes; without, that is an error (exit 1).
int run_node(const nats::ConnectOptions& control, const node::NodeConfig& config,
             const std::string& state_dir, const std::string& metrics_listen,
             const std::function<void(const node::Node&)>& on_ready, bool connect_retry = false);

}  // namespace nex::cli
