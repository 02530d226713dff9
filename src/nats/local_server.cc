#include "nats/local_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/file_io.h"
#include "core/subprocess.h"
#include "core/unique_fd.h"

namespace nex::nats {
namespace fs = std::filesystem;

namespace {

// The addresses `pid` listens on for TCP (clients, leaf nodes, routes, monitoring): its socket
// inodes, matched with the sockets in LISTEN state in /proc/net/tcp and tcp6.
std::vector<sockaddr_storage> listening_addresses(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const std::string target = fs::read_symlink(e.path(), ec).string();
    if (target.starts_with("socket:[")) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::vector<sockaddr_storage> out;
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
      std::istringstream f(line);
      std::string sl, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
      f >> sl >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >>
          inode;
      const auto colon = local.find(':');
      if (state != "0A" || !inodes.contains(inode) || colon == std::string::npos) continue;
      // The kernel prints each 32-bit word of the address as it lies in memory.
      const std::string hex = local.substr(0, colon);
      const auto port = static_cast<uint16_t>(std::stoul(local.substr(colon + 1), nullptr, 16));
      sockaddr_storage a{};
      if (hex.size() == 8) {
        auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        v4->sin_addr.s_addr = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
      } else if (hex.size() == 32) {
        auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        for (int w = 0; w < 4; ++w) {
          const auto word = static_cast<uint32_t>(std::stoul(hex.substr(w * 8, 8), nullptr, 16));
          std::memcpy(&v6->sin6_addr.s6_addr[w * 4], &word, 4);
        }
      } else {
        continue;
      }
      out.push_back(a);
    }
  }
  return out;
}

// A socket bound to `a` but not listening: connecting there is refused, as to a stopped server,
// and the kernel hands the port to no other socket; nats-server, which binds with SO_REUSEADDR
// as this one does, can still listen there. Invalid if the port could not be held.
UniqueFd hold_port(const sockaddr_storage& a) {
  UniqueFd fd(::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const socklen_t len = a.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), len) != 0) fd.reset();
  return fd;
}

}  // namespace

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
  // While stopped, the ports it listened on, held so that no other server (a parallel test's,
  // say) takes one: clients reconnecting to this URL find this server again, or none.
  std::vector<UniqueFd> held_ports;

  Status launch();
  void stop() {
    const auto addresses =
        process.running() ? listening_addresses(process.pid()) : std::vector<sockaddr_storage>{};
    process.terminate(std::chrono::seconds(10));
    held_ports.clear();
    for (const auto& a : addresses) {
      if (auto fd = hold_port(a); fd.valid()) held_ports.push_back(std::move(fd));
    }
  }
  ~Impl() {
    process.terminate(std::chrono::seconds(10));
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
      return fail(ErrorCode::kUnavailable, "nats-server exited during start-up (status " +
                                               std::to_string(WEXITSTATUS(*st)) +
                                               "): " + read_file(log_file).value_or(""));
    }
    std::ifstream in(ports_file);
    if (in) {
      auto j = nlohmann::json::parse(in, nullptr, false);
      if (!j.is_discarded() && j.contains("nats") && j["nats"].is_array() && !j["nats"].empty()) {
        url = j["nats"][0].get<std::string>();
        port = std::stoi(url.substr(url.rfind(':') + 1));
        held_ports.clear();  // it listens there itself now
        return {};
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  process.terminate();
  return fail(ErrorCode::kTimeout, "nats-server did not become ready; log: " + log_file.string());
}

}  // namespace nex::nats
