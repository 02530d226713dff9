// DnsServer: a tiny DNS server over UDP for tests that need a host name to resolve to an address
// of their own (api.example.org to 127.0.0.1, say). Run it in a network namespace of the test's
// own (network_namespace.h) on the address /etc/resolv.conf names, and the resolver of every
// thread in that namespace asks it: nothing goes to a real DNS server. It answers A queries for
// the names it was given, an empty answer for their other record types, and NXDOMAIN otherwise.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "core/error.h"

namespace nex::testing {

class DnsServer {
 public:
  // The first IPv4 nameserver of /etc/resolv.conf, where the resolver will ask; empty if none.
  static std::string resolver_address() {
    std::ifstream in("/etc/resolv.conf");
    for (std::string line; std::getline(in, line);) {
      std::istringstream words(line);
      std::string key, address;
      in_addr parsed{};
      if (words >> key >> address && key == "nameserver" &&
          ::inet_pton(AF_INET, address.c_str(), &parsed) == 1)
        return address;
    }
    return {};
  }

  // Serves `names` (lower case, no trailing dot) -> IPv4 address on `address`, port 53.
  static Result<std::unique_ptr<DnsServer>> start(const std::string& address,
                                                  std::map<std::string, std::string> names) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(53);
    ::inet_pton(AF_INET, address.c_str(), &addr.sin_addr);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      if (fd >= 0) ::close(fd);
      return fail(ErrorCode::kIo, "cannot serve DNS on " + address + ":53");
    }
    return std::unique_ptr<DnsServer>(new DnsServer(fd, std::move(names)));
  }
  ~DnsServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

 private:
  DnsServer(int fd, std::map<std::string, std::string> names)
      : fd_(fd), names_(std::move(names)), thread_([this] { serve(); }) {}

  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      unsigned char q[512];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(fd_, q, sizeof q, 0, reinterpret_cast<sockaddr*>(&from), &len);
      std::string answer = n > 12 ? respond(std::string(reinterpret_cast<char*>(q), n)) : "";
      if (!answer.empty())
        (void)::sendto(fd_, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from),
                       len);
    }
  }

  // The answer to one query (RFC 1035 section 4): the question echoed, and an A record for a
  // known name asked for its A record.
  std::string respond(const std::string& query) const {
    std::string name;
    size_t at = 12;
    while (at < query.size() && query[at] != 0) {
      const size_t label = static_cast<unsigned char>(query[at]);
      if (label > 63 || at + 1 + label >= query.size()) return {};
      if (!name.empty()) name += '.';
      for (size_t i = 0; i < label; ++i) name += static_cast<char>(std::tolower(query[at + 1 + i]));
      at += 1 + label;
    }
    if (at + 5 > query.size()) return {};
    const size_t question_end = at + 5;  // the root label, type and class
    const bool wants_a = query[at + 1] == 0 && query[at + 2] == 1;
    auto known = names_.find(name);
    std::string r = query.substr(0, 2);                                    // the id
    r += known == names_.end() ? "\x81\x83" : std::string("\x81\x80", 2);  // NXDOMAIN / NOERROR
    const bool answers = known != names_.end() && wants_a;
    r += std::string("\x00\x01\x00", 3) + (answers ? "\x01" : std::string(1, '\0'));
    r += std::string(4, '\0');  // no authority or additional records
    r += query.substr(12, question_end - 12);
    if (answers) {
      in_addr a{};
      ::inet_pton(AF_INET, known->second.c_str(), &a);
      r += std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04", 12);
      r += std::string(reinterpret_cast<const char*>(&a.s_addr), 4);
    }
    return r;
  }

  int fd_;
  std::map<std::string, std::string> names_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace nex::testing
