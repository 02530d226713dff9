#include "core/subprocess.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>
#include <utility>

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

namespace {

// The descriptors a child is started with, opened before fork. Each is -1 when unused.
struct ChildFds {
  int out = -1, err = -1;            // the child's stdout and stderr: a file or a pipe's write end
  int in = -1;                       // its stdin: /dev/null or a pipe's read end
  int in_write = -1;                 // pipe_input: the parent's end
  int out_read = -1, err_read = -1;  // pipe_output: the parent's ends
  // A pipe whose write end closes on exec tells the parent whether exec succeeded.
  int exec_read = -1, exec_write = -1;

  // The parent's copies of what only the child uses, once it has forked.
  void close_childs() {
    for (int* fd : {&out, &err, &in, &exec_write})
      if (*fd >= 0) ::close(std::exchange(*fd, -1));
  }
  void close_all() {
    close_childs();
    for (int* fd : {&out_read, &err_read, &in_write, &exec_read})
      if (*fd >= 0) ::close(std::exchange(*fd, -1));
  }
};

Status open_output(const std::string& path, int& fd) {
  if (path.empty()) return {};
  fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return fail(ErrorCode::kIo, "spawn: open " + path + ": " + std::strerror(errno));
  return {};
}

Status open_pipe(int& read_end, int& write_end) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return fail(ErrorCode::kIo, std::string("spawn: pipe: ") + std::strerror(errno));
  read_end = p[0];
  write_end = p[1];
  return {};
}

Status open_child_fds(const SpawnOptions& options, ChildFds& fds) {
  NEX_RETURN_IF_ERROR(open_output(options.stdout_path, fds.out));
  NEX_RETURN_IF_ERROR(open_output(options.stderr_path, fds.err));
  if (options.pipe_output) {
    // The pipes take the place of any file (a file given as well was opened, and is closed).
    for (int* fd : {&fds.out, &fds.err})
      if (*fd >= 0) ::close(std::exchange(*fd, -1));
    NEX_RETURN_IF_ERROR(open_pipe(fds.out_read, fds.out));
    NEX_RETURN_IF_ERROR(open_pipe(fds.err_read, fds.err));
  }
  NEX_RETURN_IF_ERROR(open_pipe(fds.exec_read, fds.exec_write));
  if (options.pipe_input) {
    NEX_RETURN_IF_ERROR(open_pipe(fds.in, fds.in_write));
  } else if (options.null_stdin) {
    fds.in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  return {};
}

// In the child: reports `err` to the parent as an exec failure, and ends.
[[noreturn]] void child_failed(int exec_fd, int err) {
  [[maybe_unused]] auto n = ::write(exec_fd, &err, sizeof err);
  ::_exit(127);
}

// In the child, after fork: only async-signal-safe calls from here on.
[[noreturn]] void run_child(const SpawnOptions& options, const ChildFds& fds, pid_t parent,
                            char* const* argv, char* const* envp) {
  if (options.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
  }
  if (options.own_process_group) ::setpgid(0, 0);
  if (fds.out >= 0) ::dup2(fds.out, STDOUT_FILENO);
  if (fds.err >= 0) ::dup2(fds.err, STDERR_FILENO);
  if (fds.in >= 0) ::dup2(fds.in, STDIN_FILENO);
  // A negative errno tells the parent it was the directory, not the program.
  if (!options.working_dir.empty() && ::chdir(options.working_dir.c_str()) != 0)
    child_failed(fds.exec_write, -errno);
  // Group first: once the user changed, the group can no longer be.
  const bool drop = options.gid || options.uid;
  if ((drop && ::getuid() == 0 && ::setgroups(0, nullptr) != 0) ||
      (options.gid && ::setgid(*options.gid) != 0) || (options.uid && ::setuid(*options.uid) != 0))
    child_failed(fds.exec_write, errno);
  // A change of user clears the parent-death signal (commit_creds): set it again.
  if (drop && options.die_with_parent) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
  }
  // Descriptors another thread opened without O_CLOEXEC must not leak into the program.
  // (Marking them close-on-exec keeps the exec-status pipe working until exec.)
  int exec_fd = fds.exec_write;
  if (options.pass_fd >= 0 && exec_fd == kPassedFd)
    exec_fd = ::fcntl(exec_fd, F_DUPFD_CLOEXEC, kPassedFd + 1);
  ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
  if (options.pass_fd >= 0) {
    const bool moved = options.pass_fd == kPassedFd || ::dup2(options.pass_fd, kPassedFd) >= 0;
    if (!moved || ::fcntl(kPassedFd, F_SETFD, 0) != 0) child_failed(exec_fd, errno);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execvpe(argv[0], argv, envp);
  child_failed(exec_fd, errno);
}

// In the parent: the child's errno if it could not exec, else 0 (the pipe closed on exec).
int await_exec(int exec_read) {
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_read, &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(sizeof child_errno) ? child_errno : 0;
}

}  // namespace

Result<Subprocess> Subprocess::spawn_once(const SpawnOptions& options, int& exec_errno) {
  // Everything the child needs is prepared before fork: after it only async-signal-safe calls.
  std::vector<std::string> argv_storage = options.argv;
  std::vector<std::string> env_storage = merged_environment(options);
  std::vector<char*> argv = c_strings(argv_storage);
  std::vector<char*> envp = c_strings(env_storage);
  ChildFds fds;
  if (Status opened = open_child_fds(options, fds); !opened) {
    fds.close_all();
    return fail(opened.error());
  }
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    fds.close_all();
    return fail(ErrorCode::kIo, std::string("spawn: fork: ") + std::strerror(err));
  }
  if (pid == 0) run_child(options, fds, parent, argv.data(), envp.data());
  fds.close_childs();
  const int child_errno = await_exec(fds.exec_read);
  if (child_errno != 0) {
    exec_errno = child_errno;
    ::waitpid(pid, nullptr, 0);
    fds.close_all();
    if (child_errno < 0)
      return fail(ErrorCode::kNotFound, "spawn: cannot start " + options.argv[0] + " in " +
                                            options.working_dir.string() + ": " +
                                            std::strerror(-child_errno));
    return fail(ErrorCode::kNotFound,
                "spawn: cannot execute " + options.argv[0] + ": " + std::strerror(child_errno));
  }
  ::close(fds.exec_read);
  Subprocess child(pid);
  child.in_fd_ = fds.in_write;
  child.out_fd_ = fds.out_read;
  child.err_fd_ = fds.err_read;
  return child;
}

Subprocess::Subprocess(Subprocess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      in_fd_(std::exchange(other.in_fd_, -1)),
      out_fd_(std::exchange(other.out_fd_, -1)),
      err_fd_(std::exchange(other.err_fd_, -1)),
      status_(other.status_) {}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) terminate();
    close_pipes();
    pid_ = std::exchange(other.pid_, -1);
    in_fd_ = std::exchange(other.in_fd_, -1);
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

void Subprocess::close_stdin() {
  if (in_fd_ >= 0) ::close(std::exchange(in_fd_, -1));
}

void Subprocess::close_pipes() {
  close_stdin();
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

bool ProgramRun::succeeded() const { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }

namespace {

// Blocks SIGPIPE in this thread while it lives, so writing to a program that has stopped reading
// fails with EPIPE instead of killing the process; a SIGPIPE raised meanwhile is consumed.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    sigset_t pipe_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_);
  }
  ~SigpipeBlock() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe_set;
      sigemptyset(&pipe_set);
      sigaddset(&pipe_set, SIGPIPE);
      const timespec now{};
      while (sigtimedwait(&pipe_set, nullptr, &now) < 0 && errno == EINTR) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

std::string describe(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms >= 60000 && ms % 60000 == 0)
    return std::to_string(ms / 60000) + (ms == 60000 ? " minute" : " minutes");
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

// Feeds `input` to the child's stdin and reads its outputs until both close. False when
// `deadline` passes first.
bool exchange(Subprocess& child, std::string_view input,
              std::chrono::steady_clock::time_point deadline, ProgramRun& run) {
  SigpipeBlock no_sigpipe;
  if (input.empty()) child.close_stdin();
  if (child.stdin_fd() >= 0) ::fcntl(child.stdin_fd(), F_SETFL, O_NONBLOCK);
  std::string* sinks[2] = {&run.out, &run.err};
  pollfd fds[3] = {{child.stdout_fd(), POLLIN, 0},
                   {child.stderr_fd(), POLLIN, 0},
                   {child.stdin_fd(), POLLOUT, 0}};
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    const int n = ::poll(fds, 3, static_cast<int>(std::min<int64_t>(left.count(), 60000)));
    if (n < 0 && errno != EINTR) return false;
    for (int i = 0; n > 0 && i < 2; ++i) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      char buf[65536];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) sinks[i]->append(buf, static_cast<size_t>(got));
      if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) fds[i].fd = -1;
    }
    if (n > 0 && fds[2].fd >= 0 && fds[2].revents) {
      const ssize_t put = ::write(fds[2].fd, input.data(), input.size());
      if (put > 0) input.remove_prefix(static_cast<size_t>(put));
      // Done, or the program stopped reading (EPIPE): it has all it will take.
      if (input.empty() || (put < 0 && errno != EINTR && errno != EAGAIN)) {
        fds[2].fd = -1;
        child.close_stdin();
      }
    }
  }
  child.close_stdin();
  return true;
}

}  // namespace

Result<ProgramRun> run_program(SpawnOptions options, std::string_view input,
                               std::chrono::milliseconds timeout) {
  options.pipe_input = true;
  options.pipe_output = true;
  options.stdout_path.clear();
  options.stderr_path.clear();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto child = Subprocess::spawn(options);
  if (!child) return fail(child.error());
  ProgramRun run;
  std::optional<int> status;
  if (exchange(*child, input, deadline, run)) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    status = child->wait_for(std::max(left, std::chrono::milliseconds(0)));
  }
  if (!status) {
    // Its own children may hold the pipes open too: end the whole group when it has one.
    if (options.own_process_group) ::kill(-child->pid(), SIGKILL);
    child->terminate(std::chrono::milliseconds(0));
    return fail(ErrorCode::kTimeout, options.argv[0] + " did not finish within " +
                                         describe(timeout) + ", so it was killed");
  }
  run.status = *status;
  return run;
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

std::filesystem::path program_beside_self(std::string_view name) {
  std::error_code ec;
  // /proc/self/exe names the binary even when it was started through a symlink or PATH.
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path() : self.parent_path()) / name;
}

}  // namespace nex
