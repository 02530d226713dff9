// How a node's configuration becomes its sandbox driver: `no_sandbox: true` gives the process
// driver; otherwise the namespace driver with the limits of `machine_template`, the root
// filesystem of `rootfs_filepath` and the CNI network of `cni`.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "node/node_config.h"
#include "sandbox/driver.h"
#include "sandbox/namespace_driver.h"

namespace nex::node {

sandbox::NamespaceOptions namespace_options(const NodeConfig& config,
                                            const std::filesystem::path& agent_binary,
                                            const std::string& instance);
Result<std::unique_ptr<sandbox::Driver>> make_sandbox_driver(
    const NodeConfig& config, const std::filesystem::path& agent_binary,
    const std::string& instance);

// The ports of NATS_URL's servers on the host's loopback (127.0.0.1, localhost).
std::vector<int> loopback_nats_ports(const std::map<std::string, std::string>& environment);
// The port of one NATS URL when its host is the host's loopback; nullopt otherwise.
std::optional<int> loopback_port(std::string url);

}  // namespace nex::node
