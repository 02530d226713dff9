// Where the HTTP host service may go. A request goes only to a host allow_hosts names (any when
// it is empty). A connection goes only to a public address, or to one allow_networks opens; and
// never to the node's own ports (its internal NATS, its metrics endpoint) on an address of this
// host, whatever the configuration says. The HTTP service asks refuse_connection() about the
// address libcurl is about to connect to, for every connection of every redirect hop, so
// neither a name that resolves differently the second time nor a redirect gets around it.
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "node/host_services/ip_address.h"

namespace nex::node::host_services {

// Whether `host` matches an allow_hosts pattern: a host name, or "*.example.org" for every
// subdomain of example.org (not example.org itself, and never example.org.evil.com). Letters
// match whatever their case.
bool host_matches(std::string_view pattern, std::string_view host);

// The node config's allow_networks: networks ("10.1.2.0/24", "fd00::/8", "127.0.0.1"), and host
// names ("metrics.internal", "*.internal") whose addresses are open for requests to those names.
struct NetworkAllowList {
  std::vector<IpNetwork> networks;
  std::vector<std::string> hosts;

  // The entries as written in the config; the error names the entry and what is wrong with it.
  static Result<NetworkAllowList> parse(const std::vector<std::string>& entries);
  // Whether a connection to `address` for a request to `host` is opened.
  bool allows(std::string_view host, const IpAddress& address) const;
};

// A port of the node's own, which host services never reach on this host.
struct NodePort {
  int port = 0;
  std::string name;  // "the node's internal NATS port"
};

class HttpPolicy {
 public:
  HttpPolicy(std::vector<std::string> allow_hosts, NetworkAllowList allow_networks,
             std::vector<NodePort> node_ports);

  // Why a request to `host` (as in its URL, lower case) is refused; nullopt when it may go.
  std::optional<std::string> refuse_host(std::string_view host) const;
  // Why a connection to `address` for a request to `host` is refused, as the address and the
  // rule ("127.0.0.1, a loopback address, which ..."); nullopt when it may go.
  std::optional<std::string> refuse_connection(std::string_view host,
                                               const sockaddr* address) const;

 private:
  std::vector<std::string> allow_hosts_;
  NetworkAllowList allow_networks_;
  std::vector<NodePort> node_ports_;
};

}  // namespace nex::node::host_services
