#include "node/host_services/http_policy.h"

#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace nex::node::host_services {

namespace {

char lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool equal_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// A host name, or "*." and one: labels of letters, digits, '-' and '_', none empty.
bool is_host_pattern(std::string_view s) {
  if (s.starts_with("*.")) s.remove_prefix(2);
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
      if (++label > 63) return false;
    } else {
      return false;
    }
  }
  return label > 0;
}

int port_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  if (sa->sa_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
  return -1;
}

// Whether `sa` is an address of this host (in the node's network namespace): the kernel lets a
// socket bind to it. That asks the kernel's own table of local addresses, which also holds the
// sandboxes' gateways and addresses routed locally without being on an interface. When it
// cannot tell, the answer is yes.
bool is_this_hosts(const sockaddr* sa) {
  sockaddr_storage copy{};
  socklen_t len = 0;
  if (sa->sa_family == AF_INET) {
    len = sizeof(sockaddr_in);
    std::memcpy(&copy, sa, len);
    reinterpret_cast<sockaddr_in*>(&copy)->sin_port = 0;
  } else {
    len = sizeof(sockaddr_in6);
    std::memcpy(&copy, sa, len);
    reinterpret_cast<sockaddr_in6*>(&copy)->sin6_port = 0;
  }
  const int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;
  const int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&copy), len);
  const int err = errno;
  ::close(fd);
  return rc == 0 || err != EADDRNOTAVAIL;
}

// One allow_networks entry, into `out`; what is wrong with it, when something is.
std::optional<std::string> add_entry(const std::string& entry, NetworkAllowList& out) {
  const bool numeric = entry.find_first_not_of("0123456789.") == std::string::npos;
  if (entry.find_first_of("/:") != std::string::npos || IpAddress::parse(entry) || numeric) {
    if (numeric && !entry.empty() && !IpAddress::parse(entry))
      return "'" + entry + "' is not an IPv4 address (write its four numbers, as in 10.1.2.3)";
    auto network = IpNetwork::parse(entry);
    if (!network) return network.error().message;
    out.networks.push_back(*network);
    return std::nullopt;
  }
  if (!is_host_pattern(entry))
    return "expected a network (as in 10.1.2.0/24, fd00::/8 or 10.1.2.3) or a host name (as in "
           "metrics.internal or *.internal)";
  std::string host = entry;
  std::transform(host.begin(), host.end(), host.begin(), lower);
  out.hosts.push_back(std::move(host));
  return std::nullopt;
}

}  // namespace

bool host_matches(std::string_view pattern, std::string_view host) {
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.org"
    return host.size() > suffix.size() &&
           equal_ignoring_case(host.substr(host.size() - suffix.size()), suffix);
  }
  return equal_ignoring_case(pattern, host);
}

Result<NetworkAllowList> NetworkAllowList::parse(const std::vector<std::string>& entries) {
  NetworkAllowList list;
  for (const auto& entry : entries) {
    if (auto why = add_entry(entry, list))
      return fail(ErrorCode::kInvalidArgument, "entry '" + entry + "': " + *why);
  }
  return list;
}

bool NetworkAllowList::allows(std::string_view host, const IpAddress& address) const {
  return std::any_of(networks.begin(), networks.end(),
                     [&](const IpNetwork& n) { return n.contains(address); }) ||
         std::any_of(hosts.begin(), hosts.end(),
                     [&](const std::string& pattern) { return host_matches(pattern, host); });
}

HttpPolicy::HttpPolicy(std::vector<std::string> allow_hosts, NetworkAllowList allow_networks,
                       std::vector<NodePort> node_ports)
    : allow_hosts_(std::move(allow_hosts)),
      allow_networks_(std::move(allow_networks)),
      node_ports_(std::move(node_ports)) {}

std::optional<std::string> HttpPolicy::refuse_host(std::string_view host) const {
  if (allow_hosts_.empty() ||
      std::any_of(allow_hosts_.begin(), allow_hosts_.end(),
                  [&](const std::string& pattern) { return host_matches(pattern, host); }))
    return std::nullopt;
  return "host '" + std::string(host) +
         "' is not in the node's allowed HTTP hosts "
         "(host_services.services.http.config.allow_hosts)";
}

std::optional<std::string> HttpPolicy::refuse_connection(std::string_view host,
                                                         const sockaddr* address) const {
  const auto ip = IpAddress::from(address);
  if (!ip)
    return "an address of family " + std::to_string(address->sa_family) +
           ", which host services do not reach";
  const AddressKind kind = classify(*ip);
  const int port = port_of(address);
  for (const auto& own : node_ports_) {
    if (own.port == port && (kind == AddressKind::kLoopback || kind == AddressKind::kUnspecified ||
                             is_this_hosts(address)))
      return ip->to_string() + " port " + std::to_string(port) + ", " + own.name +
             ", which host services never reach";
  }
  if (kind == AddressKind::kPublic || allow_networks_.allows(host, *ip)) return std::nullopt;
  return ip->to_string() + ", " + std::string(describe(kind)) +
         ", which host services do not reach (host_services.services.http.config.allow_networks "
         "opens it)";
}

}  // namespace nex::node::host_services
