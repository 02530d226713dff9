// What the node's own files share (node.cc, control_api.cc, workloads.cc): the record of a
// running workload and a few helpers. Not for use outside src/node.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/agent.h"
#include "api/subject.h"
#include "node/log_limiter.h"
#include "node/node.h"
#include "node/workload_state.h"
#include "triggers/channel_node_end.h"

namespace nex::node {

// A deploy request whose signature, binding and issuer the node has checked.
struct Node::VerifiedDeploy {
  api::DeployRequest req;
  std::string name;
  std::string issuer;
  crypto::JwtClaims claims;  // no exp: an unbound request of older tooling, when allowed
  std::string claimed_hash;  // the artifact's SHA-256 the request and its JWT vouch for
  std::string fingerprint;   // api::request_fingerprint: tells a resend from another request
};

struct Node::Workload {
  std::string id;
  std::string ns;
  std::string name;
  std::string description;
  api::WorkloadType type = api::WorkloadType::kNative;
  std::string issuer;
  std::string deploy_jti;
  std::string hash;
  int64_t bytes = 0;
  bool essential = false;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  WarmAgent agent;
  api::AgentDeployRequest request;  // kept to restart an essential workload
  // What it was deployed from, to deploy it again in a new agent when its agent dies.
  std::string body;
  DeployOrigin origin = DeployOrigin::kRequest;
  std::optional<VerifiedDeploy> verified;
  // Its phase, health and restarts (workload_state.h); guarded by Node::mu_, changed by the node
  // alone (Node::move_to and the calls below).
  WorkloadState state;
  bool agent_gone = false;  // its agent (or sandbox) ended; a restart needs a new one
  std::string last_exit;    // how it or its agent last ended ("its agent was killed by ...")
  std::vector<nats::Subscription> triggers;  // functions relayed: their trigger subscriptions
  std::shared_ptr<triggers::ChannelNodeEnd> channel;  // relayed over the agent's trigger channel
  std::atomic<int64_t> invocations{0};                // functions: answered triggers
  std::atomic<int64_t> runtime_ns{0};       // functions: their total run time in the agent
  NodeMetrics::Function metrics;            // functions: their Prometheus series
  std::optional<LogLimiter> logs;           // what it may put on $NEX.logs (set at deploy)
  metrics::Series* logs_dropped = nullptr;  // lines LogLimiter dropped, for Prometheus
};

// The node's log: a line on stderr, prefixed with the time.
void log_line(const std::string& text);

// Token i of "$NEX.DEPLOY.{ns}.{node}" style subjects ("" past the end).
inline std::string token(std::string_view subject, size_t i) {
  auto t = api::subject_tokens(subject);
  return i < t.size() ? std::string(t[i]) : std::string();
}

inline int64_t seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t)
      .count();
}

}  // namespace nex::node
