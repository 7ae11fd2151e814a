// The transaction context in Thrift headers: encode/decode, and an in-process
// header server (loopback) with a user IDL that has no transaction fields.
#include "txc/participant/thrift_headers.h"

#include <gtest/gtest.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TSocket.h>

#include <atomic>
#include <map>
#include <random>

#include "common/backoff.h"
#include "common/peer_identity.h"
#include "gen-cpp/Echo.h"
#include "tests/harness/test_certs.h"
#include "txc/participant/txn_resources.h"

namespace txc {
namespace participant {
namespace {

using apache::thrift::TApplicationException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TCompactProtocol;
using apache::thrift::transport::TBufferedTransport;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TSocket;
using headertest::EchoClient;

wire::TxnContext Context(const std::string& gtid, int64_t deadline_unix_ms) {
  wire::TxnContext c;
  c.gtid = gtid;
  c.coordinators = {"127.0.0.1:7000", "127.0.0.2:7000"};
  c.deadline_unix_ms = deadline_unix_ms;
  return c;
}

int64_t Later() { return NowUnixMs() + 600000; }

TEST(TxnHeaderTest, RoundTripIsVersionedAndSmall) {
  wire::TxnContext c = Context("6f1c2a9e-6a43-4c53-9c1e-5d7b1c0e9a11", Later());
  c.coordinators.push_back("127.0.0.3:7000");
  c.__set_branch_id("front");
  auto value = EncodeTxnHeader(c);
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(value->rfind("v1;", 0), 0u) << *value;
  EXPECT_LT(value->size(), 200u) << *value;
  std::printf("header value for 3 replicas: %zu bytes\n", value->size());
  auto decoded = DecodeTxnHeader(*value, NowUnixMs());
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, c);
}

TEST(TxnHeaderTest, MalformedIsInvalidArgument) {
  const int64_t now = NowUnixMs();
  const std::string good = *EncodeTxnHeader(Context("g", Later()));
  const std::string body = good.substr(3);
  for (const std::string& bad :
       {std::string(""), std::string("v1"), std::string("v1;"), std::string("v2;") + body, body,
        std::string("v1;!!!"), std::string("v1;QUJD"), good.substr(0, good.size() / 2),
        std::string("v1;") + std::string(kMaxTxnHeaderBytes, 'A')}) {
    auto r = DecodeTxnHeader(bad, now);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << "'" << bad << "'";
    EXPECT_EQ(r.status().message().rfind("malformed: ", 0), 0u) << r.status();
  }
  wire::TxnContext no_coordinators = Context("g", Later());
  no_coordinators.coordinators.clear();
  EXPECT_EQ(DecodeTxnHeader(*EncodeTxnHeader(no_coordinators), now).status().code(),
            StatusCode::kInvalidArgument);
  wire::TxnContext bad_endpoint = Context("g", Later());
  bad_endpoint.coordinators = {"no port"};
  EXPECT_EQ(DecodeTxnHeader(*EncodeTxnHeader(bad_endpoint), now).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeTxnHeader(*EncodeTxnHeader(Context("g", 0)), now).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TxnHeaderTest, SizeLimitOnBothSides) {
  wire::TxnContext big = Context("g", Later());
  for (int i = 0; i < 40; ++i) big.coordinators.push_back("10.0.0." + std::to_string(i) + ":7000");
  EXPECT_EQ(EncodeTxnHeader(big).status().code(), StatusCode::kInvalidArgument);
  const std::string long_value = "v1;" + EncodeTxnContext(big);
  ASSERT_GT(long_value.size(), kMaxTxnHeaderBytes);
  EXPECT_EQ(DecodeTxnHeader(long_value, NowUnixMs()).status().code(), StatusCode::kInvalidArgument);
}

TEST(TxnHeaderTest, ExpiredIsTimeout) {
  auto r = DecodeTxnHeader(*EncodeTxnHeader(Context("g-old", 1000)), NowUnixMs());
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout);
  EXPECT_NE(r.status().message().find("g-old"), std::string::npos) << r.status();
}

TEST(TxnHeaderTest, RandomMutationsNeverCrash) {
  const std::string good = *EncodeTxnHeader(Context("gtid-1", Later()));
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) s[rng() % s.size()] = static_cast<char>(rng() % 256);
    auto r = DecodeTxnHeader(s, NowUnixMs());
    if (!r.ok()) {  // a mutated deadline may lie in the past
      EXPECT_TRUE(r.status().code() == StatusCode::kInvalidArgument ||
                  r.status().code() == StatusCode::kTimeout)
          << r.status();
    }
  }
}

// The user's handler: knows nothing of transactions except CurrentTxnContext().
class EchoHandler : public headertest::EchoIf {
 public:
  void whoami(std::string& out, const std::string& next_hop) override {
    ++calls;
    const wire::TxnContext* c = CurrentTxnContext();
    out = c == nullptr ? "" : c->gtid;
    out += "|";
    if (!next_hop.empty()) {
      auto client = TxnHeaderClient<EchoClient>::Open(next_hop, hop_options);
      if (!client.ok()) throw std::runtime_error(client.status().ToString());
      std::string downstream;
      (**client)->whoami(downstream, "");
      out += downstream;
    }
  }
  void fail() override {
    ++calls;
    headertest::Refused r;
    r.message = CurrentTxnContext() == nullptr ? "no context" : CurrentTxnContext()->gtid;
    throw r;
  }
  void current(std::string& out) override {
    ++calls;
    out = CurrentTxnContext() == nullptr ? "" : CurrentTxnContext()->gtid;
  }
  void bad_sql() override { ++calls; }
  void ping() override { ++calls; }
  void caller(std::string& out) override {
    ++calls;
    out = CurrentPeerIdentity().Describe();
  }
  std::atomic<int> calls{0};
  ConnectOptions hop_options;  // how whoami reaches its next hop (set before serving)
};

class HeaderServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    handler_ = std::make_shared<EchoHandler>();
    ThriftServerOptions o;
    o.host = "127.0.0.1";
    o.max_message_bytes = 1024 * 1024;
    server_ = std::make_unique<TxnHeaderServer>(
        WrapTxnContextProcessor(std::make_shared<headertest::EchoProcessor>(handler_)), o);
    ASSERT_TRUE(server_->Start().ok());
    endpoint_ = "127.0.0.1:" + std::to_string(server_->port());
  }
  std::unique_ptr<TxnHeaderClient<EchoClient>> Open() {
    auto c = TxnHeaderClient<EchoClient>::Open(endpoint_);
    EXPECT_TRUE(c.ok()) << c.status();
    return std::move(c).value();
  }
  std::shared_ptr<EchoHandler> handler_;
  std::unique_ptr<TxnHeaderServer> server_;
  std::string endpoint_;
};

TEST_F(HeaderServerTest, ContextOnlyInsideScope) {
  auto client = Open();
  std::string out;
  (*client)->whoami(out, "");
  EXPECT_EQ(out, "|");
  {
    ScopedTxnContext scope(Context("g-1", Later()));
    (*client)->whoami(out, "");
    EXPECT_EQ(out, "g-1|");
    {
      ScopedTxnContext inner(Context("g-2", Later()));
      (*client)->whoami(out, "");
      EXPECT_EQ(out, "g-2|");
    }
    (*client)->whoami(out, "");
    EXPECT_EQ(out, "g-1|");
  }
  (*client)->whoami(out, "");
  EXPECT_EQ(out, "|");
  (*client)->current(out);
  EXPECT_EQ(out, "");
}

TEST_F(HeaderServerTest, ClearedAfterHandlerThrows) {
  auto client = Open();
  {
    ScopedTxnContext scope(Context("g-throw", Later()));
    try {
      (*client)->fail();
      FAIL() << "fail() returned";
    } catch (const headertest::Refused& r) {
      EXPECT_EQ(r.message, "g-throw");
    }
  }
  // Same connection, so the same server thread: nothing left current there.
  std::string out;
  (*client)->current(out);
  EXPECT_EQ(out, "");
}

TEST_F(HeaderServerTest, TwoHopsPassTheContextOn) {
  // A second server B; A's handler calls B through a TxnHeaderClient.
  auto handler_b = std::make_shared<EchoHandler>();
  ThriftServerOptions o;
  o.host = "127.0.0.1";
  TxnHeaderServer b(WrapTxnContextProcessor(std::make_shared<headertest::EchoProcessor>(handler_b)),
                    o);
  ASSERT_TRUE(b.Start().ok());
  const std::string b_endpoint = "127.0.0.1:" + std::to_string(b.port());
  auto client = Open();
  std::string out;
  {
    ScopedTxnContext scope(Context("g-hop", Later()));
    (*client)->whoami(out, b_endpoint);
  }
  EXPECT_EQ(out, "g-hop|g-hop|");
  (*client)->whoami(out, b_endpoint);
  EXPECT_EQ(out, "||");
}

TEST_F(HeaderServerTest, ExpiredDeadlineRefusedBeforeHandler) {
  auto client = Open();
  {
    ScopedTxnContext scope(Context("g-expired", NowUnixMs() - 5));
    std::string out;
    try {
      (*client)->whoami(out, "");
      FAIL() << "expired context reached the handler: " << out;
    } catch (const TApplicationException& e) {
      EXPECT_TRUE(IsTxnContextRefusal(e)) << e.what();
      EXPECT_NE(std::string(e.what()).find("g-expired"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("expired"), std::string::npos) << e.what();
    }
    // A oneway call is dropped without a reply.
    (*client)->ping();
  }
  EXPECT_EQ(handler_->calls.load(), 0);
  // The connection keeps serving.
  std::string out;
  (*client)->whoami(out, "");
  EXPECT_EQ(out, "|");
  EXPECT_EQ(handler_->calls.load(), 1);
}

TEST_F(HeaderServerTest, MalformedHeaderRefusedBeforeHandler) {
  // A raw header protocol that does not attach contexts: set a bad value by hand.
  auto raw = std::make_shared<TxnHeaderProtocol>(
      std::make_shared<TSocket>("127.0.0.1", server_->port()), kDefaultMaxMessageBytes, false);
  raw->getTransport()->open();
  EchoClient client(raw);
  for (const std::string& bad : {std::string("v1;this-is-not-a-context"), std::string("v9;abc"),
                                 std::string("v1;") + std::string(kMaxTxnHeaderBytes - 3, 'A')}) {
    raw->setHeader(kTxnHeaderKey, bad);
    std::string out;
    try {
      client.whoami(out, "");
      FAIL() << "malformed header reached the handler";
    } catch (const TApplicationException& e) {
      EXPECT_TRUE(IsTxnContextRefusal(e)) << e.what();
      EXPECT_EQ(e.getType(), TApplicationException::PROTOCOL_ERROR);
      EXPECT_NE(std::string(e.what()).find("malformed"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(handler_->calls.load(), 0);
  raw->clearHeaders();
  std::string out;
  client.whoami(out, "");
  EXPECT_EQ(out, "|");
}

// Clients that know nothing of THeader keep working against the header server.
TEST_F(HeaderServerTest, PlainClientsServed) {
  struct Variant {
    const char* name;
    bool framed;
    bool compact;
  };
  for (const Variant& v :
       {Variant{"framed binary", true, false}, Variant{"framed compact", true, true},
        Variant{"unframed binary", false, false}, Variant{"unframed compact", false, true}}) {
    auto socket = std::make_shared<TSocket>("127.0.0.1", server_->port());
    std::shared_ptr<apache::thrift::transport::TTransport> transport;
    if (v.framed) {
      transport = std::make_shared<TFramedTransport>(socket);
    } else {
      transport = std::make_shared<TBufferedTransport>(socket);
    }
    std::shared_ptr<apache::thrift::protocol::TProtocol> protocol;
    if (v.compact) {
      protocol = std::make_shared<TCompactProtocol>(transport);
    } else {
      protocol = std::make_shared<TBinaryProtocol>(transport);
    }
    transport->open();
    EchoClient client(protocol);
    ScopedTxnContext scope(Context("ignored", Later()));  // a plain client sends nothing
    for (int i = 0; i < 3; ++i) {
      std::string out;
      client.whoami(out, "");
      EXPECT_EQ(out, "|") << v.name;
    }
    transport->close();
  }
}

TEST_F(HeaderServerTest, OversizedFrameClosesOnlyThatConnection) {
  // 1 MiB limit; a 32 MiB frame header is refused before anything is buffered.
  auto socket = std::make_shared<TSocket>("127.0.0.1", server_->port());
  socket->setRecvTimeout(5000);
  socket->open();
  const uint8_t frame[] = {0x02, 0x00, 0x00, 0x00, 0x0f, 0xff, 0x00, 0x00};
  socket->write(frame, sizeof(frame));
  socket->flush();
  // The server may answer with an exception message first; then it closes.
  uint8_t buf[256];
  uint32_t total = 0;
  bool closed = false;
  while (total < 4096) {
    uint32_t n = 0;
    try {
      n = socket->read(buf, sizeof(buf));
    } catch (const apache::thrift::transport::TTransportException& e) {
      closed = e.getType() != apache::thrift::transport::TTransportException::TIMED_OUT;
      break;
    }
    if (n == 0) {
      closed = true;
      break;
    }
    total += n;
  }
  EXPECT_TRUE(closed) << "the server should have closed the connection (" << total << " bytes)";
  auto client = Open();
  std::string out;
  (*client)->whoami(out, "");
  EXPECT_EQ(out, "|");
}

TEST_F(HeaderServerTest, ManyMessagesOnOneConnection) {
  // The per-message budget reset: more bytes than the 1 MiB message limit
  // through one connection.
  auto client = Open();
  ScopedTxnContext scope(Context("g-many", Later()));
  std::string out;
  for (int i = 0; i < 6000; ++i) {
    (*client)->whoami(out, std::string());
    ASSERT_EQ(out, "g-many|");
  }
}

// ---- TLS: the header server is a ThriftServer ------------------------------------

class HeaderServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = testing::TestCa::Create("header-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    for (const char* name : {"inventory", "payment"}) {
      auto cert = ca_->IssueLoopbackServer(name, name);
      ASSERT_TRUE(cert.ok()) << cert.status();
      servers_[name] = *cert;
    }
    auto client = ca_->Issue("shop", "shop", {"URI:spiffe://txc/shop"});
    ASSERT_TRUE(client.ok()) << client.status();
    client_cert_ = *client;
  }

  std::shared_ptr<TlsContext> ClientContext(const TlsOptions& options) {
    auto tls = TlsContext::Create(options, TlsRole::kClient);
    EXPECT_TRUE(tls.ok()) << tls.status();
    return tls.ok() ? *tls : nullptr;
  }

  // A mutual-TLS header server presenting `name`'s certificate; its handler
  // reaches next hops as `name` too.
  std::unique_ptr<TxnHeaderServer> Start(const std::string& name,
                                         std::shared_ptr<EchoHandler> handler,
                                         int64_t max_connections_per_peer = 512) {
    handler->hop_options.tls = ClientContext(ca_->Options(servers_[name]));
    ThriftServerOptions o;
    o.host = "127.0.0.1";
    o.max_message_bytes = 1024 * 1024;
    o.tls = ca_->Options(servers_[name]);
    o.max_connections_per_peer = max_connections_per_peer;
    auto server = std::make_unique<TxnHeaderServer>(
        WrapTxnContextProcessor(std::make_shared<headertest::EchoProcessor>(handler)), o);
    Status started = server->Start();
    EXPECT_TRUE(started.ok()) << started;
    EXPECT_TRUE(server->tls());
    return server;
  }

  ConnectOptions ClientOptions(const TlsOptions& tls) {
    ConnectOptions co;
    co.rpc_timeout_ms = 30000;  // a refusal must come from TLS, not a timeout
    co.tls = ClientContext(tls);
    return co;
  }

  static std::string Endpoint(const TxnHeaderServer& server) {
    return "127.0.0.1:" + std::to_string(server.port());
  }

  std::unique_ptr<testing::TestCa> ca_;
  std::map<std::string, testing::TestCa::Issued> servers_;
  testing::TestCa::Issued client_cert_;
};

TEST_F(HeaderServerTlsTest, ContextPropagatesOverMutualTlsAndTheCallerIsKnown) {
  auto inventory_handler = std::make_shared<EchoHandler>();
  auto payment_handler = std::make_shared<EchoHandler>();
  auto inventory = Start("inventory", inventory_handler);
  auto payment = Start("payment", payment_handler);
  auto client = TxnHeaderClient<EchoClient>::Open(Endpoint(*inventory),
                                                  ClientOptions(ca_->Options(client_cert_)));
  ASSERT_TRUE(client.ok()) << client.status();
  std::string out;
  {
    ScopedTxnContext scope(Context("g-tls", Later()));
    (**client)->whoami(out, Endpoint(*payment));  // shop -> inventory -> payment, all mTLS
  }
  EXPECT_EQ(out, "g-tls|g-tls|");
  (**client)->caller(out);
  EXPECT_EQ(out.rfind("CN=shop from 127.0.0.1:", 0), 0u) << out;
  // Outside a context nothing is carried, over TLS as in plaintext.
  (**client)->whoami(out, Endpoint(*payment));
  EXPECT_EQ(out, "||");
  EXPECT_EQ(payment_handler->calls.load(), 2);
}

TEST_F(HeaderServerTlsTest, ClientWithoutCertificateOrPlaintextIsRefused) {
  auto handler = std::make_shared<EchoHandler>();
  auto server = Start("inventory", handler);
  // Trusts the server but has no certificate of its own: under TLS 1.3 the
  // server's refusal may arrive after the client's handshake, at the first call.
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  auto anonymous = TxnHeaderClient<EchoClient>::Open(Endpoint(*server), ClientOptions(no_cert));
  if (anonymous.ok()) {
    ScopedTxnContext scope(Context("g-anonymous", Later()));
    std::string out;
    try {
      (**anonymous)->whoami(out, "");
      ADD_FAILURE() << "a client without a certificate was served: " << out;
    } catch (const apache::thrift::transport::TTransportException& e) {
      EXPECT_NE(std::string(e.what()).find("certificate required"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_NE(anonymous.status().message().find("certificate required"), std::string::npos)
        << anonymous.status();
  }
  ConnectOptions plain;
  plain.rpc_timeout_ms = 30000;
  auto plaintext = TxnHeaderClient<EchoClient>::Open(Endpoint(*server), plain);
  ASSERT_TRUE(plaintext.ok()) << plaintext.status();  // TCP only: TLS is not tried
  std::string out;
  EXPECT_THROW((**plaintext)->whoami(out, ""), apache::thrift::transport::TTransportException);
  EXPECT_EQ(handler->calls.load(), 0);
  // Good clients are served meanwhile.
  auto good = TxnHeaderClient<EchoClient>::Open(Endpoint(*server),
                                                ClientOptions(ca_->Options(client_cert_)));
  ASSERT_TRUE(good.ok()) << good.status();
  (**good)->current(out);
  EXPECT_EQ(handler->calls.load(), 1);
}

TEST_F(HeaderServerTlsTest, RevokedClientIsRefusedAfterReload) {
  auto handler = std::make_shared<EchoHandler>();
  ThriftServerOptions o;
  o.host = "127.0.0.1";
  o.tls = ca_->Options(servers_["inventory"]);
  o.tls.crl_file = ca_->dir() + "/crl.pem";
  ASSERT_TRUE(ca_->WriteCrl(o.tls.crl_file).ok());  // nothing revoked yet
  TxnHeaderServer server(
      WrapTxnContextProcessor(std::make_shared<headertest::EchoProcessor>(handler)), o);
  ASSERT_TRUE(server.Start().ok());
  std::string out;
  {
    auto client = TxnHeaderClient<EchoClient>::Open(Endpoint(server),
                                                    ClientOptions(ca_->Options(client_cert_)));
    ASSERT_TRUE(client.ok()) << client.status();
    (**client)->current(out);
  }
  ASSERT_TRUE(ca_->Revoke(client_cert_).ok());
  ASSERT_TRUE(ca_->WriteCrl(o.tls.crl_file).ok());
  ASSERT_TRUE(server.ReloadTls().ok());
  auto revoked = TxnHeaderClient<EchoClient>::Open(Endpoint(server),
                                                   ClientOptions(ca_->Options(client_cert_)));
  if (revoked.ok()) {
    try {
      (**revoked)->current(out);
      ADD_FAILURE() << "a revoked client was served";
    } catch (const apache::thrift::transport::TTransportException& e) {
      EXPECT_NE(std::string(e.what()).find("certificate revoked"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_NE(revoked.status().message().find("certificate revoked"), std::string::npos)
        << revoked.status();
  }
  EXPECT_EQ(handler->calls.load(), 1);
}

TEST_F(HeaderServerTlsTest, PerPeerConnectionLimitApplies) {
  auto handler = std::make_shared<EchoHandler>();
  auto server = Start("inventory", handler, /*max_connections_per_peer=*/1);
  const ConnectOptions co = ClientOptions(ca_->Options(client_cert_));
  std::string out;
  auto first = TxnHeaderClient<EchoClient>::Open(Endpoint(*server), co);
  ASSERT_TRUE(first.ok()) << first.status();
  (**first)->current(out);
  // The second connection from 127.0.0.1 is closed at accept (its handshake
  // or its first call fails); the first keeps working.
  auto second = TxnHeaderClient<EchoClient>::Open(Endpoint(*server), co);
  if (second.ok()) {
    EXPECT_ANY_THROW((**second)->current(out));
  }
  (**first)->current(out);
  EXPECT_EQ(handler->calls.load(), 2);
  (*first)->Close();
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto again = TxnHeaderClient<EchoClient>::Open(Endpoint(*server), co);
        if (!again.ok()) return false;
        try {
          (**again)->current(out);
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      10000));
}

// The per-message budget reset through TLS: more bytes than the 1 MiB message
// limit through one connection.
TEST_F(HeaderServerTlsTest, ManyMessagesOnOneTlsConnection) {
  auto handler = std::make_shared<EchoHandler>();
  auto server = Start("inventory", handler);
  auto client = TxnHeaderClient<EchoClient>::Open(Endpoint(*server),
                                                  ClientOptions(ca_->Options(client_cert_)));
  ASSERT_TRUE(client.ok()) << client.status();
  ScopedTxnContext scope(Context("g-many-tls", Later()));
  std::string out;
  for (int i = 0; i < 6000; ++i) {
    (**client)->whoami(out, std::string());
    ASSERT_EQ(out, "g-many-tls|") << i;
  }
}

}  // namespace
}  // namespace participant
}  // namespace txc

namespace txc {
namespace participant {
namespace {

class CountingResource : public TxnResource {
 public:
  Vote Prepare(const BranchContext&) override { return Vote::kPrepared; }
  void Commit(const BranchContext&) override {}
  void Abort(const BranchContext&) override {}
};

TEST(TxnResourcesTest, RegisterValidatesNames) {
  TxnResources resources;
  auto r = std::make_shared<CountingResource>();
  EXPECT_TRUE(resources.Register("stock-db", r).ok());
  EXPECT_EQ(resources.Register("stock-db", r).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(resources.Register("", r).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(resources.Register("a:b", r).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(resources.Register(std::string(49, 'a'), r).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(resources.Register("x", nullptr).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(resources.SetEndpoint("no-port").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(resources.SetEndpoint("127.0.0.1:7001").ok());
  EXPECT_EQ(resources.BranchIdFor("stock-db"), "stock-db@127.0.0.1_7001");
}

TEST(TxnResourcesTest, OutsideAContextNothingIsEnlisted) {
  TxnResources resources;
  ASSERT_TRUE(resources.Register("db", std::make_shared<CountingResource>()).ok());
  ASSERT_TRUE(resources.SetEndpoint("127.0.0.1:7001").ok());
  EXPECT_EQ(resources.Join("db").status().code(), StatusCode::kNotFound);
  std::string seen = "unset";
  EXPECT_TRUE(resources
                  .Run("db",
                       [&](const BranchContext& b) {
                         seen = b.gtid;
                         return Status::Ok();
                       })
                  .ok());
  EXPECT_EQ(seen, "");
  EXPECT_EQ(resources.enlist_calls(), 0);
}

TEST(TxnResourcesTest, JoinNeedsEndpointAndKnownResource) {
  TxnResources resources;
  ASSERT_TRUE(resources.Register("db", std::make_shared<CountingResource>()).ok());
  ScopedTxnContext scope(Context("g-1", Later()));
  EXPECT_EQ(resources.Join("db").status().code(), StatusCode::kInvalidArgument);  // no endpoint
  ASSERT_TRUE(resources.SetEndpoint("127.0.0.1:7001").ok());
  EXPECT_EQ(resources.Join("other").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(resources.enlist_calls(), 0);
}

TEST(TxnResourcesTest, ContextNamingAnotherCoordinatorIsRefused) {
  TxnResourcesOptions o;
  o.allowed_coordinators = {"127.0.0.1:7000"};
  TxnResources resources(o);
  ASSERT_TRUE(resources.Register("db", std::make_shared<CountingResource>()).ok());
  ASSERT_TRUE(resources.SetEndpoint("127.0.0.1:7001").ok());
  ScopedTxnContext scope(Context("g-elsewhere", Later()));  // names 127.0.0.2:7000 too
  auto joined = resources.Join("db");
  EXPECT_EQ(joined.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(joined.status().message().find("127.0.0.2:7000"), std::string::npos);
  EXPECT_EQ(resources.enlist_calls(), 0);
}

TEST(TxnResourcesTest, FailedEnlistIsNotRememberedAndWorkDoesNotRun) {
  TxnResourcesOptions o;
  o.coordinator_client.max_attempts = 1;
  o.coordinator_client.connect_timeout_ms = 200;
  o.coordinator_client.call_deadline_ms = 500;
  TxnResources resources(o);
  ASSERT_TRUE(resources.Register("db", std::make_shared<CountingResource>()).ok());
  ASSERT_TRUE(resources.SetEndpoint("127.0.0.1:7001").ok());
  wire::TxnContext c = Context("g-down", Later());
  c.coordinators = {"127.0.0.1:1"};  // nothing listens there
  ScopedTxnContext scope(c);
  bool ran = false;
  Status s = resources.Run("db", [&](const BranchContext&) {
    ran = true;
    return Status::Ok();
  });
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(ran);
  EXPECT_FALSE(resources.Join("db").ok());
  EXPECT_EQ(resources.enlist_calls(), 2);  // the second call tried again
}

}  // namespace
}  // namespace participant
}  // namespace txc
