#include "common/thrift_server.h"

#include <gtest/gtest.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TSocket.h>

#include <chrono>
#include <thread>

#include "gen-cpp/Coordinator.h"

namespace txc {
namespace {

// A minimal Coordinator handler: health answers, the rest is the generated no-op.
class HealthOnly : public wire::CoordinatorNull {
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

// A client that stops mid-frame does not hold a server thread forever.
TEST(ThriftServerTest, HalfSentFrameIsClosedAfterTheReceiveTimeout) {
  ThriftServerOptions options{"127.0.0.1", 0};
  options.recv_timeout_ms = 100;
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      options);
  ASSERT_TRUE(server.Start().ok());
  apache::thrift::transport::TSocket raw("127.0.0.1", server.port());
  raw.setRecvTimeout(5000);
  raw.open();
  const uint8_t half_frame_header[2] = {0, 0};
  raw.write(half_frame_header, sizeof(half_frame_header));
  uint8_t byte = 0;
  // The server closes the connection: the read sees end of stream, not our 5 s timeout.
  EXPECT_EQ(raw.read(&byte, 1), 0u);
}

// Pooled connections idle past max_idle_ms are not reused: the server may
// have closed them already (here after 100 ms), and the call still succeeds.
TEST(ThriftServerTest, PoolDropsConnectionsTheServerClosedForIdleness) {
  ThriftServerOptions options{"127.0.0.1", 0};
  options.recv_timeout_ms = 100;
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      options);
  ASSERT_TRUE(server.Start().ok());
  ConnectOptions connect;
  connect.max_idle_ms = 50;
  ClientPool<wire::CoordinatorClient> pool(connect);
  const std::string endpoint = "127.0.0.1:" + std::to_string(server.port());
  auto health = [](wire::CoordinatorClient& c) {
    wire::HealthResponse h;
    c.health(h);
  };
  ASSERT_TRUE(pool.Call(endpoint, health).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Status again = pool.Call(endpoint, health);
  EXPECT_TRUE(again.ok()) << again;
}

}  // namespace
}  // namespace txc
