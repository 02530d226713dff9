// CPU time, for benchmarks that report what work costs rather than how long it took.
#pragma once

#include <sys/resource.h>

namespace nex::bench {

// CPU time this process has used so far: all its threads, user and system, in seconds.
inline double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

}  // namespace nex::bench
