// The process driver: no isolation. The agent is a child process of the node (killed if the
// node dies), and the workload a child of the agent. For development, `no_sandbox: true`, and
// hosts where the node is not root.
#pragma once

#include "sandbox/driver.h"

namespace nex::sandbox {

class ProcessDriver : public Driver {
 public:
  std::string_view name() const override { return "process"; }
  bool sandboxed() const override { return false; }
  Result<std::unique_ptr<Sandbox>> start(const SandboxSpec& spec) override;
};

// Resident memory of a process and all its descendants, from /proc.
int64_t process_tree_rss_bytes(pid_t root);

}  // namespace nex::sandbox
