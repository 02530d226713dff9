// What the namespace-sandbox tests need from this host: root, cgroups, the CNI plugins, and a
// root filesystem built from this build's agent. Each test process gets a CNI network of its
// own (configuration in a temporary directory, a /24 it claims with a lock file), so test
// binaries running side by side never share addresses. Tests that cannot have it skip, saying why.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/subprocess.h"
#include "node/node_config.h"
#include "node/preflight.h"
#include "sandbox/cni.h"
#include "sandbox/rootfs.h"

namespace nex::testing {

// This host's IPv4 addresses, each with its interface's name.
inline std::vector<std::pair<std::string, std::string>> host_ipv4_by_interface() {
  ifaddrs* all = nullptr;
  std::vector<std::pair<std::string, std::string>> found;
  if (getifaddrs(&all) != 0) return found;
  for (ifaddrs* a = all; a; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, text, sizeof text);
    found.emplace_back(a->ifa_name, text);
  }
  freeifaddrs(all);
  return found;
}

// A /24 of 10.231.0.0/16 that no other test process holds and no host interface uses: the
// third octet is claimed with a lock file (kept for the life of the process, released by the
// kernel when it ends), so two test binaries never route one address through two links.
inline std::string claim_test_subnet() {
  for (int step = 0; step < 250; ++step) {
    const int octet = (static_cast<int>(getpid()) + step) % 250;
    const std::string prefix = "10.231." + std::to_string(octet) + ".";
    const std::string lock = (std::filesystem::temp_directory_path() /
                              ("nex-test-subnet-" + std::to_string(octet) + ".lock"))
                                 .string();
    const int fd = open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) continue;
    bool in_use = flock(fd, LOCK_EX | LOCK_NB) != 0;
    for (const auto& [name, address] : host_ipv4_by_interface())
      in_use = in_use || address.rfind(prefix, 0) == 0;
    if (!in_use) return prefix;  // `fd` stays open: the claim lasts as long as this process
    close(fd);
  }
  return "";
}

class SandboxHost {
 public:
  // The configuration for a sandboxed node, or why this host cannot run one.
  static const SandboxHost& get() {
    static SandboxHost host;
    return host;
  }
  const std::optional<std::string>& unavailable() const { return unavailable_; }
  node::NodeConfig config(int64_t memsize_mib = 128) const {
    node::NodeConfig c = base_;
    c.machine_template.memsize_mib = memsize_mib;
    return c;
  }
  const std::filesystem::path& dir() const { return dir_; }
  // Writes a node configuration file for this host's network and the root filesystem `rootfs`
  // (for `nex up --config` and `nex node up --config`).
  void write_config(const std::filesystem::path& file, const std::filesystem::path& rootfs) const {
    std::ofstream(file) << nlohmann::json{{"rootfs_filepath", rootfs},
                                          {"cni",
                                           {{"network_name", base_.cni.network_name},
                                            {"conf_dir", base_.cni.conf_dir}}}}
                               .dump();
  }
  std::string network() const { return base_.cni.network_name; }
  // The first three octets of the test network's /24, with the dot ("10.231.7.").
  std::string subnet_prefix() const { return subnet_prefix_; }

 private:
  SandboxHost() {
    namespace fs = std::filesystem;
    const fs::path bin = fs::read_symlink("/proc/self/exe").parent_path();
    dir_ = fs::temp_directory_path() / ("nex-sandbox-host-" + std::to_string(getpid()));
    std::error_code ec;
    fs::create_directories(dir_ / "cni", ec);
    base_.no_sandbox = false;
    base_.rootfs_filepath = dir_ / "rootfs";
    base_.cni.network_name = "nextest" + std::to_string(getpid());
    base_.cni.conf_dir = dir_ / "cni";
    auto conflist = sandbox::default_conflist(base_.cni.network_name);
    subnet_prefix_ = claim_test_subnet();
    if (subnet_prefix_.empty()) {
      unavailable_ = "every /24 of 10.231.0.0/16 is held by another test process or in use";
      return;
    }
    conflist["plugins"][0]["ipam"]["subnet"] = subnet_prefix_ + "0/24";
    std::ofstream(dir_ / "cni" / (base_.cni.network_name + ".conflist")) << conflist.dump();
    if (geteuid() != 0) {
      unavailable_ = "the namespace sandbox needs root";
      return;
    }
    if (auto r = sandbox::build_rootfs_tree({.agent_binary = bin / "nex-agent"}, dir_ / "rootfs");
        !r) {
      unavailable_ = "cannot build a root filesystem: " + r.error().message;
      return;
    }
    for (const auto& section : node::preflight(base_, bin / "nex-agent"))
      for (const auto& item : section.items)
        if (!item.ok && !unavailable_)
          unavailable_ = "preflight: " + item.what + " [" + item.description + "]: " + item.fix;
  }
  ~SandboxHost() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    // host-local's bookkeeping for this test network (its leases are gone by now).
    std::filesystem::remove_all("/var/lib/cni/networks/" + base_.cni.network_name, ec);
  }

  node::NodeConfig base_;
  std::filesystem::path dir_;
  std::string subnet_prefix_;
  std::optional<std::string> unavailable_;
};

// A TCP and a UDP listener on every address of this host (0.0.0.0 and [::], one port number for
// all four sockets): the host services a sandbox must not reach. Datagrams are echoed, so a
// sender can tell it got through; every contact is recorded.
class HostListeners {
 public:
  HostListeners() {
    for (int attempt = 0; attempt < 20 && port_ == 0; ++attempt) open_all();
    if (port_ != 0) serving_ = std::thread([this] { serve(); });
  }
  ~HostListeners() {
    const uint64_t one = 1;
    if (stop_fd_ >= 0) (void)!write(stop_fd_, &one, sizeof one);
    if (serving_.joinable()) serving_.join();
    close_all();
  }
  int port() const { return port_; }
  // "tcp from ADDRESS" or "udp from ADDRESS", one per contact.
  std::vector<std::string> contacts() {
    std::lock_guard lock(mu_);
    return contacts_;
  }

 private:
  // One socket of `family` and `type` bound to `port` of every address (0: any port).
  static int listener(int family, int type, int port) {
    const int fd = socket(family, type | SOCK_CLOEXEC, 0);
    sockaddr_storage a{};
    socklen_t len = 0;
    const int one = 1;
    if (family == AF_INET6) {
      setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
      auto* six = reinterpret_cast<sockaddr_in6*>(&a);
      *six = {.sin6_family = AF_INET6, .sin6_port = htons(static_cast<uint16_t>(port))};
      len = sizeof *six;
    } else {
      auto* four = reinterpret_cast<sockaddr_in*>(&a);
      *four = {.sin_family = AF_INET, .sin_port = htons(static_cast<uint16_t>(port))};
      len = sizeof *four;
    }
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        (type == SOCK_STREAM && listen(fd, 16) != 0)) {
      if (fd >= 0) close(fd);
      return -1;
    }
    return fd;
  }
  void open_all() {
    close_all();
    fds_[0] = listener(AF_INET6, SOCK_STREAM, 0);
    sockaddr_in6 bound{};
    socklen_t len = sizeof bound;
    if (fds_[0] < 0 || getsockname(fds_[0], reinterpret_cast<sockaddr*>(&bound), &len) != 0) return;
    const int port = ntohs(bound.sin6_port);
    fds_[1] = listener(AF_INET, SOCK_STREAM, port);
    fds_[2] = listener(AF_INET6, SOCK_DGRAM, port);
    fds_[3] = listener(AF_INET, SOCK_DGRAM, port);
    if (fds_[1] >= 0 && fds_[2] >= 0 && fds_[3] >= 0) port_ = port;
    stop_fd_ = eventfd(0, EFD_CLOEXEC);
  }
  void close_all() {
    for (int& fd : fds_) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
    if (stop_fd_ >= 0) close(stop_fd_);
    stop_fd_ = -1;
  }
  static std::string address(const sockaddr_storage& a) {
    char text[INET6_ADDRSTRLEN] = "";
    if (a.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, text, sizeof text);
    else
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, text, sizeof text);
    return text;
  }
  void serve() {
    for (;;) {
      pollfd p[5] = {{stop_fd_, POLLIN, 0}};
      for (int i = 0; i < 4; ++i) p[i + 1] = {fds_[i], POLLIN, 0};
      if (poll(p, 5, -1) < 0 && errno != EINTR) return;
      if (p[0].revents) return;
      for (int i = 0; i < 4; ++i) {
        if (!(p[i + 1].revents & POLLIN)) continue;
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        char buf[64];
        if (i < 2) {
          const int c = accept4(fds_[i], reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC);
          if (c < 0) continue;
          close(c);
        } else {
          const ssize_t n =
              recvfrom(fds_[i], buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
          if (n < 0) continue;
          sendto(fds_[i], buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
        std::lock_guard lock(mu_);
        contacts_.push_back(std::string(i < 2 ? "tcp" : "udp") + " from " + address(from));
      }
    }
  }

  int port_ = 0;
  int fds_[4] = {-1, -1, -1, -1};  // TCP [::], TCP 0.0.0.0, UDP [::], UDP 0.0.0.0
  int stop_fd_ = -1;
  std::mutex mu_;
  std::vector<std::string> contacts_;
  std::thread serving_;
};

// This host's IPv4 addresses besides loopback (its own, and the host side of every sandbox
// link), ','-separated.
inline std::string host_ipv4_addresses() {
  std::set<std::string> found;
  for (const auto& [name, address] : host_ipv4_by_interface())
    if (address.rfind("127.", 0) != 0) found.insert(address);
  std::string out;
  for (const auto& a : found) out += (out.empty() ? "" : ",") + a;
  return out;
}

// The host's interfaces holding an IPv4 address that starts with `prefix`.
inline std::vector<std::string> host_interfaces_in(const std::string& prefix) {
  std::vector<std::string> names;
  for (const auto& [name, address] : host_ipv4_by_interface())
    if (address.rfind(prefix, 0) == 0) names.push_back(name);
  return names;
}

// This host's iptables filter rules, as `iptables -S` lists them.
inline std::string host_firewall_rules() {
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() / ("nex-iptables-" + std::to_string(getpid()));
  std::filesystem::remove(out);
  auto listing = Subprocess::spawn(
      {.argv = {"iptables", "-w", "5", "-S"}, .stdout_path = out.string(), .null_stdin = true});
  if (listing) listing->wait_for(std::chrono::seconds(15));
  std::string rules;
  std::ifstream in(out);
  for (std::string line; std::getline(in, line);) rules += line + "\n";
  std::filesystem::remove(out);
  return rules;
}

#define NEX_REQUIRE_NAMESPACE_SANDBOX()                                                          \
  do {                                                                                           \
    if (const char* nex_skip_ = std::getenv("NEX_TEST_SKIP_SANDBOXES"); nex_skip_ && *nex_skip_) \
      GTEST_SKIP()                                                                               \
          << "namespace sandbox not used: NEX_TEST_SKIP_SANDBOXES is set (the sanitizer run)";   \
    if (const auto& why = ::nex::testing::SandboxHost::get().unavailable())                      \
      GTEST_SKIP() << "namespace sandbox unavailable here: " << *why;                            \
  } while (0)

}  // namespace nex::testing
