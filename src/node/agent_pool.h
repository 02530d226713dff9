// AgentPool: keeps `size` agents started and handshaken, each in its own sandbox with its own
// internal-NATS account, so a deploy only has to hand one its workload. Taking an agent makes
// the pool start a replacement in the background. Agents that do not handshake in time are
// discarded and replaced.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "core/unique_fd.h"
#include "nats/subscription.h"
#include "node/internal_server.h"
#include "sandbox/driver.h"

namespace nex::node {

struct WarmAgent {
  std::string id;
  std::filesystem::path artifact_path;  // where the agent expects its workload's file
  std::unique_ptr<sandbox::Sandbox> sandbox;
  // The node's end of the agent's trigger channel (node/trigger_channel.h); not valid when the
  // driver cannot hand one over (microVMs).
  UniqueFd trigger_channel;
};

struct AgentPoolOptions {
  size_t size = 1;
  std::filesystem::path agent_binary;
  std::filesystem::path work_dir;  // sandboxes are created beneath it
  std::chrono::milliseconds handshake_timeout{5000};
};

class AgentPool {
 public:
  static Result<std::unique_ptr<AgentPool>> start(InternalServer& internal, sandbox::Driver& driver,
                                                  AgentPoolOptions options);
  ~AgentPool();

  // A handshaken agent, waiting up to `timeout` for one.
  Result<WarmAgent> take(std::chrono::milliseconds timeout);
  // Agents booted and handshaken, waiting for a workload.
  size_t ready();

 private:
  AgentPool(InternalServer& internal, sandbox::Driver& driver, AgentPoolOptions options)
      : internal_(internal), driver_(driver), options_(std::move(options)) {}
  void refill_loop();
  void on_handshake(const std::string& id);
  // Logs, once, when the pool first holds `size` ready agents, and how long that took.
  void announce_when_full();

  InternalServer& internal_;
  sandbox::Driver& driver_;
  AgentPoolOptions options_;
  nats::Subscription handshakes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::deque<WarmAgent> ready_;
  struct Pending {
    WarmAgent agent;
    std::chrono::steady_clock::time_point deadline;
  };
  std::map<std::string, Pending> starting_;
  std::set<std::string> early_handshakes_;  // handshakes that beat their agent into starting_
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool announced_ = false;
  std::thread refiller_;  // also the thread that spawns agents (they die with it, by design)
};

}  // namespace nex::node
