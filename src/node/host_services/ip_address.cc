#include "node/host_services/ip_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>
#include <initializer_list>
#include <vector>

namespace nex::node::host_services {

namespace {

// Whether the first `prefix` bits of `a` and `b` are equal.
bool same_prefix(const uint8_t* a, const uint8_t* b, int prefix) {
  const int whole = prefix / 8;
  if (std::memcmp(a, b, static_cast<size_t>(whole)) != 0) return false;
  const int rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool is_v4_mapped(const IpAddress& a) {
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return !a.is_v4() && std::memcmp(a.bytes(), kMapped, 12) == 0;
}

struct Range {
  IpNetwork network;
  AddressKind kind;
};

std::vector<Range> ranges(std::initializer_list<std::pair<const char*, AddressKind>> list) {
  std::vector<Range> out;
  for (const auto& [network, kind] : list) out.push_back({*IpNetwork::parse(network), kind});
  return out;
}

AddressKind classify_v4(const IpAddress& a) {
  static const std::vector<Range> kRanges = ranges({
      {"0.0.0.0/8", AddressKind::kUnspecified},
      {"127.0.0.0/8", AddressKind::kLoopback},
      {"169.254.0.0/16", AddressKind::kLinkLocal},
      {"10.0.0.0/8", AddressKind::kPrivate},
      {"172.16.0.0/12", AddressKind::kPrivate},
      {"192.168.0.0/16", AddressKind::kPrivate},
      {"100.64.0.0/10", AddressKind::kShared},
      {"224.0.0.0/4", AddressKind::kMulticast},
      {"255.255.255.255/32", AddressKind::kBroadcast},
      {"240.0.0.0/4", AddressKind::kReserved},
  });
  for (const auto& r : kRanges)
    if (r.network.contains(a)) return r.kind;
  return AddressKind::kPublic;
}

AddressKind classify_v6(const IpAddress& a) {
  static const std::vector<Range> kSpecial = ranges({
      {"::/128", AddressKind::kUnspecified},
      {"::1/128", AddressKind::kLoopback},
  });
  static const std::vector<Range> kRanges = ranges({
      {"fe80::/10", AddressKind::kLinkLocal},
      {"fec0::/10", AddressKind::kSiteLocal},
      {"fc00::/7", AddressKind::kUniqueLocal},
      {"ff00::/8", AddressKind::kMulticast},
  });
  for (const auto& r : kSpecial)
    if (r.network.contains(a)) return r.kind;
  if (auto v4 = a.embedded_v4()) return classify_v4(*v4);
  for (const auto& r : kRanges)
    if (r.network.contains(a)) return r.kind;
  return AddressKind::kPublic;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (inet_pton(AF_INET, s.c_str(), a.bytes_.data()) == 1) return a;
  a.v4_ = false;
  if (inet_pton(AF_INET6, s.c_str(), a.bytes_.data()) == 1) return a;
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::from(const sockaddr* address) {
  IpAddress a;
  if (address->sa_family == AF_INET) {
    std::memcpy(a.bytes_.data(), &reinterpret_cast<const sockaddr_in*>(address)->sin_addr, 4);
    return a;
  }
  if (address->sa_family == AF_INET6) {
    a.v4_ = false;
    std::memcpy(a.bytes_.data(), &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
  if (v4_) return std::nullopt;
  static const uint8_t kCompatible[12] = {};
  static const uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b};
  IpAddress v4;
  if (is_v4_mapped(*this) || std::memcmp(bytes_.data(), kCompatible, 12) == 0 ||
      std::memcmp(bytes_.data(), kNat64, 12) == 0) {
    std::memcpy(v4.bytes_.data(), bytes_.data() + 12, 4);
    return v4;
  }
  if (bytes_[0] == 0x20 && bytes_[1] == 0x02) {  // 6to4
    std::memcpy(v4.bytes_.data(), bytes_.data() + 2, 4);
    return v4;
  }
  return std::nullopt;
}

std::string IpAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4_ ? AF_INET : AF_INET6, bytes_.data(), text, sizeof text);
  return text;
}

AddressKind classify(const IpAddress& address) {
  return address.is_v4() ? classify_v4(address) : classify_v6(address);
}

std::string_view describe(AddressKind kind) {
  switch (kind) {
    case AddressKind::kPublic:
      return "a public address";
    case AddressKind::kLoopback:
      return "a loopback address";
    case AddressKind::kUnspecified:
      return "an unspecified address (it reaches this host)";
    case AddressKind::kLinkLocal:
      return "a link-local address";
    case AddressKind::kPrivate:
      return "a private address";
    case AddressKind::kShared:
      return "a shared (carrier-grade NAT) address";
    case AddressKind::kUniqueLocal:
      return "a unique-local address";
    case AddressKind::kSiteLocal:
      return "a site-local address";
    case AddressKind::kMulticast:
      return "a multicast address";
    case AddressKind::kBroadcast:
      return "the broadcast address";
    case AddressKind::kReserved:
      return "a reserved address";
  }
  return "an address";
}

Result<IpNetwork> IpNetwork::parse(std::string_view text) {
  const auto slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  const auto address = IpAddress::parse(address_text);
  if (!address)
    return fail(ErrorCode::kInvalidArgument,
                "'" + std::string(address_text) + "' is not an IPv4 or IPv6 address");
  IpNetwork n;
  n.base_ = *address;
  n.prefix_ = address->bits();
  if (slash != std::string_view::npos) {
    const std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n.prefix_);
    if (ec != std::errc() || end != p.data() + p.size() || n.prefix_ < 0 ||
        n.prefix_ > address->bits())
      return fail(ErrorCode::kInvalidArgument, "the prefix length must be 0-" +
                                                   std::to_string(address->bits()) + " for an " +
                                                   (address->is_v4() ? "IPv4" : "IPv6") +
                                                   " network, not '" + std::string(p) + "'");
  }
  IpNetwork masked = n;
  for (int bit = n.prefix_; bit < n.base_.bits(); ++bit)
    masked.base_.bytes_[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
  if (masked.base_.bytes_ != n.base_.bytes_)
    return fail(ErrorCode::kInvalidArgument,
                "it has bits set past the prefix length; the network is " + masked.to_string());
  return n;
}

bool IpNetwork::contains(const IpAddress& address) const {
  if (address.is_v4() == base_.is_v4()) return same_prefix(address.bytes(), base_.bytes(), prefix_);
  return base_.is_v4() && is_v4_mapped(address) &&
         same_prefix(address.bytes() + 12, base_.bytes(), prefix_);
}

std::string IpNetwork::to_string() const {
  return base_.to_string() + "/" + std::to_string(prefix_);
}

}  // namespace nex::node::host_services
