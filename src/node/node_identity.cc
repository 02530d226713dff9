#include "node/node_identity.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/file_io.h"

namespace nex::node {
namespace fs = std::filesystem;

namespace {

Result<std::string> read_or_create(const fs::path& path, const std::function<std::string()>& make) {
  if (fs::exists(path)) {
    std::ifstream in(path);
    std::string text;
    in >> text;
    return text;
  }
  std::string seed = make();
  // Removed again when it cannot be written whole: an empty or cut key would read as a damaged
  // one on the next start.
  NEX_RETURN_IF_ERROR(
      write_file(path, seed + "\n", {.mode = 0600, .exclusive = true, .sync = true}));
  return seed;
}

}  // namespace

Result<NodeIdentity> NodeIdentity::claim(const fs::path& state_dir) {
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec)
    return fail(ErrorCode::kIo,
                "cannot create state directory " + state_dir.string() + ": " + ec.message());
  ::chmod(state_dir.c_str(), 0700);

  const fs::path pid_file = state_dir / "node.pid";
  const int fd = ::open(pid_file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return fail(ErrorCode::kIo, "cannot open " + pid_file.string() + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    std::ifstream in(pid_file);
    std::string pid;
    in >> pid;
    ::close(fd);
    return fail(ErrorCode::kAlreadyExists, "another nex node (pid " + (pid.empty() ? "?" : pid) +
                                               ") is running with state directory " +
                                               state_dir.string());
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || !write_all(fd, pid)) {
    const int err = errno;
    ::unlink(pid_file.c_str());  // we hold its lock: nobody else's file
    ::close(fd);
    return std::unexpected(file_error("write", pid_file, err));
  }

  auto server_seed = read_or_create(state_dir / "node.nk", [] {
    return crypto::KeyPair::create(crypto::KeyType::kServer)->seed();
  });
  auto xkey_seed =
      read_or_create(state_dir / "node.xk", [] { return crypto::XKey::create().seed(); });
  if (!server_seed || !xkey_seed) {
    ::unlink(pid_file.c_str());
    ::close(fd);
    return fail(server_seed ? xkey_seed.error() : server_seed.error());
  }
  auto server_key = crypto::KeyPair::from_seed(*server_seed);
  auto xkey = crypto::XKey::from_seed(*xkey_seed);
  if (!server_key || server_key->type() != crypto::KeyType::kServer || !xkey) {
    ::close(fd);
    return fail(ErrorCode::kCorrupt,
                "the node keys in " + state_dir.string() +
                    " are damaged (node.nk must hold an SN… seed, node.xk an SX… seed)");
  }
  return NodeIdentity(*server_key, *xkey, fd, pid_file);
}

NodeIdentity::NodeIdentity(NodeIdentity&& other) noexcept
    : server_key_(other.server_key_),
      id_(other.id_),
      xkey_(other.xkey_),
      lock_fd_(std::exchange(other.lock_fd_, -1)),
      pid_file_(std::move(other.pid_file_)) {}

NodeIdentity::~NodeIdentity() {
  if (lock_fd_ < 0) return;
  std::error_code ec;
  fs::remove(pid_file_, ec);
  ::close(lock_fd_);
}

}  // namespace nex::node
