// The fixture the 2PC process tests share: two real `bank` processes
// (participant SDK + PgXaResource, each on its own database of the harness's
// shared PostgreSQL), real `coordinator` processes, coordinator clients, and
// the checks on the banks' databases (balances, prepared branches, money
// conserved). Header-only: the including test defines TXC_COORDINATOR_BIN and
// TXC_BANK_BIN and links bank_transfer_workload and txc_test_harness.
//
// Transport: the suite's (tests/harness/suite_tls.h): plaintext, or mutual TLS
// for every coordinator, bank and client under TXC_TEST_TLS=1. A test that
// brings its own certificates sets suite_tls_ = false.
//
// Called from the test's main thread only (children are killed with the
// thread that started them). Every wait has a deadline (kWaitMs,
// start_timeout_ms_).
#ifndef TXC_TESTS_TWOPC_BANK_PROCESS_TEST_H_
#define TXC_TESTS_TWOPC_BANK_PROCESS_TEST_H_

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <utility>
#include <vector>

#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "txc/participant/coordinator_client.h"

#ifndef TXC_COORDINATOR_BIN
#error "TXC_COORDINATOR_BIN must name the coordinator binary"
#endif
#ifndef TXC_BANK_BIN
#error "TXC_BANK_BIN must name the bank binary"
#endif

namespace txc {
namespace testing {

class BankProcessTest : public ::testing::Test {
 protected:
  static constexpr int kAccounts = 10;
  static constexpr int64_t kInitialBalance = 1000;
  static constexpr int64_t kBankTotal = kAccounts * kInitialBalance;
  static constexpr int64_t kWaitMs = 30000;

  // The shared PostgreSQL, a temp dir named `dir_prefix`..., the two banks'
  // databases and free ports; starts nothing.
  void SetUpBankDatabases(const std::string& dir_prefix) {
    pg_ = SharedPgCluster();
    dir_ = std::make_unique<TempDir>(dir_prefix);
    db_a_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("bank_a"));
    db_b_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("bank_b"));
    bank_a_port_ = FreeLoopbackPort();
    bank_b_port_ = FreeLoopbackPort();
    bank_a_ = "127.0.0.1:" + std::to_string(bank_a_port_);
    bank_b_ = "127.0.0.1:" + std::to_string(bank_b_port_);
  }

  // Starts a coordinator on `port` with its data dir and log named `name`
  // under dir_: the flags every test gives it, then `flags`; `env` is added to
  // its environment. Fails (fatally) unless it serves within start_timeout_ms_.
  void StartCoordinatorProcess(int port, const std::string& name,
                               const std::vector<std::string>& flags,
                               std::vector<std::pair<std::string, std::string>> env,
                               std::unique_ptr<ChildProcess>* out) {
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(port),
              "--data_dir=" + dir_->Child(name),
              "--prepare_timeout_ms=2000",
              "--sweep_interval_ms=100",
              "--verbose=1"};
    if (suite_tls_) SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    o.argv.insert(o.argv.end(), flags.begin(), flags.end());
    o.env = std::move(env);
    o.log_path = dir_->Child(name + ".log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    *out = std::move(child).value();
    ASSERT_TRUE(WaitServing(out->get(), port, start_timeout_ms_)) << (*out)->LogTail();
  }

  // Starts bank 'a' or 'b' on its port, knowing the coordinators in
  // bank_coordinators_ (comma-separated).
  void StartBank(char which) {
    ChildProcess::Options o;
    const int port = which == 'a' ? bank_a_port_ : bank_b_port_;
    o.argv = {TXC_BANK_BIN,
              "--port=" + std::to_string(port),
              "--db=" + (which == 'a' ? db_a_ : db_b_),
              "--coordinators=" + bank_coordinators_,
              std::string("--name=bank_") + which,
              "--accounts=" + std::to_string(bank_accounts_),
              "--initial_balance=" + std::to_string(bank_initial_balance_)};
    if (suite_tls_) SuiteTls::Get().AppendServiceFlags(&o.argv);
    o.argv.insert(o.argv.end(), bank_extra_flags_.begin(), bank_extra_flags_.end());
    o.log_path = dir_->Child(std::string("bank_") + which + ".log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    auto& proc = which == 'a' ? bank_a_proc_ : bank_b_proc_;
    proc = std::move(child).value();
    ASSERT_TRUE(WaitServing(proc.get(), port, start_timeout_ms_));
  }

  // Waits until the child accepts connections on port; false when it died
  // first or timeout_ms passed.
  static bool WaitServing(ChildProcess* child, int port, int64_t timeout_ms = kWaitMs) {
    WaitUntil([&] { return !child->IsRunning() || WaitForPort(port, 100).ok(); }, timeout_ms);
    return child->IsRunning() && WaitForPort(port, 100).ok();
  }

  // A client that knows `endpoints` (comma-separated endpoints are not split),
  // over the suite's transport.
  static std::unique_ptr<participant::CoordinatorClient> MakeClient(
      std::vector<std::string> endpoints, int64_t rpc_timeout_ms, int64_t call_deadline_ms) {
    participant::CoordinatorClientOptions co;
    co.endpoints = std::move(endpoints);
    co.rpc_timeout_ms = rpc_timeout_ms;
    co.call_deadline_ms = call_deadline_ms;
    co.tls = SuiteTls::Get().ClientTls();
    auto client = participant::CoordinatorClient::Create(co);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  static wire::BranchSpec Branch(const std::string& id, const std::string& endpoint,
                                 const std::string& payload) {
    wire::BranchSpec b;
    b.branch_id = id;
    b.endpoint = endpoint;
    b.resource = "bank";
    b.payload = payload;
    return b;
  }

  // begin at `begin_at`, then enlist (debit at `debit_at`, bank A when empty;
  // credit at bank B) of `amount` on `account` through `enlist_at`; returns
  // the gtid, empty when begin failed.
  std::string BeginTransfer(participant::CoordinatorClient* begin_at,
                            participant::CoordinatorClient* enlist_at, int account, int64_t amount,
                            int64_t timeout_ms = 60000, const std::string& debit_at = "") {
    wire::BeginRequest req;
    req.timeout_ms = timeout_ms;
    auto begun = begin_at->Begin(req);
    EXPECT_TRUE(begun.ok()) << begun.status();
    if (!begun.ok()) return "";
    wire::EnlistRequest e;
    e.gtid = begun->gtid;
    e.branch =
        Branch("debit", debit_at.empty() ? bank_a_ : debit_at, bank::DebitPayload(account, amount));
    Status s = enlist_at->Enlist(e);
    EXPECT_TRUE(s.ok()) << s;
    e.branch = Branch("credit", bank_b_, bank::CreditPayload(account, amount));
    s = enlist_at->Enlist(e);
    EXPECT_TRUE(s.ok()) << s;
    return begun->gtid;
  }

  static Result<wire::CommitResponse> Commit(participant::CoordinatorClient* at,
                                             const std::string& gtid, bool completion = true) {
    wire::CommitRequest c;
    c.gtid = gtid;
    c.wait = completion ? wire::CommitWait::WAIT_COMPLETION : wire::CommitWait::WAIT_DECISION;
    c.wait_timeout_ms = 10000;
    return at->Commit(c);
  }

  static int64_t Balance(const std::string& db, int account) {
    pqxx::connection conn(db);
    pqxx::nontransaction n(conn);
    return n.exec_params1("SELECT balance FROM account WHERE id = $1", account)[0].as<int64_t>();
  }

  static int64_t Prepared(const std::string& db) {
    auto n = bank::PreparedCount(db);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // Waits until neither bank holds a prepared branch, then checks the total.
  void ExpectSettledAndConserved() {
    EXPECT_TRUE(WaitUntil([&] { return Prepared(db_a_) == 0 && Prepared(db_b_) == 0; }, kWaitMs))
        << "prepared branches left: a=" << Prepared(db_a_) << " b=" << Prepared(db_b_);
    auto a = bank::TotalBalance(db_a_);
    auto b = bank::TotalBalance(db_b_);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a + *b, 2 * kBankTotal) << "a=" << *a << " b=" << *b;
  }

  // The lease row of node_id in the coordinators' PostgreSQL store `store_db`:
  // {epoch, expires_ms}; {-1, -1} when absent.
  static std::pair<int64_t, int64_t> LeaseRow(const std::string& store_db,
                                              const std::string& node_id) {
    pqxx::connection conn(store_db);
    pqxx::nontransaction n(conn);
    auto r = n.exec_params("SELECT epoch, expires_ms FROM leases WHERE node_id = $1", node_id);
    if (r.empty()) return {-1, -1};
    return {r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
  }

  PgCluster* pg_ = nullptr;
  std::unique_ptr<TempDir> dir_;
  std::string db_a_, db_b_;
  int bank_a_port_ = 0, bank_b_port_ = 0;
  std::string bank_a_, bank_b_;
  std::string bank_coordinators_;              // the banks' --coordinators
  std::vector<std::string> bank_extra_flags_;  // appended to every bank's flags
  // The banks' --accounts and --initial_balance (ExpectSettledAndConserved
  // assumes the defaults), and how long a started process may take to serve.
  int bank_accounts_ = kAccounts;
  int64_t bank_initial_balance_ = kInitialBalance;
  int64_t start_timeout_ms_ = kWaitMs;
  // Coordinators and banks get the suite's TLS flags (plaintext: none) before
  // their own; false for a test that brings its own certificates.
  bool suite_tls_ = true;
  std::unique_ptr<ChildProcess> bank_a_proc_, bank_b_proc_;
};

}  // namespace testing
}  // namespace txc

#endif  // TXC_TESTS_TWOPC_BANK_PROCESS_TEST_H_
