// OwnNetworkNamespace: moves the calling thread into a new network namespace, with loopback up and
// extra addresses on it, for tests whose traffic must not leave the machine even when the code
// under test gets it wrong (an address that is a cloud's metadata service elsewhere). Threads and
// processes the thread starts afterwards (a nats-server, a node) live in it too. Needs root.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace nex::testing {

class OwnNetworkNamespace {
 public:
  // Each of `addresses` (IPv4) goes on loopback as a /32 of its own.
  static Result<std::unique_ptr<OwnNetworkNamespace>> enter(
      const std::vector<std::string>& addresses) {
    const int original = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (original < 0) return fail(ErrorCode::kIo, std::string("open ns/net: ") + strerror(errno));
    std::unique_ptr<OwnNetworkNamespace> ns(new OwnNetworkNamespace(original));
    if (::unshare(CLONE_NEWNET) != 0)
      return fail(ErrorCode::kPermissionDenied,
                  std::string("unshare(CLONE_NEWNET): ") + strerror(errno));
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq lo{};
    std::strncpy(lo.ifr_name, "lo", IFNAMSIZ - 1);
    bool ok = ::ioctl(s, SIOCGIFFLAGS, &lo) == 0;
    lo.ifr_flags = static_cast<short>(lo.ifr_flags | IFF_UP);
    ok = ok && ::ioctl(s, SIOCSIFFLAGS, &lo) == 0;
    for (size_t i = 0; ok && i < addresses.size(); ++i) {
      ifreq alias{};
      const std::string label = "lo:" + std::to_string(i + 1);  // an alias of loopback
      label.copy(alias.ifr_name, IFNAMSIZ - 1);
      auto* in = reinterpret_cast<sockaddr_in*>(&alias.ifr_addr);
      in->sin_family = AF_INET;
      ok = ::inet_pton(AF_INET, addresses[i].c_str(), &in->sin_addr) == 1 &&
           ::ioctl(s, SIOCSIFADDR, &alias) == 0;
      in->sin_addr.s_addr = INADDR_NONE;  // 255.255.255.255: this address alone
      ok = ok && ::ioctl(s, SIOCSIFNETMASK, &alias) == 0;
    }
    const int err = errno;
    ::close(s);
    if (!ok)
      return fail(
          ErrorCode::kIo,
          std::string("setting up loopback in the new network namespace: ") + strerror(err));
    return ns;
  }
  // Back to the namespace the thread was in.
  ~OwnNetworkNamespace() {
    (void)::setns(original_, CLONE_NEWNET);
    ::close(original_);
  }

 private:
  explicit OwnNetworkNamespace(int original) : original_(original) {}
  int original_;
};

}  // namespace nex::testing
