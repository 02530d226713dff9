// NativeRunner: runs one native workload process for the agent. Every line the process writes
// is handed to a callback (stdout and stderr apart), and its end is reported once with an exit
// code (128+N when killed by signal N). The workload gets only the environment it was given.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/subprocess.h"

namespace nex::agent {

class NativeRunner {
 public:
  using LineHandler = std::function<void(bool is_stderr, std::string line)>;
  using ExitHandler = std::function<void(int exit_code, std::string message)>;

  static Result<std::unique_ptr<NativeRunner>> start(const std::filesystem::path& binary,
                                                     const std::vector<std::string>& argv,
                                                     const std::map<std::string, std::string>& env,
                                                     LineHandler on_line, ExitHandler on_exit);
  ~NativeRunner();

  pid_t pid() const { return process_.pid(); }
  // SIGTERM, then SIGKILL after `grace`; returns once the process is gone and reported.
  void stop(std::chrono::milliseconds grace);

 private:
  NativeRunner() = default;
  void read_lines(int fd, bool is_stderr);
  void wait_for_exit();

  Subprocess process_;
  LineHandler on_line_;
  ExitHandler on_exit_;
  std::thread stdout_reader_, stderr_reader_, waiter_;
  std::mutex mu_;
  std::condition_variable exited_cv_;
  bool reaped_ = false;  // the pid is gone: never signal it again (it could be reused)
  bool exited_ = false;  // reaped and reported
};

}  // namespace nex::agent
