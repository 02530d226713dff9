// The microVM gateway server: what every microVM of a node reaches on the host, served by one
// thread of the node. QEMU's user network starts nex-vm-gateway (gateway_main.cc) for each
// connection a guest opens to its gateway; that program only hands the connection (its
// standard input) to this server over the VM's unix socket and exits. The server then copies
// bytes between the guest's connection and 127.0.0.1:PORT:
//
//   internal NATS   PORT is the node's internal NATS, the one the VM was registered with
//   exposed         the guest names PORT on its first line ("4222\n"); the connection goes
//                   through only if the node exposed that port to this VM
//
// A VM holds at most `max_connections_per_vm` connections at once, counted from the moment
// one is handed over; one past that is closed at once, and `warn` says so once per burst
// (the first refusal after a quiet spell), naming the workload. Only the VM's own QEMU user
// may hand connections to its socket. The server reads nothing of a guest's bytes but the
// exposed mode's first line; everything else is copied unread.
//
// Why one thread and not one process per connection: a guest could open thousands of
// connections, and each used to cost a host process and a host NATS connection.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "core/error.h"

namespace nex::microvm {

// What nex-vm-gateway sends with the connection it hands over: which of the two it is.
enum class GatewayMode : char { kInternalNats = 'n', kExposed = 'e' };

struct GatewayVmSpec {
  std::string workload_id;
  std::filesystem::path socket;  // made by add_vm; nex-vm-gateway hands connections to it
  uid_t vmm_uid = 0;             // the user QEMU runs as: the only one that may connect
  int internal_nats_port = 0;
};

class GatewayServer {
 public:
  // Called from the server's thread, outside its lock.
  using Warn = std::function<void(const std::string& workload_id, const std::string& text)>;

  struct State;  // the event loop's, behind its lock

  // The connections of one VM: removing it (its destructor) closes its socket and every
  // connection it holds, and removes the socket's file. It may outlive the server, which
  // closes them all when it stops.
  class Vm {
   public:
    Vm(std::shared_ptr<State> state, uint64_t id) : state_(std::move(state)), id_(id) {}
    ~Vm();
    Vm(const Vm&) = delete;
    Vm& operator=(const Vm&) = delete;
    // Lets the guest reach the host's 127.0.0.1:port in exposed mode.
    void expose(int port);
    // Connections it holds now (handed over and not yet closed).
    size_t connections() const;

   private:
    std::shared_ptr<State> state_;
    uint64_t id_;
  };

  static Result<std::unique_ptr<GatewayServer>> start(int max_connections_per_vm, Warn warn);
  // Stops the thread and closes every VM's socket and connections.
  ~GatewayServer();
  GatewayServer(const GatewayServer&) = delete;
  GatewayServer& operator=(const GatewayServer&) = delete;

  // Listens on spec.socket (owned by spec.vmm_uid, mode 0600) for this VM's connections.
  Result<std::unique_ptr<Vm>> add_vm(const GatewayVmSpec& spec);
  int max_connections_per_vm() const;

 private:
  explicit GatewayServer(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace nex::microvm
