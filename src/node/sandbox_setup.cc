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

namespace {

// What a driver's factory makes it from.
struct DriverContext {
  const NodeConfig& config;
  const std::filesystem::path& agent_binary;
  const std::string& instance;
  WarnWorkload warn;
};

using DriverResult = Result<std::unique_ptr<sandbox::Driver>>;

DriverResult make_process_driver(DriverContext&) {
  return std::unique_ptr<sandbox::Driver>(std::make_unique<sandbox::ProcessDriver>());
}

DriverResult make_namespace_driver(DriverContext& c) {
  auto d =
      sandbox::NamespaceDriver::create(namespace_options(c.config, c.agent_binary, c.instance));
  if (!d) return fail(d.error().wrap("namespace sandbox (\"no_sandbox\": false)"));
  return std::unique_ptr<sandbox::Driver>(std::move(*d));
}

DriverResult make_microvm_driver(DriverContext& c) {
  auto d = microvm::MicrovmDriver::create(
      microvm_options(c.config, c.agent_binary, c.instance, std::move(c.warn)));
  if (!d) return fail(d.error().wrap("microvm sandbox (\"sandbox\": \"microvm\")"));
  return std::unique_ptr<sandbox::Driver>(std::move(*d));
}

struct DriverEntry {
  std::string_view name;
  DriverResult (*make)(DriverContext&);
};

// The sandbox drivers by name. A new driver is its own file (its sandbox::Driver) plus one
// entry here, whose factory turns the node's configuration into the driver's options.
constexpr DriverEntry kDrivers[] = {
    {kProcessDriverName, make_process_driver},
    {"namespace", make_namespace_driver},
    {"microvm", make_microvm_driver},
};

}  // namespace

std::string_view sandbox_driver_name(const NodeConfig& config) {
  return config.no_sandbox ? kProcessDriverName : std::string_view(config.sandbox);
}

DriverResult make_sandbox_driver(const NodeConfig& config,
                                 const std::filesystem::path& agent_binary,
                                 const std::string& instance, WarnWorkload warn) {
  const std::string_view name = sandbox_driver_name(config);
  DriverContext context{config, agent_binary, instance, std::move(warn)};
  std::string names;
  for (const DriverEntry& driver : kDrivers) {
    if (driver.name == name) return driver.make(context);
    names += (names.empty() ? "\"" : ", \"") + std::string(driver.name) + "\"";
  }
  return fail(ErrorCode::kInvalidArgument, "sandbox: no driver is named \"" + std::string(name) +
                                               "\"; the drivers are " + names);
}

}  // namespace nex::node
