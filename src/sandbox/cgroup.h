// Cgroup limits for a sandbox, on cgroup v2 (unified) and v1 (one hierarchy per controller)
// hosts alike: memory, CPU quota and a pids limit. A group lives at nex/{instance}/{id} in each
// hierarchy; remove() takes it away once its processes are gone, and remove_stale() clears the
// groups a crashed node left behind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::sandbox {

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0 = no limit
  int64_t cpu_millis = 0;    // CPU time per second of wall time, in ms (1000 = one core)
  int64_t pids = 0;          // 0 = no limit
};

class Cgroup {
 public:
  // "v2", "v1" or an error saying why neither can be used.
  static Result<std::string> host_version();

  static Result<Cgroup> create(const std::string& instance, const std::string& id,
                               const CgroupLimits& limits);
  // Removes every group of `instance` (killing what is left in them), and its own directory.
  static void remove_stale(const std::string& instance);

  Cgroup() = default;
  Status add(pid_t pid) const;
  // Waits (bounded) for the group to empty, then removes its directories.
  void remove() const;

 private:
  std::vector<std::filesystem::path> dirs_;  // one (v2) or one per v1 controller
};

}  // namespace nex::sandbox
