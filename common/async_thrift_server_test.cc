// AsyncThriftServer with the generated CoordinatorAsyncProcessor and the
// generated synchronous CoordinatorClient over framed binary: answers given
// inline, later from another thread and as declared exceptions; many clients
// at once; the wire's refusals (oversized frame, malformed message, unknown
// method, TLS on a plaintext port and the reverse); the receive timeout; the
// per-peer and max_connections limits; mutual TLS and the identity a handler
// sees; answers given after Stop() and after the server is gone.
#include "common/async_thrift_server.h"

#include <gtest/gtest.h>
#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "common/peer_identity.h"
#include "common/task_pool.h"
#include "common/thrift_util.h"
#include "gen-cpp/Coordinator.h"
#include "tests/harness/test_certs.h"

namespace txc {
namespace {

using apache::thrift::TApplicationException;
using apache::thrift::TDelayedException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TMemoryBuffer;
using apache::thrift::transport::TSocket;
using testing::TestCa;
using Cob = std::function<void(const wire::Outcome::type&)>;

// health() answers inline and records the caller's identity. status(gtid)
// answers by gtid: "missing..." with wire::NotFound through exn_cob,
// "later..." from a thread of its own, "slow..." from there after slow_ms_,
// anything else inline; the answer echoes the gtid. queryOutcome()
// keeps its cob for the test to fire (KeptCobs()).
class TestCoordinator : public wire::CoordinatorCobSvNull {
 public:
  void health(std::function<void(const wire::HealthResponse&)> cob,
              std::function<void(TDelayedException*)>) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      last_identity_ = CurrentPeerIdentity();
    }
    wire::HealthResponse h;
    h.node_id = "inline";
    cob(h);
  }

  void status(std::function<void(const wire::TxnStatus&)> cob,
              std::function<void(TDelayedException*)> exn_cob, const wire::Gtid& gtid) override {
    wire::TxnStatus answer;
    answer.gtid = gtid;
    if (gtid.rfind("missing", 0) == 0) {
      wire::NotFound missing;
      missing.message = "no transaction " + gtid;
      missing.gtid = gtid;
      exn_cob(TDelayedException::delayException(missing));
    } else if (gtid.rfind("later", 0) == 0) {
      later_.Submit([cob, answer] { cob(answer); });
    } else if (gtid.rfind("slow", 0) == 0) {
      later_.SubmitAfter(slow_ms_, [cob, answer] { cob(answer); });
    } else {
      cob(answer);
    }
  }

  void queryOutcome(Cob cob, std::function<void(TDelayedException*)>, const wire::Gtid&,
                    const wire::BranchId&) override {
    std::lock_guard<std::mutex> lock(mu_);
    kept_.push_back(std::move(cob));
    kept_cv_.notify_all();
  }

  // Waits (at most 10 s) until `n` queryOutcome cobs are kept; hands them
  // over (a cob kept here would keep this handler alive through its processor).
  std::vector<Cob> TakeKeptCobs(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    kept_cv_.wait_for(lock, std::chrono::seconds(10), [&] { return kept_.size() >= n; });
    return std::move(kept_);
  }

  // Runs the answers queued and joins their threads. The owner calls it: the
  // last reference to this handler may be dropped by an answer's cob on one of
  // those threads, which cannot join itself.
  void StopAnswering() { later_.Shutdown(); }

  PeerIdentity last_identity() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_identity_;
  }

  int slow_ms_ = 0;  // set before the server starts

 private:
  std::mutex mu_;
  PeerIdentity last_identity_;  // guarded by mu_
  std::vector<Cob> kept_;       // guarded by mu_
  std::condition_variable kept_cv_;
  // Last: joined first, while what its answers use exists.
  TaskPool later_{"answer-later", 2, {TaskPool::AtShutdown::kRunQueued, "answer-timer"}};
};

using Connection = ThriftConnection<wire::CoordinatorClient>;

// Long timeouts: a refusal must come from the server, not from a timeout.
ConnectOptions Connect(std::shared_ptr<TlsContext> tls = nullptr) {
  ConnectOptions o;
  o.connect_timeout_ms = 5000;
  o.rpc_timeout_ms = 30000;
  o.tls = std::move(tls);
  return o;
}

std::unique_ptr<Connection> Open(int port, const ConnectOptions& options = Connect()) {
  auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port}, options);
  EXPECT_TRUE(conn.ok()) << conn.status();
  return conn.ok() ? std::move(conn).value() : nullptr;
}

std::string StatusOf(wire::CoordinatorClient& client, const std::string& gtid) {
  wire::TxnStatus status;
  client.status(status, gtid);
  return status.gtid;
}

// One health call on a new connection; false when it fails.
bool HealthOnNewConnection(int port, const ConnectOptions& options = Connect()) {
  auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port}, options);
  if (!conn.ok()) return false;
  try {
    wire::HealthResponse h;
    (*conn)->client->health(h);
    return h.node_id == "inline";
  } catch (const std::exception&) {
    return false;
  }
}

// A raw connection; reads fail after 10 s instead of hanging.
std::unique_ptr<TSocket> RawSocket(int port) {
  auto socket = std::make_unique<TSocket>("127.0.0.1", port);
  socket->setRecvTimeout(10000);
  socket->open();
  return socket;
}

// Writes `frame_size` as a frame length, then `body`.
void WriteFrame(TSocket& socket, uint32_t frame_size, const std::string& body) {
  const uint8_t header[4] = {
      static_cast<uint8_t>(frame_size >> 24), static_cast<uint8_t>(frame_size >> 16),
      static_cast<uint8_t>(frame_size >> 8), static_cast<uint8_t>(frame_size)};
  socket.write(header, sizeof(header));
  if (!body.empty()) socket.write(reinterpret_cast<const uint8_t*>(body.data()), body.size());
}

// True when the server closed `socket`: a read sees end of stream (or a
// reset) rather than our 10 s receive timeout or data.
bool ClosedByServer(TSocket& socket) {
  uint8_t byte = 0;
  try {
    return socket.read(&byte, 1) == 0;
  } catch (const apache::thrift::transport::TTransportException& e) {
    return e.getType() != apache::thrift::transport::TTransportException::TIMED_OUT;
  }
}

// A health call as the binary protocol writes it; `drop_stop` leaves out the
// arguments' STOP byte (a struct running past its frame).
std::string HealthCall(bool drop_stop) {
  auto body = std::make_shared<TMemoryBuffer>();
  TBinaryProtocol out(body);
  out.writeMessageBegin("health", apache::thrift::protocol::T_CALL, 1);
  wire::Coordinator_health_pargs().write(&out);
  out.writeMessageEnd();
  std::string call = body->getBufferAsString();
  if (drop_stop) call.pop_back();
  return call;
}

class AsyncThriftServerTest : public ::testing::Test {
 protected:
  void TearDown() override {
    server_.reset();
    handler_->StopAnswering();
  }

  void Start(ThriftServerOptions options = {}, int io_threads = 1) {
    options.host = "127.0.0.1";
    options.port = 0;
    server_ = std::make_unique<AsyncThriftServer>(
        std::make_shared<wire::CoordinatorAsyncProcessor>(handler_), options, io_threads);
    Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    port_ = server_->port();
    ASSERT_GT(port_, 0);
  }

  std::shared_ptr<TestCoordinator> handler_ = std::make_shared<TestCoordinator>();
  std::unique_ptr<AsyncThriftServer> server_;
  int port_ = 0;
};

TEST_F(AsyncThriftServerTest, AnswersInlineWithTheCallersAddress) {
  Start();
  EXPECT_FALSE(server_->tls());
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  wire::HealthResponse h;
  conn->client->health(h);
  EXPECT_EQ(h.node_id, "inline");
  EXPECT_EQ(StatusOf(*conn->client, "g-inline"), "g-inline");
  const PeerIdentity id = handler_->last_identity();
  EXPECT_EQ(id.address.rfind("127.0.0.1:", 0), 0u) << id.address;
  EXPECT_FALSE(id.authenticated);
  server_->Stop();
  server_->Stop();
}

TEST_F(AsyncThriftServerTest, AnswersGivenLaterFromAnotherThreadReachTheClient) {
  Start();
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  for (int i = 0; i < 20; ++i) {
    const std::string gtid = "later-" + std::to_string(i);
    EXPECT_EQ(StatusOf(*conn->client, gtid), gtid);
  }
}

TEST_F(AsyncThriftServerTest, ADeclaredExceptionFromExnCobArrivesTyped) {
  Start();
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  try {
    StatusOf(*conn->client, "missing-1");
    ADD_FAILURE() << "no exception";
  } catch (const wire::NotFound& e) {
    EXPECT_EQ(e.gtid, "missing-1");
    EXPECT_EQ(e.message, "no transaction missing-1");
  }
  EXPECT_EQ(StatusOf(*conn->client, "after"), "after");  // the connection goes on
}

TEST_F(AsyncThriftServerTest, ManyConcurrentClientsAreAllAnsweredCorrectly) {
  Start({}, /*io_threads=*/2);
  constexpr int kClients = 32;
  constexpr int kCalls = 200;
  std::vector<std::thread> clients;
  std::vector<int> correct(kClients, 0);
  std::vector<std::string> failures(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port_}, Connect());
      if (!conn.ok()) {
        failures[c] = conn.status().ToString();
        return;
      }
      try {
        for (int i = 0; i < kCalls; ++i) {
          // Inline, later and exceptional answers interleaved on one connection.
          const std::string id = std::to_string(c) + "-" + std::to_string(i);
          switch (i % 3) {
            case 0:
              if (StatusOf(*(*conn)->client, "inline-" + id) == "inline-" + id) ++correct[c];
              break;
            case 1:
              if (StatusOf(*(*conn)->client, "later-" + id) == "later-" + id) ++correct[c];
              break;
            case 2: try { StatusOf(*(*conn)->client, "missing-" + id);
              } catch (const wire::NotFound& e) {
                if (e.gtid == "missing-" + id) ++correct[c];
              }
              break;
          }
        }
      } catch (const std::exception& e) {
        failures[c] = e.what();
      }
    });
  }
  for (auto& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(correct[c], kCalls) << "client " << c << ": " << failures[c];
  }
}

// One call at a time per connection: a client that sends calls without
// waiting (Thrift's synchronous clients never do) gets its answers in order.
TEST_F(AsyncThriftServerTest, PipelinedCallsAreAnsweredInOrder) {
  Start();
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  const std::vector<std::string> gtids = {"a", "later-b", "c", "missing-d", "later-e", "f"};
  for (const std::string& gtid : gtids) conn->client->send_status(gtid);
  for (const std::string& gtid : gtids) {
    wire::TxnStatus status;
    if (gtid.rfind("missing", 0) == 0) {
      EXPECT_THROW(conn->client->recv_status(status), wire::NotFound);
      continue;
    }
    conn->client->recv_status(status);
    EXPECT_EQ(status.gtid, gtid);
  }
}

// A frame far larger than one read (4 MiB) is read in pieces into its call,
// and an answer as large is written whole, inline and from another thread.
TEST_F(AsyncThriftServerTest, LargeCallsAndAnswersCrossManyReadsAndWrites) {
  Start();
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  for (const char* prefix : {"inline-", "later-"}) {
    const std::string gtid = prefix + std::string(4 * 1024 * 1024, 'x');
    EXPECT_EQ(StatusOf(*conn->client, gtid), gtid);
  }
  EXPECT_EQ(StatusOf(*conn->client, "small"), "small");
}

TEST_F(AsyncThriftServerTest, AnOversizedOrEmptyFrameClosesOnlyThatConnection) {
  ThriftServerOptions options;
  options.max_message_bytes = 1024;
  Start(options);
  auto bystander = Open(port_);
  ASSERT_NE(bystander, nullptr);
  EXPECT_EQ(StatusOf(*bystander->client, "before"), "before");

  auto oversized = RawSocket(port_);
  WriteFrame(*oversized, 4096, "");
  EXPECT_TRUE(ClosedByServer(*oversized));
  auto empty = RawSocket(port_);
  WriteFrame(*empty, 0, "");
  EXPECT_TRUE(ClosedByServer(*empty));
  auto negative = RawSocket(port_);
  WriteFrame(*negative, 0x80000000u, "");
  EXPECT_TRUE(ClosedByServer(*negative));

  EXPECT_EQ(StatusOf(*bystander->client, "after"), "after");
  EXPECT_TRUE(HealthOnNewConnection(port_));
}

// Garbage, and a call whose arguments run past the end of their frame (the
// struct's STOP byte missing), close the connection at once: the server
// neither waits for more bytes nor for its receive timeout (30 s here).
TEST_F(AsyncThriftServerTest, AMalformedMessageClosesTheConnectionAtOnce) {
  ThriftServerOptions options;
  options.recv_timeout_ms = 30000;
  Start(options);
  const auto started = std::chrono::steady_clock::now();

  auto garbage = RawSocket(port_);
  WriteFrame(*garbage, 8, "garbage!");
  EXPECT_TRUE(ClosedByServer(*garbage));

  const std::string truncated = HealthCall(/*drop_stop=*/true);
  auto no_stop = RawSocket(port_);
  WriteFrame(*no_stop, static_cast<uint32_t>(truncated.size()), truncated);
  EXPECT_TRUE(ClosedByServer(*no_stop));

  // A frame length announcing more than is sent waits for the rest (that
  // is the receive timeout's job), so the frame above was complete.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_TRUE(HealthOnNewConnection(port_));
}

TEST_F(AsyncThriftServerTest, AnUnknownMethodIsAnsweredAndTheConnectionGoesOn) {
  Start();
  auto conn = Open(port_);
  ASSERT_NE(conn, nullptr);
  auto out = conn->client->getOutputProtocol();
  auto in = conn->client->getInputProtocol();
  out->writeMessageBegin("noSuchMethod", apache::thrift::protocol::T_CALL, 7);
  out->writeStructBegin("noSuchMethod_args");
  out->writeFieldStop();
  out->writeStructEnd();
  out->writeMessageEnd();
  out->getTransport()->writeEnd();
  out->getTransport()->flush();

  std::string name;
  apache::thrift::protocol::TMessageType type;
  int32_t seqid = 0;
  in->readMessageBegin(name, type, seqid);
  EXPECT_EQ(type, apache::thrift::protocol::T_EXCEPTION);
  EXPECT_EQ(seqid, 7);
  TApplicationException error;
  error.read(in.get());
  in->readMessageEnd();
  in->getTransport()->readEnd();
  EXPECT_EQ(error.getType(), TApplicationException::UNKNOWN_METHOD) << error.what();

  wire::HealthResponse h;
  conn->client->health(h);
  EXPECT_EQ(h.node_id, "inline");
}

// An idle connection and one stopped halfway through a frame are closed after
// recv_timeout_ms; a call longer than that with its handler is not.
TEST_F(AsyncThriftServerTest, TheReceiveTimeoutClosesWaitingConnectionsButNotBusyOnes) {
  ThriftServerOptions options;
  options.recv_timeout_ms = 200;
  handler_->slow_ms_ = 600;
  Start(options);
  const auto started = std::chrono::steady_clock::now();
  auto idle = RawSocket(port_);
  auto half_frame = RawSocket(port_);
  const uint8_t half_header[2] = {0, 0};
  half_frame->write(half_header, sizeof(half_header));
  EXPECT_TRUE(ClosedByServer(*idle));
  EXPECT_TRUE(ClosedByServer(*half_frame));
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_GE(waited, std::chrono::milliseconds(150));
  EXPECT_LT(waited, std::chrono::seconds(8));

  auto busy = Open(port_);
  ASSERT_NE(busy, nullptr);
  EXPECT_EQ(StatusOf(*busy->client, "slow-1"), "slow-1");
}

TEST_F(AsyncThriftServerTest, APeerOverItsConnectionLimitIsRefusedWhileOthersAreServed) {
  ThriftServerOptions options;
  options.max_connections_per_peer = 2;
  Start(options);
  auto client_from = [&](const std::string& source) {
    const int fd = testing::ConnectFromSource(source, port_);
    EXPECT_GE(fd, 0);
    auto socket = std::make_shared<TSocket>(fd);  // owns fd
    socket->setRecvTimeout(10000);
    auto framed = std::make_shared<ResettingFramedTransport>(socket, MakeThriftConfig(1 << 20));
    return std::make_shared<wire::CoordinatorClient>(MakeProtocolFactory()->getProtocol(framed));
  };
  auto health = [](wire::CoordinatorClient& client) {
    try {
      wire::HealthResponse h;
      client.health(h);
      return h.node_id == "inline";
    } catch (const std::exception&) {
      return false;
    }
  };
  auto first = client_from("127.0.0.2");
  auto second = client_from("127.0.0.2");
  ASSERT_TRUE(health(*first));
  ASSERT_TRUE(health(*second));
  EXPECT_FALSE(health(*client_from("127.0.0.2")));  // closed at accept
  EXPECT_TRUE(health(*client_from("127.0.0.3")));   // another peer is served
  EXPECT_TRUE(health(*second));
  first.reset();  // once one closes, 127.0.0.2 may connect again
  EXPECT_TRUE(testing::WaitUntil([&] { return health(*client_from("127.0.0.2")); }, 10000));
}

// At max_connections the server stops accepting; the next client is served
// once a connection closes.
TEST_F(AsyncThriftServerTest, AtMaxConnectionsTheNextClientWaitsForAClose) {
  ThriftServerOptions options;
  options.max_connections = 1;
  Start(options);
  auto first = Open(port_);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(StatusOf(*first->client, "first"), "first");
  auto waiting = std::async(std::launch::async, [&] { return HealthOnNewConnection(port_); });
  EXPECT_EQ(waiting.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  first->transport->close();
  EXPECT_TRUE(waiting.get());
}

// A handler that keeps its cob past Stop() and past the server's
// destruction may still call it: the answer is dropped, nothing breaks.
// Stop() drains: a call already with its handler is answered before its
// connection closes; an idle connection closes at once; no new one is taken.
TEST_F(AsyncThriftServerTest, StopAnswersTheCallsWithTheirHandlersFirst) {
  Start({}, /*io_threads=*/2);
  auto idle = RawSocket(port_);
  std::promise<wire::Outcome::type> answered;
  std::thread caller([this, &answered] {
    auto conn = Open(port_);
    if (conn == nullptr) return answered.set_value(wire::Outcome::OUTCOME_PENDING);
    try {
      answered.set_value(conn->client->queryOutcome("g", "b"));
    } catch (const std::exception& e) {
      ADD_FAILURE() << "the call in flight was not answered: " << e.what();
      answered.set_value(wire::Outcome::OUTCOME_PENDING);
    }
  });
  std::vector<Cob> kept = handler_->TakeKeptCobs(1);
  ASSERT_EQ(kept.size(), 1u);
  std::thread stopper([this] { server_->Stop(); });
  // Draining: the idle connection is closed, and no new connection is served.
  EXPECT_TRUE(ClosedByServer(*idle));
  EXPECT_FALSE(HealthOnNewConnection(port_));
  kept[0](wire::Outcome::OUTCOME_COMMIT);  // the handler answers now
  EXPECT_EQ(answered.get_future().get(), wire::Outcome::OUTCOME_COMMIT);
  stopper.join();
  caller.join();
}

TEST_F(AsyncThriftServerTest, CobsFiredAfterStopAndAfterDestructionAreDropped) {
  ThriftServerOptions options;
  options.drain_timeout_ms = 100;  // the calls are answered only after Stop()
  Start(options, /*io_threads=*/2);
  std::vector<std::thread> callers;
  for (int i = 0; i < 2; ++i) {
    callers.emplace_back([this] {
      auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port_}, Connect());
      if (!conn.ok()) return;
      try {
        (*conn)->client->queryOutcome("g", "b");  // never answered: the server stops
        ADD_FAILURE() << "answered after Stop()";
      } catch (const std::exception&) {
      }
    });
  }
  std::vector<Cob> kept = handler_->TakeKeptCobs(2);
  ASSERT_EQ(kept.size(), 2u);
  server_->Stop();
  for (auto& t : callers) t.join();  // their connections were closed by Stop()
  std::thread([&] { kept[0](wire::Outcome::OUTCOME_COMMIT); }).join();
  server_.reset();
  std::thread([&] { kept[1](wire::Outcome::OUTCOME_ABORT); }).join();
}

TEST_F(AsyncThriftServerTest, StartRefusesWhatItCannotServe) {
  auto processor = std::make_shared<wire::CoordinatorAsyncProcessor>(handler_);
  ThriftServerOptions header;
  header.host = "127.0.0.1";
  header.wire = ThriftWire::kHeader;
  EXPECT_EQ(AsyncThriftServer(processor, header).Start().code(), StatusCode::kInvalidArgument);

  ThriftServerOptions bad_tls;
  bad_tls.host = "127.0.0.1";
  bad_tls.tls = TlsOptions{"/nonexistent.pem", "/nonexistent.key", "", false};
  AsyncThriftServer no_files(processor, bad_tls);
  EXPECT_EQ(no_files.Start().code(), StatusCode::kInvalidArgument);

  Start();
  ThriftServerOptions busy;
  busy.host = "127.0.0.1";
  busy.port = port_;
  EXPECT_EQ(AsyncThriftServer(processor, busy).Start().code(), StatusCode::kUnavailable);
  EXPECT_EQ(server_->ReloadTls().code(), StatusCode::kInvalidArgument);  // plaintext
}

TEST_F(AsyncThriftServerTest, ATlsClientOnThePlaintextPortIsRefused) {
  auto ca = TestCa::Create("async-plain-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto client_cert = (*ca)->Issue("client", "order-service");
  ASSERT_TRUE(client_cert.ok()) << client_cert.status();
  auto client_tls = TlsContext::Create((*ca)->Options(*client_cert), TlsRole::kClient);
  ASSERT_TRUE(client_tls.ok()) << client_tls.status();
  Start();
  auto conn =
      OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port_}, Connect(*client_tls));
  EXPECT_FALSE(conn.ok());
  EXPECT_NE(conn.status().code(), StatusCode::kTimeout) << conn.status();
  EXPECT_TRUE(HealthOnNewConnection(port_));
}

class AsyncThriftServerTlsTest : public AsyncThriftServerTest {
 protected:
  void SetUp() override {
    auto ca = TestCa::Create("async-txc-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto server = ca_->IssueLoopbackServer("server", "coordinator");
    ASSERT_TRUE(server.ok()) << server.status();
    auto client = ca_->Issue("client", "order-service", {"URI:spiffe://txc/order-service"});
    ASSERT_TRUE(client.ok()) << client.status();
    ThriftServerOptions options;
    options.tls = ca_->Options(*server);
    options.recv_timeout_ms = 30000;
    Start(options);
    client_options_ = ca_->Options(*client);
  }

  ConnectOptions ClientConnect(const TlsOptions& tls) {
    auto context = TlsContext::Create(tls, TlsRole::kClient);
    EXPECT_TRUE(context.ok()) << context.status();
    return Connect(context.ok() ? *context : nullptr);
  }

  std::unique_ptr<TestCa> ca_;
  TlsOptions client_options_;
};

TEST_F(AsyncThriftServerTlsTest, TheHandlerSeesTheClientCertificatesNames) {
  EXPECT_TRUE(server_->tls());
  auto conn = Open(port_, ClientConnect(client_options_));
  ASSERT_NE(conn, nullptr);
  wire::HealthResponse h;
  conn->client->health(h);
  EXPECT_EQ(h.node_id, "inline");
  const PeerIdentity id = handler_->last_identity();
  EXPECT_TRUE(id.authenticated);
  EXPECT_EQ(id.common_name, "order-service");
  EXPECT_EQ(id.sans, std::vector<std::string>{"spiffe://txc/order-service"});
  EXPECT_EQ(id.address.rfind("127.0.0.1:", 0), 0u) << id.address;
  EXPECT_EQ(StatusOf(*conn->client, "later-tls"), "later-tls");
  EXPECT_TRUE(server_->ReloadTls().ok());
  EXPECT_TRUE(HealthOnNewConnection(port_, ClientConnect(client_options_)));
}

TEST_F(AsyncThriftServerTlsTest, AClientWithoutCertificateIsRefused) {
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  EXPECT_FALSE(HealthOnNewConnection(port_, ClientConnect(no_cert)));
  EXPECT_TRUE(HealthOnNewConnection(port_, ClientConnect(client_options_)));
}

TEST_F(AsyncThriftServerTlsTest, APlaintextClientIsRefusedAndTheServerKeepsServing) {
  const auto started = std::chrono::steady_clock::now();
  EXPECT_FALSE(HealthOnNewConnection(port_));
  // Refused by the handshake, not by the 30 s receive timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  EXPECT_TRUE(HealthOnNewConnection(port_, ClientConnect(client_options_)));
}

}  // namespace
}  // namespace txc
