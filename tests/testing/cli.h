// Running the nex CLI in tests as a user types it: from a working directory of the user's (so
// "./echoservice" means a file there), with the environment the test gives, output in a file.
#pragma once

#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "core/subprocess.h"
#include "testing/nats_server_fixture.h"

namespace nex::testing {

struct CliResult {
  int code;         // the exit code; -1 when it did not end in time
  std::string out;  // stdout and stderr together
};

struct CliEnvironment {
  std::filesystem::path cwd;
  std::vector<std::string> env;  // KEY=VALUE
  bool clear_env = false;        // only `env`, nothing inherited
};

// Starts `nex ARGS...` with its output going to `out`.
inline Result<Subprocess> spawn_nex(const std::vector<std::string>& args, const CliEnvironment& e,
                                    const std::filesystem::path& out) {
  std::vector<std::string> cmd = {"sh", "-c", "cd '" + e.cwd.string() + "' && exec \"$0\" \"$@\"",
                                  NEX_BINARY};
  cmd.insert(cmd.end(), args.begin(), args.end());
  return Subprocess::spawn({.argv = cmd,
                            .env = e.env,
                            .clear_env = e.clear_env,
                            .stdout_path = out.string(),
                            .stderr_path = out.string()});
}

// Runs `nex ARGS...` to its end (at most 30 s).
inline CliResult run_nex(const std::vector<std::string>& args, const CliEnvironment& e,
                         const std::filesystem::path& out) {
  auto p = spawn_nex(args, e, out);
  if (!p) return {-1, p.error().message};
  auto st = p->wait_for(std::chrono::seconds(30));
  return {st ? WEXITSTATUS(*st) : -1, slurp(out)};
}

}  // namespace nex::testing
