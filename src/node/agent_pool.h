// AgentPool: keeps `size` agents started and handshaken, each in its own sandbox with its own
// internal-NATS account, so a deploy only has to hand one its workload. Taking an agent makes
// the pool start a replacement in the background. An idle agent that dies is reaped, said and
// replaced. One that dies before its handshake, or misses it, is a failure: the node's log
// gets the last lines it wrote (a VMM's error), the pool waits longer after each failure in a
// row (1 s, 2 s, ... 60 s) and says so, and until an agent starts again a deploy that finds no
// ready agent is refused at once with the reason instead of waiting for one in vain.
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
  // The node's end of the agent's trigger channel (triggers/channel_node_end.h); not valid when the
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
  // Takes out of ready_ and starting_ the agents that ended or missed their handshake, and
  // stops them with `lock` released; start failures among them are noted.
  void reap(std::unique_lock<std::mutex>& lock);
  // Starts `count` agents with `lock` released; they join starting_.
  void start_agents(std::unique_lock<std::mutex>& lock, size_t count);
  // A start that failed (`reason`): counted, told, and the next start put off. mu_ held.
  void note_failure(const std::string& reason);
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
  int failures_ = 0;                        // agent starts that failed in a row
  std::string failure_;                     // the last one's reason, while failures_ > 0
  std::chrono::steady_clock::time_point retry_at_{};  // no start before, after a failure
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool announced_ = false;
  std::thread refiller_;  // also the thread that spawns agents (they die with it, by design)
};

}  // namespace nex::node
