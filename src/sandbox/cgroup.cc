#include "sandbox/cgroup.h"

#include <signal.h>
#include <sys/statfs.h>

#include <linux/magic.h>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/file_io.h"

namespace nex::sandbox {
namespace fs = std::filesystem;

namespace {

const fs::path kRoot = "/sys/fs/cgroup";

bool is_v2_root() {
  struct statfs st {};
  return statfs(kRoot.c_str(), &st) == 0 && st.f_type == CGROUP2_SUPER_MAGIC;
}

// The v1 hierarchies we use, each holding the named controller.
std::vector<fs::path> v1_roots() { return {kRoot / "memory", kRoot / "cpu", kRoot / "pids"}; }

Status write_file(const fs::path& path, const std::string& value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  if (!out)
    return fail(ErrorCode::kIo,
                "cannot write '" + value + "' to " + path.string() + ": " + std::strerror(errno));
  return {};
}

std::vector<fs::path> hierarchy_roots() {
  if (is_v2_root()) return {kRoot};
  return v1_roots();
}

bool has_procs(const fs::path& dir) {
  const std::string procs = read_file(dir / "cgroup.procs").value_or("");
  return procs.find_first_not_of(" \n") != std::string::npos;
}

void kill_and_remove(const fs::path& dir) {
  for (int i = 0; i < 200 && fs::exists(dir); ++i) {
    std::istringstream procs(read_file(dir / "cgroup.procs").value_or(""));
    for (pid_t pid; procs >> pid;) ::kill(pid, SIGKILL);
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace

Result<std::string> Cgroup::host_version() {
  if (is_v2_root()) {
    const std::string controllers = read_file(kRoot / "cgroup.controllers").value_or("");
    for (const char* c : {"memory", "cpu", "pids"}) {
      if (controllers.find(c) == std::string::npos)
        return fail(ErrorCode::kUnavailable, std::string("cgroup v2 controller '") + c +
                                                 "' is not available in " +
                                                 (kRoot / "cgroup.controllers").string());
    }
    return std::string("v2");
  }
  for (const auto& root : v1_roots()) {
    if (!fs::exists(root / "cgroup.procs"))
      return fail(ErrorCode::kUnavailable, "neither cgroup v2 at " + kRoot.string() +
                                               " nor the v1 hierarchy " + root.string() +
                                               " is mounted");
  }
  return std::string("v1");
}

Result<Cgroup> Cgroup::create(const std::string& instance, const std::string& id,
                              const CgroupLimits& limits) {
  auto version = host_version();
  if (!version) return fail(version.error());
  Cgroup group;
  std::error_code ec;
  for (const auto& root : hierarchy_roots()) {
    const fs::path dir = root / "nex" / instance / id;
    fs::create_directories(dir, ec);
    if (ec)
      return fail(ErrorCode::kIo, "cannot create cgroup " + dir.string() + ": " + ec.message());
    group.dirs_.push_back(dir);
  }
  auto fail_and_remove = [&](Status st) -> Result<Cgroup> {
    group.remove();
    return fail(st.error());
  };
  if (*version == "v2") {
    // Controllers must be enabled on every level above the group.
    for (const fs::path& level : {kRoot, kRoot / "nex", kRoot / "nex" / instance}) {
      if (auto st = write_file(level / "cgroup.subtree_control", "+memory +cpu +pids"); !st)
        return fail_and_remove(st);
    }
    const fs::path& dir = group.dirs_[0];
    if (limits.memory_bytes > 0) {
      if (auto st = write_file(dir / "memory.max", std::to_string(limits.memory_bytes)); !st)
        return fail_and_remove(st);
      if (fs::exists(dir / "memory.swap.max")) (void)write_file(dir / "memory.swap.max", "0");
    }
    if (limits.cpu_millis > 0) {
      if (auto st =
              write_file(dir / "cpu.max", std::to_string(limits.cpu_millis * 100) + " 100000");
          !st)
        return fail_and_remove(st);
    }
    if (limits.pids > 0) {
      if (auto st = write_file(dir / "pids.max", std::to_string(limits.pids)); !st)
        return fail_and_remove(st);
    }
    return group;
  }
  const fs::path &memory = group.dirs_[0], &cpu = group.dirs_[1], &pids = group.dirs_[2];
  if (limits.memory_bytes > 0) {
    if (auto st = write_file(memory / "memory.limit_in_bytes", std::to_string(limits.memory_bytes));
        !st)
      return fail_and_remove(st);
    // With swap accounting, swap counts too, so the limit cannot be sidestepped by swapping.
    if (fs::exists(memory / "memory.memsw.limit_in_bytes"))
      (void)write_file(memory / "memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));
  }
  if (limits.cpu_millis > 0) {
    if (auto st = write_file(cpu / "cpu.cfs_period_us", "100000"); !st) return fail_and_remove(st);
    if (auto st = write_file(cpu / "cpu.cfs_quota_us", std::to_string(limits.cpu_millis * 100));
        !st)
      return fail_and_remove(st);
  }
  if (limits.pids > 0) {
    if (auto st = write_file(pids / "pids.max", std::to_string(limits.pids)); !st)
      return fail_and_remove(st);
  }
  return group;
}

Status Cgroup::add(pid_t pid) const {
  for (const auto& dir : dirs_)
    NEX_RETURN_IF_ERROR(write_file(dir / "cgroup.procs", std::to_string(pid)));
  return {};
}

void Cgroup::remove() const {
  for (const auto& dir : dirs_) {
    for (int i = 0; i < 200 && has_procs(dir); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    kill_and_remove(dir);
  }
}

void Cgroup::remove_stale(const std::string& instance) {
  std::error_code ec;
  for (const auto& root : hierarchy_roots()) {
    const fs::path dir = root / "nex" / instance;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (entry.is_directory()) kill_and_remove(entry.path());
    }
    ::rmdir(dir.c_str());
  }
}

}  // namespace nex::sandbox
