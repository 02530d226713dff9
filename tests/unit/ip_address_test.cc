// The address classifier the HTTP host service decides by, and CIDR networks.
#include "node/host_services/ip_address.h"

#include <gtest/gtest.h>

namespace nex::node::host_services {
namespace {

AddressKind kind_of(const char* text) {
  auto a = IpAddress::parse(text);
  EXPECT_TRUE(a) << text;
  return a ? classify(*a) : AddressKind::kPublic;
}

TEST(IpAddress, EveryKindOfNetworkIsRecognised) {
  for (auto [text, kind] : std::vector<std::pair<const char*, AddressKind>>{
           {"127.0.0.1", AddressKind::kLoopback},
           {"127.255.255.254", AddressKind::kLoopback},
           {"::1", AddressKind::kLoopback},
           {"0.0.0.0", AddressKind::kUnspecified},
           {"0.1.2.3", AddressKind::kUnspecified},
           {"::", AddressKind::kUnspecified},
           {"169.254.169.254", AddressKind::kLinkLocal},
           {"fe80::1", AddressKind::kLinkLocal},
           {"febf:ffff::1", AddressKind::kLinkLocal},
           {"10.0.0.1", AddressKind::kPrivate},
           {"172.16.0.1", AddressKind::kPrivate},
           {"172.31.255.255", AddressKind::kPrivate},
           {"192.168.1.1", AddressKind::kPrivate},
           {"100.64.0.1", AddressKind::kShared},
           {"100.127.255.255", AddressKind::kShared},
           {"fc00::1", AddressKind::kUniqueLocal},
           {"fd12:3456::1", AddressKind::kUniqueLocal},
           {"fec0::1", AddressKind::kSiteLocal},
           {"224.0.0.1", AddressKind::kMulticast},
           {"239.255.255.250", AddressKind::kMulticast},
           {"ff02::1", AddressKind::kMulticast},
           {"255.255.255.255", AddressKind::kBroadcast},
           {"240.0.0.1", AddressKind::kReserved},
           // Just outside the ranges above.
           {"172.32.0.1", AddressKind::kPublic},
           {"172.15.255.255", AddressKind::kPublic},
           {"100.128.0.1", AddressKind::kPublic},
           {"100.63.255.255", AddressKind::kPublic},
           {"128.0.0.1", AddressKind::kPublic},
           {"169.253.255.255", AddressKind::kPublic},
           {"8.8.8.8", AddressKind::kPublic},
           {"2606:4700:4700::1111", AddressKind::kPublic},
           {"fe00::1", AddressKind::kPublic},
       }) {
    EXPECT_EQ(kind_of(text), kind) << text;
  }
}

TEST(IpAddress, IPv6FormsOfAnIPv4AddressAreOfItsKind) {
  for (auto [text, kind] : std::vector<std::pair<const char*, AddressKind>>{
           {"::ffff:127.0.0.1", AddressKind::kLoopback},   // mapped
           {"::ffff:7f00:1", AddressKind::kLoopback},      // the same, in hex
           {"::ffff:0.0.0.0", AddressKind::kUnspecified},  // mapped
           {"::ffff:169.254.169.254", AddressKind::kLinkLocal},
           {"::ffff:10.1.2.3", AddressKind::kPrivate},
           {"::ffff:100.64.0.1", AddressKind::kShared},
           {"::ffff:224.0.0.1", AddressKind::kMulticast},
           {"::ffff:255.255.255.255", AddressKind::kBroadcast},
           {"::127.0.0.1", AddressKind::kLoopback},          // compatible
           {"::a9fe:a9fe", AddressKind::kLinkLocal},         // compatible 169.254.169.254
           {"64:ff9b::7f00:1", AddressKind::kLoopback},      // NAT64
           {"64:ff9b::192.168.0.1", AddressKind::kPrivate},  // NAT64
           {"2002:7f00:1::", AddressKind::kLoopback},        // 6to4
           {"2002:a9fe:a9fe::1", AddressKind::kLinkLocal},   // 6to4
           {"::ffff:8.8.8.8", AddressKind::kPublic},
           {"64:ff9b::808:808", AddressKind::kPublic},
       }) {
    EXPECT_EQ(kind_of(text), kind) << text;
  }
}

TEST(IpAddress, OnlyPlainAddressesParse) {
  for (const char* bad : {"", "localhost", "127.1", "0x7f000001", "2130706433", "[::1]",
                          "fe80::1%eth0", "1.2.3.4.5", "256.0.0.1", "1.2.3.4/32"})
    EXPECT_FALSE(IpAddress::parse(bad)) << bad;
  EXPECT_EQ(IpAddress::parse("::FFFF:127.0.0.1")->to_string(), "::ffff:127.0.0.1");
}

TEST(IpNetwork, ContainsWhatItsPrefixCovers) {
  auto net = IpNetwork::parse("10.1.2.0/24");
  ASSERT_TRUE(net) << net.error().message;
  EXPECT_TRUE(net->contains(*IpAddress::parse("10.1.2.0")));
  EXPECT_TRUE(net->contains(*IpAddress::parse("10.1.2.255")));
  EXPECT_FALSE(net->contains(*IpAddress::parse("10.1.3.0")));
  EXPECT_FALSE(net->contains(*IpAddress::parse("10.1.1.255")));
  EXPECT_TRUE(net->contains(*IpAddress::parse("::ffff:10.1.2.7")))
      << "a mapped address is its IPv4 address";
  EXPECT_FALSE(net->contains(*IpAddress::parse("::10.1.2.7"))) << "only the mapped form";

  auto one = IpNetwork::parse("127.0.0.1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->to_string(), "127.0.0.1/32");
  EXPECT_FALSE(one->contains(*IpAddress::parse("127.0.0.2")));

  auto odd = IpNetwork::parse("172.16.0.0/12");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(*IpAddress::parse("172.31.1.1")));
  EXPECT_FALSE(odd->contains(*IpAddress::parse("172.32.1.1")));

  auto v6 = IpNetwork::parse("fd00::/8");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*IpAddress::parse("fd12::1")));
  EXPECT_FALSE(v6->contains(*IpAddress::parse("fc00::1")));
  EXPECT_FALSE(v6->contains(*IpAddress::parse("10.0.0.1")));

  auto all = IpNetwork::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(*IpAddress::parse("203.0.113.9")));
  EXPECT_FALSE(all->contains(*IpAddress::parse("::1")));
}

TEST(IpNetwork, ABadNetworkSaysWhatIsWrong) {
  for (auto [text, why] : std::vector<std::pair<const char*, const char*>>{
           {"10.1.2.3/24", "bits set past the prefix length; the network is 10.1.2.0/24"},
           {"fd00::1/8", "the network is fd00::/8"},
           {"10.0.0.0/33", "the prefix length must be 0-32 for an IPv4 network, not '33'"},
           {"::/200", "the prefix length must be 0-128 for an IPv6 network"},
           {"10.0.0.0/", "the prefix length must be 0-32"},
           {"10.0.0.0/-1", "the prefix length must be 0-32"},
           {"10.0.0.0/8x", "the prefix length must be 0-32"},
           {"ten/8", "'ten' is not an IPv4 or IPv6 address"}}) {
    auto n = IpNetwork::parse(text);
    ASSERT_FALSE(n) << text;
    EXPECT_NE(n.error().message.find(why), std::string::npos) << n.error().message;
  }
}

}  // namespace
}  // namespace nex::node::host_services
