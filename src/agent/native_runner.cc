#include "agent/native_runner.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstring>

namespace nex::agent {

Result<std::unique_ptr<NativeRunner>> NativeRunner::start(
    const std::filesystem::path& binary, const std::vector<std::string>& argv,
    const std::map<std::string, std::string>& env, LineHandler on_line, ExitHandler on_exit) {
  SpawnOptions options;
  options.argv.push_back(binary.string());
  options.argv.insert(options.argv.end(), argv.begin(), argv.end());
  options.clear_env = true;  // never leak the agent's own secrets (its NATS seed) to the workload
  options.env.push_back("PATH=/usr/local/bin:/usr/bin:/bin");
  for (const auto& [key, value] : env) {
    std::string upper = key;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    options.env.push_back(upper + "=" + value);
  }
  options.pipe_output = true;
  auto process = Subprocess::spawn(options);
  if (!process) return fail(process.error());
  std::unique_ptr<NativeRunner> runner(new NativeRunner());
  runner->process_ = std::move(*process);
  runner->on_line_ = std::move(on_line);
  runner->on_exit_ = std::move(on_exit);
  NativeRunner* r = runner.get();
  r->stdout_reader_ = std::thread([r] { r->read_lines(r->process_.stdout_fd(), false); });
  r->stderr_reader_ = std::thread([r] { r->read_lines(r->process_.stderr_fd(), true); });
  r->waiter_ = std::thread([r] { r->wait_for_exit(); });
  return runner;
}

void NativeRunner::read_lines(int fd, bool is_stderr) {
  std::string pending;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      on_line_(is_stderr, pending.substr(start, nl - start));
    }
    pending.erase(0, start);
    if (pending.size() > 64 * 1024) {  // a very long line without a newline: flush it
      on_line_(is_stderr, std::move(pending));
      pending.clear();
    }
  }
  if (!pending.empty()) on_line_(is_stderr, pending);
}

void NativeRunner::wait_for_exit() {
  // The only thread that reaps the process (stop() only signals it).
  std::optional<int> status;
  while (!(status = process_.wait_for(std::chrono::hours(24)))) {
  }
  {
    std::lock_guard lock(mu_);
    reaped_ = true;
  }
  stdout_reader_.join();
  stderr_reader_.join();
  int code = 0;
  std::string message;
  if (WIFEXITED(*status)) {
    code = WEXITSTATUS(*status);
    message = "exited with code " + std::to_string(code);
  } else if (WIFSIGNALED(*status)) {
    code = 128 + WTERMSIG(*status);
    message = std::string("killed by signal ") + std::to_string(WTERMSIG(*status)) + " (" +
              strsignal(WTERMSIG(*status)) + ")";
  }
  on_exit_(code, message);
  std::lock_guard lock(mu_);
  exited_ = true;
  exited_cv_.notify_all();
}

void NativeRunner::stop(std::chrono::milliseconds grace) {
  std::unique_lock lock(mu_);
  if (!reaped_) ::kill(process_.pid(), SIGTERM);
  if (!exited_cv_.wait_for(lock, grace, [this] { return exited_; })) {
    if (!reaped_) ::kill(process_.pid(), SIGKILL);
    exited_cv_.wait(lock, [this] { return exited_; });
  }
}

NativeRunner::~NativeRunner() {
  stop(std::chrono::seconds(2));
  if (waiter_.joinable()) waiter_.join();
}

}  // namespace nex::agent
