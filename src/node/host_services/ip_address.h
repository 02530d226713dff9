// IP addresses as the HTTP host service sees them: read from text or from the socket address
// libcurl is about to connect to, sorted into the kind of network they belong to (the HTTP
// service reaches public ones only, unless the node's config opens others), and matched against
// networks written as CIDR.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace nex::node::host_services {

class IpAddress {
 public:
  // "192.0.2.1" or "2001:db8::1" (no brackets, no zone); nullopt for anything else.
  static std::optional<IpAddress> parse(std::string_view text);
  // An AF_INET or AF_INET6 socket address; nullopt for other families.
  static std::optional<IpAddress> from(const sockaddr* address);

  bool is_v4() const { return v4_; }
  // The address in network byte order: 4 bytes for IPv4, 16 for IPv6.
  const uint8_t* bytes() const { return bytes_.data(); }
  int bits() const { return v4_ ? 32 : 128; }
  // The IPv4 address an IPv6 address carries and leads to: IPv4-mapped ::ffff:a.b.c.d,
  // IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d and 6to4 2002:aabb:ccdd::/48.
  std::optional<IpAddress> embedded_v4() const;
  std::string to_string() const;

 private:
  friend class IpNetwork;  // masks bytes_ to its prefix
  bool v4_ = true;
  std::array<uint8_t, 16> bytes_{};
};

// The kinds of network an address can be in, as far as reaching it from the node goes.
enum class AddressKind {
  kPublic,
  kLoopback,     // 127.0.0.0/8, ::1
  kUnspecified,  // 0.0.0.0/8, :: (a connection to it reaches this host)
  kLinkLocal,    // 169.254.0.0/16 (cloud metadata services), fe80::/10
  kPrivate,      // 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16
  kShared,       // 100.64.0.0/10, carrier-grade NAT
  kUniqueLocal,  // fc00::/7
  kSiteLocal,    // fec0::/10, deprecated but still routed by some networks
  kMulticast,    // 224.0.0.0/4, ff00::/8
  kBroadcast,    // 255.255.255.255
  kReserved,     // 240.0.0.0/4
};

// The kind of `address`; an IPv6 address that carries an IPv4 one (embedded_v4) is of that
// address's kind.
AddressKind classify(const IpAddress& address);
// "a loopback address", "a link-local address", ...
std::string_view describe(AddressKind kind);

// A network: "10.1.2.0/24", "fd00::/8", or a single address ("10.1.2.3" is 10.1.2.3/32).
class IpNetwork {
 public:
  // The error says what is wrong with `text` (a bad address, a prefix length out of range, bits
  // set past the prefix).
  static Result<IpNetwork> parse(std::string_view text);
  // Whether `address` is in this network. An IPv4-mapped IPv6 address (the form an IPv6 socket
  // connects to an IPv4 address by) counts as its IPv4 address.
  bool contains(const IpAddress& address) const;
  std::string to_string() const;

 private:
  IpAddress base_;
  int prefix_ = 0;
};

}  // namespace nex::node::host_services
