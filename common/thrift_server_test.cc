#include "common/thrift_server.h"

#include <gtest/gtest.h>
#include <thrift/protocol/TBinaryProtocol.h>

#include "gen-cpp/Coordinator.h"

namespace txc {
namespace {

// A minimal Coordinator handler: health answers, the rest is unused here.
class HealthOnly : public wire::CoordinatorIf {
 public:
  void beginTxn(wire::BeginResponse&, const wire::BeginRequest&) override {}
  void enlist(const wire::EnlistRequest&) override {}
  void commit(wire::CommitResponse&, const wire::CommitRequest&) override {}
  void rollback(wire::CommitResponse&, const std::string&) override {}
  void status(wire::TxnStatus&, const std::string&) override {}
  void submitSaga(wire::SubmitSagaResponse&, const wire::SubmitSagaRequest&) override {}
  wire::Outcome::type queryOutcome(const std::string&, const std::string&) override {
    return wire::Outcome::OUTCOME_ABORT;
  }
  void health(wire::HealthResponse& out) override { out.node_id = "n1"; }
};

TEST(ThriftServerTest, ServesOnAnyPortAndStops) {
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      ThriftServerOptions{"127.0.0.1", 0});
  ASSERT_TRUE(server.Start().ok());
  ASSERT_GT(server.port(), 0);
  ClientPool<wire::CoordinatorClient> pool(ConnectOptions{});
  std::string node;
  Status s =
      pool.Call("127.0.0.1:" + std::to_string(server.port()), [&](wire::CoordinatorClient& c) {
        wire::HealthResponse h;
        c.health(h);
        node = h.node_id;
      });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(node, "n1");
  server.Stop();
  server.Stop();
}

TEST(ThriftServerTest, BusyPortIsUnavailable) {
  auto processor = std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>());
  ThriftServer first(processor, ThriftServerOptions{"127.0.0.1", 0});
  ASSERT_TRUE(first.Start().ok());
  ThriftServer second(processor, ThriftServerOptions{"127.0.0.1", first.port()});
  Status s = second.Start();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace txc
