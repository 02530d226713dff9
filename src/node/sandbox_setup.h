// How a node's configuration becomes its sandbox driver, chosen by name from a registry
// (kDrivers in sandbox_setup.cc; a new driver is its own file plus one entry there):
// `no_sandbox: true` gives the process driver; `"sandbox": "microvm"` the microvm driver
// (kernel_filepath, initrd_filepath, rootfs_filepath, machine_template); `"sandbox":
// "namespace"` (the default) the namespace driver with the limits of `machine_template`, the
// root filesystem of `rootfs_filepath` and the CNI network of `cni`.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "microvm/microvm_driver.h"
#include "node/node_config.h"
#include "sandbox/driver.h"
#include "sandbox/loopback_forward.h"
#include "sandbox/namespace_driver.h"

namespace nex::node {

sandbox::NamespaceOptions namespace_options(const NodeConfig& config,
                                            const std::filesystem::path& agent_binary,
                                            const std::string& instance);
// What a driver tells the node about a workload's sandbox (a microVM over its gateway's cap).
using WarnWorkload = std::function<void(const std::string& workload_id, const std::string& text)>;

microvm::MicrovmOptions microvm_options(const NodeConfig& config,
                                        const std::filesystem::path& agent_binary,
                                        const std::string& instance, WarnWorkload warn = {});
// The driver no_sandbox: true picks.
inline constexpr std::string_view kProcessDriverName = "process";

// The name of the driver `config` asks for.
std::string_view sandbox_driver_name(const NodeConfig& config);

// The driver `config` names; kInvalidArgument naming the drivers there are if none has the name.
Result<std::unique_ptr<sandbox::Driver>> make_sandbox_driver(
    const NodeConfig& config, const std::filesystem::path& agent_binary,
    const std::string& instance, WarnWorkload warn = {});

using sandbox::loopback_nats_ports;
using sandbox::loopback_port;

}  // namespace nex::node
