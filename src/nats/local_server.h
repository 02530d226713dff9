// LocalNatsServer: a real nats-server child process (the Debian package) on loopback, with
// JetStream in a store directory. `nex up`, the test fixtures and the benchmarks use it. The
// server listens on a port it picks itself and reports through a ports file, so there is no
// race for a "free" port. The destructor stops the server and removes what it created.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/subprocess.h"

namespace nex::nats {

struct LocalServerOptions {
  std::string binary = "nats-server";
  std::string host = "127.0.0.1";
  int port = -1;  // -1: the server picks a free port
  bool jetstream = true;
  std::filesystem::path store_dir;  // empty: a temporary directory removed on stop
  // Where the log and ports file go (created, and removed on stop); empty: a new temporary
  // directory. A daemon passes a directory of its own so a crash leaves nothing in /tmp.
  std::filesystem::path work_dir;
  std::filesystem::path config_file;  // optional `-c FILE`
  std::vector<std::string> extra_args;
  std::chrono::milliseconds ready_timeout{15000};
};

class LocalNatsServer {
 public:
  static Result<LocalNatsServer> start(const LocalServerOptions& options);
  // Where nats-server is, or kNotFound with a hint on installing it.
  static Result<std::filesystem::path> find_binary(const std::string& binary = "nats-server");

  LocalNatsServer(LocalNatsServer&&) noexcept;
  LocalNatsServer& operator=(LocalNatsServer&&) noexcept;
  ~LocalNatsServer();

  const std::string& url() const;
  int port() const;
  const std::filesystem::path& store_dir() const;
  const std::filesystem::path& log_file() const;
  pid_t pid() const;

  // Stops the process (SIGTERM, then SIGKILL) but keeps the store: restart() brings the same
  // server back on the same port (for reconnect tests and `nex up` restarts). Until then its
  // ports stay reserved: connecting is refused, and no other server can be given one.
  void stop();
  Status restart();

 private:
  struct Impl;
  explicit LocalNatsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nex::nats
