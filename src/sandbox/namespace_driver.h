// The namespace driver: each agent (and its workload) runs as pid 1 of new mount, pid, network,
// IPC, UTS and cgroup namespaces, pivoted into a read-only root filesystem (an ext4 image or a
// directory, `rootfs_filepath`) with a private /tmp, as an unprivileged user with no
// capabilities, no_new_privs and a seccomp filter, inside cgroup limits taken from
// `machine_template`. Its network comes from CNI (`/etc/cni/conf.d/{network_name}.conflist`):
// the sandbox reaches the node's internal NATS on the host side of its link.
//
// What a node leaves behind if it is killed (network namespaces with their addresses, cgroups,
// the mounted image) is cleaned up when a node with the same instance name starts again.
#pragma once

#include <filesystem>
#include <mutex>
#include <string>

#include "sandbox/cgroup.h"
#include "sandbox/cni.h"
#include "sandbox/driver.h"
#include "sandbox/seccomp_filter.h"

namespace nex::sandbox {

struct NamespaceOptions {
  std::string instance;               // names this node's cgroups, mounts and CNI containers
  std::filesystem::path rootfs;       // ext4 image or directory
  std::filesystem::path agent_binary; // checked against the root filesystem's libraries
  CgroupLimits limits;
  int64_t tmp_bytes = 64 << 20;       // size of the private /tmp
  CniSettings cni;
  std::filesystem::path state_root = "/run/nex";
};

inline constexpr uid_t kSandboxUid = 65534;  // "nobody": the agent and its workload run as it
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
  std::filesystem::path instance_dir() const { return options_.state_root / options_.instance; }

 private:
  explicit NamespaceDriver(NamespaceOptions options) : options_(std::move(options)) {}
  void remove_stale();

  NamespaceOptions options_;
  CniNetwork network_;
  SeccompProgram seccomp_;
  std::filesystem::path root_dir_;  // the root filesystem as a directory (the mounted image)
};

}  // namespace nex::sandbox
