// Any replica answers (ARCHITECTURE invariants 6 and 7), end to end: two real
// `coordinator` processes (distinct --node_id, short --lease_ttl_ms) on one
// PostgreSQL store from the harness, two real `bank` processes, and clients
// that each know ONE replica only.
//
//   * a transaction begun at A is enlisted, committed or rolled back by a
//     client that only knows B;
//   * A finishes transactions (commit, rollback, a deadline's presumed
//     abort), then is SIGKILLed and never restarted: every commit/rollback
//     retry at B gets the decision (never NotOwner), and an ACTIVE
//     transaction A left behind is committed through B at once;
//   * commit(WAIT_COMPLETION) at one replica followed at once by status at
//     the OTHER shows the final state, with no PREPARED branch (200 commits
//     from 4 client threads). The commit latency is printed (not asserted).
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/twopc/bank_process_test.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kLeaseTtlMs = 1500;

class AnyReplicaProcessTest : public testing::BankProcessTest {
 protected:
  static constexpr const char* kNodeA = "replica-a";
  static constexpr const char* kNodeB = "replica-b";

  void SetUp() override {
    SetUpBankDatabases("txc-any-replica-");
    const std::string store_name = pg_->CreateUniqueDatabase("coord_store");
    if (store_commit_delay_us_ > 0) {
      // A slow store disk: every commit of the coordinators' sessions waits
      // this long before its WAL flush (so before it becomes visible).
      Status slowed = pg_->Execute(
          "postgres", "ALTER DATABASE " + store_name +
                          " SET commit_delay = " + std::to_string(store_commit_delay_us_) +
                          "; ALTER DATABASE " + store_name + " SET commit_siblings = 0");
      ASSERT_TRUE(slowed.ok()) << slowed;
    }
    store_db_ = pg_->ConnectionString(store_name);
    replica_a_port_ = testing::FreeLoopbackPort();
    replica_b_port_ = testing::FreeLoopbackPort();
    replica_a_ = "127.0.0.1:" + std::to_string(replica_a_port_);
    replica_b_ = "127.0.0.1:" + std::to_string(replica_b_port_);
    bank_coordinators_ = replica_a_ + "," + replica_b_;
    // A first: it applies the store's migrations before B opens the store.
    ASSERT_NO_FATAL_FAILURE(StartReplica(kNodeA, replica_a_port_, &replica_a_proc_));
    ASSERT_NO_FATAL_FAILURE(StartReplica(kNodeB, replica_b_port_, &replica_b_proc_));
    ASSERT_NO_FATAL_FAILURE(StartBank('a'));
    ASSERT_NO_FATAL_FAILURE(StartBank('b'));
    client_a_ = MakeClient(replica_a_);
    client_b_ = MakeClient(replica_b_);
    ASSERT_TRUE(client_a_ && client_b_);
  }

  void TearDown() override {
    if (HasFailure()) {
      if (replica_a_proc_) LOG(ERROR) << "replica A log:\n" << replica_a_proc_->LogTail();
      if (replica_b_proc_) LOG(ERROR) << "replica B log:\n" << replica_b_proc_->LogTail();
    }
    client_a_.reset();
    client_b_.reset();
    bank_a_proc_.reset();
    bank_b_proc_.reset();
    replica_a_proc_.reset();
    replica_b_proc_.reset();
  }

  void StartReplica(const std::string& node_id, int port, std::unique_ptr<ChildProcess>* out) {
    StartCoordinatorProcess(port, node_id,
                            {"--store=" + store_db_, "--node_id=" + node_id,
                             "--lease_ttl_ms=" + std::to_string(kLeaseTtlMs)},
                            {}, out);
  }

  // A client that knows one replica only.
  static std::unique_ptr<participant::CoordinatorClient> MakeClient(const std::string& endpoint) {
    return BankProcessTest::MakeClient({endpoint}, /*rpc_timeout_ms=*/5000,
                                       /*call_deadline_ms=*/10000);
  }

  // The lease expiry of node_id in the shared store; -1 when absent.
  int64_t LeaseExpiry(const std::string& node_id) { return LeaseRow(store_db_, node_id).second; }

  int store_commit_delay_us_ = 0;  // set before SetUp: PostgreSQL commit_delay of the store
  std::string store_db_;
  int replica_a_port_ = 0, replica_b_port_ = 0;
  std::string replica_a_, replica_b_;
  std::unique_ptr<ChildProcess> replica_a_proc_, replica_b_proc_;
  std::unique_ptr<participant::CoordinatorClient> client_a_, client_b_;
};

TEST_F(AnyReplicaProcessTest, ClientThatKnowsOnlyBCompletesTransactionsBegunAtA) {
  // Begun at A; enlisted and committed by a client that only knows B.
  const std::string committed = BeginTransfer(client_a_.get(), client_b_.get(), 0, 30);
  ASSERT_FALSE(committed.empty());
  auto c = Commit(client_b_.get(), committed);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->state, wire::TxnState::COMMITTED);
  auto at_a = client_a_->GetStatus(committed);
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  EXPECT_EQ(at_a->state, wire::TxnState::COMMITTED);
  EXPECT_EQ(at_a->owner, kNodeB);  // B took it over to drive it
  // The former owner answers the decision too.
  auto again = Commit(client_a_.get(), committed, /*completion=*/false);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->outcome, wire::Outcome::OUTCOME_COMMIT);

  // Begun and enlisted at A, rolled back through B.
  const std::string rolled_back = BeginTransfer(client_a_.get(), client_a_.get(), 1, 50);
  ASSERT_FALSE(rolled_back.empty());
  auto r = client_b_->Rollback(rolled_back);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->outcome, wire::Outcome::OUTCOME_ABORT);
  EXPECT_EQ(Commit(client_a_.get(), rolled_back).status().code(), StatusCode::kIllegalTransition);

  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 30);
  EXPECT_EQ(Balance(db_b_, 0), kInitialBalance + 30);
  EXPECT_EQ(Balance(db_a_, 1), kInitialBalance);
  EXPECT_EQ(Balance(db_b_, 1), kInitialBalance);
}

TEST_F(AnyReplicaProcessTest, DecisionsOfADeadReplicaAreAnsweredByTheOther) {
  // A finishes three transactions: committed, rolled back, and one its sweeper
  // presumes aborted at its deadline.
  const std::string committed = BeginTransfer(client_a_.get(), client_a_.get(), 0, 10);
  auto c = Commit(client_a_.get(), committed);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->state, wire::TxnState::COMMITTED);
  const std::string rolled_back = BeginTransfer(client_a_.get(), client_a_.get(), 1, 10);
  ASSERT_TRUE(client_a_->Rollback(rolled_back).ok());
  const std::string expired =
      BeginTransfer(client_a_.get(), client_a_.get(), 2, 10, /*timeout_ms=*/1000);
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto s = client_a_->GetStatus(expired);
        auto r = client_a_->GetStatus(rolled_back);
        return s.ok() && s->state == wire::TxnState::ABORTED && r.ok() &&
               r->state == wire::TxnState::ABORTED;
      },
      kWaitMs));
  // And one it leaves ACTIVE (begun, enlisted, never committed).
  const std::string active = BeginTransfer(client_a_.get(), client_a_.get(), 3, 20);
  ASSERT_FALSE(active.empty());

  // A dies and is never restarted.
  ASSERT_TRUE(replica_a_proc_->Kill(SIGKILL).ok());
  ASSERT_TRUE(replica_a_proc_->Wait(kWaitMs).ok());

  // At once (A's lease still looks live): the ACTIVE one is committed through B.
  auto taken = Commit(client_b_.get(), active);
  ASSERT_TRUE(taken.ok()) << taken.status();
  EXPECT_EQ(taken->state, wire::TxnState::COMMITTED);

  // After A's lease expired, and with nobody claiming finished transactions,
  // every retry at B gets the decision.
  ASSERT_TRUE(testing::WaitUntil([&] { return LeaseExpiry(kNodeA) < NowUnixMs(); },
                                 2 * kLeaseTtlMs + 5000));
  for (int retry = 0; retry < 3; ++retry) {
    auto cc = Commit(client_b_.get(), committed);
    ASSERT_TRUE(cc.ok()) << cc.status();
    EXPECT_EQ(cc->state, wire::TxnState::COMMITTED);
    EXPECT_EQ(client_b_->Rollback(committed).status().code(), StatusCode::kIllegalTransition);

    auto rr = client_b_->Rollback(rolled_back);
    ASSERT_TRUE(rr.ok()) << rr.status();
    EXPECT_EQ(rr->state, wire::TxnState::ABORTED);
    EXPECT_EQ(Commit(client_b_.get(), rolled_back).status().code(), StatusCode::kIllegalTransition);

    auto er = client_b_->Rollback(expired);
    ASSERT_TRUE(er.ok()) << er.status();
    EXPECT_EQ(er->outcome, wire::Outcome::OUTCOME_ABORT);
    EXPECT_EQ(Commit(client_b_.get(), expired).status().code(), StatusCode::kIllegalTransition);
  }
  EXPECT_EQ(client_b_->GetStatus(committed)->owner, kNodeA);  // answered, not taken over

  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 0), kInitialBalance - 10);
  EXPECT_EQ(Balance(db_a_, 1), kInitialBalance);
  EXPECT_EQ(Balance(db_a_, 2), kInitialBalance);
  EXPECT_EQ(Balance(db_a_, 3), kInitialBalance - 20);
  EXPECT_EQ(Balance(db_b_, 3), kInitialBalance + 20);
}

// Prints p50/p99 of `ms` (sorted here) under `label`.
void PrintLatency(const char* label, std::vector<int64_t> ms) {
  if (ms.empty()) return;
  std::sort(ms.begin(), ms.end());
  std::printf("%s: n=%zu p50=%lld ms p99=%lld ms\n", label, ms.size(),
              static_cast<long long>(ms[ms.size() / 2]),
              static_cast<long long>(ms[ms.size() * 99 / 100]));
}

// commit(WAIT_COMPLETION) latency, one client, one commit at a time: printed, not asserted.
TEST_F(AnyReplicaProcessTest, WaitCompletionLatency) {
  std::vector<int64_t> sequential_ms;
  for (int i = 0; i < 30; ++i) {
    const std::string gtid = BeginTransfer(client_a_.get(), client_a_.get(), 9, 1);
    ASSERT_FALSE(gtid.empty());
    const int64_t start = MonotonicMs();
    auto c = Commit(client_a_.get(), gtid);
    sequential_ms.push_back(MonotonicMs() - start);
    ASSERT_TRUE(c.ok()) << c.status();
  }
  PrintLatency("commit(WAIT_COMPLETION), 1 client, PostgreSQL store", sequential_ms);
  ExpectSettledAndConserved();
  EXPECT_EQ(Balance(db_a_, 9), kInitialBalance - 30);
}

// The store's commits are slowed (commit_delay 10 ms), so that an answer given
// before the final write is durable would show at the other replica.
class AnyReplicaSlowStoreTest : public AnyReplicaProcessTest {
 protected:
  AnyReplicaSlowStoreTest() { store_commit_delay_us_ = 10000; }
};

TEST_F(AnyReplicaSlowStoreTest, WaitCompletionIsFinalAtTheOtherReplicaAtOnce) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> errors{0};
  std::atomic<int> not_final{0};
  std::mutex mu;  // guards latencies_ms and examples
  std::vector<int64_t> latencies_ms;
  std::vector<std::string> examples;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread on its own account, so the banks never wait on each other.
      for (int i = 0; i < kPerThread; ++i) {
        const std::string gtid = BeginTransfer(client_a_.get(), client_a_.get(), t, 1);
        if (gtid.empty()) {
          ++errors;
          continue;
        }
        const int64_t start = MonotonicMs();
        auto c = Commit(client_a_.get(), gtid);
        const int64_t took = MonotonicMs() - start;
        if (!c.ok() || c->state != wire::TxnState::COMMITTED) {
          ++errors;
          continue;
        }
        auto s = client_b_->GetStatus(gtid);  // at once, at the other replica
        bool final = s.ok() && s->state == wire::TxnState::COMMITTED;
        if (s.ok()) {
          for (const auto& b : s->branches) {
            if (b.state != wire::BranchState::BRANCH_COMMITTED) final = false;
          }
        }
        std::lock_guard<std::mutex> lock(mu);
        latencies_ms.push_back(took);
        if (!final) {
          ++not_final;
          if (examples.size() < 5) {
            examples.push_back(gtid + " state " + (s.ok() ? std::to_string(s->state) : "?"));
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  PrintLatency("commit(WAIT_COMPLETION), 4 clients, store with commit_delay 10 ms", latencies_ms);
  EXPECT_EQ(errors.load(), 0);
  std::string shown;
  for (const auto& e : examples) shown += "\n  " + e;
  EXPECT_EQ(not_final.load(), 0) << "COMMITTED answered before the store held it:" << shown;
  ExpectSettledAndConserved();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(Balance(db_a_, t), kInitialBalance - kPerThread) << t;
    EXPECT_EQ(Balance(db_b_, t), kInitialBalance + kPerThread) << t;
  }
}

}  // namespace
}  // namespace txc
