// The process driver: no isolation. The agent is a child process of the node (killed if the
// node dies), and the workload a child of the agent. For development, `no_sandbox: true`, and
// hosts where the node is not root.
#pragma once

#include <mutex>

#include "core/subprocess.h"
#include "sandbox/driver.h"

namespace nex::sandbox {

// A sandbox that is one child process of the node (the agent itself, or the VMM it runs in),
// with a work directory: what the process and microvm drivers' sandboxes have in common.
class SubprocessSandbox : public Sandbox {
 public:
  SubprocessSandbox(std::string id, std::filesystem::path work_dir, std::string artifact_name,
                    Subprocess process)
      : id_(std::move(id)),
        work_dir_(std::move(work_dir)),
        artifact_name_(std::move(artifact_name)),
        process_(std::move(process)) {}

  const std::string& id() const override { return id_; }
  pid_t pid() const override { return process_.pid(); }
  // The node waits for its sandboxes from its maintenance thread (to reap one that ended) while
  // others stop them: the process is used under a lock.
  bool running() override {
    std::lock_guard lock(process_mu_);
    return process_.running();
  }
  Status signal(int signo) override {
    std::lock_guard lock(process_mu_);
    return process_.signal(signo);
  }
  std::optional<int> wait(std::chrono::milliseconds timeout) override {
    std::lock_guard lock(process_mu_);
    return process_.wait_for(timeout);
  }
  // Ends the process (and what it started) and removes the work directory.
  void stop(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lock(process_mu_);
      process_.terminate(grace);
    }
    std::error_code ec;
    if (!work_dir_.empty()) std::filesystem::remove_all(work_dir_, ec);
  }
  Result<SandboxStats> stats() override;
  std::filesystem::path artifact_path() const override { return work_dir_ / artifact_name_; }

 private:
  std::string id_;
  std::filesystem::path work_dir_;
  std::string artifact_name_;
  std::mutex process_mu_;
  Subprocess process_;
};

class ProcessDriver : public Driver {
 public:
  std::string_view name() const override { return "process"; }
  bool sandboxed() const override { return false; }
  Result<std::unique_ptr<Sandbox>> start(const SandboxSpec& spec) override;
};

// Resident memory of a process and all its descendants, from /proc.
int64_t process_tree_rss_bytes(pid_t root);

}  // namespace nex::sandbox
