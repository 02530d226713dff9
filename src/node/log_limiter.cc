#include "node/log_limiter.h"

#include <fmt/format.h>

#include <algorithm>

namespace nex::node {

LogLimiter::LogLimiter(const WorkloadLogLimits& limits, Clock::time_point now)
    : limits_(limits),
      tokens_(static_cast<double>(limits.burst)),
      refilled_(now),
      last_report_(now) {}

bool LogLimiter::admit(Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (now > refilled_) {
    const double elapsed = std::chrono::duration<double>(now - refilled_).count();
    tokens_ = std::min(static_cast<double>(limits_.burst),
                       tokens_ + elapsed * static_cast<double>(limits_.lines_per_second));
    refilled_ = now;
  }
  if (tokens_ >= 1) {
    tokens_ -= 1;
    return true;
  }
  if (dropped_++ == 0) first_drop_ = now;
  return false;
}

std::optional<LogLimiter::Dropped> LogLimiter::take_dropped(Clock::time_point now, bool final) {
  std::lock_guard lock(mu_);
  if (dropped_ == 0 || (!final && now - last_report_ < kReportInterval)) return std::nullopt;
  Dropped d{dropped_, now - std::max(first_drop_, last_report_)};
  dropped_ = 0;
  last_report_ = now;
  return d;
}

std::string LogLimiter::notice(const Dropped& d) const {
  const double seconds = std::max(0.1, std::chrono::duration<double>(d.during).count());
  return fmt::format(
      "nex: dropped {} log line{} in the last {:.1f} s: over the log rate limit of {} lines/s "
      "with bursts of {} (node config workload_logs.lines_per_second and burst)",
      d.lines, d.lines == 1 ? "" : "s", seconds, limits_.lines_per_second, limits_.burst);
}

void LogLimiter::bound_line(std::string& text) const {
  const auto limit = static_cast<size_t>(limits_.max_line_bytes);
  if (text.size() <= limit) return;
  size_t end = limit;
  // Back to the first byte of the character the limit falls in (continuations are 10xxxxxx; a
  // character has at most three). Bytes that are not UTF-8 are cut where they are.
  for (int i = 0; i < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80; ++i)
    --end;
  const size_t total = text.size();
  text.resize(end);
  text += fmt::format(
      " [nex: line cut at {} of its {} bytes (node config workload_logs.max_line_bytes)]", end,
      total);
}

}  // namespace nex::node
