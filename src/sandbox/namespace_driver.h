// The namespace driver: each agent (and its workload) runs as pid 1 of new mount, pid, network,
// IPC, UTS and cgroup namespaces, pivoted into a read-only root filesystem (an ext4 image or a
// directory, `rootfs_filepath`) with a private /tmp, as an unprivileged user with no
// capabilities, no_new_privs and a seccomp filter, inside cgroup limits taken from
// `machine_template`. Its /proc shows nothing of the host's (masked as container runtimes do,
// with a boot id of its own), and no host path shows in its mounts but a directory rootfs's.
// Its network comes from CNI (`/etc/cni/conf.d/{network_name}.conflist`): the sandbox reaches
// the node's internal NATS on the host side of its link and, through the node's firewall
// (sandbox/firewall.h), no other port of the host and nothing in other sandboxes; IPv6 is off.
//
// What a node leaves behind if it is killed (network namespaces with their addresses, cgroups,
// the mounted image, the firewall's chains) is cleaned up when a node with the same instance
// name starts again.
#pragma once

#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "sandbox/cgroup.h"
#include "sandbox/cni.h"
#include "sandbox/driver.h"
#include "sandbox/firewall.h"
#include "sandbox/seccomp_filter.h"

namespace nex::sandbox {

struct NamespaceOptions {
  std::string instance;                // names this node's cgroups, mounts and CNI containers
  std::filesystem::path rootfs;        // ext4 image or directory
  std::filesystem::path agent_binary;  // checked against the root filesystem's libraries
  CgroupLimits limits;
  int64_t tmp_bytes = 64 << 20;  // size of the private /tmp
  CniSettings cni;
  // "sandbox_network": "open": no firewall, and IPv6 as CNI leaves it; sandboxes then reach
  // every port of this host and one another.
  bool open_network = false;
  std::filesystem::path state_root = "/run/nex";
};

struct ChildPlan;  // namespace_driver.cc: what a sandbox's first process does
struct ChildFds;

inline constexpr uid_t kSandboxUid = 65534;  // "nobody": the agent and its workload run as it
// Where a root filesystem holds the agent (a microVM boots that one). A namespace sandbox runs
// the node's own agent binary instead, from a descriptor; this is only its argv[0] there.
inline constexpr const char* kSandboxAgentPath = "/sbin/nex-agent";
inline constexpr const char* kSandboxWorkDir = "/nex";

class NamespaceDriver : public Driver {
 public:
  // Checks what the driver needs (root, cgroups, CNI network and plugins, root filesystem with
  // the agent's libraries), cleans up after a crashed predecessor and mounts the image.
  static Result<std::unique_ptr<NamespaceDriver>> create(NamespaceOptions options);
  ~NamespaceDriver() override;

  std::string_view name() const override { return "namespace"; }
  bool sandboxed() const override { return true; }
  std::string internal_listen_host() const override { return "0.0.0.0"; }
  Result<std::unique_ptr<Sandbox>> start(const SandboxSpec& spec) override;

  const NamespaceOptions& options() const { return options_; }
  const CniNetwork& network() const { return network_; }
  // The node's firewall for its sandboxes; null with "sandbox_network": "open".
  const SandboxFirewall* firewall() const { return firewall_ ? &*firewall_ : nullptr; }
  std::filesystem::path instance_dir() const { return options_.state_root / options_.instance; }

 private:
  explicit NamespaceDriver(NamespaceOptions options) : options_(std::move(options)) {}
  void remove_stale();
  void plan_child(const SandboxSpec& spec, const std::filesystem::path& stage_dir,
                  const ChildFds& fds, ChildPlan& plan) const;

  NamespaceOptions options_;
  CniNetwork network_;
  SeccompProgram seccomp_;
  std::optional<SandboxFirewall> firewall_;
  std::filesystem::path root_dir_;  // the root filesystem as a directory (the mounted image)
};

}  // namespace nex::sandbox
