// What the HTTP host service lets a request reach: host patterns, the allow list of networks and
// names, and the node's own ports.
#include "node/host_services/http_policy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

namespace nex::node::host_services {
namespace {

TEST(HostMatches, AWildcardMatchesSubdomainsOnly) {
  for (const char* host : {"api.example.org", "a.b.example.org", "API.Example.ORG"})
    EXPECT_TRUE(host_matches("*.example.org", host)) << host;
  for (const char* host : {"example.org", "example.org.evil.com", "api.example.org.evil.com",
                           "evilexample.org", "example.org.", ".example.org", "org"})
    EXPECT_FALSE(host_matches("*.example.org", host)) << host;
}

TEST(HostMatches, ANameMatchesItselfOnly) {
  EXPECT_TRUE(host_matches("api.example.com", "api.example.com"));
  EXPECT_TRUE(host_matches("API.example.com", "api.EXAMPLE.com"));
  for (const char* host : {"x.api.example.com", "api.example.com.evil.com", "pi.example.com"})
    EXPECT_FALSE(host_matches("api.example.com", host)) << host;
}

// A socket address for `ip` (IPv4 or IPv6) and `port`.
sockaddr_storage socket_address(const char* ip, int port) {
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
  } else {
    EXPECT_EQ(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1) << ip;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
  }
  return ss;
}

class HttpPolicyTest : public ::testing::Test {
 protected:
  // The refusal of a connection to `ip`:`port` for a request to `host`, or "" when allowed.
  std::string refusal(const HttpPolicy& policy, const char* host, const char* ip, int port = 80) {
    const sockaddr_storage ss = socket_address(ip, port);
    return policy.refuse_connection(host, reinterpret_cast<const sockaddr*>(&ss)).value_or("");
  }
  HttpPolicy with(std::vector<std::string> allow) {
    auto list = NetworkAllowList::parse(allow);
    EXPECT_TRUE(list) << list.error().message;
    return HttpPolicy({}, list ? *list : NetworkAllowList{},
                      {{4222, "the node's internal NATS port"}, {9100, "the node's metrics port"}});
  }
};

TEST_F(HttpPolicyTest, OnlyPublicAddressesByDefault) {
  const HttpPolicy policy = with({});
  EXPECT_EQ(refusal(policy, "example.org", "93.184.216.34"), "");
  EXPECT_EQ(refusal(policy, "example.org", "2606:2800:220:1::1"), "");
  EXPECT_EQ(refusal(policy, "127.0.0.1", "127.0.0.1", 9000),
            "127.0.0.1, a loopback address, which host services do not reach "
            "(host_services.services.http.config.allow_networks opens it)");
  EXPECT_NE(refusal(policy, "meta", "169.254.169.254").find("169.254.169.254, a link-local"),
            std::string::npos);
  EXPECT_NE(refusal(policy, "x", "::ffff:10.0.0.1").find("::ffff:10.0.0.1, a private address"),
            std::string::npos);
  EXPECT_NE(refusal(policy, "x", "fd00::1").find("a unique-local address"), std::string::npos);
}

TEST_F(HttpPolicyTest, TheAllowListOpensNetworksAndNames) {
  const HttpPolicy policy = with({"10.1.2.0/24", "127.0.0.1", "metrics.internal", "*.lan"});
  EXPECT_EQ(refusal(policy, "10.1.2.9", "10.1.2.9"), "");
  EXPECT_EQ(refusal(policy, "anything", "::ffff:10.1.2.9"), "") << "the mapped form too";
  EXPECT_NE(refusal(policy, "10.1.3.9", "10.1.3.9"), "");
  EXPECT_EQ(refusal(policy, "127.0.0.1", "127.0.0.1", 8080), "");
  EXPECT_NE(refusal(policy, "127.0.0.2", "127.0.0.2", 8080), "");
  // A name opens what it resolves to, for requests to that name only.
  EXPECT_EQ(refusal(policy, "metrics.internal", "192.168.7.7"), "");
  EXPECT_EQ(refusal(policy, "printer.lan", "192.168.7.8"), "");
  EXPECT_NE(refusal(policy, "192.168.7.7", "192.168.7.7"), "");
  EXPECT_NE(refusal(policy, "metrics.internal.evil.com", "192.168.7.7"), "");
}

TEST_F(HttpPolicyTest, TheNodesOwnPortsStayClosedWhateverTheAllowList) {
  const HttpPolicy policy = with({"0.0.0.0/0", "::/0"});
  EXPECT_EQ(refusal(policy, "127.0.0.1", "127.0.0.1", 8080), "");
  EXPECT_EQ(refusal(policy, "127.0.0.1", "127.0.0.1", 4222),
            "127.0.0.1 port 4222, the node's internal NATS port, which host services never reach");
  for (const char* ip : {"127.0.0.2", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"})
    EXPECT_NE(refusal(policy, ip, ip, 9100).find("the node's metrics port"), std::string::npos)
        << ip;
  // A port of the same number on another host is not the node's.
  EXPECT_EQ(refusal(policy, "example.org", "93.184.216.34", 4222), "");
}

TEST(HttpPolicy, AllowHostsNamesTheHostsRequestsMayGoTo) {
  const HttpPolicy any({}, {}, {});
  EXPECT_FALSE(any.refuse_host("example.org"));
  const HttpPolicy some({"api.example.com", "*.example.org"}, {}, {});
  EXPECT_FALSE(some.refuse_host("api.example.com"));
  EXPECT_FALSE(some.refuse_host("www.example.org"));
  EXPECT_EQ(some.refuse_host("example.org.evil.com").value_or(""),
            "host 'example.org.evil.com' is not in the node's allowed HTTP hosts "
            "(host_services.services.http.config.allow_hosts)");
}

}  // namespace
}  // namespace nex::node::host_services
