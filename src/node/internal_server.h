// InternalServer: the node's private nats-server (a child process on loopback) that carries
// node <-> agent traffic. Every workload gets a user of its own that may publish only to
// hostint.{id}.> and subscribe only to agentint.{id}.> and its own inbox prefix _INBOX_{id};
// so an agent can reach only its own subjects. A second user per workload, for a native service
// itself, may only call host services (hostint.{id}.rpc.>). The node's requests to an agent carry a
// reply subject inside the agent's own space (hostint.{id}.reply.<token>): nats-server 2.9.10
// resets `allow_responses` state on every configuration reload and then refuses in-flight replies
// (checked: about one request in five failed across reloads), while plain publish permissions
// survive reloads. The node rewrites the configuration and reloads the server as workloads
// come and go.
//
// Nex 0.2 gives each workload an account with service imports/exports (docs/wire.md). The
// nats-server 2.9.10 this project runs does not route service imports of accounts added by a
// configuration reload (checked: requests across them find no responders), and restarting the
// server would cut every agent off; per-user permissions, which do reload, give the same
// isolation.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.h"
#include "crypto/nkeys.h"
#include "nats/connection.h"
#include "nats/local_server.h"

namespace nex::node {

// The reply-subject prefix an agent must use for its requests (the only inbox it may read).
inline std::string inbox_prefix(const std::string& workload_id) { return "_INBOX_" + workload_id; }

class InternalServer {
 public:
  // Starts the server in `work_dir` (created; removed by the destructor) and connects the node.
  // `listen_host` is where sandboxes reach it (the node itself connects over loopback).
  static Result<std::unique_ptr<InternalServer>> start(const std::filesystem::path& work_dir,
                                                       const std::string& listen_host);
  ~InternalServer();

  int port() const { return server_->port(); }
  const nats::Connection& connection() const { return *conn_; }

  // Adds users for these workloads and reloads the server; returns each one's user seed.
  Result<std::map<std::string, std::string>> add_workloads(const std::vector<std::string>& ids);
  // How the workload itself (a native service, beside its agent) reaches host services: a URL
  // (at `host`, as its sandbox sees the server) with a user that may only publish
  // hostint.{id}.rpc.> and read replies under service_inbox_prefix(id). Empty for an unknown id.
  std::string service_url(const std::string& id, const std::string& host);
  static std::string service_inbox_prefix(const std::string& id) { return "_INBOX_" + id + "_svc"; }
  // Removes a workload's user (its agent is disconnected by the reload).
  Status remove_workload(const std::string& id);

  // A request to an agent, answered on hostint.{id}.reply.<token>.
  Result<nats::Message> request_agent(const std::string& id, const std::string& subject,
                                      std::string_view body,
                                      std::chrono::milliseconds timeout) const;

 private:
  InternalServer() = default;
  Status write_config_and_reload(bool reload);

  std::filesystem::path work_dir_;
  crypto::KeyPair node_user_ = *crypto::KeyPair::create(crypto::KeyType::kUser);
  std::mutex mu_;
  std::map<std::string, std::string> workload_users_;     // id -> public user nkey
  std::map<std::string, std::string> service_passwords_;  // id -> the service user's password
  std::unique_ptr<nats::LocalNatsServer> server_;
  std::optional<nats::Connection> conn_;
};

}  // namespace nex::node
