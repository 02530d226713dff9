#include "node/workload_state.h"

#include <gtest/gtest.h>

#include <vector>

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using Phase = WorkloadPhase;
using Clock = WorkloadState::Clock;

const std::vector<Phase> kAll = {Phase::kReserved, Phase::kFetching,   Phase::kStarting,
                                 Phase::kRunning,  Phase::kRestarting, Phase::kStopping,
                                 Phase::kStopped,  Phase::kFailed};

// Walks a fresh state through `path`; every step must be allowed.
WorkloadState walk(std::initializer_list<Phase> path) {
  WorkloadState s;
  for (Phase p : path) {
    auto st = s.to(p);
    EXPECT_TRUE(st) << "to " << to_string(p) << ": " << (st ? "" : st.error().message);
  }
  return s;
}

TEST(WorkloadState, ADeployGoesFromReservedToRunningAndAStopEndsIt) {
  WorkloadState s;
  EXPECT_EQ(s.phase(), Phase::kReserved);
  s = walk({Phase::kFetching, Phase::kStarting, Phase::kRunning});
  EXPECT_TRUE(s.deployed());
  EXPECT_TRUE(s.healthy());
  EXPECT_FALSE(s.leaving());
  ASSERT_TRUE(s.to(Phase::kStopping));
  EXPECT_TRUE(s.leaving());
  ASSERT_TRUE(s.to(Phase::kStopped));
  EXPECT_TRUE(s.ended());
}

TEST(WorkloadState, ATransitionNotAllowedIsRefusedAndNamesBothPhases) {
  WorkloadState s;
  auto st = s.to(Phase::kRunning);  // nothing fetched, nothing started
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message, "workload state: reserved -> running is not allowed");
  EXPECT_EQ(s.phase(), Phase::kReserved) << "a refused transition changes nothing";

  auto stopped = walk(
      {Phase::kFetching, Phase::kStarting, Phase::kRunning, Phase::kStopping, Phase::kStopped});
  for (Phase p : kAll) EXPECT_FALSE(stopped.to(p)) << "stopped -> " << to_string(p);
  auto stopping = walk({Phase::kFetching, Phase::kStarting, Phase::kStopping});
  EXPECT_FALSE(stopping.to(Phase::kRunning)) << "a stop is not undone";
  EXPECT_FALSE(stopping.to(Phase::kRestarting));
  auto fetching = walk({Phase::kFetching});
  EXPECT_FALSE(fetching.to(Phase::kReserved)) << "no step goes back";
}

TEST(WorkloadState, TheTableAllowsExactlyTheLifecycle) {
  const std::vector<std::pair<Phase, Phase>> allowed = {
      {Phase::kReserved, Phase::kFetching},   {Phase::kReserved, Phase::kFailed},
      {Phase::kFetching, Phase::kStarting},   {Phase::kFetching, Phase::kFailed},
      {Phase::kStarting, Phase::kRunning},    {Phase::kStarting, Phase::kRestarting},
      {Phase::kStarting, Phase::kStopping},   {Phase::kStarting, Phase::kStopped},
      {Phase::kStarting, Phase::kFailed},     {Phase::kRunning, Phase::kRestarting},
      {Phase::kRunning, Phase::kStopping},    {Phase::kRunning, Phase::kStopped},
      {Phase::kRunning, Phase::kFailed},      {Phase::kRestarting, Phase::kRestarting},
      {Phase::kRestarting, Phase::kStarting}, {Phase::kRestarting, Phase::kStopping},
      {Phase::kRestarting, Phase::kStopped},  {Phase::kRestarting, Phase::kFailed},
      {Phase::kStopping, Phase::kStopped},    {Phase::kStopping, Phase::kFailed}};
  for (Phase from : kAll) {
    for (Phase to : kAll) {
      const bool expected =
          std::find(allowed.begin(), allowed.end(), std::pair{from, to}) != allowed.end();
      EXPECT_EQ(transition_allowed(from, to), expected)
          << to_string(from) << " -> " << to_string(to);
    }
  }
}

TEST(WorkloadState, ARestartCountsBacksOffAndIsUnhealthyUntilTheAgentTakesItAgain) {
  auto s = walk({Phase::kFetching, Phase::kStarting, Phase::kRunning});
  const Clock::time_point t0{};
  ASSERT_TRUE(s.restart_after(t0 + 250ms));
  EXPECT_EQ(s.phase(), Phase::kRestarting);
  EXPECT_EQ(s.restarts(), 1);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.metrics_label(), "restarting");
  EXPECT_FALSE(s.restart_due(t0));
  EXPECT_TRUE(s.restart_due(t0 + 250ms));
  s.ping_answered(true);
  EXPECT_FALSE(s.healthy()) << "a ping does not make a workload waiting for its restart healthy";
  // Its agent died meanwhile: rescheduled, counted again.
  ASSERT_TRUE(s.restart_after(t0 + 1s));
  EXPECT_EQ(s.restarts(), 2);
  EXPECT_FALSE(s.restart_due(t0 + 500ms));
  ASSERT_TRUE(s.to(Phase::kStarting));
  EXPECT_FALSE(s.restart_at());
  ASSERT_TRUE(s.agent_accepted());
  EXPECT_EQ(s.phase(), Phase::kRunning);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.metrics_label(), "running");
}

TEST(WorkloadState, ARestartIsRefusedOnceTheWorkloadIsStopping) {
  auto s = walk({Phase::kFetching, Phase::kStarting, Phase::kRunning, Phase::kStopping});
  EXPECT_FALSE(s.restart_after(Clock::time_point{}));
  EXPECT_EQ(s.restarts(), 0);
  EXPECT_EQ(s.metrics_label(), "stopping");
}

TEST(WorkloadState, TheFirstAcceptanceLeavesHealthAsThePingsSaidAndAnEarlyRestartStands) {
  auto s = walk({Phase::kFetching, Phase::kStarting});
  EXPECT_TRUE(s.healthy()) << "INFO shows a starting workload as healthy, as it always has";
  EXPECT_FALSE(s.deployed());
  s.ping_answered(false);
  EXPECT_EQ(s.metrics_label(), "unhealthy");
  ASSERT_TRUE(s.agent_accepted());
  EXPECT_TRUE(s.deployed());
  EXPECT_FALSE(s.healthy());
  // An essential workload that exited before its deploy was answered waits for its restart.
  auto early = walk({Phase::kFetching, Phase::kStarting});
  ASSERT_TRUE(early.restart_after(Clock::time_point{}));
  ASSERT_TRUE(early.agent_accepted());
  EXPECT_EQ(early.phase(), Phase::kRestarting);
  EXPECT_TRUE(early.deployed());
}

TEST(WorkloadState, ARunningWorkloadsHealthFollowsItsPings) {
  auto s = walk({Phase::kFetching, Phase::kStarting, Phase::kRunning});
  s.ping_answered(false);
  EXPECT_FALSE(s.healthy());
  EXPECT_EQ(s.metrics_label(), "unhealthy");
  s.ping_answered(true);
  EXPECT_TRUE(s.healthy());
  s.agent_lost();
  EXPECT_FALSE(s.healthy());
}

TEST(WorkloadState, AReplacementCarriesTheRestartsOver) {
  auto old = walk({Phase::kFetching, Phase::kStarting, Phase::kRunning});
  ASSERT_TRUE(old.restart_after(Clock::time_point{}));
  ASSERT_TRUE(old.restart_after(Clock::time_point{}));
  WorkloadState next;
  next.carry_restarts(old);
  EXPECT_EQ(next.restarts(), 2);
  EXPECT_EQ(next.phase(), Phase::kReserved);
}

TEST(WorkloadState, EveryPhaseHasItsName) {
  std::vector<std::string> names;
  for (Phase p : kAll) names.emplace_back(to_string(p));
  EXPECT_EQ(names, (std::vector<std::string>{"reserved", "fetching", "starting", "running",
                                             "restarting", "stopping", "stopped", "failed"}));
}

}  // namespace
}  // namespace nex::node
