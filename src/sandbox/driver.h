// The sandbox Driver: how a node runs an agent in isolation, in the spirit of Nomad's task
// drivers. Each isolation level (process, namespace, microVM) implements the same small
// lifecycle: start a sandbox running the agent, signal it, wait for it, stop it (which also
// releases everything it held), and inspect its resource use.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::sandbox {

struct SandboxSpec {
  std::string workload_id;
  std::filesystem::path agent_binary;
  // The sandbox's directory on the host, private to it, for drivers that keep the workload's
  // file there (the driver removes it on stop; a namespace sandbox has its own /nex instead).
  std::filesystem::path work_dir;
  std::string artifact_name;       // the name of the workload's file (Sandbox::artifact_path)
  std::vector<std::string> env;    // KEY=VALUE handed to the agent
  std::filesystem::path log_file;  // the agent's own stdout/stderr
  int internal_nats_port = 0;      // the driver tells the agent how to reach it
  // The agent's end of the node's trigger channel (triggers/frames.h), which the agent gets
  // as descriptor 3 (NEX_TRIGGER_FD); -1: none. Only drivers that pass_descriptors() take one.
  int trigger_channel_fd = -1;
};

struct SandboxStats {
  int64_t rss_bytes = 0;  // the agent and everything it started
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual const std::string& id() const = 0;
  virtual pid_t pid() const = 0;
  virtual bool running() = 0;
  virtual Status signal(int signo) = 0;
  // The agent's wait status once it has exited within `timeout`.
  virtual std::optional<int> wait(std::chrono::milliseconds timeout) = 0;
  // Ends the agent (SIGTERM, SIGKILL after `grace`) and releases the sandbox's resources.
  virtual void stop(std::chrono::milliseconds grace) = 0;
  virtual Result<SandboxStats> stats() = 0;
  // The address the sandbox reaches the node's internal NATS at.
  virtual std::string internal_nats_host() const = 0;
  // Makes the host's 127.0.0.1:port reachable at the same address inside the sandbox (the
  // workload's own NATS, when its deploy request names one on the host's loopback).
  virtual Status expose_host_port(int port) = 0;
  // Where the node writes the workload's file (SandboxSpec::artifact_name) for the agent to
  // find, as a path of the node's.
  virtual std::filesystem::path artifact_path() const = 0;
};

class Driver {
 public:
  virtual ~Driver() = default;
  virtual std::string_view name() const = 0;
  virtual bool sandboxed() const = 0;  // false: workloads run as plain host processes
  // Whether a sandbox's workload can reach hosts other than this one (a microVM reaches only the
  // host loopback ports the node exposes to it).
  virtual bool reaches_other_hosts() const { return true; }
  // What the node's log says about the driver besides its name.
  virtual std::string details() const { return ""; }
  // Where the node's internal NATS must listen for this driver's sandboxes to reach it.
  virtual std::string internal_listen_host() const { return "127.0.0.1"; }
  // Whether the agent can be handed a descriptor of the node's (the trigger channel): true for
  // sandboxes on this host's kernel, false for a microVM.
  virtual bool passes_descriptors() const { return true; }
  // How much longer than a process this driver's sandboxes take to boot and handshake (a VM's
  // kernel), added to the node's agent_handshake_timeout_ms.
  virtual std::chrono::milliseconds boot_allowance() const { return std::chrono::milliseconds(0); }
  virtual Result<std::unique_ptr<Sandbox>> start(const SandboxSpec& spec) = 0;
};

}  // namespace nex::sandbox
