#include "nats/local_server.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/subprocess.h"

namespace nex::nats {
namespace fs = std::filesystem;

Result<fs::path> LocalNatsServer::find_binary(const std::string& binary) {
  if (auto found = find_program(binary)) return *found;
  return fail(ErrorCode::kNotFound,
              binary + " not found: install it with `sudo apt-get install nats-server`");
}

struct LocalNatsServer::Impl {
  LocalServerOptions options;
  Subprocess process;
  fs::path work_dir;  // ports file, log, and the store when temporary
  fs::path store_dir;
  fs::path log_file;
  std::string url;
  int port = 0;

  Status launch();
  void stop() { process.terminate(std::chrono::seconds(10)); }
  ~Impl() {
    stop();
    std::error_code ec;
    fs::remove_all(work_dir, ec);
  }
};

LocalNatsServer::LocalNatsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LocalNatsServer::LocalNatsServer(LocalNatsServer&&) noexcept = default;
LocalNatsServer& LocalNatsServer::operator=(LocalNatsServer&&) noexcept = default;
LocalNatsServer::~LocalNatsServer() = default;

const std::string& LocalNatsServer::url() const { return impl_->url; }
int LocalNatsServer::port() const { return impl_->port; }
const fs::path& LocalNatsServer::store_dir() const { return impl_->store_dir; }
const fs::path& LocalNatsServer::log_file() const { return impl_->log_file; }
pid_t LocalNatsServer::pid() const { return impl_->process.pid(); }
void LocalNatsServer::stop() { impl_->stop(); }
Status LocalNatsServer::restart() {
  impl_->stop();
  return impl_->launch();
}

Result<LocalNatsServer> LocalNatsServer::start(const LocalServerOptions& options) {
  auto binary = find_binary(options.binary);
  if (!binary) return fail(binary.error());
  std::string work_dir = options.work_dir.string();
  if (work_dir.empty()) {
    work_dir = (fs::temp_directory_path() / "nex-nats-XXXXXX").string();
    if (mkdtemp(work_dir.data()) == nullptr) {
      return fail(ErrorCode::kIo,
                  std::string("cannot create a temporary directory: ") + std::strerror(errno));
    }
  } else {
    std::error_code ec;
    fs::create_directories(work_dir, ec);
    if (ec) return fail(ErrorCode::kIo, "cannot create " + work_dir + ": " + ec.message());
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->options.binary = binary->string();
  impl->work_dir = work_dir;
  impl->store_dir = options.store_dir.empty() ? impl->work_dir / "store" : options.store_dir;
  impl->log_file = impl->work_dir / "nats-server.log";
  NEX_RETURN_IF_ERROR(impl->launch());
  return LocalNatsServer(std::move(impl));
}

Status LocalNatsServer::Impl::launch() {
  const fs::path ports_dir = work_dir / "ports";
  std::error_code ec;
  fs::remove_all(ports_dir, ec);
  fs::create_directories(ports_dir, ec);
  std::vector<std::string> argv = {options.binary,
                                   "-a",
                                   options.host,
                                   "-p",
                                   std::to_string(port > 0 ? port : options.port),
                                   "--ports_file_dir",
                                   ports_dir.string()};
  if (options.jetstream) {
    fs::create_directories(store_dir, ec);
    argv.insert(argv.end(), {"-js", "-sd", store_dir.string()});
  }
  if (!options.config_file.empty()) argv.insert(argv.end(), {"-c", options.config_file.string()});
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());

  auto proc = Subprocess::spawn(
      {.argv = argv, .stdout_path = log_file.string(), .stderr_path = log_file.string()});
  if (!proc) return fail(proc.error());
  process = std::move(*proc);

  // nats-server writes "<ports_dir>/nats-server_<pid>.ports" once it accepts clients.
  const fs::path ports_file =
      ports_dir / ("nats-server_" + std::to_string(process.pid()) + ".ports");
  const auto deadline = std::chrono::steady_clock::now() + options.ready_timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto st = process.wait_for(std::chrono::milliseconds(0))) {
      std::ifstream log(log_file);
      std::stringstream tail;
      tail << log.rdbuf();
      return fail(ErrorCode::kUnavailable, "nats-server exited during start-up (status " +
                                               std::to_string(WEXITSTATUS(*st)) +
                                               "): " + tail.str());
    }
    std::ifstream in(ports_file);
    if (in) {
      auto j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.contains("nats") && j["nats"].is_array() && !j["nats"].empty()) {
        url = j["nats"][0].get<std::string>();
        port = std::stoi(url.substr(url.rfind(':') + 1));
        return {};
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  process.terminate();
  return fail(ErrorCode::kTimeout, "nats-server did not become ready; log: " + log_file.string());
}

}  // namespace nex::nats
