// A JetStream cluster of real nats-servers on loopback for fleet tests: each server picks its
// own client port, and every one lists every route. Every store is temporary and removed.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "nats/jetstream.h"
#include "nats/local_server.h"
#include "testing/nats_server_fixture.h"

namespace nex::testing {

class NatsCluster {
 public:
  // Starts `size` servers under `dir`, and waits until their JetStream can keep `size`
  // replicas (a meta leader is elected and every server has joined).
  static Result<NatsCluster> start(int size, const std::filesystem::path& dir) {
    // JetStream in a cluster wants every server's routes configured, so the route ports are
    // chosen first: free ports the kernel hands out, released just before the servers bind them.
    std::vector<int> route_ports;
    std::string routes;
    for (int i = 0; i < size; ++i) {
      auto port = free_port();
      if (!port) return fail(port.error());
      route_ports.push_back(*port);
      routes += std::string(routes.empty() ? "" : ", ") +
                "\"nats-route://127.0.0.1:" + std::to_string(*port) + "\"";
    }
    std::filesystem::create_directories(dir);
    NatsCluster c;
    for (int i = 0; i < size; ++i) {
      const auto conf = dir / ("s" + std::to_string(i) + ".conf");
      std::ofstream(conf) << "server_name: s" << i << "\ncluster { name: nex, listen: "
                          << "\"127.0.0.1:" << route_ports[i] << "\", routes: [" << routes
                          << "] }\n";
      auto s = nats::LocalNatsServer::start(
          {.work_dir = dir / ("s" + std::to_string(i)), .config_file = conf});
      if (!s) return fail(s.error());
      c.servers_.push_back(std::move(*s));
    }
    NEX_RETURN_IF_ERROR(c.wait_for_jetstream(size));
    return c;
  }

  std::vector<nats::LocalNatsServer>& servers() { return servers_; }
  std::vector<std::string> urls() const {
    std::vector<std::string> out;
    for (const auto& s : servers_) out.push_back(s.url());
    return out;
  }

 private:
  Status wait_for_jetstream(int replicas) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::string last = "no answer";
    while (std::chrono::steady_clock::now() < end) {
      auto conn = nats::Connection::connect({.urls = urls()});
      auto js = conn ? nats::JetStream::create(*conn) : Result<nats::JetStream>(fail(conn.error()));
      std::string why;
      auto got = js ? js->replicas_available(replicas, why) : Result<int>(fail(js.error()));
      if (got && *got == replicas) return {};
      last = got ? why : got.error().message;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return fail(ErrorCode::kTimeout, "the JetStream cluster never took " +
                                         std::to_string(replicas) + " replicas: " + last);
  }

  static Result<int> free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(ErrorCode::kIo, "socket: " + std::string(std::strerror(errno)));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0;
    ::close(fd);
    if (!ok) return fail(ErrorCode::kIo, "no free port: " + std::string(std::strerror(errno)));
    return ntohs(a.sin_port);
  }

  std::vector<nats::LocalNatsServer> servers_;
};

}  // namespace nex::testing
