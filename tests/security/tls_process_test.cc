// Mutual TLS end to end in real processes, with certificates from a
// throwaway CA made by the openssl CLI (tests/harness/test_certs.h):
//
// * 2PC: a `coordinator` with --tls_* and --participant_tls, two `bank`
//   processes (participant SDK + PostgreSQL) with --tls_*, clients with
//   client certificates: money moves, every branch settles.
// * Saga: the order-payment example's three services over mutual TLS.
// * Refusals: a client certificate from an unrelated CA, an expired one, a
//   plaintext client, and a coordinator that calls a TLS participant in
//   plaintext; each fails fast with a readable error while the coordinator
//   keeps serving good clients.
// * Rotation: new files + SIGHUP, and new connections present the new
//   certificate.
// * Revocation: --tls_crl refuses a revoked client certificate; SIGHUP
//   re-reads the CRL.
//
// These tests bring their own CA and certificates (and plaintext peers on
// purpose), so they do not use the suite's transport (suite_tls.h): the same
// in plaintext and TXC_TEST_TLS=1 runs.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "examples/order-payment-saga/shop.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"
#include "tests/saga/shop_processes.h"
#include "tests/twopc/bank_process_test.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;
using testing::TestCa;

std::vector<std::string> TlsFlags(const TestCa& ca, const TestCa::Issued& cert) {
  return {"--tls_cert=" + cert.cert_file, "--tls_key=" + cert.key_file, "--tls_ca=" + ca.ca_file()};
}

class TlsProcessTest : public testing::BankProcessTest {
 protected:
  TlsProcessTest() { suite_tls_ = false; }  // our own certificates, see the top

  void SetUp() override {
    auto ca = TestCa::Create("txc-process-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    for (const char* name : {"coordinator", "bank-a", "bank-b"}) {
      auto cert = ca_->IssueLoopbackServer(name, name);
      ASSERT_TRUE(cert.ok()) << cert.status();
      certs_[name] = *cert;
    }
    auto client = ca_->Issue("order-service", "order-service", {"URI:spiffe://txc/order"});
    ASSERT_TRUE(client.ok()) << client.status();
    certs_["client"] = *client;
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_proc_) LOG(ERROR) << "coordinator log:\n" << coordinator_proc_->LogTail();
      if (bank_a_proc_) LOG(ERROR) << "bank a log:\n" << bank_a_proc_->LogTail(2000);
      if (bank_b_proc_) LOG(ERROR) << "bank b log:\n" << bank_b_proc_->LogTail(2000);
    }
    bank_a_proc_.reset();
    bank_b_proc_.reset();
    coordinator_proc_.reset();
  }

  // A coordinator with mutual TLS on its port; with `participant_tls` it calls
  // participants over TLS with the same identity.
  void StartTlsCoordinator(bool participant_tls = true, const std::string& dir_prefix = "") {
    if (dir_ == nullptr) dir_ = std::make_unique<testing::TempDir>(dir_prefix + "txc-tls-");
    coordinator_port_ = testing::FreeLoopbackPort();
    coordinator_ = "127.0.0.1:" + std::to_string(coordinator_port_);
    std::vector<std::string> flags = TlsFlags(*ca_, certs_["coordinator"]);
    flags.push_back("--node_id=coordinator-tls");
    if (participant_tls) flags.push_back("--participant_tls");
    ASSERT_NO_FATAL_FAILURE(
        StartCoordinatorProcess(coordinator_port_, "coordinator", flags, {}, &coordinator_proc_));
  }

  void StartTlsBanks() {
    bank_coordinators_ = coordinator_;
    bank_extra_flags_ = TlsFlags(*ca_, certs_["bank-a"]);
    ASSERT_NO_FATAL_FAILURE(StartBank('a'));
    bank_extra_flags_ = TlsFlags(*ca_, certs_["bank-b"]);
    ASSERT_NO_FATAL_FAILURE(StartBank('b'));
  }

  TlsOptions ClientTls(const TestCa::Issued& cert) const { return ca_->Options(cert); }

  std::unique_ptr<participant::CoordinatorClient> Client(const TlsOptions& tls,
                                                         int max_attempts = 6) {
    participant::CoordinatorClientOptions co;
    co.endpoints = {coordinator_};
    co.rpc_timeout_ms = 10000;
    co.call_deadline_ms = 20000;
    co.max_attempts = max_attempts;
    co.tls = tls;
    auto client = participant::CoordinatorClient::Create(co);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // One attempt; the refusal must be a protocol error, not a timeout.
  void ExpectRefused(const TlsOptions& tls, const std::string& reason) {
    auto client = Client(tls, /*max_attempts=*/1);
    ASSERT_TRUE(client);
    const int64_t start = MonotonicMs();
    auto health = client->Health();
    const int64_t took_ms = MonotonicMs() - start;
    ASSERT_FALSE(health.ok());
    EXPECT_NE(health.status().code(), StatusCode::kTimeout) << health.status();
    EXPECT_NE(health.status().message().find(reason), std::string::npos) << health.status();
    LOG(INFO) << "refused in " << took_ms << " ms: " << health.status();
  }

  void ExpectGoodClientServed() {
    auto client = Client(ClientTls(certs_["client"]));
    ASSERT_TRUE(client);
    auto health = client->Health();
    EXPECT_TRUE(health.ok()) << health.status();
  }

  bool CoordinatorLogHas(const std::string& text) {
    return testing::WaitUntil(
        [&] {
          return testing::ReadFileOrEmpty(dir_->Child("coordinator.log")).find(text) !=
                 std::string::npos;
        },
        kWaitMs);
  }

  std::unique_ptr<TestCa> ca_;
  std::map<std::string, TestCa::Issued> certs_;
  int coordinator_port_ = 0;
  std::string coordinator_;
  std::unique_ptr<ChildProcess> coordinator_proc_;
};

TEST_F(TlsProcessTest, TwoPhaseCommitOverMutualTls) {
  SetUpBankDatabases("txc-tls-2pc-");
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  ASSERT_NO_FATAL_FAILURE(StartTlsBanks());
  auto client = Client(ClientTls(certs_["client"]));
  ASSERT_TRUE(client);
  const std::string gtid = BeginTransfer(client.get(), client.get(), 0, 100);
  ASSERT_FALSE(gtid.empty());
  auto r = Commit(client.get(), gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_COMMIT);
  EXPECT_EQ(r->state, wire::TxnState::COMMITTED);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 100);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 100);

  // Concurrent transfers, every connection (client->coordinator,
  // coordinator->banks, banks->coordinator for recovery) over mutual TLS.
  bank::TransferOptions o;
  o.coordinators = {coordinator_};
  o.bank_a = bank_a_;
  o.bank_b = bank_b_;
  o.accounts = kAccounts;
  o.transfers = 60;
  o.clients = 4;
  o.tls = ClientTls(certs_["client"]);
  auto stats = bank::RunTransfers(o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->failed, 0) << stats->first_error;
  EXPECT_GT(stats->committed, 0);
  ExpectSettledAndConserved();
}

// A participant serving mutual TLS refuses a coordinator that calls it in
// plaintext: prepare fails, the transaction aborts, no money moves.
TEST_F(TlsProcessTest, TlsParticipantRefusesAPlaintextCoordinator) {
  SetUpBankDatabases("txc-tls-2pc-plain-");
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator(/*participant_tls=*/false));
  ASSERT_NO_FATAL_FAILURE(StartTlsBanks());
  auto client = Client(ClientTls(certs_["client"]));
  ASSERT_TRUE(client);
  const std::string gtid = BeginTransfer(client.get(), client.get(), 0, 100);
  ASSERT_FALSE(gtid.empty());
  auto r = Commit(client.get(), gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_ABORT);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance);
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return bank_a_proc_->LogTail(100000).find("this port is plaintext") != std::string::npos ||
               bank_a_proc_->LogTail(100000).find("does not speak TLS") != std::string::npos;
      },
      kWaitMs))
      << bank_a_proc_->LogTail(3000);
}

TEST_F(TlsProcessTest, ClientCertificateFromAnotherCaIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  auto other = TestCa::Create("unrelated-ca");
  ASSERT_TRUE(other.ok()) << other.status();
  auto foreign = (*other)->Issue("intruder", "order-service");
  ASSERT_TRUE(foreign.ok());
  TlsOptions tls = (*other)->Options(*foreign);
  tls.ca_file = ca_->ca_file();  // it trusts the coordinator; the coordinator does not trust it
  ExpectRefused(tls, "unknown ca");
  ExpectGoodClientServed();
  EXPECT_TRUE(CoordinatorLogHas("certificate verify failed"));
}

TEST_F(TlsProcessTest, ExpiredClientCertificateIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  auto expired = ca_->Issue("expired", "order-service", {}, /*expired=*/true);
  ASSERT_TRUE(expired.ok());
  ExpectRefused(ClientTls(*expired), "certificate expired");
  ExpectGoodClientServed();
}

TEST_F(TlsProcessTest, ClientWithoutCertificateIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  TlsOptions no_cert;
  no_cert.ca_file = ca_->ca_file();
  ExpectRefused(no_cert, "certificate required");
  ExpectGoodClientServed();
}

TEST_F(TlsProcessTest, PlaintextClientIsRefusedWhileTlsClientsAreServed) {
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  auto good = Client(ClientTls(certs_["client"]));
  ASSERT_TRUE(good);
  ASSERT_TRUE(good->Health().ok());  // a pooled TLS connection, open across the refusals
  for (int i = 0; i < 3; ++i) ExpectRefused(TlsOptions{}, "TLS");
  EXPECT_TRUE(CoordinatorLogHas("plaintext client on a TLS port"));
  auto again = good->Health();
  EXPECT_TRUE(again.ok()) << again.status();
  ExpectGoodClientServed();
}

// SIGHUP re-reads the certificate files: new connections get the new
// certificate (here from a new CA, so only a client trusting it gets through).
TEST_F(TlsProcessTest, SighupRotatesTheCoordinatorCertificate) {
  namespace fs = std::filesystem;
  // The coordinator reads copies that the test then overwrites.
  const std::string live_cert = ca_->dir() + "/live.pem";
  const std::string live_key = ca_->dir() + "/live.key";
  fs::copy_file(certs_["coordinator"].cert_file, live_cert);
  fs::copy_file(certs_["coordinator"].key_file, live_key);
  certs_["coordinator"] = TestCa::Issued{live_cert, live_key};
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator(/*participant_tls=*/false));

  auto next_ca = TestCa::Create("next-ca");
  ASSERT_TRUE(next_ca.ok());
  auto next = (*next_ca)->IssueLoopbackServer("coordinator", "coordinator-next");
  ASSERT_TRUE(next.ok());
  TlsOptions trusts_next = ClientTls(certs_["client"]);  // still a client cert of the old CA
  trusts_next.ca_file = (*next_ca)->ca_file();
  ExpectRefused(trusts_next, "certificate verify failed");

  fs::copy_file(next->cert_file, live_cert, fs::copy_options::overwrite_existing);
  fs::copy_file(next->key_file, live_key, fs::copy_options::overwrite_existing);
  ASSERT_TRUE(coordinator_proc_->Kill(SIGHUP).ok());
  ASSERT_TRUE(CoordinatorLogHas("TLS files reloaded"));
  auto client = Client(trusts_next);
  ASSERT_TRUE(client);
  auto health = client->Health();
  EXPECT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(coordinator_proc_->IsRunning());
}

// Revocation: the coordinator checks client certificates against --tls_crl
// on every handshake; SIGHUP re-reads the CRL, and a certificate revoked
// since is refused on its next connection while good clients are served.
TEST_F(TlsProcessTest, RevokedClientCertificateIsRefusedAndSighupReadsANewCrl) {
  auto revoked = ca_->Issue("revoked", "order-service");
  auto later = ca_->Issue("later", "payment-service");
  ASSERT_TRUE(revoked.ok() && later.ok());
  ASSERT_TRUE(ca_->Revoke(*revoked).ok());
  // The coordinator reads a file the test then replaces (written aside, renamed).
  const std::string crl = ca_->dir() + "/live-crl.pem";
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  dir_ = std::make_unique<testing::TempDir>("txc-tls-crl-");
  coordinator_port_ = testing::FreeLoopbackPort();
  coordinator_ = "127.0.0.1:" + std::to_string(coordinator_port_);
  std::vector<std::string> flags = TlsFlags(*ca_, certs_["coordinator"]);
  flags.push_back("--tls_crl=" + crl);
  flags.push_back("--node_id=coordinator-crl");
  ASSERT_NO_FATAL_FAILURE(
      StartCoordinatorProcess(coordinator_port_, "coordinator", flags, {}, &coordinator_proc_));

  ExpectRefused(ClientTls(*revoked), "certificate revoked");
  ExpectGoodClientServed();
  EXPECT_TRUE(CoordinatorLogHas("certificate revoked"));
  auto later_client = Client(ClientTls(*later));
  ASSERT_TRUE(later_client);
  auto health = later_client->Health();
  ASSERT_TRUE(health.ok()) << health.status();

  ASSERT_TRUE(ca_->Revoke(*later).ok());
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  ASSERT_TRUE(coordinator_proc_->Kill(SIGHUP).ok());
  ASSERT_TRUE(CoordinatorLogHas("TLS files reloaded"));
  ExpectRefused(ClientTls(*later), "certificate revoked");
  ExpectRefused(ClientTls(*revoked), "certificate revoked");
  ExpectGoodClientServed();
  EXPECT_TRUE(coordinator_proc_->IsRunning());
}

// ---- Saga -----------------------------------------------------------------------

constexpr char kInventorySeed[] = "widget:1000:100,gadget:3:500";
constexpr char kPaymentSeed[] = "rich:100000000,poor:50";

TEST_F(TlsProcessTest, SagaOverMutualTls) {
  dir_ = std::make_unique<testing::TempDir>("txc-tls-saga-");
  shop::ShopEndpoints ep;
  ep.order_db = dir_->Child("order.db");
  ep.payment_db = dir_->Child("payment.db");
  ep.inventory_db = dir_->Child("inventory.db");
  ASSERT_NO_FATAL_FAILURE(StartTlsCoordinator());
  ep.coordinator = coordinator_;
  testing::ShopProcesses shop(dir_.get(), &ep, kInventorySeed, kPaymentSeed,
                              /*suite_tls=*/false);
  for (const char* name : {"order", "payment", "inventory"}) {
    auto cert = ca_->IssueLoopbackServer(std::string(name) + "-service");
    ASSERT_TRUE(cert.ok()) << cert.status();
    ASSERT_NO_FATAL_FAILURE(shop.Start(name, TlsFlags(*ca_, *cert)));
  }
  ep.tls = ClientTls(certs_["client"]);
  shop::PlaceOptions options;
  options.orders = 20;
  options.concurrency = 4;
  options.id_prefix = "tls-order";
  options.finish_timeout_ms = 60000;
  auto results = shop::PlaceOrders(ep, options);
  ASSERT_TRUE(results.ok()) << results.status();
  int succeeded = 0;
  for (const auto& r : *results) {
    EXPECT_TRUE(r.saga_state == "SUCCEEDED" || r.saga_state == "COMPENSATED")
        << r.order.id << ": " << r.saga_state << "\n"
        << shop.LogTails(2000);
    if (r.saga_state == "SUCCEEDED") ++succeeded;
  }
  EXPECT_GT(succeeded, 0);
  auto report = shop::CheckInvariant(ep, *results);
  EXPECT_TRUE(report.ok) << report.Summary();

  // A declined payment compensates over TLS too.
  shop::Order declined{"tls-declined", "poor", "widget", 2, 200};
  auto r = shop::PlaceOne(ep, declined, options);
  EXPECT_EQ(r.saga_state, "COMPENSATED") << shop.LogTails(2000);
  report = shop::CheckInvariant(ep, {r});
  EXPECT_TRUE(report.ok) << report.Summary();
}

}  // namespace
}  // namespace txc
