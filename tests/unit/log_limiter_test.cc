#include "node/log_limiter.h"

#include <gtest/gtest.h>

namespace nex::node {
namespace {

using namespace std::chrono_literals;
using Clock = LogLimiter::Clock;

TEST(LogLimiter, ABurstGoesOutThenTheRateHoldsAndDropsAreCounted) {
  const Clock::time_point t0{};
  LogLimiter limiter({.lines_per_second = 10, .burst = 20, .max_line_bytes = 100}, t0);
  int admitted = 0;
  for (int i = 0; i < 100; ++i) admitted += limiter.admit(t0);
  EXPECT_EQ(admitted, 20);
  // Half a second refills five lines.
  admitted = 0;
  for (int i = 0; i < 100; ++i) admitted += limiter.admit(t0 + 500ms);
  EXPECT_EQ(admitted, 5);
  // Not reported before a second has passed since the start; then all of them, once.
  EXPECT_FALSE(limiter.take_dropped(t0 + 900ms));
  auto d = limiter.take_dropped(t0 + 1s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->lines, 175);
  EXPECT_EQ(d->during, 1s);
  EXPECT_FALSE(limiter.take_dropped(t0 + 5s)) << "nothing dropped since";
  EXPECT_EQ(limiter.notice(*d),
            "nex: dropped 175 log lines in the last 1.0 s: over the log rate limit of 10 lines/s "
            "with bursts of 20 (node config workload_logs.lines_per_second and burst)");
}

TEST(LogLimiter, AtMostOneReportPerSecondButTheLastOneWhenAsked) {
  const Clock::time_point t0{};
  LogLimiter limiter({.lines_per_second = 1, .burst = 1, .max_line_bytes = 100}, t0);
  EXPECT_TRUE(limiter.admit(t0));
  EXPECT_FALSE(limiter.admit(t0 + 100ms));
  auto first = limiter.take_dropped(t0 + 1s);
  ASSERT_TRUE(first);
  EXPECT_EQ(first->lines, 1);
  EXPECT_EQ(first->during, 900ms) << "from the first line dropped";
  EXPECT_TRUE(limiter.admit(t0 + 1200ms));
  EXPECT_FALSE(limiter.admit(t0 + 1300ms));
  EXPECT_FALSE(limiter.take_dropped(t0 + 1500ms)) << "a second has not passed since the last";
  auto last = limiter.take_dropped(t0 + 1500ms, /*final=*/true);
  ASSERT_TRUE(last);
  EXPECT_EQ(last->lines, 1);
  EXPECT_EQ(last->during, 200ms);
}

TEST(LogLimiter, LongLinesAreCutAtACharacterAndMarked) {
  LogLimiter limiter({.lines_per_second = 1, .burst = 1, .max_line_bytes = 64}, Clock::now());
  std::string line(63, 'a');
  line += "é and more";  // the limit falls inside 'é' (2 bytes)
  limiter.bound_line(line);
  EXPECT_EQ(line, std::string(63, 'a') +
                      " [nex: line cut at 63 of its 74 bytes (node config "
                      "workload_logs.max_line_bytes)]");
  std::string short_line = "fits";
  limiter.bound_line(short_line);
  EXPECT_EQ(short_line, "fits");
}

}  // namespace
}  // namespace nex::node
