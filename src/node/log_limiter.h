// LogLimiter: what one workload may put on $NEX.logs. The node applies it to each line its agent
// sends, because the agent runs beside the workload (in its sandbox) and is not trusted to limit
// itself. A token bucket: `burst` lines at once, refilled at `lines_per_second`; a line that
// finds the bucket empty is dropped and counted, and the count is reported in the workload's own
// log at most once per kReportInterval, so a flood costs the log one line a second. A line
// longer than max_line_bytes is cut there and marked as cut. Thread-safe: lines arrive on the
// node's agent-traffic thread, reports are taken by its maintenance loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

#include "node/node_config.h"

namespace nex::node {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr auto kReportInterval = std::chrono::seconds(1);

  LogLimiter(const WorkloadLogLimits& limits, Clock::time_point now);

  // Whether a line arriving at `now` may go out; false, and counted, when over the rate.
  bool admit(Clock::time_point now);

  // Lines dropped and not yet reported, over how long they were dropped.
  struct Dropped {
    int64_t lines = 0;
    Clock::duration during{};
  };
  // The drops since the last report, once kReportInterval has passed since it (at any time when
  // `final`: the workload is going); nothing when there were none.
  std::optional<Dropped> take_dropped(Clock::time_point now, bool final = false);
  // The line the workload's log gets for `d`, naming the limit and where it is configured.
  std::string notice(const Dropped& d) const;

  // Cuts `text` to max_line_bytes (not inside a UTF-8 sequence) and marks it as cut.
  void bound_line(std::string& text) const;

 private:
  const WorkloadLogLimits limits_;
  std::mutex mu_;
  double tokens_;
  Clock::time_point refilled_;
  int64_t dropped_ = 0;
  Clock::time_point first_drop_{};  // of those not yet reported
  Clock::time_point last_report_;   // or the limiter's start
};

}  // namespace nex::node
