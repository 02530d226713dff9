#include "node/workload_state.h"

#include <array>
#include <string>

namespace nex::node {

namespace {

using P = WorkloadPhase;

constexpr size_t kPhases = static_cast<size_t>(P::kFailed) + 1;

constexpr std::array<std::string_view, kPhases> kNames = {
    "reserved", "fetching", "starting", "running", "restarting", "stopping", "stopped", "failed"};

// Where each phase may go. Failed is reachable from every phase a workload is still on the
// node in (a deploy step, a start, a restart or a stop can fail); stopped only once it started.
// Restarting may be entered again: an essential workload whose agent dies while it waits for
// its restart is rescheduled.
bool allowed(P from, P to) {
  switch (from) {
    case P::kReserved:
      return to == P::kFetching || to == P::kFailed;
    case P::kFetching:
      return to == P::kStarting || to == P::kFailed;
    case P::kStarting:
      return to == P::kRunning || to == P::kRestarting || to == P::kStopping || to == P::kStopped ||
             to == P::kFailed;
    case P::kRunning:
      return to == P::kRestarting || to == P::kStopping || to == P::kStopped || to == P::kFailed;
    case P::kRestarting:
      return to == P::kRestarting || to == P::kStarting || to == P::kStopping ||
             to == P::kStopped || to == P::kFailed;
    case P::kStopping:
      return to == P::kStopped || to == P::kFailed;
    case P::kStopped:
    case P::kFailed:
      return false;
  }
  return false;
}

}  // namespace

std::string_view to_string(WorkloadPhase phase) { return kNames[static_cast<size_t>(phase)]; }

bool transition_allowed(WorkloadPhase from, WorkloadPhase to) { return allowed(from, to); }

Status WorkloadState::to(WorkloadPhase next) {
  if (!allowed(phase_, next)) {
    return fail(ErrorCode::kInternal, "workload state: " + std::string(to_string(phase_)) + " -> " +
                                          std::string(to_string(next)) + " is not allowed");
  }
  if (phase_ == P::kRestarting && next != P::kRestarting) restart_at_.reset();
  restarted_ = phase_ == P::kRestarting && next == P::kStarting;
  if (next == P::kRunning) deployed_ = true;
  phase_ = next;
  return {};
}

Status WorkloadState::agent_accepted() {
  if (phase_ != P::kStarting) {
    // Ended or being stopped while its agent was answering: that stands.
    if (phase_ == P::kReserved || phase_ == P::kFetching)
      return fail(ErrorCode::kInternal,
                  "workload state: accepted by its agent while " + std::string(to_string(phase_)));
    deployed_ = true;
    return {};
  }
  // Started again in its agent after a restart: healthy from now on, until a ping says not.
  if (restarted_) healthy_ = true;
  return to(P::kRunning);
}

void WorkloadState::ping_answered(bool ok) {
  if (phase_ != P::kRestarting) healthy_ = ok;
}

Status WorkloadState::restart_after(Clock::time_point at) {
  if (auto st = to(P::kRestarting); !st) return st;
  restarts_ += 1;
  healthy_ = false;
  restart_at_ = at;
  return {};
}

std::string_view WorkloadState::metrics_label() const {
  if (leaving()) return "stopping";
  if (phase_ == P::kRestarting) return "restarting";
  return healthy_ ? "running" : "unhealthy";
}

}  // namespace nex::node
