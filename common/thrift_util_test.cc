#include "common/thrift_util.h"

#include <gtest/gtest.h>

namespace txc {
namespace {

TEST(ParseEndpointTest, AcceptsHostPort) {
  auto hp = ParseEndpoint("127.0.0.1:7400");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7400);
  auto v6 = ParseEndpoint("[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
}

TEST(ParseEndpointTest, RejectsMalformed) {
  for (const char* bad : {"", "host", "host:", ":80", "h:0", "h:65536", "h:12x"}) {
    auto hp = ParseEndpoint(bad);
    EXPECT_FALSE(hp.ok()) << bad;
    EXPECT_EQ(hp.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ClientPoolTest, UnreachablePeerIsUnavailable) {
  struct NoClient {
    explicit NoClient(std::shared_ptr<apache::thrift::protocol::TProtocol>) {}
  };
  ClientPool<NoClient> pool(ConnectOptions{200, 200, kDefaultMaxMessageBytes});
  bool called = false;
  // Port 1 on loopback: nothing listens there.
  Status s = pool.Call("127.0.0.1:1", [&](NoClient&) { called = true; });
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_FALSE(called);
}

}  // namespace
}  // namespace txc
