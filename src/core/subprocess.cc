#include "core/subprocess.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

extern char** environ;

namespace nex {
namespace {

std::vector<std::string> merged_environment(const SpawnOptions& options) {
  std::map<std::string, std::string> vars;
  if (!options.clear_env) {
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      vars[entry.substr(0, entry.find('='))] = entry;
    }
  }
  for (const auto& entry : options.env) vars[entry.substr(0, entry.find('='))] = entry;
  std::vector<std::string> out;
  for (auto& [key, entry] : vars) out.push_back(std::move(entry));
  return out;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<Subprocess> Subprocess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return fail(ErrorCode::kInvalidArgument, "spawn: argv is empty");
  // exec fails with ETXTBSY while any process holds the program open for writing. That includes
  // a child another thread forked while the file was being written, until that child execs:
  // O_CLOEXEC cannot close this window. It passes within moments, so try again for a while.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    int exec_errno = 0;
    auto child = spawn_once(options, exec_errno);
    if (child || exec_errno != ETXTBSY || std::chrono::steady_clock::now() >= deadline)
      return child;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

Result<Subprocess> Subprocess::spawn_once(const SpawnOptions& options, int& exec_errno) {
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<std::string> argv_storage = options.argv;
  std::vector<std::string> env_storage = merged_environment(options);
  std::vector<char*> argv = c_strings(argv_storage);
  std::vector<char*> envp = c_strings(env_storage);
  int out_fd = -1;
  int err_fd = -1;
  if (!options.stdout_path.empty()) {
    out_fd = ::open(options.stdout_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out_fd < 0) {
      return fail(ErrorCode::kIo,
                  "spawn: open " + options.stdout_path + ": " + std::strerror(errno));
    }
  }
  if (!options.stderr_path.empty()) {
    err_fd = ::open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (err_fd < 0) {
      if (out_fd >= 0) ::close(out_fd);
      return fail(ErrorCode::kIo,
                  "spawn: open " + options.stderr_path + ": " + std::strerror(errno));
    }
  }
  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  if (options.pipe_output) {
    if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
      return fail(ErrorCode::kIo, std::string("spawn: pipe: ") + std::strerror(errno));
    }
    out_fd = out_pipe[1];
    err_fd = err_pipe[1];
  }
  // A pipe whose write end closes on exec tells the parent whether exec succeeded.
  int exec_pipe[2];
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    return fail(ErrorCode::kIo, std::string("spawn: pipe: ") + std::strerror(errno));
  }
  int null_fd = -1;
  if (options.null_stdin) null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(exec_pipe[0]);
    ::close(exec_pipe[1]);
    if (out_fd >= 0) ::close(out_fd);
    if (err_fd >= 0) ::close(err_fd);
    if (null_fd >= 0) ::close(null_fd);
    return fail(ErrorCode::kIo, std::string("spawn: fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    if (options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    if (options.own_process_group) ::setpgid(0, 0);
    if (out_fd >= 0) ::dup2(out_fd, STDOUT_FILENO);
    if (err_fd >= 0) ::dup2(err_fd, STDERR_FILENO);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    // Group first: once the user changed, the group can no longer be.
    const bool drop = options.gid || options.uid;
    if ((drop && ::getuid() == 0 && ::setgroups(0, nullptr) != 0) ||
        (options.gid && ::setgid(*options.gid) != 0) ||
        (options.uid && ::setuid(*options.uid) != 0)) {
      int err = errno;  // reported like an exec failure
      [[maybe_unused]] auto n = ::write(exec_pipe[1], &err, sizeof err);
      ::_exit(127);
    }
    // A change of user clears the parent-death signal (commit_creds): set it again.
    if (drop && options.die_with_parent) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
    }
    // Descriptors another thread opened without O_CLOEXEC must not leak into the program.
    // (Marking them close-on-exec keeps the exec-status pipe working until exec.)
    int exec_fd = exec_pipe[1];
    if (options.pass_fd >= 0 && exec_fd == kPassedFd)
      exec_fd = ::fcntl(exec_fd, F_DUPFD_CLOEXEC, kPassedFd + 1);
    ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
    if (options.pass_fd >= 0) {
      const bool moved = options.pass_fd == kPassedFd || ::dup2(options.pass_fd, kPassedFd) >= 0;
      if (!moved || ::fcntl(kPassedFd, F_SETFD, 0) != 0) {
        int err = errno;
        [[maybe_unused]] auto n = ::write(exec_fd, &err, sizeof err);
        ::_exit(127);
      }
    }
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execvpe(argv[0], argv.data(), envp.data());
    int err = errno;
    [[maybe_unused]] auto n = ::write(exec_fd, &err, sizeof err);
    ::_exit(127);
  }
  ::close(exec_pipe[1]);
  if (null_fd >= 0) ::close(null_fd);
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    exec_errno = child_errno;
    ::waitpid(pid, nullptr, 0);
    if (options.pipe_output) {
      ::close(out_pipe[0]);
      ::close(err_pipe[0]);
    }
    return fail(ErrorCode::kNotFound,
                "spawn: cannot execute " + options.argv[0] + ": " + std::strerror(child_errno));
  }
  Subprocess child(pid);
  child.out_fd_ = out_pipe[0];
  child.err_fd_ = err_pipe[0];
  return child;
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)),
      err_fd_(std::exchange(other.err_fd_, -1)),
      status_(other.status_) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) terminate();
    close_pipes();
    pid_ = std::exchange(other.pid_, -1);
    out_fd_ = std::exchange(other.out_fd_, -1);
    err_fd_ = std::exchange(other.err_fd_, -1);
    status_ = other.status_;
  }
  return *this;
}

Subprocess::~Subprocess() {
  if (pid_ > 0) terminate();
  close_pipes();
}

void Subprocess::close_pipes() {
  if (out_fd_ >= 0) ::close(std::exchange(out_fd_, -1));
  if (err_fd_ >= 0) ::close(std::exchange(err_fd_, -1));
}

bool Subprocess::running() { return pid_ > 0 && !wait_for(std::chrono::milliseconds(0)); }

Status Subprocess::signal(int signo) {
  if (pid_ <= 0 || status_) return fail(ErrorCode::kNotFound, "process is not running");
  if (::kill(pid_, signo) != 0) {
    return fail(ErrorCode::kIo, std::string("kill: ") + std::strerror(errno));
  }
  return {};
}

std::optional<int> Subprocess::wait_for(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  if (pid_ <= 0) return std::nullopt;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      status_ = (r == pid_) ? status : 0;
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

int Subprocess::terminate(std::chrono::milliseconds grace) {
  if (status_) return *status_;
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGTERM);
  if (auto st = wait_for(grace)) return *st;
  ::kill(pid_, SIGKILL);
  return wait_for(std::chrono::hours(1)).value_or(0);
}

std::optional<std::filesystem::path> find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (::access(program.c_str(), X_OK) == 0) return std::filesystem::path(program);
    return std::nullopt;
  }
  const char* env = std::getenv("PATH");
  std::istringstream dirs(std::string(env ? env : "") +
                          ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    std::filesystem::path candidate = std::filesystem::path(dir) / program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

}  // namespace nex
