// The coordinator's store on a real replicated PostgreSQL, failing.
//
// * Failover under load, on two configurations: a primary with a synchronous
//   standby (the test stops the primary with -m immediate and promotes the
//   standby) and a Patroni cluster (the test SIGKILLs the leader's Patroni and
//   postmaster; Patroni promotes the synchronous replica). Two coordinator
//   processes run on the multi-host connection string; two `bank`
//   participants keep their databases on the harness's ordinary shared
//   cluster. Checked: no acknowledged COMMIT lost (every transfer told
//   COMMITTED is COMMITTED in the store after the failover, and every
//   account's balance in both banks is what the store's committed transfers
//   say), every transaction final, money conserved, nothing prepared left.
//   The unavailability window is printed, not asserted.
// * The only synchronous standby dies: commits on the primary wait forever.
//   The coordinator's store calls have deadlines (a call fails in bounded time
//   and a cancelled commit is never "not committed") and health reports the
//   store unhealthy; it recovers when the standby is back.
// * A replica paused (SIGSTOP) inside a store transaction holding row locks:
//   the session timeouts free the locks, and another replica takes its
//   transaction over after its lease expired.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/harness/patroni_cluster.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/pg_replication.h"
#include "tests/harness/process.h"
#include "tests/twopc/bank_process_test.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kMaxAmount = 10;
// TxnState values in the store (coordinator/core/states.h).
constexpr int kStateCommitted = 4;
constexpr int kStateAborted = 6;

// One transfer the load ran: debit `amount` from A's account `from`, credit
// B's account `to`.
struct Transfer {
  std::string gtid;  // empty when begin got no answer (then nothing was prepared)
  int from = 0, to = 0;
  int64_t amount = 0;
  bool told_committed = false;
  bool answered = false;             // the client got a decision (COMMITTED or ABORTED)
  int64_t start_ms = 0, end_ms = 0;  // MonotonicMs()
};

class StoreFailoverTest : public testing::BankProcessTest {
 protected:
  // Many accounts: transfers rarely contend for a row (a bank whose prepares wait
  // on rows locked by prepared branches can run out of pooled connections).
  // (These hide BankProcessTest's.)
  static constexpr int kAccounts = 1000;
  static constexpr int64_t kInitialBalance = 1000000;
  static constexpr int64_t kWaitMs = 60000;

  void SetUp() override {
    SetUpBankDatabases("txc-failover-");
    bank_accounts_ = kAccounts;
    bank_initial_balance_ = kInitialBalance;
    start_timeout_ms_ = kWaitMs;
    for (int i = 0; i < 2; ++i) {
      coordinator_ports_.push_back(testing::FreeLoopbackPort());
      coordinators_.push_back("127.0.0.1:" + std::to_string(coordinator_ports_.back()));
    }
    bank_coordinators_ = coordinators_[0] + "," + coordinators_[1];
    coordinator_procs_.resize(2);
  }

  void TearDown() override {
    if (HasFailure()) {
      for (size_t i = 0; i < coordinator_procs_.size(); ++i) {
        if (coordinator_procs_[i]) {
          LOG(ERROR) << "coordinator " << i << " log:\n" << coordinator_procs_[i]->LogTail(6000);
        }
      }
      if (bank_a_proc_) LOG(ERROR) << "bank a log:\n" << bank_a_proc_->LogTail(2000);
      if (bank_b_proc_) LOG(ERROR) << "bank b log:\n" << bank_b_proc_->LogTail(2000);
    }
    for (auto& c : coordinator_procs_) {
      if (c && c->IsRunning()) {
        c->Kill(SIGCONT).IgnoreError();
        c->Kill(SIGKILL).IgnoreError();
      }
    }
    bank_a_proc_.reset();
    bank_b_proc_.reset();
    coordinator_procs_.clear();
  }

  void StartCoordinator(int i, const std::string& store, std::vector<std::string> extra,
                        std::vector<std::pair<std::string, std::string>> env = {}) {
    const std::string name = "coordinator-" + std::to_string(i);
    std::vector<std::string> flags = {"--node_id=" + name, "--store=" + store};
    flags.insert(flags.end(), extra.begin(), extra.end());
    StartCoordinatorProcess(coordinator_ports_[i], name, flags, std::move(env),
                            &coordinator_procs_[i]);
  }

  std::unique_ptr<participant::CoordinatorClient> Client(const std::string& endpoint,
                                                         int rpc_timeout_ms = 10000,
                                                         int max_attempts = 6) {
    participant::CoordinatorClientOptions co;
    co.endpoints = {endpoint};
    co.max_attempts = max_attempts;
    co.rpc_timeout_ms = rpc_timeout_ms;
    co.call_deadline_ms = 2 * rpc_timeout_ms;
    co.tls = testing::SuiteTls::Get().ClientTls();
    auto client = participant::CoordinatorClient::Create(co);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  wire::BranchSpec Branch(const std::string& id, const std::string& endpoint,
                          const std::string& resource, const std::string& payload) {
    wire::BranchSpec b;
    b.branch_id = id;
    b.endpoint = endpoint;
    b.resource = resource;
    b.payload = payload;
    return b;
  }

  // One transfer A -> B through `client`; fills t.
  void RunTransfer(participant::CoordinatorClient* client, Transfer* t) {
    t->start_ms = MonotonicMs();
    wire::BeginRequest begin;
    begin.timeout_ms = 10000;
    begin.__set_branches(
        {Branch("debit", bank_a_, "bank_a", bank::DebitPayload(t->from, t->amount)),
         Branch("credit", bank_b_, "bank_b", bank::CreditPayload(t->to, t->amount))});
    auto begun = client->Begin(begin);
    if (begun.ok()) {
      t->gtid = begun->gtid;
      wire::CommitRequest c;
      c.gtid = t->gtid;
      c.wait = wire::CommitWait::WAIT_DECISION;
      c.wait_timeout_ms = 5000;
      auto committed = client->Commit(c);
      if (committed.ok()) {
        t->answered = true;
        t->told_committed = committed->outcome == wire::Outcome::OUTCOME_COMMIT;
      }
    }
    t->end_ms = MonotonicMs();
  }

  // Runs transfers from `clients` threads (alternating between the two
  // replicas) until *stop; returns every transfer.
  std::vector<Transfer> RunLoad(int clients, std::atomic<bool>* stop, std::atomic<int>* answered) {
    std::mutex mu;
    std::vector<Transfer> all;
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        auto client = Client(coordinators_[i % 2]);
        if (client == nullptr) return;
        std::mt19937_64 rng(1000 + i);
        std::vector<Transfer> mine;
        while (!stop->load()) {
          Transfer t;
          t.from = static_cast<int>(rng() % kAccounts);
          t.to = static_cast<int>(rng() % kAccounts);
          t.amount = 1 + static_cast<int64_t>(rng() % kMaxAmount);
          RunTransfer(client.get(), &t);
          if (t.answered) answered->fetch_add(1);
          if (!t.answered) std::this_thread::sleep_for(std::chrono::milliseconds(20));  // pacing
          mine.push_back(std::move(t));
        }
        std::lock_guard<std::mutex> lock(mu);
        all.insert(all.end(), mine.begin(), mine.end());
      });
    }
    for (auto& t : threads) t.join();
    return all;
  }

  // The store's state of every transaction (gtid -> TxnState value), read on
  // whichever host accepts writes.
  Result<std::map<std::string, int>> StoreStates(const std::string& store) {
    try {
      pqxx::connection conn(store);
      pqxx::nontransaction tx(conn);
      std::map<std::string, int> out;
      for (const auto& row : tx.exec("SELECT gtid, state FROM txns")) {
        out[row[0].as<std::string>()] = row[1].as<int>();
      }
      return out;
    } catch (const std::exception& e) {
      return Status::Unavailable(e.what());
    }
  }

  std::vector<int64_t> Balances(const std::string& db) {
    std::vector<int64_t> out(kAccounts, -1);
    pqxx::connection conn(db);
    pqxx::nontransaction tx(conn);
    for (const auto& row : tx.exec("SELECT id, balance FROM account")) {
      out[row[0].as<int>()] = row[1].as<int64_t>();
    }
    return out;
  }

  int64_t Prepared(const std::string& db) {
    auto n = bank::PreparedCount(db);
    return n.ok() ? *n : -1;
  }

  // The whole scenario: load, `fail` mid-load, load again, then the checks.
  void RunFailoverUnderLoad(const std::string& store, const std::string& config,
                            const std::function<Status()>& fail,
                            std::vector<std::string> coordinator_flags) {
    ASSERT_NO_FATAL_FAILURE(StartCoordinator(0, store, coordinator_flags));
    ASSERT_NO_FATAL_FAILURE(StartCoordinator(1, store, coordinator_flags));
    ASSERT_NO_FATAL_FAILURE(StartBank('a'));
    ASSERT_NO_FATAL_FAILURE(StartBank('b'));

    std::atomic<bool> stop{false};
    std::atomic<int> answered{0};
    std::vector<Transfer> transfers;
    std::thread load([&] { transfers = RunLoad(4, &stop, &answered); });
    // Fail mid-load: after some transfers went through.
    const bool warmed = testing::WaitUntil([&] { return answered.load() >= 200; }, kWaitMs);
    const int64_t fail_ms = MonotonicMs();
    const int before = answered.load();
    Status failed = warmed ? fail() : Status::Timeout("the load never got 200 answers");
    const int64_t failed_done_ms = MonotonicMs();
    // Then until the coordinators serve again (by themselves) for a while.
    const bool recovered =
        failed.ok() && testing::WaitUntil([&] { return answered.load() >= before + 200; }, 120000);
    stop = true;
    load.join();
    ASSERT_TRUE(warmed) << "no load before the failover";
    ASSERT_TRUE(failed.ok()) << failed;
    ASSERT_TRUE(recovered) << "the coordinators never served again after the failover ("
                           << answered.load() - before << " answers after it)";
    for (auto& c : coordinator_procs_) ASSERT_TRUE(c->IsRunning()) << c->LogTail();

    // Every transaction final (the sweepers redrive or presumed-abort them).
    std::map<std::string, int> states;
    std::string unfinished;
    const bool final = testing::WaitUntil(
        [&] {
          auto read = StoreStates(store);
          if (!read.ok()) return false;
          states = std::move(read).value();
          unfinished.clear();
          for (const auto& [gtid, state] : states) {
            if (state != kStateCommitted && state != kStateAborted) {
              unfinished = gtid + " in state " + std::to_string(state);
              return false;
            }
          }
          return true;
        },
        kWaitMs);
    ASSERT_TRUE(final) << "not every transaction finished: " << unfinished;
    EXPECT_TRUE(
        testing::WaitUntil([&] { return Prepared(db_a_) == 0 && Prepared(db_b_) == 0; }, kWaitMs))
        << "prepared left: a=" << Prepared(db_a_) << " b=" << Prepared(db_b_);

    // No acknowledged COMMIT lost; balances are what the store decided.
    std::vector<int64_t> expect_a(kAccounts, kInitialBalance), expect_b(kAccounts, kInitialBalance);
    int told_committed = 0, told_aborted = 0, unanswered = 0, store_committed = 0;
    for (const Transfer& t : transfers) {
      if (t.told_committed) ++told_committed;
      if (t.answered && !t.told_committed) ++told_aborted;
      if (!t.answered) ++unanswered;
      if (t.gtid.empty()) continue;
      auto it = states.find(t.gtid);
      if (t.told_committed) {
        ASSERT_TRUE(it != states.end()) << "acknowledged COMMIT of " << t.gtid << " lost";
        EXPECT_EQ(it->second, kStateCommitted) << "acknowledged COMMIT of " << t.gtid << " lost";
      }
      if (t.answered && !t.told_committed && it != states.end()) {
        EXPECT_EQ(it->second, kStateAborted) << t.gtid << " was answered ABORTED";
      }
      if (it != states.end() && it->second == kStateCommitted) {
        ++store_committed;
        expect_a[t.from] -= t.amount;
        expect_b[t.to] += t.amount;
      }
    }
    EXPECT_EQ(Balances(db_a_), expect_a) << "bank A does not match the store's committed transfers";
    EXPECT_EQ(Balances(db_b_), expect_b) << "bank B does not match the store's committed transfers";
    auto a = bank::TotalBalance(db_a_);
    auto b = bank::TotalBalance(db_b_);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a + *b, 2 * kAccounts * kInitialBalance);

    // The unavailability window: last answer before the failure, first answer
    // to a transfer started after it.
    int64_t last_before = 0, first_after = INT64_MAX;
    for (const Transfer& t : transfers) {
      if (!t.answered) continue;
      if (t.end_ms <= fail_ms) last_before = std::max(last_before, t.end_ms);
      if (t.start_ms >= fail_ms) first_after = std::min(first_after, t.end_ms);
    }
    std::printf(
        "[failover %s] transfers %zu: told COMMITTED %d, ABORTED %d, no answer %d; store "
        "COMMITTED %d of %zu txns; failure injected in %lld ms; unavailable %lld ms (last answer "
        "%lld ms before the failure, first answer %lld ms after it)\n",
        config.c_str(), transfers.size(), told_committed, told_aborted, unanswered, store_committed,
        states.size(), static_cast<long long>(failed_done_ms - fail_ms),
        static_cast<long long>(first_after - last_before),
        static_cast<long long>(fail_ms - last_before),
        static_cast<long long>(first_after - fail_ms));
    std::fflush(stdout);
  }

  std::vector<int> coordinator_ports_;
  std::vector<std::string> coordinators_;
  std::vector<std::unique_ptr<ChildProcess>> coordinator_procs_;
};

TEST_F(StoreFailoverTest, SyncStandbyPrimaryStopsAndStandbyIsPromotedUnderLoad) {
  auto pair = testing::SyncStandbyPair::Start({});
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE((*pair)->CreateDatabase("txc").ok());
  const std::string store = (*pair)->MultiHostConnectionString("txc");
  RunFailoverUnderLoad(store, "sync standby", [&] { return (*pair)->FailOver(); },
                       {"--lease_ttl_ms=10000", "--store_call_timeout_ms=3000"});
}

TEST_F(StoreFailoverTest, PatroniLeaderKilledUnderLoad) {
  auto cluster = testing::PatroniCluster::Start({});
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_TRUE((*cluster)->CreateDatabase("txc").ok());
  const std::string store = (*cluster)->MultiHostConnectionString("txc");
  int64_t promoted_ms = 0;
  RunFailoverUnderLoad(store, "patroni",
                       [&]() -> Status {
                         TXC_ASSIGN_OR_RETURN(int leader, (*cluster)->WaitForLeader(10000));
                         const int64_t t0 = MonotonicMs();
                         TXC_RETURN_IF_ERROR((*cluster)->KillMember(leader));
                         auto next = (*cluster)->WaitForLeader(120000, leader);
                         if (!next.ok()) {
                           return Status(next.status().code(),
                                         next.status().message() + "\n" + (*cluster)->LogTails());
                         }
                         promoted_ms = MonotonicMs() - t0;
                         return Status::Ok();
                       },
                       // Patroni needs its ttl (10 s) to notice a dead leader: the coordinators'
                       // leases outlive that.
                       {"--lease_ttl_ms=40000", "--store_call_timeout_ms=3000"});
  std::printf("[failover patroni] new leader accepting writes %lld ms after the kill\n",
              static_cast<long long>(promoted_ms));
}

// The only synchronous standby dies: the primary's commits wait forever. The
// coordinator's store calls end at their deadline (a begin fails, in bounded
// time, without claiming anything) and health says the store is unhealthy;
// with the standby back, both recover.
TEST_F(StoreFailoverTest, DeadSyncStandbyMakesStoreCallsTimeOutAndHealthUnhealthy) {
  auto pair = testing::SyncStandbyPair::Start({});
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE((*pair)->CreateDatabase("txc").ok());
  const std::string store = (*pair)->MultiHostConnectionString("txc");
  // A lease much longer than the call deadline, so that the replica keeps its
  // lease while its store calls fail.
  ASSERT_NO_FATAL_FAILURE(
      StartCoordinator(0, store, {"--lease_ttl_ms=60000", "--store_call_timeout_ms=1000"}));
  auto client = Client(coordinators_[0], 8000);
  ASSERT_NE(client, nullptr);
  auto health = client->Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_TRUE(health->store_healthy) << health->store_error;
  wire::BeginRequest begin;
  begin.timeout_ms = 10000;
  ASSERT_TRUE(client->Begin(begin).ok());

  ASSERT_TRUE((*pair)->StopStandby().ok());
  // One attempt, so that what the replica answered is what we see: not
  // "begun", since the commit never reached the standby; and in bounded time.
  auto one_shot = Client(coordinators_[0], 8000, 1);
  ASSERT_NE(one_shot, nullptr);
  const int64_t t0 = MonotonicMs();
  auto stuck = one_shot->Begin(begin);
  const int64_t begin_ms = MonotonicMs() - t0;
  EXPECT_FALSE(stuck.ok()) << "begin answered while its commit could not be replicated";
  std::string last_error;
  const bool unhealthy = testing::WaitUntil(
      [&] {
        auto h = client->Health();
        if (h.ok() && !h->store_healthy) last_error = h->store_error;
        return h.ok() && !h->store_healthy;
      },
      30000);
  EXPECT_TRUE(unhealthy) << "health never reported the stuck store";
  std::printf("[dead sync standby] begin failed after %lld ms (%s); health: %s\n",
              static_cast<long long>(begin_ms), stuck.status().ToString().c_str(),
              last_error.c_str());
  ASSERT_TRUE(coordinator_procs_[0]->IsRunning());

  // The standby is back: the stuck commits complete, health recovers, and the
  // begin asked again with its key gets its transaction.
  ASSERT_TRUE((*pair)->RestartStandby().ok());
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto h = client->Health();
        return h.ok() && h->store_healthy;
      },
      30000))
      << "health never recovered";
  auto again = client->Begin(begin);
  EXPECT_TRUE(again.ok()) << again.status();
}

// Finding 6: a replica paused inside a store transaction (rows locked, COMMIT
// not sent) must not block the takeover of its transactions: its session is
// ended by idle_in_transaction_session_timeout (lease_ttl / 2), the rows are
// unlocked, and replica 1 claims the transaction once replica 0's lease expired.
TEST_F(StoreFailoverTest, ReplicaPausedInsideAStoreTransactionIsTakenOver) {
  const std::string store = pg_->ConnectionString(pg_->CreateUniqueDatabase("txc_pause"));
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(0, store, {"--lease_ttl_ms=3000"},
                                           {{"TXC_PAUSE_POINTS", "store.pg.group_rows_locked"}}));
  ASSERT_NO_FATAL_FAILURE(StartCoordinator(1, store, {"--lease_ttl_ms=3000"}));
  ASSERT_NO_FATAL_FAILURE(StartBank('a'));
  ASSERT_NO_FATAL_FAILURE(StartBank('b'));
  auto client = Client(coordinators_[0], 3000);
  ASSERT_NE(client, nullptr);
  // begin inserts (no pause: nothing updated); commit updates the row
  // (ACTIVE -> PREPARING) and pauses with it locked.
  wire::BeginRequest begin;
  begin.timeout_ms = 8000;
  begin.__set_branches({Branch("debit", bank_a_, "bank_a", bank::DebitPayload(1, 5)),
                        Branch("credit", bank_b_, "bank_b", bank::CreditPayload(2, 5))});
  auto begun = client->Begin(begin);
  ASSERT_TRUE(begun.ok()) << begun.status();
  const std::string gtid = begun->gtid;
  std::thread committer([&] {
    wire::CommitRequest c;
    c.gtid = gtid;
    c.wait = wire::CommitWait::WAIT_DECISION;
    c.wait_timeout_ms = 2000;
    (void)client->Commit(c);  // no answer: the replica is stopped
  });
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{committer};
  const pid_t paused_pid = coordinator_procs_[0]->pid();
  auto proc_state = [&] {
    std::string stat = testing::ReadFileOrEmpty("/proc/" + std::to_string(paused_pid) + "/stat");
    size_t close = stat.rfind(')');
    return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
  };
  const bool paused = testing::WaitUntil([&] { return proc_state() == 'T'; }, kWaitMs);
  const int64_t paused_at = MonotonicMs();
  ASSERT_TRUE(paused) << "replica 0 never reached the pause point";

  // Replica 1 takes the transaction over (its owner changes: the claim's
  // FOR UPDATE SKIP LOCKED no longer skips it), then finishes it: no decision
  // was committed, so it is aborted (at the latest at its timeout).
  auto owner_and_state = [&](std::string* owner, int* state) {
    try {
      pqxx::connection conn(store);
      pqxx::nontransaction tx(conn);
      auto r = tx.exec_params("SELECT owner, state FROM txns WHERE gtid = $1", gtid);
      if (r.empty()) return false;
      *owner = r[0][0].as<std::string>();
      *state = r[0][1].as<int>();
      return true;
    } catch (const std::exception& e) {
      *owner = e.what();
      return false;
    }
  };
  std::string owner;
  int state = 0;
  const bool taken_over = testing::WaitUntil(
      [&] { return owner_and_state(&owner, &state) && owner == "coordinator-1"; }, kWaitMs);
  const int64_t takeover_ms = MonotonicMs() - paused_at;
  EXPECT_EQ(proc_state(), 'T') << "replica 0 must still be paused";
  ASSERT_TRUE(taken_over) << "the paused replica's transaction was never taken over (owner "
                          << owner << ", state " << state << ")";
  const bool finished = testing::WaitUntil(
      [&] {
        return owner_and_state(&owner, &state) &&
               (state == kStateAborted || state == kStateCommitted);
      },
      kWaitMs);
  const int64_t finished_ms = MonotonicMs() - paused_at;
  EXPECT_TRUE(finished) << "state " << state;
  EXPECT_EQ(owner, "coordinator-1");
  std::printf(
      "[paused replica] transaction claimed by replica 1 %lld ms and finished %lld ms "
      "after the pause (lease ttl 3000 ms, session timeouts 1500 ms, txn timeout "
      "8000 ms)\n",
      static_cast<long long>(takeover_ms), static_cast<long long>(finished_ms));
  std::fflush(stdout);
  committer.join();  // its call timed out: the replica it asked is stopped
  ASSERT_TRUE(coordinator_procs_[0]->Kill(SIGCONT).ok());
  EXPECT_TRUE(
      testing::WaitUntil([&] { return Prepared(db_a_) == 0 && Prepared(db_b_) == 0; }, kWaitMs));
  auto a = bank::TotalBalance(db_a_);
  auto b = bank::TotalBalance(db_b_);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a + *b, 2 * kAccounts * kInitialBalance);
}

}  // namespace
}  // namespace txc
