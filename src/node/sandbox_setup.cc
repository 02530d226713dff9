#include "node/sandbox_setup.h"

#include "sandbox/process_driver.h"

namespace nex::node {

// A workload's processes and threads (the agent's engines included); enough for any service,
// and what stops a fork bomb.
constexpr int64_t kSandboxPids = 512;

sandbox::NamespaceOptions namespace_options(const NodeConfig& config,
                                            const std::filesystem::path& agent_binary,
                                            const std::string& instance) {
  const int64_t memory = config.machine_template.memsize_mib << 20;
  return {.instance = instance,
          .rootfs = config.rootfs_filepath,
          .agent_binary = agent_binary,
          .limits = {.memory_bytes = memory,
                     .cpu_millis = config.machine_template.vcpu_count * 1000,
                     .pids = kSandboxPids},
          .tmp_bytes = memory / 4,  // its pages count against the memory limit too
          .cni = config.cni,
          .open_network = config.sandbox_network == "open"};
}

microvm::MicrovmOptions microvm_options(const NodeConfig& config,
                                        const std::filesystem::path& agent_binary,
                                        const std::string& instance, WarnWorkload warn) {
  return {.instance = instance,
          .kernel = config.kernel_filepath,
          .initrd = config.initrd_filepath,
          .rootfs = config.rootfs_filepath,
          .gateway_binary = agent_binary.parent_path() / "nex-vm-gateway",
          .vcpus = static_cast<int>(config.machine_template.vcpu_count),
          .memory_mib = config.machine_template.memsize_mib,
          .accelerator = config.microvm_accelerator,
          .gateway_max_connections = static_cast<int>(config.microvm_gateway_max_connections),
          .warn_workload = std::move(warn)};
}

Result<std::unique_ptr<sandbox::Driver>> make_sandbox_driver(
    const NodeConfig& config, const std::filesystem::path& agent_binary,
    const std::string& instance, WarnWorkload warn) {
  if (config.no_sandbox)
    return std::unique_ptr<sandbox::Driver>(std::make_unique<sandbox::ProcessDriver>());
  if (config.sandbox == "microvm") {
    auto d = microvm::MicrovmDriver::create(
        microvm_options(config, agent_binary, instance, std::move(warn)));
    if (!d) return fail(d.error().wrap("microvm sandbox (\"sandbox\": \"microvm\")"));
    return std::unique_ptr<sandbox::Driver>(std::move(*d));
  }
  auto d = sandbox::NamespaceDriver::create(namespace_options(config, agent_binary, instance));
  if (!d) return fail(d.error().wrap("namespace sandbox (\"no_sandbox\": false)"));
  return std::unique_ptr<sandbox::Driver>(std::move(*d));
}

}  // namespace nex::node
