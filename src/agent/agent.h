// Agent: the per-workload supervisor inside a sandbox. It connects to the node's internal NATS
// with its own account, announces itself (handshake), then serves the node's deploy, undeploy
// and ping requests and reports its workload's output as logs and its end as an event. A native
// workload runs as a child process; a function runs in the agent, once per trigger.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "agent/invocation_reporter.h"
#include "agent/native_runner.h"
#include "api/agent.h"
#include "nats/connection.h"
#include "runtime/function.h"
#include "sandbox/loopback_forward.h"
#include "triggers/channel_agent_end.h"

namespace nex::agent {

// Internal event the agent sends when its workload process ends; the node decides whether
// that is an undeploy or a restart.
inline constexpr const char* kWorkloadExitedEvent = "workload_exited";

// Connects to the node's internal NATS, retrying for up to `patience`: the node may still be
// applying this agent's account, and while it reloads its server's authorization (as other
// workloads come and go) a connection still logging in is refused.
Result<nats::Connection> connect_to_node(const nats::ConnectOptions& options,
                                         std::chrono::milliseconds patience);

// What differs for an agent in a microVM: its workload's file is not handed in, and the host
// loopback ports its workload may reach come through the VM's gateway.
struct VmSetting {
  bool fetch_artifact = false;   // fetch it from the node (hostint.{id}.artifact)
  std::string loopback_gateway;  // HOST:PORT; empty: the sandbox's loopback is forwarded for it
};

class Agent {
 public:
  // `options` are `conn`'s, for the function's batched second connection. `trigger_channel` is
  // the agent's end of the node's trigger channel (-1: none, as in a microVM); it stays the
  // caller's and must outlive the agent.
  Agent(nats::Connection conn, nats::ConnectOptions options, std::string workload_id,
        std::filesystem::path artifact_path, VmSetting vm = {}, int trigger_channel = -1);

  // Subscribes to the agent's subjects and performs the handshake.
  Status start();
  // Blocks until the workload was undeployed or the node went away.
  void run_until_stopped();
  // Ends run_until_stopped (SIGTERM/SIGINT, or the node's undeploy).
  void request_stop();

 private:
  void on_deploy(nats::Message msg);
  void on_undeploy(nats::Message msg);
  // Functions (v8, wasm): compiles the function and takes its triggers: from the user's NATS
  // (direct), from the node's trigger channel, or on agentint.{id}.trigger (microVMs).
  Status start_function(const api::AgentDeployRequest& req);
  // Its steps: the second internal connection (bulk_), for reports and logs;
  Status open_bulk_connection();
  // the user's NATS when direct (trigger_conn_), and the subjects to subscribe to (none over
  // the node's trigger channel);
  Result<std::vector<std::string>> connect_triggers(const api::AgentDeployRequest& req,
                                                    bool direct);
  // the function's own source of invocations, which its workers receive from themselves: the
  // channel, or one subscription; null for several (a direct deploy with several subjects),
  // which subscribe_each() delivers to invoke() once the function is loaded;
  Result<std::unique_ptr<runtime::InvocationSource>> trigger_source(
      const api::AgentDeployRequest& req, const nats::Connection& triggers,
      const std::vector<std::string>& subjects, bool direct);
  Status load_function(const api::AgentDeployRequest& req, const std::string& code,
                       std::unique_ptr<runtime::InvocationSource> source);
  Status subscribe_each(const nats::Connection& triggers, const std::vector<std::string>& subjects,
                        bool direct);
  // A trigger as an invocation: `answer` gets its result and run time, then it is reported.
  runtime::Invocation invocation(
      std::string subject, std::string payload,
      std::function<void(const runtime::InvocationResult&, int64_t)> answer);
  // A trigger from NATS, answered directly on the user's NATS or through the node.
  runtime::Invocation invocation(const nats::Message& m, bool direct);
  // The invocation's reply: the result, its run time, and errors as NATS micro services report
  // them (the node forwards relayed answers as they are).
  void answer(const nats::Connection& out, const std::string& reply_to,
              const runtime::InvocationResult& r, int64_t elapsed_ns);
  // A function's host-service call, asked of the node (blocks the calling worker).
  runtime::HostReply host_call(const runtime::HostCall& call);
  void publish_log(const nats::Connection& out, const std::string& level, const std::string& text);
  void publish_event(const nats::Connection& out, const std::string& type,
                     const nlohmann::json& data);
  void reply(const nats::Message& msg, const std::string& body);
  // microVMs: the artifact, `total_bytes` of it, from the node to artifact_path_; its SHA-256.
  Result<std::string> fetch_artifact(int64_t total_bytes);
  // microVMs: serves each of `urls`' host loopback ports on the guest's loopback.
  Status forward_loopback(const std::vector<std::string>& urls);

  nats::Connection conn_;
  nats::ConnectOptions options_;
  // A function's invocation reports and console lines: without send_asap libnats writes them
  // together within a millisecond instead of one write (and one wake-up of the internal server
  // and the node) per message. Replies never wait for them.
  std::optional<nats::Connection> bulk_;
  std::optional<InvocationReporter> reporter_;  // on bulk_
  std::string id_;
  std::filesystem::path artifact_path_;
  std::string workload_name_;
  std::vector<nats::Subscription> subs_;
  std::mutex mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::unique_ptr<NativeRunner> runner_;
  std::shared_ptr<runtime::Function> function_;     // guarded by mu_
  std::shared_ptr<nats::Connection> trigger_conn_;  // direct triggers: the user's NATS
  int64_t reply_max_payload_ = 0;  // the most a function's reply may carry to its callers
  std::vector<nats::Subscription> trigger_subs_;  // when not the function's source
  int trigger_channel_ = -1;                      // the node's trigger channel, if any
  std::string namespace_;
  VmSetting vm_;
  std::vector<std::unique_ptr<sandbox::LoopbackForwarder>> forwarders_;
};

}  // namespace nex::agent
