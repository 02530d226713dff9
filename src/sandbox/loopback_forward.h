// Forwards a TCP port on a sandbox's own loopback (127.0.0.1:port inside its network
// namespace) to an address on the host. The node uses it for exactly one thing: a workload
// whose signed deploy request gives it a NATS_URL on the host's loopback reaches that server at
// the same URL from inside its sandbox, and no other host port. The listening socket is made
// inside the namespace; connections to the target are made from the node's own.
//
// Inside a microVM the agent does the same on the guest's loopback (netns_fd -1: the current
// namespace), towards the VM's gateway, with a preamble naming the port it wants on the host
// (src/microvm/gateway_main.cc decides whether the VM may have it).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace nex::sandbox {

class LoopbackForwarder {
 public:
  static Result<std::unique_ptr<LoopbackForwarder>> start(int netns_fd, int port,
                                                          std::string target_host, int target_port,
                                                          std::string preamble = "");
  ~LoopbackForwarder();

 private:
  LoopbackForwarder() = default;
  void accept_loop();
  void pump(int a, int b);

  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: readable once stopping
  std::string target_host_;
  int target_port_ = 0;
  std::string preamble_;  // written to each new connection to the target first
  std::mutex mu_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// The servers of NATS_URL (a comma-separated list), as written; none without it.
std::vector<std::string> nats_urls(const std::map<std::string, std::string>& environment);
// The ports of NATS_URL's servers on the host's loopback (127.0.0.1, localhost).
std::vector<int> loopback_nats_ports(const std::map<std::string, std::string>& environment);
// The port of one NATS URL when its host is the host's loopback; nullopt otherwise.
std::optional<int> loopback_port(std::string url);

}  // namespace nex::sandbox
