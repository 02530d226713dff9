// The node's identity and its claim on a state directory: the server nkey ("N…", the node id)
// and the xkey that environments are sealed to persist there, so a restarted node keeps its id
// (ours; Nex 0.2 regenerated them). A locked pid file refuses a second node on the directory.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "core/error.h"
#include "crypto/nkeys.h"
#include "crypto/xkeys.h"

namespace nex::node {

class NodeIdentity {
 public:
  // Creates the directory and keys (mode 0600) when missing.
  static Result<NodeIdentity> claim(const std::filesystem::path& state_dir);
  NodeIdentity(NodeIdentity&& other) noexcept;
  NodeIdentity& operator=(NodeIdentity&&) = delete;
  ~NodeIdentity();

  const std::string& id() const { return id_; }
  const crypto::KeyPair& server_key() const { return server_key_; }
  const crypto::XKey& xkey() const { return xkey_; }

 private:
  NodeIdentity(const crypto::KeyPair& k, const crypto::XKey& x, int lock_fd,
               std::filesystem::path pid_file)
      : server_key_(k),
        id_(server_key_.public_key()),
        xkey_(x),
        lock_fd_(lock_fd),
        pid_file_(std::move(pid_file)) {}
  crypto::KeyPair server_key_;
  std::string id_;  // the server key's public half, encoded once: events carry it
  crypto::XKey xkey_;
  int lock_fd_ = -1;
  std::filesystem::path pid_file_;
};

}  // namespace nex::node
