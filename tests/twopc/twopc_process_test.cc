// Two-phase commit end to end: a real PostgreSQL (the harness's shared
// cluster), a real `coordinator` process (SQLite store in a temp dir) and two
// real `bank` processes (participant SDK + PgXaResource on their own
// databases). Faults are real: SIGKILL, crash points, unreachable ports.
//
// Invariants checked: no mixed outcome (money is conserved across both banks,
// every prepared branch gets resolved), presumed abort, typed errors on bad
// input with nothing changed. Every wait has a deadline.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/twopc/bank_process_test.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;

class TwoPcProcessTest : public testing::BankProcessTest {
 protected:
  void SetUp() override {
    SetUpBankDatabases("txc-twopc-");
    coordinator_port_ = testing::FreeLoopbackPort();
    coordinator_ = "127.0.0.1:" + std::to_string(coordinator_port_);
    bank_coordinators_ = coordinator_;
    ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
    ASSERT_NO_FATAL_FAILURE(StartBank('a'));
    ASSERT_NO_FATAL_FAILURE(StartBank('b'));
    client_ = MakeClient({coordinator_}, /*rpc_timeout_ms=*/10000, /*call_deadline_ms=*/20000);
    ASSERT_TRUE(client_);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_proc_) LOG(ERROR) << "coordinator log:\n" << coordinator_proc_->LogTail();
      if (bank_a_proc_) LOG(ERROR) << "bank a log:\n" << bank_a_proc_->LogTail(2000);
      if (bank_b_proc_) LOG(ERROR) << "bank b log:\n" << bank_b_proc_->LogTail(2000);
    }
    client_.reset();
    bank_a_proc_.reset();
    bank_b_proc_.reset();
    coordinator_proc_.reset();
  }

  void StartCoordinator(const std::string& crash_points) {
    std::vector<std::pair<std::string, std::string>> env;
    if (!crash_points.empty()) env = {{"TXC_CRASH_POINTS", crash_points}};
    StartCoordinatorProcess(coordinator_port_, "coordinator",
                            {"--node_id=coordinator-1", "--lease_ttl_ms=3000"}, std::move(env),
                            &coordinator_proc_);
  }

  // Kills the coordinator if it still runs and waits for it to end; returns its exit.
  testing::ExitStatus EndCoordinator(int signal = SIGKILL) {
    if (coordinator_proc_->IsRunning()) {
      EXPECT_TRUE(coordinator_proc_->Kill(signal).ok());
    }
    auto exit = coordinator_proc_->Wait(kWaitMs);
    EXPECT_TRUE(exit.ok()) << exit.status();
    return exit.ok() ? *exit : testing::ExitStatus{};
  }

  // begin + enlist(debit at A, credit at B) on account 0 through client_; returns the gtid.
  std::string BeginTransfer(int64_t amount, const std::string& debit_at = "",
                            int64_t timeout_ms = 60000) {
    return BankProcessTest::BeginTransfer(client_.get(), client_.get(), 0, amount, timeout_ms,
                                          debit_at);
  }

  Result<wire::CommitResponse> Commit(const std::string& gtid, bool completion = true) {
    return BankProcessTest::Commit(client_.get(), gtid, completion);
  }

  int coordinator_port_ = 0;
  std::string coordinator_;
  std::unique_ptr<ChildProcess> coordinator_proc_;
  std::unique_ptr<participant::CoordinatorClient> client_;
};

TEST_F(TwoPcProcessTest, HappyPathMovesMoney) {
  const std::string gtid = BeginTransfer(100);
  auto r = Commit(gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_COMMIT);
  EXPECT_EQ(r->state, wire::TxnState::COMMITTED);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 100);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 100);
  auto outcome = client_->QueryOutcome(gtid, "debit");
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, participant::Outcome::kCommit);

  // Many concurrent transfers: money conserved.
  bank::TransferOptions o;
  o.coordinators = {coordinator_};
  o.bank_a = bank_a_;
  o.bank_b = bank_b_;
  o.accounts = kAccounts;
  o.transfers = 60;
  o.clients = 4;
  o.tls = testing::SuiteTls::Get().ClientTls();
  auto stats = bank::RunTransfers(o);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->failed, 0) << stats->first_error;
  EXPECT_GT(stats->committed, 0);
  ExpectSettledAndConserved();
}

TEST_F(TwoPcProcessTest, AbortVoteAbortsEveryBranch) {
  const std::string gtid = BeginTransfer(kInitialBalance + 1);  // insufficient funds at A
  auto r = Commit(gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_ABORT);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance);
  auto status = client_->GetStatus(gtid);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, wire::TxnState::ABORTED);
}

TEST_F(TwoPcProcessTest, UnreachableParticipantAtPrepareAborts) {
  const std::string dead = "127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  wire::BeginRequest req;
  auto begun = client_->Begin(req);
  ASSERT_TRUE(begun.ok());
  wire::EnlistRequest e;
  e.gtid = begun->gtid;
  e.branch = Branch("credit", bank_b_, bank::CreditPayload(1, 10));
  ASSERT_TRUE(client_->Enlist(e).ok());
  e.branch = Branch("debit", dead, bank::DebitPayload(1, 10));
  ASSERT_TRUE(client_->Enlist(e).ok());
  auto r = Commit(begun->gtid, /*completion=*/false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_ABORT);
  EXPECT_TRUE(testing::WaitUntil([&] { return Prepared(db_b_) == 0; }, kWaitMs));
  EXPECT_EQ(Balance(db_b_, 1), kInitialBalance);
}

TEST_F(TwoPcProcessTest, BadInputGetsTypedErrorsAndChangesNothing) {
  auto unknown = client_->QueryOutcome("no-such-transaction", "b");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(*unknown, participant::Outcome::kAbort);
  EXPECT_EQ(Commit("no-such-transaction").status().code(), StatusCode::kNotFound);

  const std::string rolled = BeginTransfer(5);
  auto rb = client_->Rollback(rolled);
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(Commit(rolled).status().code(), StatusCode::kIllegalTransition);

  const std::string committed = BeginTransfer(7);
  ASSERT_TRUE(Commit(committed).ok());
  EXPECT_EQ(client_->Rollback(committed).status().code(), StatusCode::kIllegalTransition);
  wire::EnlistRequest late;
  late.gtid = committed;
  late.branch = Branch("late", bank_a_, bank::DebitPayload(2, 1));
  EXPECT_EQ(client_->Enlist(late).code(), StatusCode::kIllegalTransition);

  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 7);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 7);
  EXPECT_EQ(Balance(db_a_, 2), kInitialBalance);
  auto status = client_->GetStatus(rolled);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, wire::TxnState::ABORTED);
}

// The coordinator dies right after logging COMMIT; bank B is SIGKILLed while
// holding its prepared branch. Both restart: the branch commits (the
// coordinator's decision), and nothing stays prepared.
TEST_F(TwoPcProcessTest, ParticipantKilledAfterPrepareResolvesToDecision) {
  EndCoordinator();
  ASSERT_NO_FATAL_FAILURE(StartCoordinator("2pc.after_decision_logged"));
  const std::string gtid = BeginTransfer(40);
  auto r = Commit(gtid, false);
  EXPECT_FALSE(r.ok());  // the coordinator crashed before answering
  EXPECT_EQ(EndCoordinator().exit_code, kCrashExitCode);
  EXPECT_EQ(Prepared(db_a_), 1);
  EXPECT_EQ(Prepared(db_b_), 1);
  ASSERT_TRUE(bank_b_proc_->Kill(SIGKILL).ok());
  ASSERT_TRUE(bank_b_proc_->Wait(kWaitMs).ok());
  EXPECT_EQ(Prepared(db_b_), 1);  // PostgreSQL keeps it across the participant's death

  ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
  ASSERT_NO_FATAL_FAILURE(StartBank('b'));
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 40);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 40);
  auto outcome = client_->QueryOutcome(gtid, "credit");
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, participant::Outcome::kCommit);
}

// The coordinator dies right after logging ABORTING for a rollback, before
// any abort is sent: on restart the abort finishes, the rollback's retry and
// status agree, and a commit is refused.
TEST_F(TwoPcProcessTest, CrashAfterAbortLoggedFinishesTheAbortOnRestart) {
  EndCoordinator();
  ASSERT_NO_FATAL_FAILURE(StartCoordinator("2pc.after_abort_logged"));
  const std::string gtid = BeginTransfer(11);
  EXPECT_FALSE(client_->Rollback(gtid).ok());  // crashed before answering
  EXPECT_EQ(EndCoordinator().exit_code, kCrashExitCode);

  ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto s = client_->GetStatus(gtid);
        return s.ok() && s->state == wire::TxnState::ABORTED;
      },
      kWaitMs));
  auto again = client_->Rollback(gtid);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(Commit(gtid).status().code(), StatusCode::kIllegalTransition);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance);
}

// SIGTERM while a commit waits for its decision: the coordinator stops taking
// connections but answers the commit once the decision is logged, then exits
// 0; after a restart the transfer settles.
TEST_F(TwoPcProcessTest, SigtermAnswersTheCommitWaitingForItsDecision) {
  const std::string gtid = BeginTransfer(13);
  ASSERT_TRUE(bank_b_proc_->Kill(SIGSTOP).ok());  // B's vote waits
  Result<wire::CommitResponse> committed = Status::Internal("not answered");
  std::thread committer([&] { committed = Commit(gtid, /*completion=*/false); });
  // On every way out (a failed ASSERT included): B runs again, the commit ends.
  struct Finally {
    std::function<void()> run;
    ~Finally() { run(); }
  } resume{[&] {
    bank_b_proc_->Kill(SIGCONT).IgnoreError();
    if (committer.joinable()) committer.join();
  }};
  // A voted (its branch is prepared in PostgreSQL): the commit is in flight.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        pqxx::connection conn(db_a_);
        pqxx::nontransaction n(conn);
        return !n.exec("SELECT 1 FROM pg_prepared_xacts WHERE database = current_database()")
                    .empty();
      },
      kWaitMs));
  ASSERT_TRUE(coordinator_proc_->Kill(SIGTERM).ok());
  // Stopping: the listener is closed, the commit's connection is kept.
  ASSERT_TRUE(testing::WaitUntil([&] { return !testing::WaitForPort(coordinator_port_, 50).ok(); },
                                 kWaitMs));
  ASSERT_TRUE(bank_b_proc_->Kill(SIGCONT).ok());
  committer.join();
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->outcome, wire::Outcome::OUTCOME_COMMIT);
  auto exit = coordinator_proc_->Wait(kWaitMs);  // the SIGTERM above ends it
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_TRUE(exit->exited_ok()) << exit->ToString();

  ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 13);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 13);
}

// Bank B is down during phase 2: the commit completes once it is back.
TEST_F(TwoPcProcessTest, ParticipantDownDuringPhaseTwoCompletesLater) {
  EndCoordinator();
  ASSERT_NO_FATAL_FAILURE(StartCoordinator("2pc.after_decision_logged"));
  const std::string gtid = BeginTransfer(25);
  EXPECT_FALSE(Commit(gtid, false).ok());
  EXPECT_EQ(EndCoordinator().exit_code, kCrashExitCode);
  ASSERT_TRUE(bank_b_proc_->Kill(SIGKILL).ok());
  ASSERT_TRUE(bank_b_proc_->Wait(kWaitMs).ok());

  ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
  // Phase 2 reaches bank A; bank B stays prepared while it is down.
  EXPECT_TRUE(testing::WaitUntil([&] { return Prepared(db_a_) == 0; }, kWaitMs));
  EXPECT_EQ(Prepared(db_b_), 1);
  auto status = client_->GetStatus(gtid);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, wire::TxnState::COMMITTING);

  ASSERT_NO_FATAL_FAILURE(StartBank('b'));
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 25);
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto s = client_->GetStatus(gtid);
        return s.ok() && s->state == wire::TxnState::COMMITTED;
      },
      kWaitMs));
}

// The coordinator crashes at each named crash point under concurrent
// transfers, and is restarted: every transaction reaches one outcome and the
// money total holds.
class TwoPcCrashPointTest : public TwoPcProcessTest,
                            public ::testing::WithParamInterface<const char*> {};

TEST_P(TwoPcCrashPointTest, EveryTransactionReachesOneOutcome) {
  EndCoordinator();
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(GetParam()));
  bank::TransferOptions o;
  o.coordinators = {coordinator_};
  o.bank_a = bank_a_;
  o.bank_b = bank_b_;
  o.accounts = kAccounts;
  o.transfers = 9;
  o.clients = 3;
  o.rpc_timeout_ms = 1000;
  o.txn_timeout_ms = 5000;
  o.tls = testing::SuiteTls::Get().ClientTls();
  auto stats = bank::RunTransfers(o);  // runs until the crash, then fails fast
  ASSERT_TRUE(stats.ok()) << stats.status();
  auto exit = EndCoordinator();
  EXPECT_EQ(exit.exit_code, kCrashExitCode) << exit.ToString();
  EXPECT_GT(stats->failed, 0);

  ASSERT_NO_FATAL_FAILURE(StartCoordinator(""));
  ExpectSettledAndConserved();

  // And it still works afterwards.
  const std::string gtid = BeginTransfer(3);
  auto r = Commit(gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  ExpectSettledAndConserved();
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, TwoPcCrashPointTest,
                         ::testing::Values("2pc.after_preparing_logged", "2pc.after_prepare_sent",
                                           "2pc.after_decision_logged", "2pc.mid_phase2",
                                           "2pc.before_final_state"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '.' || c == '-') c = '_';
                           }
                           return name;
                         });

// Replica takeover (ARCHITECTURE.md "Replicas and recovery", invariant 4):
// two coordinator replicas A and B share one PostgreSQL store. A commits some
// transfers, leaves one transaction ACTIVE and crashes right after logging a
// COMMIT decision; it is not restarted. Once A's lease expires, B's sweeper
// claims A's unfinished transactions under B's own (node, epoch) and finishes
// them: the decided one COMMITTED on both banks, the undecided one ABORTED,
// money conserved, nothing left prepared, A's lease epoch untouched.
class TwoPcReplicaTakeoverTest : public TwoPcProcessTest {
 protected:
  static constexpr const char* kNodeA = "replica-a";
  static constexpr const char* kNodeB = "replica-b";

  void SetUp() override {
    SetUpBankDatabases("txc-replica-");
    store_db_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("coord_store"));
    replica_a_port_ = testing::FreeLoopbackPort();
    replica_b_port_ = testing::FreeLoopbackPort();
    replica_a_ = "127.0.0.1:" + std::to_string(replica_a_port_);
    replica_b_ = "127.0.0.1:" + std::to_string(replica_b_port_);
    // The banks know both replicas.
    bank_coordinators_ = replica_a_ + "," + replica_b_;
    // A first: it applies the store's migrations before B opens the store.
    ASSERT_NO_FATAL_FAILURE(
        StartReplica(kNodeA, replica_a_port_, "2pc.after_decision_logged", &replica_a_proc_));
    ASSERT_NO_FATAL_FAILURE(StartReplica(kNodeB, replica_b_port_, "", &replica_b_proc_));
    ASSERT_NO_FATAL_FAILURE(StartBank('a'));
    ASSERT_NO_FATAL_FAILURE(StartBank('b'));
    // BeginTransfer / Commit go through A only
    client_ = MakeClient({replica_a_}, /*rpc_timeout_ms=*/5000, /*call_deadline_ms=*/5000);
    client_b_ = MakeClient({replica_b_}, /*rpc_timeout_ms=*/5000, /*call_deadline_ms=*/5000);
    ASSERT_TRUE(client_ && client_b_);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (replica_a_proc_) LOG(ERROR) << "replica A log:\n" << replica_a_proc_->LogTail();
      if (replica_b_proc_) LOG(ERROR) << "replica B log:\n" << replica_b_proc_->LogTail();
    }
    client_b_.reset();
    TwoPcProcessTest::TearDown();  // client and banks
    replica_a_proc_.reset();
    replica_b_proc_.reset();
  }

  void StartReplica(const std::string& node_id, int port, const std::string& crash_points,
                    std::unique_ptr<ChildProcess>* out) {
    std::vector<std::string> flags = {"--store=" + store_db_, "--node_id=" + node_id,
                                      "--lease_ttl_ms=1500"};
    if (!crash_points.empty()) flags.push_back("--crash_points=" + crash_points);
    StartCoordinatorProcess(port, node_id, flags, {}, out);
  }

  // begin + enlist(debit at bank A, credit at bank B) of `amount` on `account`, through A.
  std::string BeginTransferOn(int account, int64_t amount, int64_t timeout_ms) {
    return BankProcessTest::BeginTransfer(client_.get(), client_.get(), account, amount,
                                          timeout_ms);
  }

  // The lease row of node_id in the shared store: {epoch, expires_ms}; {-1, -1} when absent.
  std::pair<int64_t, int64_t> LeaseRow(const std::string& node_id) {
    return BankProcessTest::LeaseRow(store_db_, node_id);
  }

  std::string store_db_;
  int replica_a_port_ = 0, replica_b_port_ = 0;
  std::string replica_a_, replica_b_;
  std::unique_ptr<ChildProcess> replica_a_proc_, replica_b_proc_;
  std::unique_ptr<participant::CoordinatorClient> client_b_;
};

TEST_F(TwoPcReplicaTakeoverTest, SurvivorFinishesCrashedReplicasTransactions) {
  auto health_a = client_->HealthOf(replica_a_);
  ASSERT_TRUE(health_a.ok()) << health_a.status();
  EXPECT_EQ(health_a->node_id, kNodeA);
  EXPECT_EQ(health_a->store, "postgresql");
  auto health_b = client_b_->HealthOf(replica_b_);
  ASSERT_TRUE(health_b.ok()) << health_b.status();
  EXPECT_EQ(health_b->node_id, kNodeB);
  const int64_t epoch_a = health_a->epoch;
  const int64_t epoch_b = health_b->epoch;
  EXPECT_EQ(LeaseRow(kNodeA).first, epoch_a);
  EXPECT_EQ(LeaseRow(kNodeB).first, epoch_b);

  // Every multi-branch commit on A passes the armed crash point, so A's
  // transfers are left in flight: begun and enlisted, never committed (short
  // timeout, each on its own account), and one committed that makes A exit at
  // `2pc.after_decision_logged`, i.e. with its COMMIT decision logged.
  std::vector<std::string> undecided;
  for (int account : {1, 2, 3}) {
    const std::string gtid = BeginTransferOn(account, 7, /*timeout_ms=*/6000);
    ASSERT_FALSE(gtid.empty());
    undecided.push_back(gtid);
  }
  const std::string decided = BeginTransferOn(0, 40, /*timeout_ms=*/60000);
  ASSERT_FALSE(decided.empty());
  EXPECT_FALSE(Commit(decided, /*completion=*/false).ok());
  auto exit = replica_a_proc_->Wait(kWaitMs);
  ASSERT_TRUE(exit.ok()) << exit.status();
  ASSERT_EQ(exit->exit_code, kCrashExitCode) << exit->ToString();
  for (const std::string& gtid : undecided) {
    auto s = client_b_->GetStatus(gtid);  // B reads A's records from the shared store
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_TRUE(s->state == wire::TxnState::ACTIVE || s->state == wire::TxnState::ABORTED)
        << gtid << " " << s->state;
  }

  // B takes over all of them once A's lease has expired, and finishes them.
  auto final_on_b = [&](const std::string& gtid, wire::TxnState::type want) {
    auto s = client_b_->GetStatus(gtid);
    return s.ok() && s->state == want && s->owner == kNodeB;
  };
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        if (!final_on_b(decided, wire::TxnState::COMMITTED)) return false;
        for (const std::string& gtid : undecided) {
          if (!final_on_b(gtid, wire::TxnState::ABORTED)) return false;
        }
        return true;
      },
      kWaitMs));
  std::vector<std::string> all = undecided;
  all.push_back(decided);
  for (const std::string& gtid : all) {
    auto s = client_b_->GetStatus(gtid);
    ASSERT_TRUE(s.ok()) << gtid << ": " << s.status();
    EXPECT_EQ(s->owner, kNodeB) << gtid;
    EXPECT_EQ(s->epoch, epoch_b) << gtid;  // written under B's lease, not A's
  }
  EXPECT_EQ(client_b_->GetStatus(decided)->state, wire::TxnState::COMMITTED);
  for (const std::string& gtid : undecided) {
    EXPECT_EQ(client_b_->GetStatus(gtid)->state, wire::TxnState::ABORTED) << gtid;
  }

  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 40);  // committed on both banks
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 40);
  for (int account : {1, 2, 3}) {  // aborted on both banks
    EXPECT_EQ(Balance(db_a_, account), kInitialBalance) << account;
    EXPECT_EQ(Balance(db_b_, account), kInitialBalance) << account;
  }
  auto outcome = client_b_->QueryOutcome(decided, "credit");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, participant::Outcome::kCommit);
  outcome = client_b_->QueryOutcome(undecided[0], "debit");
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_EQ(*outcome, participant::Outcome::kAbort);

  // Fencing: B claimed without touching A's lease (A's epoch is neither bumped
  // nor handed to B), A's lease lapsed, B's stays live under its own epoch, and
  // B's health lists B but no longer A.
  const auto lease_a = LeaseRow(kNodeA);
  EXPECT_EQ(lease_a.first, epoch_a);
  EXPECT_LT(lease_a.second, NowUnixMs());
  EXPECT_EQ(LeaseRow(kNodeB).first, epoch_b);
  EXPECT_GT(LeaseRow(kNodeB).second, NowUnixMs());
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto h = client_b_->HealthOf(replica_b_);
        if (!h.ok() || h->node_id != kNodeB || h->epoch != epoch_b) return false;
        const auto& rs = h->replicas;
        return std::find(rs.begin(), rs.end(), replica_b_) != rs.end() &&
               std::find(rs.begin(), rs.end(), replica_a_) == rs.end();
      },
      kWaitMs));
  EXPECT_TRUE(replica_b_proc_->IsRunning());
}

}  // namespace
}  // namespace txc
