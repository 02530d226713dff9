// A child process owned by an RAII handle: the destructor terminates it (SIGTERM, then SIGKILL
// after a grace period) and reaps it, so no test or daemon leaves one behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace nex {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is looked up on PATH when it has no '/'
  // Extra "KEY=VALUE" entries added to (or overriding) the parent's environment.
  std::vector<std::string> env;
  bool clear_env = false;  // start from an empty environment instead of the parent's
  // Where stdout/stderr go: empty inherits the parent's; a path appends to that file.
  std::string stdout_path;
  std::string stderr_path;
  // Capture stdout/stderr through pipes instead (read them from stdout_fd()/stderr_fd()).
  bool pipe_output = false;
  // Kill the child with SIGKILL if this process dies. Bound to the spawning *thread* (a Linux
  // PR_SET_PDEATHSIG detail): spawn long-lived children from a long-lived thread.
  bool die_with_parent = true;
  // Put the child in a process group of its own, so a terminal's Ctrl-C (sent to the whole
  // foreground group) reaches only the parent, which then stops its children in order.
  bool own_process_group = true;
  // Run as this user and group (with no supplementary groups); needs root unless they are ours.
  std::optional<uid_t> uid;
  std::optional<gid_t> gid;
  // Standard input from /dev/null instead of the parent's.
  bool null_stdin = false;
  // Standard input from a pipe instead (write to stdin_fd(), then close_stdin()).
  bool pipe_input = false;
  // The directory the program starts in: empty keeps the parent's.
  std::filesystem::path working_dir;
  // A descriptor of the parent's the program gets as descriptor 3 (kPassedFd); no other
  // descriptor of the parent's outlives the exec.
  int pass_fd = -1;
};

inline constexpr int kPassedFd = 3;

class Subprocess {
 public:
  static Result<Subprocess> spawn(const SpawnOptions& options);

  Subprocess() = default;  // no process

  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;
  ~Subprocess();

  pid_t pid() const { return pid_; }
  // Read ends of the output pipes when spawned with pipe_output (owned by this object).
  int stdout_fd() const { return out_fd_; }
  int stderr_fd() const { return err_fd_; }
  // Write end of the input pipe when spawned with pipe_input; closing it gives the program EOF.
  int stdin_fd() const { return in_fd_; }
  void close_stdin();
  bool running();
  Status signal(int signo);
  // Waits up to `timeout` for the child to exit; returns its wait status if it did.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the wait status.
  int terminate(std::chrono::milliseconds grace = std::chrono::seconds(5));

 private:
  explicit Subprocess(pid_t pid) : pid_(pid) {}
  // One fork and exec; `exec_errno` is why exec failed, if it did.
  static Result<Subprocess> spawn_once(const SpawnOptions& options, int& exec_errno);
  void close_pipes();
  pid_t pid_ = -1;
  int in_fd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::optional<int> status_;
};

// What a program run to its end said and how it ended.
struct ProgramRun {
  int status = 0;  // its wait status
  std::string out, err;
  bool succeeded() const;  // exited with 0
};

// Runs a program (no shell: `options.argv` as given) to its end, handing it `input` on stdin
// and collecting both of its outputs. (options' stdin and output settings are replaced by
// pipes.) When `timeout` passes first, the program and its process group are killed and the
// error (kTimeout) says so. Exiting with a failure is not an error here: see `status`.
Result<ProgramRun> run_program(SpawnOptions options, std::string_view input,
                               std::chrono::milliseconds timeout);

// Where `program` is: itself when it names a path, else the first executable of that name on
// PATH or in the system's program directories, which a daemon's or a user's PATH may lack
// (Debian puts nats-server and iptables in /usr/sbin).
std::optional<std::filesystem::path> find_program(const std::string& program);

// `name` in the directory of this process's own binary, where nex's helper programs are
// installed and built (nex-agent and nex-vm-gateway beside nex).
std::filesystem::path program_beside_self(std::string_view name);

}  // namespace nex
