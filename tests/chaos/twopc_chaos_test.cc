// Chaos for two-phase commit: three coordinator replicas on one PostgreSQL
// store (short lease TTL), the bank example's two banks, and a continuous load
// of transfers from several client threads -- some with every replica, some
// knowing one replica only. For TXC_CHAOS_SECONDS (default 30) seeded random
// faults (TXC_CHAOS_SEED): SIGKILL a replica and restart it before or after its
// lease TTL, SIGSTOP a replica beyond its TTL then SIGCONT, SIGKILL a bank and
// restart it. Then everything is healed and, with a deadline, every
// transaction must be final. Checked (ARCHITECTURE.md invariants 2, 4, 6, 7):
//   - money is conserved and every account's balance is its journal's sum;
//   - no transaction has mixed outcomes at the banks (journal rows per gtid);
//   - nothing is left in pg_prepared_xacts;
//   - every transaction in the store is final, and what a client was told
//     (COMMIT / ABORT) is what the store and the banks hold; a WAIT_COMPLETION
//     answer with a final state is what a status read right after shows;
//   - every client retry of commit/rollback got the decision (no NotOwner
//     loops);
//   - no process exited except by the test's signals;
//   - no committed store write by a stale (node, epoch) (audit trigger).
// Replay a failure with the seed it prints: see docs/testing.md.
#include <glog/logging.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/chaos/chaos_harness.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using chaos::ManagedProcess;

constexpr int kReplicas = 3;
constexpr int64_t kLeaseTtlMs = 1500;
constexpr int kAccounts = 20;
constexpr int64_t kInitialBalance = 1000;
constexpr int kClientsWithAllReplicas = 3;
constexpr int kClientsWithOneReplica = 3;
constexpr int64_t kTxnTimeoutMs = 5000;
// A client keeps asking for a transaction's decision this long.
constexpr int64_t kClientRetryMs = 60000;
constexpr int64_t kSettleTimeoutMs = 120000;

enum class Told { kNothing, kCommit, kAbort };

// What one client learnt about one transaction.
struct ClientTxn {
  std::string gtid;
  Told told = Told::kNothing;
  chaos::CallTrace trace;
  // A WAIT_COMPLETION commit answered with a final state, and a status read
  // right after that showed a different state (invariant 7); "" when agreed.
  std::string completion_disagreement;
};

class TwoPcChaosTest : public chaos::ChaosTest {
 protected:
  void SetUp() override {
    SetUpReplicas("2PC", 30, "txc-chaos-2pc-", "chaos_store", TXC_COORDINATOR_BIN, kReplicas,
                  kLeaseTtlMs, {"--prepare_timeout_ms=2000"});
    db_[0] = pg_->ConnectionString(pg_->CreateUniqueDatabase("chaos_bank_a"));
    db_[1] = pg_->ConnectionString(pg_->CreateUniqueDatabase("chaos_bank_b"));
    const std::string all_replicas = AllReplicas();
    for (int b = 0; b < 2; ++b) {
      const int port = testing::FreeLoopbackPort();
      const std::string name = b == 0 ? "bank_a" : "bank_b";
      banks_[b] = AddParticipant(name, port,
                                 {TXC_BANK_BIN, "--port=" + std::to_string(port), "--db=" + db_[b],
                                  "--coordinators=" + all_replicas, "--name=" + name,
                                  "--accounts=" + std::to_string(kAccounts),
                                  "--initial_balance=" + std::to_string(kInitialBalance)});
    }
    ASSERT_NO_FATAL_FAILURE(StartAll());
    for (const auto& e : replica_endpoints_) {
      auto reader = chaos::MakeClient({e});
      ASSERT_TRUE(reader.ok()) << reader.status();
      readers_.push_back(std::move(reader).value());
    }
  }

  template <typename Call>
  static auto Retry(chaos::CallTrace* trace, Call call) -> decltype(call()) {
    return chaos::RetryUntilAnswered(trace, kClientRetryMs, call);
  }

  // One client thread: transfers until `stop_`, each begun, enlisted and
  // committed (WAIT_DECISION or WAIT_COMPLETION), asking again until it gets
  // the decision.
  void ClientLoop(int id, std::vector<std::string> endpoints) {
    auto made = chaos::MakeClient(std::move(endpoints));
    ASSERT_TRUE(made.ok()) << made.status();
    auto client = std::move(made).value();
    std::mt19937_64 rng(config_.seed * 7919 + id);
    std::vector<ClientTxn> mine;
    while (!stop_.load()) {
      const bool a_to_b = rng() % 2 == 0;
      const int64_t amount = 1 + static_cast<int64_t>(rng() % 20);
      wire::BranchSpec debit, credit;
      debit.branch_id = "debit";
      debit.endpoint = banks_[a_to_b ? 0 : 1]->endpoint();
      debit.resource = a_to_b ? "bank_a" : "bank_b";
      debit.payload = bank::DebitPayload(static_cast<int32_t>(rng() % kAccounts), amount);
      credit.branch_id = "credit";
      credit.endpoint = banks_[a_to_b ? 1 : 0]->endpoint();
      credit.resource = a_to_b ? "bank_b" : "bank_a";
      credit.payload = bank::CreditPayload(static_cast<int32_t>(rng() % kAccounts), amount);

      wire::BeginRequest begin;
      begin.timeout_ms = kTxnTimeoutMs;
      auto begun = client->Begin(begin);
      if (!begun.ok()) {
        begin_failures_.fetch_add(1);
        continue;  // a transaction it may have left is aborted at its deadline
      }
      ClientTxn txn;
      txn.gtid = begun->gtid;
      Status enlisted;
      for (const wire::BranchSpec* b : {&debit, &credit}) {
        wire::EnlistRequest e;
        e.gtid = txn.gtid;
        e.branch = *b;
        enlisted = Retry(&txn.trace, [&]() -> Result<bool> {
                     TXC_RETURN_IF_ERROR(client->Enlist(e));
                     return true;
                   }).status();
        if (!enlisted.ok()) break;
      }
      if (!enlisted.ok()) {
        enlist_failures_.fetch_add(1);
        auto rolled = Retry(&txn.trace, [&] { return client->Rollback(txn.gtid); });
        if (rolled.ok()) txn.told = Told::kAbort;
        Record(txn);
        continue;
      }
      wire::CommitRequest c;
      c.gtid = txn.gtid;
      c.wait = rng() % 4 == 0 ? wire::CommitWait::WAIT_COMPLETION : wire::CommitWait::WAIT_DECISION;
      c.wait_timeout_ms = 3000;
      auto committed = Retry(&txn.trace, [&] { return client->Commit(c); });
      if (committed.ok()) {
        txn.told =
            committed->outcome == wire::Outcome::OUTCOME_COMMIT ? Told::kCommit : Told::kAbort;
        const bool final_answer = committed->state == wire::TxnState::COMMITTED ||
                                  committed->state == wire::TxnState::ABORTED;
        if (c.wait == wire::CommitWait::WAIT_COMPLETION && final_answer) {
          // What a client is told is what the store holds: any replica agrees now.
          auto status = readers_[(id + 1) % readers_.size()]->GetStatus(txn.gtid);
          if (status.ok() && status->state != committed->state) {
            txn.completion_disagreement = "answered state " + std::to_string(committed->state) +
                                          ", status right after: " + std::to_string(status->state);
          }
        }
      } else if (committed.status().code() == StatusCode::kIllegalTransition) {
        // "already ABORTED by rollback or deadline": the decision is ABORT.
        txn.told = Told::kAbort;
      }
      Record(txn);
    }
  }

  void Record(const ClientTxn& txn) {
    std::lock_guard<std::mutex> lock(mu_);
    txns_.push_back(txn);
  }

  // One line per prepared transaction left in the cluster, with what the store
  // holds for its gtid (gid = "<bank>:<gtid>:<branch>").
  std::string PreparedDetails() {
    std::string out;
    try {
      pqxx::connection conn(pg_->ConnectionString("postgres"));
      pqxx::nontransaction n(conn);
      pqxx::connection store(store_db_);
      pqxx::nontransaction s(store);
      for (const auto& row : n.exec(
               "SELECT gid, database, prepared::text FROM pg_prepared_xacts ORDER BY prepared")) {
        const std::string gid = row[0].c_str();
        const size_t first = gid.find(':'), last = gid.rfind(':');
        const std::string gtid = first == std::string::npos || last <= first
                                     ? gid
                                     : gid.substr(first + 1, last - first - 1);
        out += "  " + gid + " in " + row[1].c_str() + " since " + row[2].c_str() + "; store: ";
        auto t = s.exec_params(
            "SELECT state, owner, epoch, updated_ms, attempts FROM txns WHERE gtid = $1", gtid);
        if (t.empty()) {
          out += "no such transaction\n";
          continue;
        }
        out += std::string("state ") + t[0][0].c_str() + " owner " + t[0][1].c_str() + " epoch " +
               t[0][2].c_str() + " updated_ms " + t[0][3].c_str() + " attempts " + t[0][4].c_str() +
               "; branches:";
        for (const auto& b : s.exec_params(
                 "SELECT branch_id, state, attempts FROM branches WHERE gtid = $1", gtid)) {
          out += std::string(" ") + b[0].c_str() + "=" + b[1].c_str() + "/" + b[2].c_str();
        }
        out += "\n";
      }
    } catch (const std::exception& e) {
      out += std::string("  (cannot read: ") + e.what() + ")\n";
    }
    return out;
  }

  int64_t PreparedEverywhere() {
    try {
      pqxx::connection conn(pg_->ConnectionString("postgres"));
      pqxx::nontransaction n(conn);
      return n.exec1("SELECT count(*) FROM pg_prepared_xacts")[0].as<int64_t>();
    } catch (const std::exception& e) {
      return -1;
    }
  }

  // gtid -> sum of its journal deltas at bank b, and row counts.
  struct Journal {
    std::map<std::string, int> rows;          // per gtid
    std::map<int, int64_t> delta_by_account;  // per account
  };
  Journal ReadJournal(int b) {
    Journal j;
    pqxx::connection conn(db_[b]);
    pqxx::nontransaction n(conn);
    for (const auto& row : n.exec("SELECT gtid, account, delta FROM journal")) {
      j.rows[row[0].c_str()]++;
      j.delta_by_account[row[1].as<int>()] += row[2].as<int64_t>();
    }
    return j;
  }
  std::map<int, int64_t> Balances(int b) {
    std::map<int, int64_t> out;
    pqxx::connection conn(db_[b]);
    pqxx::nontransaction n(conn);
    for (const auto& row : n.exec("SELECT id, balance FROM account")) {
      out[row[0].as<int>()] = row[1].as<int64_t>();
    }
    return out;
  }

  std::string db_[2];
  ManagedProcess* banks_[2] = {nullptr, nullptr};  // owned by participants_
  // One client per replica, knowing that replica only (status reads).
  std::vector<std::unique_ptr<participant::CoordinatorClient>> readers_;

  std::atomic<int64_t> begin_failures_{0};
  std::atomic<int64_t> enlist_failures_{0};
  std::mutex mu_;
  std::vector<ClientTxn> txns_;  // guarded by mu_
};

TEST_F(TwoPcChaosTest, TransfersStayAtomicAndEveryReplicaStaysUseful) {
  std::vector<std::thread> clients = StartClients(
      kClientsWithAllReplicas, kClientsWithOneReplica,
      [this](int id, std::vector<std::string> endpoints) { ClientLoop(id, std::move(endpoints)); });
  // Settle: clients done, every transaction final, nothing prepared.
  // resolve_ms: from the heal until the store and the banks first had nothing
  // unfinished; clients_ms: until every client had its answers (or gave up).
  int64_t unfinished = -1, prepared = -1;
  const Settling run = RunFaultsAndSettle(&clients, kSettleTimeoutMs, [&] {
    auto n = audit_->UnfinishedCount();
    unfinished = n.ok() ? *n : -1;
    prepared = PreparedEverywhere();
    return unfinished == 0 && prepared == 0;
  });
  EXPECT_TRUE(run.settled) << "after " << run.settle_ms << " ms: " << unfinished
                           << " transactions unfinished in the store, " << prepared
                           << " prepared transactions at the banks";

  // ---- what the clients were told ----
  int64_t told_commit = 0, told_abort = 0, no_answer = 0, not_owner_unresolved = 0,
          not_owner_answers = 0;
  std::vector<std::string> unanswered;
  for (const ClientTxn& t : txns_) {
    not_owner_answers += t.trace.not_owner_answers;
    if (t.told == Told::kCommit) ++told_commit;
    if (t.told == Told::kAbort) ++told_abort;
    if (t.told != Told::kNothing) continue;
    ++no_answer;
    if (t.trace.last_code == StatusCode::kNotOwner) ++not_owner_unresolved;
    if (unanswered.size() < 10) unanswered.push_back(t.gtid + ": " + t.trace.last_error);
  }

  // ---- the store and the banks ----
  auto states = audit_->AllStates();
  ASSERT_TRUE(states.ok()) << states.status();
  Journal journal[2] = {ReadJournal(0), ReadJournal(1)};
  std::vector<std::string> violations;
  auto violation = [&](const std::string& v) {
    if (violations.size() < 30) violations.push_back(v);
  };
  int64_t committed = 0, aborted = 0, not_final = 0;
  for (const auto& [gtid, state] : *states) {
    const int rows = journal[0].rows[gtid] + journal[1].rows[gtid];
    if (state == wire::TxnState::COMMITTED) {
      ++committed;
      if (rows != 2)
        violation(gtid + ": COMMITTED in the store, " + std::to_string(rows) +
                  " of 2 branches took effect at the banks");
    } else if (state == wire::TxnState::ABORTED) {
      ++aborted;
      if (rows != 0)
        violation(gtid + ": ABORTED in the store, " + std::to_string(rows) +
                  " branches took effect at the banks");
    } else {
      ++not_final;
      violation(gtid + ": left in state " + std::to_string(state));
    }
  }
  for (int b = 0; b < 2; ++b) {
    for (const auto& [gtid, rows] : journal[b].rows) {
      if (rows > 0 && states->count(gtid) == 0) violation(gtid + ": at a bank, not in the store");
    }
  }
  for (const ClientTxn& t : txns_) {
    if (!t.completion_disagreement.empty()) {
      violation(t.gtid + ": WAIT_COMPLETION " + t.completion_disagreement);
    }
    auto it = states->find(t.gtid);
    if (it == states->end()) {
      violation(t.gtid + ": a client saw it, the store does not have it");
      continue;
    }
    if (t.told == Told::kCommit && it->second != wire::TxnState::COMMITTED) {
      violation(t.gtid + ": client told COMMIT, store holds " + std::to_string(it->second));
    }
    if (t.told == Told::kAbort && it->second != wire::TxnState::ABORTED) {
      violation(t.gtid + ": client told ABORT, store holds " + std::to_string(it->second));
    }
  }
  int64_t total = 0;
  for (int b = 0; b < 2; ++b) {
    for (const auto& [account, balance] : Balances(b)) {
      total += balance;
      const int64_t expected = kInitialBalance + journal[b].delta_by_account[account];
      if (balance != expected) {
        violation("bank " + std::to_string(b) + " account " + std::to_string(account) +
                  ": balance " + std::to_string(balance) + ", journal says " +
                  std::to_string(expected));
      }
    }
  }
  auto stale = audit_->StaleWrites();
  ASSERT_TRUE(stale.ok()) << stale.status();
  auto ownership = audit_->OwnershipChanges();
  ASSERT_TRUE(ownership.ok()) << ownership.status();

  std::printf(
      "[chaos] 2PC seed %llu: %.1f s of faults; %zu transactions seen by clients in the store "
      "of %zu (committed %lld, aborted %lld, not final %lld); clients told COMMIT %lld, ABORT "
      "%lld, nothing %lld (NotOwner at the end: %lld; NotOwner answers on the way: %lld); "
      "begin failures %lld, enlist failures %lld\n"
      "%s",
      static_cast<unsigned long long>(config_.seed), (run.healed_ms - run.start_ms) / 1000.0,
      txns_.size(), states->size(), static_cast<long long>(committed),
      static_cast<long long>(aborted), static_cast<long long>(not_final),
      static_cast<long long>(told_commit), static_cast<long long>(told_abort),
      static_cast<long long>(no_answer), static_cast<long long>(not_owner_unresolved),
      static_cast<long long>(not_owner_answers), static_cast<long long>(begin_failures_.load()),
      static_cast<long long>(enlist_failures_.load()), RecoverySummary(run, *ownership).c_str());
  std::fflush(stdout);

  EXPECT_EQ(total, 2 * kAccounts * kInitialBalance) << "money not conserved";
  EXPECT_TRUE(violations.empty()) << violations.size() << "+ violations, e.g.:\n"
                                  << [&] {
                                       std::string s;
                                       for (const auto& v : violations) s += "  " + v + "\n";
                                       return s;
                                     }();
  // A prepare that its abort overtook (the prepare waited on a row lock past the
  // coordinator's prepare timeout, the abort found nothing prepared) can still
  // land after everything settled; the bank's recovery rescan (every 10 s) asks
  // the coordinator and rolls it back. Nothing may stay prepared beyond that.
  const std::string late_prepares = PreparedEverywhere() > 0 ? PreparedDetails() : "";
  EXPECT_TRUE(testing::WaitUntil([&] { return PreparedEverywhere() == 0; }, 30000))
      << "left in pg_prepared_xacts:\n"
      << PreparedDetails();
  if (!late_prepares.empty()) {
    std::printf("[chaos] late prepares after settling, resolved by bank recovery:\n%s",
                late_prepares.c_str());
  }
  EXPECT_EQ(not_final, 0);
  EXPECT_EQ(not_owner_unresolved, 0) << "commit/rollback retries that ended in NotOwner";
  EXPECT_EQ(no_answer, 0) << "transactions whose client never got the decision, e.g.:\n"
                          << [&] {
                               std::string s;
                               for (const auto& u : unanswered) s += "  " + u + "\n";
                               return s;
                             }();
  ExpectNoUnexpectedExits();
  ExpectNoStaleWrites(*stale);
  EXPECT_GT(committed, 0);
}

}  // namespace
}  // namespace txc
