#include "sandbox/process_driver.h"

#include <fstream>
#include <map>
#include <sstream>

#include "api/agent.h"
#include "core/subprocess.h"

namespace nex::sandbox {
namespace fs = std::filesystem;

namespace {

class ProcessSandbox : public SubprocessSandbox {
 public:
  using SubprocessSandbox::SubprocessSandbox;
  ~ProcessSandbox() override { stop(std::chrono::seconds(5)); }

  std::string internal_nats_host() const override { return "127.0.0.1"; }
  Status expose_host_port(int) override { return {}; }  // it shares the host's network
};

}  // namespace

Result<SandboxStats> SubprocessSandbox::stats() {
  return SandboxStats{process_tree_rss_bytes(pid())};
}

int64_t process_tree_rss_bytes(pid_t root) {
  // Map every process to its parent, then add up the tree under `root`.
  std::multimap<pid_t, pid_t> children;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    pid_t ppid;
    if (rest >> state >> ppid) children.emplace(ppid, std::stoi(name));
  }
  int64_t total = 0;
  std::vector<pid_t> todo = {root};
  while (!todo.empty()) {
    const pid_t pid = todo.back();
    todo.pop_back();
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmRSS:", 0) == 0) total += std::stoll(line.substr(6)) * 1024;
    }
    auto [lo, hi] = children.equal_range(pid);
    for (auto it = lo; it != hi; ++it) todo.push_back(it->second);
  }
  return total;
}

Result<std::unique_ptr<Sandbox>> ProcessDriver::start(const SandboxSpec& spec) {
  std::error_code ec;
  fs::create_directories(spec.work_dir, ec);
  if (ec)
    return fail(ErrorCode::kIo, "cannot create " + spec.work_dir.string() + ": " + ec.message());
  fs::permissions(spec.work_dir, fs::perms::owner_all, ec);  // the workload is no one else's
  // The agent gets only what it needs from the node's environment.
  std::vector<std::string> env = spec.env;
  env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  env.push_back(std::string(api::kEnvNatsHost) + "=127.0.0.1");
  env.push_back(std::string(api::kEnvNatsPort) + "=" + std::to_string(spec.internal_nats_port));
  env.push_back(std::string(api::kEnvArtifactPath) + "=" +
                (spec.work_dir / spec.artifact_name).string());
  if (spec.trigger_channel_fd >= 0)
    env.push_back(std::string(api::kEnvTriggerFd) + "=" + std::to_string(kPassedFd));
  auto process = Subprocess::spawn({.argv = {spec.agent_binary.string()},
                                    .env = env,
                                    .clear_env = true,
                                    .stdout_path = spec.log_file.string(),
                                    .stderr_path = spec.log_file.string(),
                                    .die_with_parent = true,
                                    .pass_fd = spec.trigger_channel_fd});
  if (!process) {
    fs::remove_all(spec.work_dir, ec);
    return fail(process.error().wrap("start agent"));
  }
  return std::unique_ptr<Sandbox>(std::make_unique<ProcessSandbox>(
      spec.workload_id, spec.work_dir, spec.artifact_name, std::move(*process)));
}

}  // namespace nex::sandbox
