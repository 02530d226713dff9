// Forwards a TCP port on a sandbox's own loopback (127.0.0.1:port inside its network
// namespace) to an address on the host. The node uses it for exactly one thing: a workload
// whose signed deploy request gives it a NATS_URL on the host's loopback reaches that server at
// the same URL from inside its sandbox, and no other host port. The listening socket is made
// inside the namespace; connections to the target are made from the node's own.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace nex::sandbox {

class LoopbackForwarder {
 public:
  static Result<std::unique_ptr<LoopbackForwarder>> start(int netns_fd, int port,
                                                          std::string target_host,
                                                          int target_port);
  ~LoopbackForwarder();

 private:
  LoopbackForwarder() = default;
  void accept_loop();
  void pump(int a, int b);

  int listen_fd_ = -1;
  int stop_fd_ = -1;  // an eventfd: readable once stopping
  std::string target_host_;
  int target_port_ = 0;
  std::mutex mu_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace nex::sandbox
