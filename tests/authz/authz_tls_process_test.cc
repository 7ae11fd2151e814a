// Authorization by certificate identity over mutual TLS, with a real
// coordinator process and certificates from a throwaway CA
// (tests/harness/test_certs.h):
//
// * a coordinator with --auth_policy: a `reader` certificate is refused
//   commit and rollback with PermissionDenied naming its CN, changes nothing,
//   and may read; a `client` (matched by its URI SAN) commits but may not
//   list; an unknown certificate is refused even health.
// * a participant (SDK ParticipantServer) that requires the coordinator's
//   identity: the coordinator's calls reach its hooks and the transaction
//   commits; another service's certificate calling it directly gets
//   PermissionDenied and no hook runs.
//
// Certificates and policies of its own: the suite's transport (suite_tls.h)
// is not used, the same in plaintext and TXC_TEST_TLS=1 runs.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/thrift_util.h"
#include "common/tls.h"
#include "gen-cpp/Coordinator.h"
#include "gen-cpp/Participant.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"
#include "txc/participant/participant_server.h"

namespace txc {
namespace {

using testing::ChildProcess;
using testing::TempDir;
using testing::TestCa;

constexpr int64_t kWaitMs = 30000;

class AuthzTlsProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = TestCa::Create("txc-authz-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto issue = [&](const std::string& stem, const std::string& cn,
                     std::vector<std::string> sans) {
      auto cert = ca_->Issue(stem, cn, sans);
      EXPECT_TRUE(cert.ok()) << cert.status();
      return cert.ok() ? *cert : TestCa::Issued{};
    };
    coordinator_cert_ = issue("coordinator", "coordinator", {"DNS:localhost", "IP:127.0.0.1"});
    participant_cert_ = issue("participant", "payments", {"DNS:localhost", "IP:127.0.0.1"});
    reader_cert_ = issue("reader", "dashboard", {});
    client_cert_ = issue("client", "orders", {"URI:spiffe://txc/orders"});
    stranger_cert_ = issue("stranger", "stranger", {});
  }

  void TearDown() override {
    if (HasFailure() && coordinator_ != nullptr) {
      ADD_FAILURE() << "coordinator log:\n" << coordinator_->LogTail(8000);
    }
    coordinator_.reset();
  }

  void StartCoordinator(std::vector<std::string> flags) {
    port_ = testing::FreeLoopbackPort();
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--port=" + std::to_string(port_),
              "--data_dir=" + dir_.Child("data"),
              "--node_id=authz-tls",
              "--lease_ttl_ms=3000",
              "--tls_cert=" + coordinator_cert_.cert_file,
              "--tls_key=" + coordinator_cert_.key_file,
              "--tls_ca=" + ca_->ca_file()};
    o.argv.insert(o.argv.end(), flags.begin(), flags.end());
    o.log_path = dir_.Child("coordinator.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(port_, kWaitMs).ok()) << coordinator_->LogTail();
  }

  // A mutual-TLS connection to the coordinator presenting `cert`.
  std::unique_ptr<ThriftConnection<wire::CoordinatorClient>> Connect(const TestCa::Issued& cert) {
    auto tls = TlsContext::Create(ca_->Options(cert), TlsRole::kClient);
    EXPECT_TRUE(tls.ok()) << tls.status();
    if (!tls.ok()) return nullptr;
    ConnectOptions co{2000, 20000};
    co.tls = *tls;
    auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port_}, co);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  // Waits until the coordinator serves (health), asking as `cert`.
  void WaitServing(wire::CoordinatorClient& c) {
    ASSERT_TRUE(testing::WaitUntil(
        [&] {
          wire::HealthResponse health;
          c.health(health);
          return health.serving;
        },
        kWaitMs));
  }

  TempDir dir_{"txc-authz-tls-"};
  std::unique_ptr<TestCa> ca_;
  TestCa::Issued coordinator_cert_, participant_cert_, reader_cert_, client_cert_, stranger_cert_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> coordinator_;
};

TEST_F(AuthzTlsProcessTest, ReaderCertificateIsRefusedCommitWithPermissionDenied) {
  const std::string policy = dir_.Child("policy.conf");
  std::ofstream(policy) << "dashboard = reader\n"
                           "spiffe://txc/orders = client\n";
  ASSERT_NO_FATAL_FAILURE(StartCoordinator({"--auth_policy=" + policy}));
  auto client = Connect(client_cert_);
  auto reader = Connect(reader_cert_);
  ASSERT_TRUE(client && reader);
  ASSERT_NO_FATAL_FAILURE(WaitServing(*client->client));

  wire::BeginResponse begun;
  client->client->beginTxn(begun, wire::BeginRequest());
  ASSERT_FALSE(begun.gtid.empty());

  // The reader may look, not act.
  wire::CommitRequest commit;
  commit.__set_gtid(begun.gtid);
  wire::CommitResponse committed;
  try {
    reader->client->commit(committed, commit);
    FAIL() << "a reader certificate committed";
  } catch (const wire::PermissionDenied& e) {
    EXPECT_EQ(e.identity, "dashboard");
    EXPECT_EQ(e.method, "commit");
    EXPECT_NE(e.message.find("CN=dashboard"), std::string::npos) << e.message;
  }
  EXPECT_THROW(reader->client->rollback(committed, begun.gtid), wire::PermissionDenied);
  wire::TxnStatus status;
  reader->client->status(status, begun.gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);  // nothing changed
  wire::ListTxnsResponse listed;
  reader->client->listTxns(listed, wire::ListTxnsRequest());
  EXPECT_EQ(listed.txns.size(), 1u);

  // The client (its URI SAN matches) commits, but may not list.
  client->client->commit(committed, commit);
  EXPECT_EQ(committed.outcome, wire::Outcome::OUTCOME_COMMIT);
  try {
    client->client->listTxns(listed, wire::ListTxnsRequest());
    FAIL() << "a client certificate listed transactions";
  } catch (const wire::PermissionDenied& e) {
    EXPECT_EQ(e.identity, "orders");
    EXPECT_EQ(e.method, "listTxns");
  }

  // A certificate the CA signed but the policy does not name holds no role.
  auto stranger = Connect(stranger_cert_);
  ASSERT_TRUE(stranger);
  wire::HealthResponse health;
  EXPECT_THROW(stranger->client->health(health), wire::PermissionDenied);

  const std::string log = testing::ReadFileOrEmpty(dir_.Child("coordinator.log"));
  EXPECT_NE(log.find("permission denied: commit by CN=dashboard"), std::string::npos) << log;
}

// Hooks that count what reached them.
class CountingParticipant : public participant::Participant {
 public:
  participant::Vote Prepare(const participant::BranchContext&) override {
    ++prepares;
    return participant::Vote::kPrepared;
  }
  void Commit(const participant::BranchContext&) override { ++commits; }
  void Abort(const participant::BranchContext&) override { ++aborts; }
  std::atomic<int> prepares{0}, commits{0}, aborts{0};
};

TEST_F(AuthzTlsProcessTest, ParticipantRefusesACallerThatIsNotACoordinator) {
  auto hooks = std::make_shared<CountingParticipant>();
  participant::ParticipantServerOptions po;
  po.run_recovery = false;
  po.tls = ca_->Options(participant_cert_);
  po.allowed_coordinator_identities = {"coordinator"};
  participant::ParticipantServer server(hooks, po);
  ASSERT_TRUE(server.Start().ok());

  ASSERT_NO_FATAL_FAILURE(StartCoordinator({"--participant_tls"}));
  auto client = Connect(client_cert_);
  ASSERT_TRUE(client);
  ASSERT_NO_FATAL_FAILURE(WaitServing(*client->client));

  // The coordinator's certificate (CN=coordinator) is let through: 2PC over
  // two branches commits and every branch settles.
  wire::BeginRequest begin;
  std::vector<wire::BranchSpec> branches(2);
  for (int i = 0; i < 2; ++i) {
    branches[i].__set_branch_id("b" + std::to_string(i + 1));
    branches[i].__set_endpoint(server.endpoint());
    branches[i].__set_resource("accounts");
  }
  begin.__set_branches(branches);
  wire::BeginResponse begun;
  client->client->beginTxn(begun, begin);
  wire::CommitRequest commit;
  commit.__set_gtid(begun.gtid);
  commit.__set_wait(wire::CommitWait::WAIT_COMPLETION);
  wire::CommitResponse committed;
  client->client->commit(committed, commit);
  EXPECT_EQ(committed.state, wire::TxnState::COMMITTED);
  EXPECT_EQ(hooks->prepares, 2);
  EXPECT_EQ(hooks->commits, 2);

  // Another service's certificate calling the participant directly is refused
  // before any hook runs.
  auto tls = TlsContext::Create(ca_->Options(client_cert_), TlsRole::kClient);
  ASSERT_TRUE(tls.ok()) << tls.status();
  ConnectOptions co{2000, 10000};
  co.tls = *tls;
  auto direct = OpenConnection<wire::ParticipantClient>(HostPort{"127.0.0.1", server.port()}, co);
  ASSERT_TRUE(direct.ok()) << direct.status();
  wire::BranchRequest req;
  req.__set_gtid(begun.gtid);
  req.__set_branch_id("b1");
  try {
    (*direct)->client->abort(req);
    FAIL() << "a non-coordinator certificate reached the participant's abort hook";
  } catch (const wire::PermissionDenied& e) {
    EXPECT_EQ(e.identity, "orders");
    EXPECT_EQ(e.method, "abort");
  }
  EXPECT_THROW((*direct)->client->prepare(req), wire::PermissionDenied);
  EXPECT_EQ(hooks->prepares, 2);
  EXPECT_EQ(hooks->commits, 2);
  EXPECT_EQ(hooks->aborts, 0);
  server.Stop();
}

}  // namespace
}  // namespace txc
