#include "node/sandbox_setup.h"

#include <sstream>

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
          .cni = config.cni};
}

Result<std::unique_ptr<sandbox::Driver>> make_sandbox_driver(const NodeConfig& config,
                                                             const std::filesystem::path& agent_binary,
                                                             const std::string& instance) {
  if (config.no_sandbox) return std::unique_ptr<sandbox::Driver>(std::make_unique<sandbox::ProcessDriver>());
  auto d = sandbox::NamespaceDriver::create(namespace_options(config, agent_binary, instance));
  if (!d) return fail(d.error().wrap("namespace sandbox (\"no_sandbox\": false)"));
  return std::unique_ptr<sandbox::Driver>(std::move(*d));
}

std::vector<int> loopback_nats_ports(const std::map<std::string, std::string>& environment) {
  std::vector<int> ports;
  auto it = environment.find("NATS_URL");
  if (it == environment.end()) return ports;
  std::istringstream urls(it->second);
  for (std::string url; std::getline(urls, url, ',');) {
    if (auto port = loopback_port(url)) ports.push_back(*port);
  }
  return ports;
}

std::optional<int> loopback_port(std::string url) {
  // [scheme://][user[:pass]@]host[:port]
  if (auto p = url.find("://"); p != std::string::npos) url = url.substr(p + 3);
  if (auto p = url.rfind('@'); p != std::string::npos) url = url.substr(p + 1);
  if (auto p = url.find('/'); p != std::string::npos) url = url.substr(0, p);
  const size_t colon = url.rfind(':');
  const std::string host = url.substr(0, colon);
  if (host != "localhost" && host != "127.0.0.1") return std::nullopt;
  int port = 4222;
  if (colon != std::string::npos) {
    try {
      port = std::stoi(url.substr(colon + 1));
    } catch (...) {
      return std::nullopt;
    }
  }
  if (port > 0 && port < 65536) return port;
  return std::nullopt;
}

}  // namespace nex::node
