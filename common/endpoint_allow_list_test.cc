#include "common/endpoint_allow_list.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace txc {
namespace {

EndpointAllowList List(const std::vector<std::string>& patterns) {
  Result<EndpointAllowList> list = EndpointAllowList::Parse(patterns);
  EXPECT_TRUE(list.ok()) << list.status();
  return list.ok() ? *list : EndpointAllowList();
}

bool Allowed(const EndpointAllowList& list, const std::string& endpoint) {
  return list.Check("branch.endpoint", endpoint).ok();
}

TEST(EndpointAllowListTest, EmptyListAllowsEverything) {
  EndpointAllowList list = List({});
  EXPECT_TRUE(list.empty());
  EXPECT_TRUE(Allowed(list, "evil.example.com:22"));
  EXPECT_TRUE(Allowed(list, "169.254.169.254:80"));
  // Blank items are no patterns.
  EXPECT_TRUE(List({"", " , "}).empty());
}

TEST(EndpointAllowListTest, ExactHostAnyPort) {
  EndpointAllowList list = List({"orders.svc.local"});
  EXPECT_TRUE(Allowed(list, "orders.svc.local:7001"));
  EXPECT_TRUE(Allowed(list, "ORDERS.svc.local.:1"));  // case, trailing dot
  EXPECT_FALSE(Allowed(list, "payments.svc.local:7001"));
  EXPECT_FALSE(Allowed(list, "orders.svc.local.evil.com:7001"));
  EXPECT_FALSE(Allowed(list, "xorders.svc.local:7001"));
}

TEST(EndpointAllowListTest, SuffixWildcard) {
  EndpointAllowList list = List({"*.svc.local"});
  EXPECT_TRUE(Allowed(list, "orders.svc.local:7001"));
  EXPECT_TRUE(Allowed(list, "a.b.svc.local:7001"));
  EXPECT_FALSE(Allowed(list, "svc.local:7001"));  // at least one label before
  EXPECT_FALSE(Allowed(list, ".svc.local:7001"));
  EXPECT_FALSE(Allowed(list, "evilsvc.local:7001"));
  EXPECT_FALSE(Allowed(list, "orders.svc.local.evil.com:7001"));
  EXPECT_FALSE(Allowed(list, "10.0.0.1:7001"));  // names are not resolved
}

TEST(EndpointAllowListTest, Ports) {
  EndpointAllowList list = List({"*.svc.local:7000-7099", "db.local:5432", ":9000"});
  EXPECT_TRUE(Allowed(list, "a.svc.local:7000"));
  EXPECT_TRUE(Allowed(list, "a.svc.local:7099"));
  EXPECT_FALSE(Allowed(list, "a.svc.local:6999"));
  EXPECT_FALSE(Allowed(list, "a.svc.local:7100"));
  EXPECT_TRUE(Allowed(list, "db.local:5432"));
  EXPECT_FALSE(Allowed(list, "db.local:5433"));
  EXPECT_TRUE(Allowed(list, "anything.example:9000"));  // ":port": any host
  EXPECT_TRUE(Allowed(list, "10.1.1.1:9000"));
  EXPECT_FALSE(Allowed(list, "anything.example:9001"));
  EXPECT_TRUE(Allowed(List({"*:22"}), "x:22"));
  EXPECT_TRUE(Allowed(List({"*"}), "x:22"));
  EXPECT_TRUE(Allowed(List({"db.local:*"}), "db.local:1"));
}

TEST(EndpointAllowListTest, Ipv4AndCidrEdges) {
  EndpointAllowList list = List({"10.0.0.0/8", "192.168.1.7", "172.16.0.0/12:7000"});
  EXPECT_TRUE(Allowed(list, "10.0.0.0:1"));
  EXPECT_TRUE(Allowed(list, "10.255.255.255:1"));
  EXPECT_FALSE(Allowed(list, "11.0.0.0:1"));
  EXPECT_FALSE(Allowed(list, "9.255.255.255:1"));
  EXPECT_TRUE(Allowed(list, "192.168.1.7:80"));
  EXPECT_FALSE(Allowed(list, "192.168.1.8:80"));
  EXPECT_TRUE(Allowed(list, "172.16.0.1:7000"));
  EXPECT_TRUE(Allowed(list, "172.31.255.255:7000"));
  EXPECT_FALSE(Allowed(list, "172.32.0.0:7000"));
  EXPECT_FALSE(Allowed(list, "172.16.0.1:7001"));
  // Odd prefix lengths cut inside a byte.
  EndpointAllowList odd = List({"10.0.0.128/25"});
  EXPECT_TRUE(Allowed(odd, "10.0.0.128:1"));
  EXPECT_TRUE(Allowed(odd, "10.0.0.255:1"));
  EXPECT_FALSE(Allowed(odd, "10.0.0.127:1"));
  EXPECT_TRUE(Allowed(List({"0.0.0.0/0"}), "1.2.3.4:1"));
  EXPECT_FALSE(Allowed(List({"0.0.0.0/0"}), "host.example:1"));  // names are not addresses
  // Forms getaddrinfo would read as 10.0.0.1 are names, not IPv4 literals: refused.
  EXPECT_FALSE(Allowed(list, "10.1:1"));
  EXPECT_FALSE(Allowed(list, "0x0a.0.0.1:1"));
  // An IPv4-mapped IPv6 endpoint counts as its IPv4 address.
  EXPECT_TRUE(Allowed(list, "[::ffff:10.1.2.3]:1"));
  EXPECT_FALSE(Allowed(list, "[::ffff:11.1.2.3]:1"));
}

TEST(EndpointAllowListTest, Ipv6) {
  EndpointAllowList list = List({"[fd00::/8]:7000", "2001:db8::1", "[::1]"});
  EXPECT_TRUE(Allowed(list, "[fd12:3456::1]:7000"));
  EXPECT_FALSE(Allowed(list, "[fd12:3456::1]:7001"));
  EXPECT_FALSE(Allowed(list, "[fe00::1]:7000"));
  EXPECT_TRUE(Allowed(list, "[2001:db8::1]:1"));
  EXPECT_TRUE(Allowed(list, "[2001:0db8:0:0::1]:1"));  // another spelling of the same address
  EXPECT_FALSE(Allowed(list, "[2001:db8::2]:1"));
  EXPECT_TRUE(Allowed(list, "[::1]:1"));
  EXPECT_FALSE(Allowed(list, "127.0.0.1:1"));  // IPv4 loopback is another address
  EXPECT_FALSE(Allowed(List({"10.0.0.0/8"}), "[fd00::1]:1"));
  EXPECT_TRUE(Allowed(List({"fd00::/8"}), "[fd00::1]:1"));
}

TEST(EndpointAllowListTest, CommaSeparatedItems) {
  EndpointAllowList list = List({" *.svc.local , 10.0.0.0/8", "db.local"});
  EXPECT_EQ(list.patterns().size(), 3u);
  EXPECT_TRUE(Allowed(list, "x.svc.local:1"));
  EXPECT_TRUE(Allowed(list, "10.2.3.4:1"));
  EXPECT_TRUE(Allowed(list, "db.local:1"));
}

TEST(EndpointAllowListTest, RefusalNamesFieldAndEndpoint) {
  EndpointAllowList list = List({"*.svc.local"});
  Status s = list.Check("steps[2].endpoint", "evil.com:22");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("steps[2].endpoint"), std::string::npos) << s;
  EXPECT_NE(s.message().find("'evil.com:22'"), std::string::npos) << s;
  Status malformed = list.Check("branch.endpoint", "no-port");
  EXPECT_EQ(malformed.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(malformed.message().rfind("branch.endpoint: ", 0), 0u) << malformed;
}

TEST(EndpointAllowListTest, BadPatternsAreRefused) {
  for (const std::string bad : {"foo*.svc.local",
                                "*foo.svc.local",
                                "a.*.local",
                                "*.",
                                "*.bad name",
                                "host:",
                                "host:0",
                                "host:65536",
                                "host:70-60",
                                "host:x",
                                "10.0.0.0/33",
                                "10.0.0.0/-1",
                                "10.0.0.1/8",
                                "10.0.0.0/x",
                                "fd00::/129",
                                "[fd00::1",
                                "[fd00::1]x",
                                "[10.0.0.1]",
                                "[::ffff:10.0.0.1]",
                                "999.1.1.1",
                                "10.1",
                                "host/8",
                                "[nothost]",
                                ":",
                                "a..b",
                                "-"}) {
    Result<EndpointAllowList> list = EndpointAllowList::Parse({bad});
    EXPECT_FALSE(list.ok()) << "'" << bad << "' accepted";
    if (!list.ok()) {
      EXPECT_EQ(list.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(list.status().message().find(bad), std::string::npos) << list.status();
    }
  }
}

TEST(IsLoopbackHostTest, Addresses) {
  for (const std::string h : {"127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"}) {
    EXPECT_TRUE(IsLoopbackHost(h)) << h;
  }
  for (const std::string h : {"0.0.0.0", "::", "[::]", "", "10.0.0.1", "128.0.0.1", "myhost",
                              "localhost.evil.com", "::2", "::ffff:10.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(h)) << h;
  }
}

}  // namespace
}  // namespace txc
