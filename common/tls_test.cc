// ThriftServer and ClientPool over TLS, with certificates from a throwaway CA
// (tests/harness/test_certs.h): mutual TLS and the identity a handler sees,
// refusals (foreign CA, expired, missing client certificate, wrong server
// name, revoked certificates), the wrong protocol on either side, reload, volume
// through one TLS connection, and the per-peer connection limit.
#include "common/tls.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "common/peer_identity.h"
#include "common/thrift_server.h"
#include "gen-cpp/Participant.h"
#include "tests/harness/test_certs.h"

namespace txc {
namespace {

using testing::TestCa;

// Records the identity of the peer of each prepare; counts payload bytes.
class RecordingParticipant : public wire::ParticipantNull {
 public:
  wire::Vote::type prepare(const wire::BranchRequest& req) override {
    std::lock_guard<std::mutex> lock(mu_);
    last_identity_ = CurrentPeerIdentity();
    bytes_ += static_cast<int64_t>(req.payload.size());
    return wire::Vote::VOTE_PREPARED;
  }
  PeerIdentity last_identity() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_identity_;
  }

 private:
  std::mutex mu_;
  PeerIdentity last_identity_;
  int64_t bytes_ = 0;
};

using Pool = ClientPool<wire::ParticipantClient>;

Status Prepare(Pool& pool, const std::string& endpoint, const std::string& payload = "x") {
  return pool.Call(endpoint, [&](wire::ParticipantClient& c) {
    wire::BranchRequest req;
    req.__set_gtid("g1");
    req.__set_branch_id("b1");
    req.__set_payload(payload);
    if (c.prepare(req) != wire::Vote::VOTE_PREPARED) throw std::runtime_error("bad vote");
  });
}

std::shared_ptr<TlsContext> ClientTls(const TlsOptions& options) {
  auto tls = TlsContext::Create(options, TlsRole::kClient);
  EXPECT_TRUE(tls.ok()) << tls.status();
  return tls.ok() ? *tls : nullptr;
}

// Long timeouts: a refusal must come from the protocol, not from a timeout.
ConnectOptions Connect(std::shared_ptr<TlsContext> tls) {
  ConnectOptions o;
  o.connect_timeout_ms = 5000;
  o.rpc_timeout_ms = 30000;
  o.tls = std::move(tls);
  return o;
}

class TlsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = TestCa::Create("txc-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto server = ca_->IssueLoopbackServer("server", "coordinator");
    ASSERT_TRUE(server.ok()) << server.status();
    server_cert_ = *server;
    auto client = ca_->Issue("client", "order-service",
                             {"URI:spiffe://txc/order-service", "DNS:order.internal"});
    ASSERT_TRUE(client.ok()) << client.status();
    client_cert_ = *client;
  }

  // Starts a participant server with `tls` (plaintext when not enabled).
  void StartServer(const TlsOptions& tls, int64_t max_connections_per_peer = 512) {
    ThriftServerOptions o{"127.0.0.1", 0};
    o.tls = tls;
    o.recv_timeout_ms = 30000;
    o.max_connections_per_peer = max_connections_per_peer;
    server_ =
        std::make_unique<ThriftServer>(std::make_shared<wire::ParticipantProcessor>(handler_), o);
    Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    endpoint_ = "127.0.0.1:" + std::to_string(server_->port());
  }

  TlsOptions ServerTls() const { return ca_->Options(server_cert_); }
  TlsOptions ClientTlsOptions() const { return ca_->Options(client_cert_); }

  std::unique_ptr<TestCa> ca_;
  TestCa::Issued server_cert_;
  TestCa::Issued client_cert_;
  std::shared_ptr<RecordingParticipant> handler_ = std::make_shared<RecordingParticipant>();
  std::unique_ptr<ThriftServer> server_;
  std::string endpoint_;
};

TEST_F(TlsServerTest, MutualTlsHappyPathShowsTheClientIdentityToTheHandler) {
  StartServer(ServerTls());
  ASSERT_TRUE(server_->tls());
  Pool pool(Connect(ClientTls(ClientTlsOptions())));
  Status s = Prepare(pool, endpoint_);
  ASSERT_TRUE(s.ok()) << s;
  PeerIdentity id = handler_->last_identity();
  EXPECT_TRUE(id.authenticated);
  EXPECT_EQ(id.common_name, "order-service");
  EXPECT_EQ(id.sans, (std::vector<std::string>{"spiffe://txc/order-service", "order.internal"}));
  EXPECT_EQ(id.address.rfind("127.0.0.1:", 0), 0u) << id.address;
  // The second call on the pooled connection carries the same identity.
  ASSERT_TRUE(Prepare(pool, endpoint_).ok());
  EXPECT_EQ(handler_->last_identity().common_name, "order-service");
}

TEST_F(TlsServerTest, PlaintextServerIdentityIsTheAddressOnly) {
  StartServer(TlsOptions{});
  Pool pool(Connect(nullptr));
  ASSERT_TRUE(Prepare(pool, endpoint_).ok());
  PeerIdentity id = handler_->last_identity();
  EXPECT_FALSE(id.authenticated);
  EXPECT_TRUE(id.common_name.empty());
  EXPECT_EQ(id.address.rfind("127.0.0.1:", 0), 0u) << id.address;
}

// A refused client fails with a readable status; a good client is served after.
void ExpectRefusedThenOthersServed(Pool& refused, Pool& good, const std::string& endpoint,
                                   const std::string& expected_reason) {
  Status s = Prepare(refused, endpoint);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), StatusCode::kTimeout) << s;
  EXPECT_NE(s.message().find(expected_reason), std::string::npos) << s;
  Status again = Prepare(good, endpoint);
  EXPECT_TRUE(again.ok()) << again;
}

TEST_F(TlsServerTest, ClientCertificateFromAnotherCaIsRefused) {
  StartServer(ServerTls());
  auto other = TestCa::Create("unrelated-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  auto foreign = (*other)->Issue("foreign", "order-service");
  ASSERT_TRUE(foreign.ok());
  TlsOptions o = (*other)->Options(*foreign);
  o.ca_file = ca_->ca_file();  // trusts the server; the server does not trust it
  Pool refused(Connect(ClientTls(o)));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, good, endpoint_, "unknown ca");
}

TEST_F(TlsServerTest, ExpiredClientCertificateIsRefused) {
  StartServer(ServerTls());
  auto expired = ca_->Issue("expired", "order-service", {}, /*expired=*/true);
  ASSERT_TRUE(expired.ok());
  Pool refused(Connect(ClientTls(ca_->Options(*expired))));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, good, endpoint_, "certificate expired");
}

TEST_F(TlsServerTest, ClientWithoutCertificateIsRefusedUnderMutualTls) {
  StartServer(ServerTls());
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  Pool refused(Connect(ClientTls(no_cert)));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, good, endpoint_, "certificate required");
}

TEST_F(TlsServerTest, OptionalClientCertificateMakesAnUnauthenticatedPeer) {
  TlsOptions tls = ServerTls();
  tls.require_client_cert = false;
  StartServer(tls);
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  Pool anonymous(Connect(ClientTls(no_cert)));
  ASSERT_TRUE(Prepare(anonymous, endpoint_).ok());
  EXPECT_FALSE(handler_->last_identity().authenticated);
  Pool known(Connect(ClientTls(ClientTlsOptions())));
  ASSERT_TRUE(Prepare(known, endpoint_).ok());
  EXPECT_TRUE(handler_->last_identity().authenticated);
  EXPECT_EQ(handler_->last_identity().common_name, "order-service");
}

TEST_F(TlsServerTest, ServerCertificateFromAnotherCaIsRefusedByTheClient) {
  StartServer(ServerTls());
  auto other = TestCa::Create("unrelated-ca");
  ASSERT_TRUE(other.ok());
  TlsOptions o = ClientTlsOptions();
  o.ca_file = (*other)->ca_file();
  Pool pool(Connect(ClientTls(o)));
  Status s = Prepare(pool, endpoint_);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("TLS handshake with " + endpoint_ + " failed"), std::string::npos)
      << s;
  EXPECT_NE(s.message().find("certificate verify failed"), std::string::npos) << s;
}

// The client checks the name it dialled (here the IP 127.0.0.1) against the
// server certificate's SANs; TlsOptions::server_name overrides the name.
TEST_F(TlsServerTest, ServerCertificateMustNameTheHostDialled) {
  auto elsewhere = ca_->Issue("elsewhere", "db", {"DNS:db.example.org"});
  ASSERT_TRUE(elsewhere.ok());
  StartServer(ca_->Options(*elsewhere));
  Pool by_ip(Connect(ClientTls(ClientTlsOptions())));
  Status s = Prepare(by_ip, endpoint_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is not valid for '127.0.0.1'"), std::string::npos) << s;
  TlsOptions named = ClientTlsOptions();
  named.server_name = "db.example.org";
  Pool by_name(Connect(ClientTls(named)));
  Status ok = Prepare(by_name, endpoint_);
  EXPECT_TRUE(ok.ok()) << ok;
}

TEST_F(TlsServerTest, PlaintextClientOnTlsPortFailsFastAndTheServerKeepsServing) {
  StartServer(ServerTls());
  Pool plain(Connect(nullptr));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  Status s = Prepare(plain, endpoint_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), StatusCode::kTimeout) << s;
  EXPECT_NE(s.message().find("TLS"), std::string::npos) << s;
  Status again = Prepare(good, endpoint_);
  EXPECT_TRUE(again.ok()) << again;
}

TEST_F(TlsServerTest, TlsClientOnPlaintextPortFailsFastAndTheServerKeepsServing) {
  StartServer(TlsOptions{});
  Pool tls(Connect(ClientTls(ClientTlsOptions())));
  Pool plain(Connect(nullptr));
  Status s = Prepare(tls, endpoint_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), StatusCode::kTimeout) << s;
  EXPECT_NE(s.message().find("TLS handshake with " + endpoint_ + " failed"), std::string::npos)
      << s;
  Status again = Prepare(plain, endpoint_);
  EXPECT_TRUE(again.ok()) << again;
}

// Thrift 0.17's framed transport drops a connection after ~100 MiB unless its
// budget is reset per message (ResettingFramedTransport): the fix must hold
// when the bytes come through TLS.
TEST_F(TlsServerTest, OneTlsConnectionCarriesMoreThan110MiB) {
  StartServer(ServerTls());
  ConnectOptions o = Connect(ClientTls(ClientTlsOptions()));
  auto conn = OpenConnection<wire::ParticipantClient>(HostPort{"127.0.0.1", server_->port()}, o);
  ASSERT_TRUE(conn.ok()) << conn.status();
  wire::BranchRequest req;
  req.__set_gtid("g-volume");
  req.__set_branch_id("b1");
  req.__set_payload(std::string(1024 * 1024, 'v'));
  constexpr int kCalls = 115;  // 115 MiB
  int answered = 0;
  std::string failure;
  for (int i = 0; i < kCalls; ++i) {
    try {
      if ((*conn)->client->prepare(req) != wire::Vote::VOTE_PREPARED) break;
      ++answered;
    } catch (const std::exception& e) {
      failure = e.what();
      break;
    }
  }
  EXPECT_EQ(answered, kCalls) << failure;
}

// New connections use re-read files; the ones already open keep theirs.
TEST_F(TlsServerTest, ReloadPicksUpANewCertificateForNewConnections) {
  const std::string cert = ca_->dir() + "/live.pem";
  const std::string key = ca_->dir() + "/live.key";
  namespace fs = std::filesystem;
  fs::copy_file(server_cert_.cert_file, cert);
  fs::copy_file(server_cert_.key_file, key);
  TlsOptions tls = ServerTls();
  tls.cert_file = cert;
  tls.key_file = key;
  StartServer(tls);

  auto next_ca = TestCa::Create("next-ca");
  ASSERT_TRUE(next_ca.ok());
  auto next_server = (*next_ca)->IssueLoopbackServer("server", "coordinator-2027");
  ASSERT_TRUE(next_server.ok());
  TlsOptions trusts_next = ClientTlsOptions();
  trusts_next.ca_file = (*next_ca)->ca_file();

  Pool old_client(Connect(ClientTls(ClientTlsOptions())));
  ASSERT_TRUE(Prepare(old_client, endpoint_).ok());  // a connection with the old certificate
  Pool next_client(Connect(ClientTls(trusts_next)));
  EXPECT_FALSE(Prepare(next_client, endpoint_).ok());

  fs::copy_file(next_server->cert_file, cert, fs::copy_options::overwrite_existing);
  fs::copy_file(next_server->key_file, key, fs::copy_options::overwrite_existing);
  Status reloaded = server_->ReloadTls();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  Status s = Prepare(next_client, endpoint_);
  EXPECT_TRUE(s.ok()) << s;
  Status kept = Prepare(old_client, endpoint_);  // the pooled connection still works
  EXPECT_TRUE(kept.ok()) << kept;

  // A broken file keeps the current certificate in use.
  fs::resize_file(key, 10);
  EXPECT_EQ(server_->ReloadTls().code(), StatusCode::kInvalidArgument);
  Pool fresh(Connect(ClientTls(trusts_next)));
  EXPECT_TRUE(Prepare(fresh, endpoint_).ok());
}

// ---- Certificate revocation lists ----------------------------------------------

// Every handshake checks the client certificate against the CRL; a reload
// reads a new CRL, and new connections of a newly revoked client are refused
// while others are served.
TEST_F(TlsServerTest, RevokedClientCertificateIsRefusedAndReloadReadsANewCrl) {
  auto revoked = ca_->Issue("revoked", "order-service");
  auto later = ca_->Issue("later", "payment-service");
  ASSERT_TRUE(revoked.ok() && later.ok());
  ASSERT_TRUE(ca_->Revoke(*revoked).ok());
  const std::string crl = ca_->dir() + "/live-crl.pem";
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  TlsOptions tls = ServerTls();
  tls.crl_file = crl;
  StartServer(tls);

  Pool refused(Connect(ClientTls(ca_->Options(*revoked))));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, good, endpoint_, "certificate revoked");
  Pool later_client(Connect(ClientTls(ca_->Options(*later))));
  ASSERT_TRUE(Prepare(later_client, endpoint_).ok());

  ASSERT_TRUE(ca_->Revoke(*later).ok());
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  Status reloaded = server_->ReloadTls();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  Pool later_again(Connect(ClientTls(ca_->Options(*later))));
  ExpectRefusedThenOthersServed(later_again, good, endpoint_, "certificate revoked");

  // A file without a CRL keeps the current one in use.
  std::filesystem::copy_file(ca_->ca_file(), crl,
                             std::filesystem::copy_options::overwrite_existing);
  Status bad = server_->ReloadTls();
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument) << bad;
  EXPECT_NE(bad.message().find(crl), std::string::npos) << bad;
  Pool still_refused(Connect(ClientTls(ca_->Options(*revoked))));
  ExpectRefusedThenOthersServed(still_refused, good, endpoint_, "certificate revoked");
}

// The client side (txcctl, the SDK's coordinator client): a revoked server
// certificate is refused during the handshake.
TEST_F(TlsServerTest, ClientWithACrlRefusesARevokedServerCertificate) {
  StartServer(ServerTls());
  ASSERT_TRUE(ca_->Revoke(server_cert_).ok());
  const std::string crl = ca_->dir() + "/crl.pem";
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  TlsOptions checking = ClientTlsOptions();
  checking.crl_file = crl;
  Pool refused(Connect(ClientTls(checking)));
  Pool unaware(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, unaware, endpoint_, "certificate revoked");
}

// An intermediate CA revoked by its root: checking only the peer's own
// certificate lets its leaves through; checking the whole chain refuses them,
// while a leaf of the root is still served.
TEST_F(TlsServerTest, ARevokedIntermediateCaIsRefusedWhenTheWholeChainIsChecked) {
  TestCa::Issued intermediate_cert;
  auto intermediate = ca_->IssueIntermediate("txc-test-intermediate", &intermediate_cert);
  ASSERT_TRUE(intermediate.ok()) << intermediate.status();
  auto leaf = (*intermediate)->Issue("leaf", "payment-service");
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const TlsOptions leaf_tls = ca_->Options(*leaf);  // presents leaf + intermediate, trusts the root
  // One file with the CRLs of both CAs.
  const std::string crl = ca_->dir() + "/chain-crl.pem";
  auto write_crls = [&] {
    const std::string root_crl = ca_->dir() + "/root-crl.pem";
    const std::string intermediate_crl = (*intermediate)->dir() + "/intermediate-crl.pem";
    ASSERT_TRUE(ca_->WriteCrl(root_crl).ok());
    ASSERT_TRUE((*intermediate)->WriteCrl(intermediate_crl).ok());
    std::ifstream a(root_crl), b(intermediate_crl);
    std::ofstream out(crl, std::ios::trunc);
    out << a.rdbuf() << b.rdbuf();
    ASSERT_TRUE(out.good());
  };
  write_crls();
  TlsOptions chain = ServerTls();
  chain.crl_file = crl;
  chain.crl_check_chain = true;
  StartServer(chain);
  Pool before(Connect(ClientTls(leaf_tls)));
  Status served = Prepare(before, endpoint_);
  ASSERT_TRUE(served.ok()) << served;  // nothing revoked: the chain verifies

  ASSERT_TRUE(ca_->Revoke(intermediate_cert).ok());
  write_crls();
  Status reloaded = server_->ReloadTls();
  ASSERT_TRUE(reloaded.ok()) << reloaded;
  Pool refused(Connect(ClientTls(leaf_tls)));
  Pool good(Connect(ClientTls(ClientTlsOptions())));
  ExpectRefusedThenOthersServed(refused, good, endpoint_, "certificate revoked");

  // The same files, only the leaf checked: its own certificate is not revoked.
  TlsOptions leaf_only = chain;
  leaf_only.crl_check_chain = false;
  StartServer(leaf_only);
  Pool through(Connect(ClientTls(leaf_tls)));
  Status passed = Prepare(through, endpoint_);
  EXPECT_TRUE(passed.ok()) << passed;
}

// Without a CRL from the peer's CA nothing from that CA gets through.
TEST_F(TlsServerTest, CrlOfAnotherCaRefusesEveryCertificate) {
  auto other = TestCa::Create("other-ca");
  ASSERT_TRUE(other.ok());
  const std::string crl = ca_->dir() + "/other-crl.pem";
  ASSERT_TRUE((*other)->WriteCrl(crl).ok());
  TlsOptions tls = ServerTls();
  tls.crl_file = crl;
  StartServer(tls);
  Pool pool(Connect(ClientTls(ClientTlsOptions())));
  Status s = Prepare(pool, endpoint_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.code(), StatusCode::kTimeout) << s;
}

TEST(TlsCrlTest, UnusableCrlFilesAreInvalidArgument) {
  auto ca = TestCa::Create("crl-ca");
  ASSERT_TRUE(ca.ok());
  auto server = (*ca)->IssueLoopbackServer("server");
  ASSERT_TRUE(server.ok());
  TlsOptions tls = (*ca)->Options(*server);
  tls.crl_file = "/nonexistent-crl.pem";
  auto missing = TlsContext::Create(tls, TlsRole::kServer);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("/nonexistent-crl.pem"), std::string::npos)
      << missing.status();
  tls.crl_file = (*ca)->ca_file();  // PEM, but no CRL in it
  auto not_a_crl = TlsContext::Create(tls, TlsRole::kClient);
  ASSERT_FALSE(not_a_crl.ok());
  EXPECT_NE(not_a_crl.status().message().find("CRL"), std::string::npos) << not_a_crl.status();
  TlsOptions no_ca = tls;
  no_ca.ca_file.clear();
  no_ca.require_client_cert = false;
  EXPECT_NE(no_ca.ValidateForServer().message().find("tls_ca"), std::string::npos);
  const std::string crl = (*ca)->dir() + "/crl.pem";
  ASSERT_TRUE((*ca)->WriteCrl(crl).ok());
  tls.crl_file = crl;
  auto good = TlsContext::Create(tls, TlsRole::kServer);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_NE((*good)->Describe().find("CRL " + crl), std::string::npos) << (*good)->Describe();
}

TEST(TlsOptionsTest, ValidationNamesWhatIsMissing) {
  TlsOptions o;
  o.cert_file = "a.pem";
  EXPECT_EQ(o.ValidateForServer().code(), StatusCode::kInvalidArgument);
  o.key_file = "a.key";
  EXPECT_NE(o.ValidateForServer().message().find("tls_ca"), std::string::npos);
  o.require_client_cert = false;
  EXPECT_TRUE(o.ValidateForServer().ok());
  EXPECT_NE(o.ValidateForClient().message().find("tls_ca"), std::string::npos);
  auto missing = TlsContext::Create(TlsOptions{"/nonexistent.pem", "/nonexistent.key", "", false},
                                    TlsRole::kServer);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent.pem"), std::string::npos)
      << missing.status();
  o.ca_file = "ca.pem";
  o.crl_check_chain = true;  // without a CRL file
  EXPECT_NE(o.ValidateForServer().message().find("tls_crl"), std::string::npos);
  EXPECT_NE(o.ValidateForClient().message().find("tls_crl"), std::string::npos);
}

TEST(LooksLikeTlsRecordTest, RecognisesHandshakesAndAlertsOnly) {
  const uint8_t hello[] = {0x16, 0x03, 0x01};
  const uint8_t alert[] = {0x15, 0x03, 0x03};
  const uint8_t frame[] = {0x00, 0x00, 0x01, 0x00};
  EXPECT_TRUE(LooksLikeTlsRecord(hello, sizeof(hello)));
  EXPECT_TRUE(LooksLikeTlsRecord(alert, sizeof(alert)));
  EXPECT_FALSE(LooksLikeTlsRecord(frame, sizeof(frame)));
}

// ---- per-peer connection limit ------------------------------------------------

// A Thrift client over a connection from a chosen source address.
class SourcedClient {
 public:
  SourcedClient(const std::string& source, int port) {
    const int fd = testing::ConnectFromSource(source, port);
    if (fd < 0) return;
    auto socket = std::make_shared<apache::thrift::transport::TSocket>(fd);  // owns fd
    socket->setRecvTimeout(10000);
    transport_ = std::make_shared<ResettingFramedTransport>(socket, MakeThriftConfig(1 << 20));
    client_ =
        std::make_unique<wire::ParticipantClient>(MakeProtocolFactory()->getProtocol(transport_));
  }
  // One prepare call; false if the connection was refused or closed.
  bool Call() {
    if (client_ == nullptr) return false;
    wire::BranchRequest req;
    req.__set_gtid("g1");
    try {
      return client_->prepare(req) == wire::Vote::VOTE_PREPARED;
    } catch (const std::exception&) {
      return false;
    }
  }

 private:
  std::shared_ptr<apache::thrift::transport::TTransport> transport_;
  std::unique_ptr<wire::ParticipantClient> client_;
};

// (Thrift's listening socket uses TCP_DEFER_ACCEPT: a connection is accepted,
// and counted, once its first bytes arrive, so each connection here calls.)
TEST_F(TlsServerTest, PeerOverItsConnectionLimitIsRefusedWhileOthersAreServed) {
  StartServer(TlsOptions{}, /*max_connections_per_peer=*/2);
  const int port = server_->port();
  // 127.0.0.2 takes its two connections (each served, then held open).
  auto first = std::make_unique<SourcedClient>("127.0.0.2", port);
  SourcedClient second("127.0.0.2", port);
  ASSERT_TRUE(first->Call());
  ASSERT_TRUE(second.Call());
  // Its third is closed at accept; a different peer is served meanwhile.
  SourcedClient third("127.0.0.2", port);
  EXPECT_FALSE(third.Call());
  SourcedClient other("127.0.0.3", port);
  EXPECT_TRUE(other.Call());
  // The held connections keep working; once one closes, 127.0.0.2 may connect again.
  EXPECT_TRUE(second.Call());
  first.reset();
  EXPECT_TRUE(testing::WaitUntil([&] { return SourcedClient("127.0.0.2", port).Call(); }, 10000));
}

// A plaintext client closed at accept by the per-peer limit cannot tell that
// from a TLS port closing on it: the message names both.
TEST_F(TlsServerTest, RefusalByThePerPeerLimitIsNamedInTheClientsError) {
  StartServer(TlsOptions{}, /*max_connections_per_peer=*/1);
  Pool holder(Connect(nullptr));  // keeps its connection open, idle in the pool
  ASSERT_TRUE(Prepare(holder, endpoint_).ok());
  Pool refused(Connect(nullptr));
  Status s = Prepare(refused, endpoint_);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does it require TLS?"), std::string::npos) << s;
  EXPECT_NE(s.message().find("max_connections_per_peer"), std::string::npos) << s;
}

}  // namespace
}  // namespace txc
