// A workload's lifecycle on the node, as one value with named phases and the transitions
// allowed between them:
//
//   reserved -> fetching -> starting -> running <-> restarting -> ... -> stopping -> stopped
//                                                                        (or failed)
//
// reserved: a deploy holds a place under the node's limits; fetching: its artifact is being
// downloaded and checked; starting: its agent was asked to start it (first, or again after a
// restart); running: its agent accepted it; restarting: an essential workload that ended waits
// for its backoff; stopping: a stop (or the node's shutdown) is undeploying it; stopped and
// failed: it is gone, on purpose or not. A transition that is not allowed is refused and changes
// nothing. Besides its phase, the value holds what INFO, events and metrics say about it: its
// health (its agent's answers to pings), how often it was restarted, and when it restarts next.
// Not thread-safe: its owner (Node, under its mutex mu_) is the one that changes it.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "core/error.h"

namespace nex::node {

enum class WorkloadPhase {
  kReserved,
  kFetching,
  kStarting,
  kRunning,
  kRestarting,
  kStopping,
  kStopped,
  kFailed,
};

std::string_view to_string(WorkloadPhase phase);
bool transition_allowed(WorkloadPhase from, WorkloadPhase to);

class WorkloadState {
 public:
  using Clock = std::chrono::steady_clock;

  WorkloadPhase phase() const { return phase_; }
  // Moves to `next` when the table allows it; refused otherwise, naming both phases.
  Status to(WorkloadPhase next);
  // Stopped or failed: gone from the node.
  bool ended() const {
    return phase_ == WorkloadPhase::kStopped || phase_ == WorkloadPhase::kFailed;
  }
  // Being stopped, or already gone: nothing may restart it or hand it new work.
  bool leaving() const { return phase_ == WorkloadPhase::kStopping || ended(); }

  // Its agent accepted it: from then on a dead agent is the node's news. Starting becomes
  // running; a workload that ended meanwhile stays where that put it (restarting, stopping).
  Status agent_accepted();
  bool deployed() const { return deployed_; }

  // Healthy until its agent stops answering pings, it ends, or its agent dies. A workload
  // waiting for its restart stays unhealthy whatever a ping says.
  bool healthy() const { return healthy_; }
  void ping_answered(bool ok);
  void agent_lost() { healthy_ = false; }
  void set_healthy() { healthy_ = true; }

  // An essential workload that ended: restarting at `at` (again, when it already was), counted.
  Status restart_after(Clock::time_point at);
  bool restart_due(Clock::time_point now) const {
    return phase_ == WorkloadPhase::kRestarting && restart_at_ && *restart_at_ <= now;
  }
  std::optional<Clock::time_point> restart_at() const { return restart_at_; }
  int restarts() const { return restarts_; }
  // A workload deployed again in a new agent keeps the count of the one it replaces.
  void carry_restarts(const WorkloadState& from) { restarts_ = from.restarts_; }

  // The "state" label of the nex_workloads gauge: stopping, restarting, running or unhealthy.
  std::string_view metrics_label() const;

 private:
  WorkloadPhase phase_ = WorkloadPhase::kReserved;
  bool deployed_ = false;
  bool healthy_ = true;
  int restarts_ = 0;
  std::optional<Clock::time_point> restart_at_;  // set while restarting
  bool restarted_ = false;  // starting again after a restart: the agent's yes makes it healthy
};

}  // namespace nex::node
