#include "common/thrift_server.h"

#include <gtest/gtest.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include <chrono>
#include <future>
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

// A call whose arguments run past the end of its frame (here: the struct's
// STOP byte is missing) is malformed: the connection is closed at once, its
// rest is not read from the next frame (nor waited for), and the server serves on.
TEST(ThriftServerTest, AMessageRunningPastItsFrameClosesTheConnectionAtOnce) {
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      ThriftServerOptions{"127.0.0.1", 0});
  ASSERT_TRUE(server.Start().ok());
  auto body = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
  apache::thrift::protocol::TBinaryProtocol out(body);
  out.writeMessageBegin("health", apache::thrift::protocol::T_CALL, 1);
  wire::Coordinator_health_pargs().write(&out);
  out.writeMessageEnd();
  std::string call = body->getBufferAsString();
  ASSERT_EQ(call.back(), '\0');  // the arguments' STOP
  call.pop_back();
  const uint32_t size = static_cast<uint32_t>(call.size());
  const uint8_t header[4] = {static_cast<uint8_t>(size >> 24), static_cast<uint8_t>(size >> 16),
                             static_cast<uint8_t>(size >> 8), static_cast<uint8_t>(size)};
  apache::thrift::transport::TSocket raw("127.0.0.1", server.port());
  raw.setRecvTimeout(5000);
  raw.open();
  raw.write(header, sizeof(header));
  raw.write(reinterpret_cast<const uint8_t*>(call.data()), size);
  uint8_t byte = 0;
  // End of stream, not our 5 s timeout (the server would wait for a next frame).
  EXPECT_EQ(raw.read(&byte, 1), 0u);

  ClientPool<wire::CoordinatorClient> pool(ConnectOptions{});
  Status s =
      pool.Call("127.0.0.1:" + std::to_string(server.port()), [](wire::CoordinatorClient& c) {
        wire::HealthResponse h;
        c.health(h);
      });
  EXPECT_TRUE(s.ok()) << s;
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

// health() blocks until the test releases it.
class BlockingHealth : public HealthOnly {
 public:
  void health(wire::HealthResponse& out) override {
    entered_.set_value();
    release_.get_future().wait();
    out.node_id = "n1";
  }
  std::promise<void> entered_;
  std::promise<void> release_;
};

// Stop() ends every connection thread without waiting for its receive
// timeout (here: none at all): a connection idle after a call and one stopped
// halfway through its first frame are closed at once, while a call already
// in its handler still gets its answer. (A connection that never sent a byte
// is not accepted at all: TServerSocket sets TCP_DEFER_ACCEPT.)
TEST(ThriftServerTest, StopEndsIdleConnectionsAndLetsABusyCallAnswer) {
  using apache::thrift::protocol::TBinaryProtocol;
  using apache::thrift::transport::TFramedTransport;
  using apache::thrift::transport::TSocket;
  ThriftServerOptions options{"127.0.0.1", 0};
  options.recv_timeout_ms = 0;  // only Stop() can end a connection
  auto handler = std::make_shared<BlockingHealth>();
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(handler), options);
  ASSERT_TRUE(server.Start().ok());
  auto connect = [&] {
    auto socket = std::make_shared<TSocket>("127.0.0.1", server.port());
    socket->setRecvTimeout(10000);  // a read that sees no end of stream fails, not hangs
    socket->open();
    return socket;
  };

  // A connection that made a call and then sent nothing.
  auto idle = connect();
  auto idle_framed = std::make_shared<TFramedTransport>(idle);
  wire::CoordinatorClient idle_client(std::make_shared<TBinaryProtocol>(idle_framed));
  std::thread first_call([&] {
    wire::HealthResponse h;
    idle_client.health(h);
  });
  handler->entered_.get_future().wait();
  handler->release_.set_value();
  first_call.join();
  auto half_frame = connect();
  const uint8_t half_frame_header[2] = {0, 0};
  half_frame->write(half_frame_header, sizeof(half_frame_header));

  // A call in its handler while the server stops.
  handler->entered_ = std::promise<void>();
  handler->release_ = std::promise<void>();
  auto busy = connect();
  auto busy_framed = std::make_shared<TFramedTransport>(busy);
  wire::CoordinatorClient busy_client(std::make_shared<TBinaryProtocol>(busy_framed));
  std::string busy_answer;
  std::thread busy_call([&] {
    wire::HealthResponse h;
    try {
      busy_client.health(h);
      busy_answer = h.node_id;
    } catch (const std::exception& e) {
      busy_answer = std::string("error: ") + e.what();
    }
  });
  handler->entered_.get_future().wait();

  std::thread stopper([&] { server.Stop(); });
  // Each idle connection is closed while the busy call is still running:
  // its read sees end of stream, not our 10 s timeout.
  for (auto* socket : {&idle, &half_frame}) {
    uint8_t byte = 0;
    try {
      EXPECT_EQ((*socket)->read(&byte, 1), 0u);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the server did not close an idle connection at stop: " << e.what();
    }
  }
  handler->release_.set_value();
  busy_call.join();
  EXPECT_EQ(busy_answer, "n1");
  // Should the server have missed a connection, closing ours lets Stop() return.
  for (auto* socket : {&idle, &half_frame, &busy}) (*socket)->close();
  stopper.join();
}

}  // namespace
}  // namespace txc
