// The node's host-services server: answers hostint.{id}.rpc.{ns}.{workload}.{service}.{method}
// from agents (and the native services behind them) on the internal NATS, on a pool of threads
// so a slow HTTP call never holds up a key-value read. A call is served only when {ns} and
// {workload} are those of the workload {id} (the internal server already ensures a workload can
// only send under its own {id}); anything else is refused and logged as the workload's attempt.
// Calls go out on the workload's host-services connection: its deploy request's host_services,
// else the node config's, else the node's own control connection.
#pragma once

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "api/control.h"
#include "nats/connection.h"
#include "node/host_services/service.h"
#include "node/host_services/settings.h"

namespace nex::node::host_services {

// The workload behind a workload id, as the node knows it.
struct Caller {
  std::string ns;
  std::string name;
  api::HostServicesConfig connection;  // from its deploy request; empty: the node's
};

// A NATS user the node signed (operator mode).
struct SignedUser {
  std::string jwt;
  std::string seed;
};

struct ServerOptions {
  Settings settings;
  api::HostServicesConfig node_connection;  // the node config's host_services
  std::optional<nats::Connection> control;  // the node's own connection, the last resort
  // Operator mode: signs a user named `name` with `permissions` ("pub"/"sub" claims). With it,
  // a workload with no host-services connection of its own sends its messaging calls as a user
  // of its own that the server holds to what that workload may publish (messaging_permissions),
  // not on the node's connection. How to reach the server: `control_options`, less its login.
  std::function<SignedUser(const std::string& name, const nlohmann::json& permissions)> sign_user;
  nats::ConnectOptions control_options;
  std::filesystem::path creds_dir;  // where credentials files for connections go
  // The node's own ports (internal NATS, metrics), which HTTP requests never reach on this host.
  std::vector<NodePort> node_ports;
  std::function<std::optional<Caller>(const std::string& workload_id)> find_caller;
  // A refused attempt, to be logged as the workload's.
  std::function<void(const std::string& workload_id, const Caller& caller, const std::string& text)>
      on_denied;
  // After each call: the service called ("unknown" when not one of the node's) and the answer's
  // code.
  std::function<void(const std::string& service, int code)> on_served;
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> start(ServerOptions options,
                                               const nats::Connection& internal);
  ~Server();
  // The workload has gone: close the connections made for it.
  void forget(const std::string& workload_id);

 private:
  explicit Server(ServerOptions options);
  void enqueue(nats::Message msg);
  void work();
  void serve(const nats::Message& msg);
  Result<nats::Connection> connection_for(const std::string& workload_id, const Caller& caller,
                                          const std::string& service);
  Result<nats::Connection> connection_for(const api::HostServicesConfig& config);
  Result<nats::Connection> messaging_connection(const std::string& workload_id,
                                                const Caller& caller);

  static constexpr size_t kThreads = 8;
  static constexpr size_t kMaxQueued = 1024;

  ServerOptions options_;
  std::optional<nats::Connection> internal_;
  std::map<std::string, std::unique_ptr<Service>> services_;  // enabled ones, by name
  std::optional<nats::Subscription> sub_;

  std::mutex conn_mu_;
  std::map<std::string, nats::Connection> connections_;           // by URL and credentials
  std::map<std::string, nats::Connection> workload_connections_;  // messaging, by workload id

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<nats::Message> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace nex::node::host_services
