// Running a node from the CLI (`nex node up` and `nex up`): which configuration it gets and how
// it starts and stops.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "core/error.h"
#include "nats/connection.h"
#include "node/node.h"

namespace nex::cli {

// The agent installed next to the running nex binary.
std::filesystem::path agent_next_to_nex();

// The configuration of an empty file: the defaults, with the paths derived from them
// (rootfs_filepath = default_resource_dir/rootfs.ext4, ...).
node::NodeConfig default_node_config();

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
