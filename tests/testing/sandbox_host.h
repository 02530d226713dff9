// What the namespace-sandbox tests need from this host: root, cgroups, the CNI plugins, and a
// root filesystem built from this build's agent. Each test process gets a CNI network of its
// own (configuration in a temporary directory, a /24 picked from its pid), so test binaries
// running side by side never share addresses. Tests that cannot have it skip, saying why.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "node/node_config.h"
#include "node/preflight.h"
#include "sandbox/cni.h"
#include "sandbox/rootfs.h"

namespace nex::testing {

class SandboxHost {
 public:
  // The configuration for a sandboxed node, or why this host cannot run one.
  static const SandboxHost& get() {
    static SandboxHost host;
    return host;
  }
  const std::optional<std::string>& unavailable() const { return unavailable_; }
  node::NodeConfig config(int64_t memsize_mib = 128) const {
    node::NodeConfig c = base_;
    c.machine_template.memsize_mib = memsize_mib;
    return c;
  }
  const std::filesystem::path& dir() const { return dir_; }
  // Writes a node configuration file for this host's network and the root filesystem `rootfs`
  // (for `nex up --config` and `nex node up --config`).
  void write_config(const std::filesystem::path& file, const std::filesystem::path& rootfs) const {
    std::ofstream(file) << nlohmann::json{
        {"rootfs_filepath", rootfs},
        {"cni", {{"network_name", base_.cni.network_name}, {"conf_dir", base_.cni.conf_dir}}}}
                               .dump();
  }
  std::string network() const { return base_.cni.network_name; }

 private:
  SandboxHost() {
    namespace fs = std::filesystem;
    const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
    dir_ = fs::temp_directory_path() / ("nex-sandbox-host-" + std::to_string(getpid()));
    std::error_code ec;
    fs::create_directories(dir_ / "cni", ec);
    base_.no_sandbox = false;
    base_.rootfs_filepath = dir_ / "rootfs";
    base_.cni.network_name = "nextest" + std::to_string(getpid());
    base_.cni.conf_dir = dir_ / "cni";
    auto conflist = sandbox::default_conflist(base_.cni.network_name);
    conflist["plugins"][0]["ipam"]["subnet"] =
        "10.231." + std::to_string(getpid() % 250) + ".0/24";
    std::ofstream(dir_ / "cni" / (base_.cni.network_name + ".conflist")) << conflist.dump();
    if (geteuid() != 0) {
      unavailable_ = "the namespace sandbox needs root";
      return;
    }
    if (auto r = sandbox::build_rootfs_tree({.agent_binary = bin / "nex-agent"}, dir_ / "rootfs");
        !r) {
      unavailable_ = "cannot build a root filesystem: " + r.error().message;
      return;
    }
    for (const auto& section : node::preflight(base_, bin / "nex-agent"))
      for (const auto& item : section.items)
        if (!item.ok && !unavailable_)
          unavailable_ = "preflight: " + item.what + " [" + item.description + "]: " + item.fix;
  }
  ~SandboxHost() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    // host-local's bookkeeping for this test network (its leases are gone by now).
    std::filesystem::remove_all("/var/lib/cni/networks/" + base_.cni.network_name, ec);
  }

  node::NodeConfig base_;
  std::filesystem::path dir_;
  std::optional<std::string> unavailable_;
};

#define NEX_REQUIRE_NAMESPACE_SANDBOX()                                          \
  do {                                                                          \
    if (const auto& why = ::nex::testing::SandboxHost::get().unavailable())     \
      GTEST_SKIP() << "namespace sandbox unavailable here: " << *why;           \
  } while (0)

}  // namespace nex::testing
