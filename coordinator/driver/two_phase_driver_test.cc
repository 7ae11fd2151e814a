// TwoPhaseDriver and Sweeper against a real SQLite store and real Thrift
// participants served in this process (a small scripted Participant handler,
// so each vote and failure is chosen by the test). The SDK-based participants
// on PostgreSQL are exercised by tests/twopc.
#include "coordinator/driver/two_phase_driver.h"

#include <glog/logging.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/thrift_server.h"
#include "coordinator/recovery/sweeper.h"
#include "coordinator/store/faulty_store.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"
#include "gen-cpp/Participant.h"

namespace txc {
namespace {

// A participant whose answers the test scripts. Thread-safe.
class ScriptedParticipant : public wire::ParticipantIf {
 public:
  wire::Vote::type prepare(const wire::BranchRequest& req) override {
    int delay_ms;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back("prepare:" + req.branch_id);
      delay_ms = prepare_delay_ms_;
    }
    // Keeps a commit in PREPARING for a while (the latency a test needs to see it).
    if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    std::lock_guard<std::mutex> lock(mu_);
    return vote_;
  }
  wire::Outcome::type commitOnePhase(const wire::BranchRequest& req) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back("commitOnePhase:" + req.branch_id);
    return vote_ == wire::Vote::VOTE_ABORT ? wire::Outcome::OUTCOME_ABORT
                                           : wire::Outcome::OUTCOME_COMMIT;
  }
  void commit(const wire::BranchRequest& req) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back("commit:" + req.branch_id);
    if (fail_phase_two_) {
      wire::Unavailable u;
      u.message = "scripted failure";
      throw u;
    }
  }
  void abort(const wire::BranchRequest& req) override {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back("abort:" + req.branch_id);
    if (fail_phase_two_) {
      wire::Unavailable u;
      u.message = "scripted failure";
      throw u;
    }
  }
  void action(wire::StepResult&, const wire::StepRequest&) override {}
  void compensate(wire::StepResult&, const wire::StepRequest&) override {}

  void SetVote(wire::Vote::type vote) {
    std::lock_guard<std::mutex> lock(mu_);
    vote_ = vote;
  }
  void SetPrepareDelayMs(int delay_ms) {
    std::lock_guard<std::mutex> lock(mu_);
    prepare_delay_ms_ = delay_ms;
  }
  void SetFailPhaseTwo(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_phase_two_ = fail;
  }
  std::vector<std::string> Calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int Count(const std::string& call) {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const auto& c : calls_) n += c == call;
    return n;
  }

 private:
  std::mutex mu_;
  wire::Vote::type vote_ = wire::Vote::VOTE_PREPARED;
  bool fail_phase_two_ = false;
  int prepare_delay_ms_ = 0;
  std::vector<std::string> calls_;
};

struct ServedParticipant {
  std::shared_ptr<ScriptedParticipant> handler = std::make_shared<ScriptedParticipant>();
  std::unique_ptr<ThriftServer> server;
  std::string endpoint;

  void Start(int port = 0) {
    ThriftServerOptions o;
    o.host = "127.0.0.1";
    o.port = port;
    server =
        std::make_unique<ThriftServer>(std::make_shared<wire::ParticipantProcessor>(handler), o);
    ASSERT_TRUE(server->Start().ok());
    endpoint = "127.0.0.1:" + std::to_string(server->port());
  }
};

class TwoPhaseDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-2pc-driver-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = OpenStore(dir_ + "/coordinator.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    auto lease = store_->AcquireLease("node-a", "127.0.0.1:1", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok()) << lease.status();
    node_ = NodeInfo{"node-a", "127.0.0.1:1", lease->epoch};
    log_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    TwoPhaseDriverOptions o;
    o.prepare_timeout_ms = 500;
    o.phase_two_timeout_ms = 500;
    o.connect_timeout_ms = 200;
    o.phase_two_attempts = 2;
    o.phase_two_backoff = BackoffPolicy{5, 20, 2.0};
    o.redrive_backoff = BackoffPolicy{20, 50, 2.0};
    o.max_calls_per_endpoint = 8;
    driver_ = std::make_unique<TwoPhaseDriver>(store_.get(), log_.get(), node_, o);
    a_.Start();
    b_.Start();
  }

  void TearDown() override {
    driver_.reset();
    log_.reset();
    store_.reset();
    std::string cmd = "rm -rf '" + dir_ + "'";
    ASSERT_EQ(system(cmd.c_str()), 0);
  }

  // Begins a transaction (as CoordinatorService::Begin does) with branches at `endpoints`.
  std::string Begin(const std::vector<std::string>& endpoints, int64_t timeout_ms = 60000,
                    const std::string& owner = "") {
    static std::atomic<int> seq{0};
    TxnRecord txn;
    txn.gtid = "t-" + std::to_string(getpid()) + "-" + std::to_string(seq++);
    txn.kind = TxnKind::kTwoPhase;
    txn.state = TxnState::kActive;
    txn.owner = owner.empty() ? node_.node_id : owner;
    txn.epoch = node_.epoch;
    txn.created_ms = NowUnixMs();
    txn.deadline_ms = txn.created_ms + timeout_ms;
    txn.next_attempt_ms = txn.deadline_ms;
    WriteBatch batch;
    batch.insert_txns.push_back(txn);
    EXPECT_TRUE(log_->Write(std::move(batch)).ok());
    for (size_t i = 0; i < endpoints.size(); ++i) {
      EXPECT_TRUE(driver_->Enlist(txn.gtid, Branch("b" + std::to_string(i), endpoints[i])).ok());
    }
    return txn.gtid;
  }

  static BranchRecord Branch(const std::string& id, const std::string& endpoint) {
    BranchRecord b;
    b.branch_id = id;
    b.endpoint = endpoint;
    b.resource = "accounts";
    b.payload = "payload-" + id;
    return b;
  }

  TxnState StoredState(const std::string& gtid) {
    auto txn = store_->GetTxn(gtid);
    EXPECT_TRUE(txn.ok()) << txn.status();
    return txn.ok() ? txn->state : TxnState::kActive;
  }

  bool WaitFor(const std::function<bool()>& pred, int64_t timeout_ms = 5000) {
    const int64_t end = MonotonicMs() + timeout_ms;
    while (MonotonicMs() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return pred();
  }

  std::string dir_;
  std::unique_ptr<TxnStore> store_;
  NodeInfo node_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<TwoPhaseDriver> driver_;
  ServedParticipant a_, b_;
};

TEST_F(TwoPhaseDriverTest, HappyPathCommitsEveryBranch) {
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitted);
  EXPECT_EQ(a_.handler->Calls(), (std::vector<std::string>{"prepare:b0", "commit:b0"}));
  EXPECT_EQ(b_.handler->Calls(), (std::vector<std::string>{"prepare:b1", "commit:b1"}));
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kCommitted; }));
  auto branches = store_->GetBranches(gtid);
  ASSERT_TRUE(branches.ok());
  for (const auto& b : *branches) EXPECT_EQ(b.state, BranchState::kBranchCommitted);
  // Commit again: the same decision, nothing sent.
  auto again = driver_->Commit(gtid, CommitWait::kDecision, 1000);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(DecisionOf(again->state), Decision::kCommit);
  EXPECT_EQ(a_.handler->Calls().size(), 2u);
  auto outcome = driver_->QueryOutcome(gtid, "b0");
  ASSERT_TRUE(outcome.ok());
  EXPECT_EQ(*outcome, Outcome::kCommit);
}

TEST_F(TwoPhaseDriverTest, WaitDecisionAnswersCommittingThenFinishes) {
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kDecision, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kCommit);
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kCommitted; }));
  // The flight is let go by the write's callback, which runs on the group
  // committer's answer thread after the write is in the store: a reader can see
  // COMMITTED a moment before (this asserted at once and failed once under load).
  EXPECT_TRUE(WaitFor([&] { return driver_->InFlightCount() == 0u; }));
}

// CommitAsync: the hot path (begun here, branches in memory) answered by the
// thread that publishes the decision, nobody waiting.
TEST_F(TwoPhaseDriverTest, CommitAsyncAnswersTheDecisionOfATransactionBegunHere) {
  for (wire::Vote::type vote : {wire::Vote::VOTE_PREPARED, wire::Vote::VOTE_ABORT}) {
    b_.handler->SetVote(vote);
    const std::string gtid = Begin({});
    auto txn = store_->GetTxn(gtid);
    ASSERT_TRUE(txn.ok());
    std::vector<BranchRecord> branches = {Branch("b0", a_.endpoint), Branch("b1", b_.endpoint)};
    for (size_t i = 0; i < branches.size(); ++i) {
      branches[i].gtid = gtid;
      branches[i].ordinal = static_cast<int32_t>(i);
      ASSERT_TRUE(driver_->Enlist(gtid, branches[i]).ok());
    }
    driver_->Begun(*txn, branches);
    std::promise<Result<TxnRecord>> answered;
    std::atomic<int> calls{0};
    ASSERT_TRUE(driver_->CommitAsync(gtid, [&](Result<TxnRecord> r) {
      if (calls.fetch_add(1) == 0) answered.set_value(std::move(r));
    }));
    auto future = answered.get_future();
    ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    Result<TxnRecord> r = future.get();
    ASSERT_TRUE(r.ok()) << r.status();
    const Decision expected =
        vote == wire::Vote::VOTE_PREPARED ? Decision::kCommit : Decision::kAbort;
    EXPECT_EQ(DecisionOf(r->state), expected);
    const TxnState final_state =
        expected == Decision::kCommit ? TxnState::kCommitted : TxnState::kAborted;
    EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == final_state; }));
    EXPECT_TRUE(WaitFor([&] { return driver_->InFlightCount() == 0u; }));
    EXPECT_EQ(calls.load(), 1);
    // Taken once: the cache entry is gone, a second commit goes the usual way.
    EXPECT_FALSE(driver_->CommitAsync(gtid, [](Result<TxnRecord>) {}));
    auto again = driver_->Commit(gtid, CommitWait::kDecision, 1000);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(DecisionOf(again->state), expected);
  }
}

TEST_F(TwoPhaseDriverTest, CommitAsyncIsNotTakenForATransactionNotHeldInMemory) {
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});  // never Begun() here
  bool called = false;
  EXPECT_FALSE(driver_->CommitAsync(gtid, [&](Result<TxnRecord>) { called = true; }));
  EXPECT_FALSE(driver_->CommitAsync("no-such-txn", [&](Result<TxnRecord>) { called = true; }));
  EXPECT_FALSE(driver_->CommitAsync("bad\nid", [&](Result<TxnRecord>) { called = true; }));
  EXPECT_FALSE(called);
  EXPECT_EQ(driver_->InFlightCount(), 0u);
  EXPECT_EQ(StoredState(gtid), TxnState::kActive);
  EXPECT_TRUE(a_.handler->Calls().empty());
}

TEST_F(TwoPhaseDriverTest, EnlistAsyncLogsTheBranchOfATransactionBegunHere) {
  const std::string gtid = Begin({});
  auto txn = store_->GetTxn(gtid);
  ASSERT_TRUE(txn.ok());
  driver_->Begun(*txn, {});
  auto enlist = [&](const std::string& id, const std::string& endpoint) {
    std::promise<Status> answered;
    auto future = answered.get_future();
    const bool taken =
        driver_->EnlistAsync(gtid, Branch(id, endpoint), [&](Status s) { answered.set_value(s); });
    if (!taken) return Status::Cancelled("not taken");
    if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      return Status::Timeout("no answer");
    }
    return future.get();
  };
  EXPECT_TRUE(enlist("b0", a_.endpoint).ok());
  EXPECT_TRUE(enlist("b1", b_.endpoint).ok());
  auto branches = store_->GetBranches(gtid);
  ASSERT_TRUE(branches.ok());
  ASSERT_EQ(branches->size(), 2u);
  EXPECT_EQ((*branches)[1].branch_id, "b1");
  EXPECT_EQ((*branches)[1].ordinal, 1);
  EXPECT_EQ((*branches)[1].state, BranchState::kRegistered);
  // A branch id already enlisted (a retry, or a clash) is Enlist()'s to answer;
  // so are a transaction not held here and a malformed request.
  EXPECT_EQ(enlist("b0", a_.endpoint).code(), StatusCode::kCancelled);
  EXPECT_EQ(enlist("b2", "no-port").code(), StatusCode::kCancelled);
  const std::string other = Begin({});
  EXPECT_FALSE(driver_->EnlistAsync(other, Branch("b0", a_.endpoint), [](Status) {}));
  // The commit reads nothing back: both enlisted branches are in the cached run.
  std::promise<Result<TxnRecord>> decided;
  ASSERT_TRUE(driver_->CommitAsync(gtid, [&](Result<TxnRecord> r) { decided.set_value(r); }));
  auto future = decided.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Result<TxnRecord> r = future.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kCommit);
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kCommitted; }));
  EXPECT_FALSE(a_.handler->Calls().empty());
  EXPECT_FALSE(b_.handler->Calls().empty());
}

TEST_F(TwoPhaseDriverTest, EnlistAsyncThatConflictsLeavesTheAnswerToEnlist) {
  const std::string gtid = Begin({});
  auto txn = store_->GetTxn(gtid);
  ASSERT_TRUE(txn.ok());
  driver_->Begun(*txn, {});
  // Another replica aborted it meanwhile: ABORTING in the store, still held here.
  WriteBatch abort;
  TxnUpdate u;
  u.gtid = gtid;
  u.expected_states = {TxnState::kActive};
  u.expected_owner = txn->owner;
  u.expected_epoch = txn->epoch;
  u.state = TxnState::kAborting;
  abort.txn_updates.push_back(u);
  Status aborted = log_->Write(std::move(abort));
  ASSERT_TRUE(aborted.ok()) << aborted;
  std::promise<Status> answered;
  auto future = answered.get_future();
  ASSERT_TRUE(driver_->EnlistAsync(gtid, Branch("b0", a_.endpoint),
                                   [&](Status s) { answered.set_value(s); }));
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(future.get().code(), StatusCode::kConflict);
  EXPECT_EQ(driver_->Enlist(gtid, Branch("b0", a_.endpoint)).code(),
            StatusCode::kIllegalTransition);
  auto branches = store_->GetBranches(gtid);
  ASSERT_TRUE(branches.ok());
  EXPECT_TRUE(branches->empty());
}

TEST_F(TwoPhaseDriverTest, AbortVoteAbortsEveryBranch) {
  b_.handler->SetVote(wire::Vote::VOTE_ABORT);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kAborted);
  EXPECT_EQ(a_.handler->Count("abort:b0"), 1);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 0);
  EXPECT_EQ(b_.handler->Count("commit:b1"), 0);
  // Commit again answers the decision (ABORT), not an error.
  auto again = driver_->Commit(gtid, CommitWait::kDecision, 1000);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(DecisionOf(again->state), Decision::kAbort);
  // Rollback of an aborted transaction is OK.
  EXPECT_TRUE(driver_->Rollback(gtid).ok());
}

TEST_F(TwoPhaseDriverTest, ReadOnlyVoterGetsNoPhaseTwo) {
  b_.handler->SetVote(wire::Vote::VOTE_READ_ONLY);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitted);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 1);
  EXPECT_EQ(b_.handler->Calls(), (std::vector<std::string>{"prepare:b1"}));
}

TEST_F(TwoPhaseDriverTest, OneBranchCommitsInOnePhase) {
  const std::string gtid = Begin({a_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kDecision, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitted);
  EXPECT_EQ(a_.handler->Calls(), (std::vector<std::string>{"commitOnePhase:b0"}));
  auto txn = store_->GetTxn(gtid);
  ASSERT_TRUE(txn.ok());
  EXPECT_TRUE(txn->flags & kFlagOnePhase);
  EXPECT_EQ(txn->state, TxnState::kCommitted);
}

TEST_F(TwoPhaseDriverTest, UnreachableParticipantAtPrepareAborts) {
  const int dead_port = [] {
    ServedParticipant p;
    p.Start();
    return p.server->port();  // stopped when p goes away
  }();
  const std::string dead = "127.0.0.1:" + std::to_string(dead_port);
  const std::string gtid = Begin({a_.endpoint, dead});
  auto r = driver_->Commit(gtid, CommitWait::kDecision, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kAbort);
  EXPECT_TRUE(WaitFor([&] { return a_.handler->Count("abort:b0") == 1; }));
  EXPECT_EQ(a_.handler->Count("commit:b0"), 0);
}

TEST_F(TwoPhaseDriverTest, EnlistErrors) {
  EXPECT_EQ(driver_->Enlist("no-such-txn", Branch("x", a_.endpoint)).code(), StatusCode::kNotFound);
  EXPECT_EQ(driver_->Enlist("bad id", Branch("x", a_.endpoint)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(driver_->Enlist("t", Branch("x", "no-port")).code(), StatusCode::kInvalidArgument);

  const std::string gtid = Begin({a_.endpoint});
  // The same branch again: a no-op; other content: refused.
  EXPECT_TRUE(driver_->Enlist(gtid, Branch("b0", a_.endpoint)).ok());
  EXPECT_EQ(driver_->Enlist(gtid, Branch("b0", b_.endpoint)).code(),
            StatusCode::kIllegalTransition);
  auto branches = store_->GetBranches(gtid);
  ASSERT_TRUE(branches.ok());
  EXPECT_EQ(branches->size(), 1u);

  ASSERT_TRUE(driver_->Rollback(gtid).ok());
  EXPECT_EQ(driver_->Enlist(gtid, Branch("b9", a_.endpoint)).code(),
            StatusCode::kIllegalTransition);
}

TEST_F(TwoPhaseDriverTest, IllegalTransitionsChangeNothing) {
  // Commit of an unknown id.
  EXPECT_EQ(driver_->Commit("unknown-gtid", CommitWait::kDecision, 100).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(driver_->Rollback("unknown-gtid").status().code(), StatusCode::kNotFound);

  // Commit after rollback.
  const std::string rolled = Begin({a_.endpoint, b_.endpoint});
  auto rb = driver_->Rollback(rolled);
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(DecisionOf(rb->state), Decision::kAbort);
  EXPECT_EQ(driver_->Commit(rolled, CommitWait::kDecision, 100).status().code(),
            StatusCode::kIllegalTransition);
  EXPECT_EQ(a_.handler->Count("prepare:b0"), 0);

  // Rollback after a commit decision.
  const std::string committed = Begin({a_.endpoint, b_.endpoint});
  ASSERT_TRUE(driver_->Commit(committed, CommitWait::kCompletion, 5000).ok());
  EXPECT_EQ(driver_->Rollback(committed).status().code(), StatusCode::kIllegalTransition);
  EXPECT_TRUE(WaitFor([&] { return StoredState(committed) == TxnState::kCommitted; }));
  EXPECT_EQ(a_.handler->Count("abort:b0"), 1);  // only the rolled-back one's
}

TEST_F(TwoPhaseDriverTest, QueryOutcomeFollowsTheLog) {
  auto unknown = driver_->QueryOutcome("never-begun", "b0");
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(*unknown, Outcome::kAbort);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto active = driver_->QueryOutcome(gtid, "b0");
  ASSERT_TRUE(active.ok());
  EXPECT_EQ(*active, Outcome::kPending);
}

TEST_F(TwoPhaseDriverTest, PhaseTwoFailureIsRedrivenBySweeper) {
  b_.handler->SetFailPhaseTwo(true);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(gtid, CommitWait::kDecision, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitting);
  // In-process attempts give up; the record stays COMMITTING.
  ASSERT_TRUE(WaitFor([&] { return driver_->InFlightCount() == 0; }));
  EXPECT_EQ(StoredState(gtid), TxnState::kCommitting);
  EXPECT_EQ(driver_->QueryOutcome(gtid, "b1").value(), Outcome::kCommit);

  b_.handler->SetFailPhaseTwo(false);
  Sweeper sweeper(store_.get(), node_, driver_.get(), nullptr, SweeperOptions{20, 100, 100});
  sweeper.Start();
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kCommitted; }));
  sweeper.Stop();
  EXPECT_GE(b_.handler->Count("commit:b1"), 3);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 1);
}

TEST_F(TwoPhaseDriverTest, SweeperAbortsExpiredAndOrphanedPreparing) {
  const std::string expired = Begin({a_.endpoint, b_.endpoint}, /*timeout_ms=*/1);
  // A PREPARING record with no driver, as a crash after logging it leaves.
  const std::string orphan = Begin({a_.endpoint, b_.endpoint});
  {
    WriteBatch batch;
    TxnUpdate u;
    u.gtid = orphan;
    u.expected_owner = node_.node_id;
    u.expected_epoch = node_.epoch;
    u.state = TxnState::kPreparing;
    u.flags = kFlagCommitRequested;
    u.next_attempt_ms = 0;
    batch.txn_updates.push_back(u);
    ASSERT_TRUE(log_->Write(std::move(batch)).ok());
  }
  EXPECT_EQ(driver_->QueryOutcome(orphan, "b0").value(), Outcome::kPending);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Sweeper sweeper(store_.get(), node_, driver_.get(), nullptr, SweeperOptions{20, 100, 100});
  ASSERT_TRUE(sweeper.SweepOnce().ok());
  EXPECT_TRUE(WaitFor([&] {
    return StoredState(expired) == TxnState::kAborted && StoredState(orphan) == TxnState::kAborted;
  }));
  EXPECT_EQ(driver_->Commit(expired, CommitWait::kDecision, 100).status().code(),
            StatusCode::kIllegalTransition);
  auto orphan_answer = driver_->Commit(orphan, CommitWait::kDecision, 100);
  ASSERT_TRUE(orphan_answer.ok()) << orphan_answer.status();
  EXPECT_EQ(DecisionOf(orphan_answer->state), Decision::kAbort);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 0);
  EXPECT_EQ(b_.handler->Count("commit:b1"), 0);
}

TEST_F(TwoPhaseDriverTest, SweeperDeletesOldFinishedTransactionsOnly) {
  const std::string done = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_->Commit(done, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(WaitFor([&] { return StoredState(done) == TxnState::kCommitted; }));
  const std::string active = Begin({a_.endpoint, b_.endpoint});
  const int64_t updated = store_->GetTxn(done)->updated_ms;

  // Retention disabled: nothing is deleted.
  SweeperOptions keep{20, 100, 100};
  keep.finished_retention_ms = 0;
  Sweeper keeper(store_.get(), node_, driver_.get(), nullptr, keep);
  ASSERT_TRUE(WaitFor([&] { return NowUnixMs() > updated + 2; }));
  ASSERT_TRUE(keeper.SweepOnce().ok());
  EXPECT_EQ(keeper.Stats().deleted, 0);
  EXPECT_EQ(StoredState(done), TxnState::kCommitted);

  SweeperOptions o{20, 100, 100};
  o.finished_retention_ms = 1;
  o.retention_sweep_interval_ms = 60000;
  Sweeper sweeper(store_.get(), node_, driver_.get(), nullptr, o);
  ASSERT_TRUE(sweeper.SweepOnce().ok());
  EXPECT_EQ(sweeper.Stats().deleted, 1);
  EXPECT_EQ(store_->GetTxn(done).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetBranches(done)->empty());
  // Every branch acknowledged before the record went: presumed abort is what is left.
  EXPECT_EQ(driver_->QueryOutcome(done, "b0").value(), Outcome::kAbort);
  // The unfinished one stays, however old.
  EXPECT_EQ(StoredState(active), TxnState::kActive);
  EXPECT_EQ(store_->GetBranches(active)->size(), 2u);

  // Not every pass: the next retention run is retention_sweep_interval_ms away.
  const std::string done2 = Begin({a_.endpoint});
  ASSERT_TRUE(driver_->Commit(done2, CommitWait::kCompletion, 5000).ok());
  ASSERT_TRUE(WaitFor([&] { return StoredState(done2) == TxnState::kCommitted; }));
  const int64_t updated2 = store_->GetTxn(done2)->updated_ms;
  ASSERT_TRUE(WaitFor([&] { return NowUnixMs() > updated2 + 2; }));
  ASSERT_TRUE(sweeper.SweepOnce().ok());
  EXPECT_EQ(sweeper.Stats().deleted, 1);
  EXPECT_EQ(StoredState(done2), TxnState::kCommitted);
}

TEST_F(TwoPhaseDriverTest, ConcurrentCommitsOfOneTransactionAgree) {
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  std::vector<std::thread> threads;
  std::vector<Result<TxnRecord>> results(4, Status::Internal("unset"));
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = driver_->Commit(gtid, CommitWait::kCompletion, 5000); });
  }
  for (auto& t : threads) t.join();
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(DecisionOf(r->state), Decision::kCommit);
  }
  EXPECT_EQ(a_.handler->Count("prepare:b0"), 1);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 1);
}

// ---- any replica answers (two drivers = two replicas on one store) -----------

// Replica A is the base fixture's driver_ (node-a); replica B is a second
// driver with its own lease and group committer on the same store.
class TwoReplicasTest : public TwoPhaseDriverTest {
 protected:
  void SetUp() override {
    TwoPhaseDriverTest::SetUp();
    auto lease = store_->AcquireLease("node-b", "127.0.0.1:2", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok()) << lease.status();
    node_b_ = NodeInfo{"node-b", "127.0.0.1:2", lease->epoch};
    log_b_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    driver_b_ = MakeDriver(store_.get(), log_b_.get(), node_b_);
  }
  void TearDown() override {
    driver_b_.reset();
    log_b_.reset();
    TwoPhaseDriverTest::TearDown();
  }

  static std::unique_ptr<TwoPhaseDriver> MakeDriver(TxnStore* store, GroupCommitter* log,
                                                    const NodeInfo& node) {
    TwoPhaseDriverOptions o;
    o.prepare_timeout_ms = 2000;
    o.phase_two_timeout_ms = 500;
    o.connect_timeout_ms = 200;
    o.phase_two_attempts = 2;
    o.phase_two_backoff = BackoffPolicy{5, 20, 2.0};
    o.redrive_backoff = BackoffPolicy{20, 50, 2.0};
    o.max_calls_per_endpoint = 8;
    return std::make_unique<TwoPhaseDriver>(store, log, node, o);
  }

  // Node A's lease as a dead process leaves it: taken by a later incarnation
  // (`live`: a restart) or expired (no process left).
  int64_t ReplaceLeaseOfA(bool live) {
    const int64_t now = NowUnixMs();
    auto lease = live ? store_->AcquireLease("node-a", "127.0.0.1:1", 60000, now)
                      : store_->AcquireLease("node-a", "127.0.0.1:1", 1, now - 60000);
    EXPECT_TRUE(lease.ok()) << lease.status();
    return lease.ok() ? lease->epoch : -1;
  }

  TxnRecord Stored(const std::string& gtid) {
    auto txn = store_->GetTxn(gtid);
    EXPECT_TRUE(txn.ok()) << txn.status();
    return txn.ok() ? *txn : TxnRecord{};
  }

  // Sets a transaction to PREPARING (as a commit that logged it and died leaves it).
  void ForcePreparing(const std::string& gtid, int32_t flags) {
    const TxnRecord txn = Stored(gtid);
    WriteBatch batch;
    TxnUpdate u;
    u.gtid = gtid;
    u.expected_owner = txn.owner;
    u.expected_epoch = txn.epoch;
    u.state = TxnState::kPreparing;
    u.flags = flags;
    u.next_attempt_ms = NowUnixMs() + 60000;  // not the sweeper's yet
    batch.txn_updates.push_back(u);
    ASSERT_TRUE(log_->Write(std::move(batch)).ok());
  }

  NodeInfo node_b_;
  std::unique_ptr<GroupCommitter> log_b_;
  std::unique_ptr<TwoPhaseDriver> driver_b_;
};

TEST_F(TwoReplicasTest, FinishedTransactionsAreAnsweredByAnyReplicaAfterTheOwnerIsGone) {
  // Three finished transactions of A: committed, aborted by a vote, rolled back.
  const std::string committed = Begin({a_.endpoint, b_.endpoint});
  ASSERT_EQ(driver_->Commit(committed, CommitWait::kCompletion, 5000)->state, TxnState::kCommitted);
  b_.handler->SetVote(wire::Vote::VOTE_ABORT);
  const std::string voted_abort = Begin({a_.endpoint, b_.endpoint});
  ASSERT_EQ(driver_->Commit(voted_abort, CommitWait::kCompletion, 5000)->state, TxnState::kAborted);
  const std::string rolled_back = Begin({a_.endpoint, b_.endpoint});
  ASSERT_TRUE(driver_->Rollback(rolled_back).ok());
  ASSERT_TRUE(WaitFor([&] { return StoredState(rolled_back) == TxnState::kAborted; }));
  ASSERT_TRUE(WaitFor([&] { return StoredState(committed) == TxnState::kCommitted; }));
  const size_t calls_a = a_.handler->Calls().size();

  // A dies: its lease expires. Then a later incarnation of A starts.
  ReplaceLeaseOfA(/*live=*/false);
  const int64_t epoch_a2 = ReplaceLeaseOfA(/*live=*/true);
  auto driver_a2 =
      MakeDriver(store_.get(), log_.get(), NodeInfo{"node-a", "127.0.0.1:1", epoch_a2});

  for (TwoPhaseDriver* replica : {driver_b_.get(), driver_a2.get()}) {
    auto c = replica->Commit(committed, CommitWait::kCompletion, 1000);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->state, TxnState::kCommitted);
    EXPECT_EQ(replica->Rollback(committed).status().code(), StatusCode::kIllegalTransition);

    auto v = replica->Commit(voted_abort, CommitWait::kDecision, 1000);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(DecisionOf(v->state), Decision::kAbort);
    auto vr = replica->Rollback(voted_abort);
    ASSERT_TRUE(vr.ok()) << vr.status();
    EXPECT_EQ(vr->state, TxnState::kAborted);

    EXPECT_EQ(replica->Commit(rolled_back, CommitWait::kDecision, 1000).status().code(),
              StatusCode::kIllegalTransition);
    auto rr = replica->Rollback(rolled_back);
    ASSERT_TRUE(rr.ok()) << rr.status();
    EXPECT_EQ(rr->state, TxnState::kAborted);

    for (const std::string& gtid : {committed, voted_abort, rolled_back}) {
      EXPECT_EQ(replica->Enlist(gtid, Branch("late", a_.endpoint)).code(),
                StatusCode::kIllegalTransition)
          << gtid;
    }
  }
  // Answered from the store: nothing was sent, nothing rewritten.
  EXPECT_EQ(a_.handler->Calls().size(), calls_a);
  EXPECT_EQ(Stored(committed).owner, "node-a");
  EXPECT_EQ(Stored(committed).epoch, node_.epoch);
}

TEST_F(TwoReplicasTest, CommitAtAnotherReplicaTakesOverAnActiveTransaction) {
  // A is alive (its lease is live); the client that began at A commits at B.
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_b_->Commit(gtid, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitted);
  const TxnRecord stored = Stored(gtid);
  EXPECT_EQ(stored.state, TxnState::kCommitted);
  EXPECT_EQ(stored.owner, "node-b");
  EXPECT_EQ(stored.epoch, node_b_.epoch);
  EXPECT_EQ(a_.handler->Calls(), (std::vector<std::string>{"prepare:b0", "commit:b0"}));
  EXPECT_EQ(b_.handler->Calls(), (std::vector<std::string>{"prepare:b1", "commit:b1"}));
  // The former owner answers the decision too.
  auto again = driver_->Commit(gtid, CommitWait::kDecision, 1000);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(DecisionOf(again->state), Decision::kCommit);
}

TEST_F(TwoReplicasTest, ConcurrentCommitsAtBothReplicasAgreeWithoutStealingItBackAndForth) {
  // A client whose call timed out retries at the other replica while the first
  // call still runs: both commit the same ACTIVE transaction at once. The
  // replica that loses the first takeover race leaves the transaction to the
  // winner and waits for its decision; neither gives up with "kept changing".
  for (int i = 0; i < 30; ++i) {
    const std::string gtid = Begin({a_.endpoint, b_.endpoint});
    std::atomic<bool> go{false};
    auto at = [&](TwoPhaseDriver* replica) {
      return std::async(std::launch::async, [&, replica] {
        while (!go.load()) std::this_thread::yield();
        return replica->Commit(gtid, CommitWait::kDecision, 10000);
      });
    };
    auto on_a = at(driver_.get());
    auto on_b = at(driver_b_.get());
    go = true;
    auto ra = on_a.get();
    auto rb = on_b.get();
    ASSERT_TRUE(ra.ok()) << i << ": " << ra.status();
    ASSERT_TRUE(rb.ok()) << i << ": " << rb.status();
    EXPECT_EQ(DecisionOf(ra->state), Decision::kCommit);
    EXPECT_EQ(DecisionOf(rb->state), Decision::kCommit);
    EXPECT_EQ(DecisionOf(Stored(gtid).state), Decision::kCommit);
  }
}

TEST_F(TwoReplicasTest, RollbackAtAnotherReplicaTakesOverAnActiveTransaction) {
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  auto r = driver_b_->Rollback(gtid);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kAbort);
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kAborted; }));
  EXPECT_EQ(Stored(gtid).owner, "node-b");
  EXPECT_EQ(a_.handler->Count("abort:b0"), 1);
  EXPECT_EQ(b_.handler->Count("abort:b1"), 1);
  EXPECT_EQ(driver_->Commit(gtid, CommitWait::kDecision, 1000).status().code(),
            StatusCode::kIllegalTransition);
}

TEST_F(TwoReplicasTest, EnlistAtAReplicaThatDoesNotOwnTheTransaction) {
  const std::string gtid = Begin({});  // owned by A
  ASSERT_TRUE(driver_b_->Enlist(gtid, Branch("b0", a_.endpoint)).ok());
  ASSERT_TRUE(driver_b_->Enlist(gtid, Branch("b1", b_.endpoint)).ok());
  EXPECT_TRUE(driver_b_->Enlist(gtid, Branch("b1", b_.endpoint)).ok());  // retried: a no-op
  EXPECT_EQ(driver_b_->Enlist(gtid, Branch("b1", a_.endpoint)).code(),
            StatusCode::kIllegalTransition);
  const TxnRecord stored = Stored(gtid);
  EXPECT_EQ(stored.state, TxnState::kActive);
  EXPECT_EQ(stored.owner, "node-a");  // enlisting takes nothing over
  ASSERT_EQ(store_->GetBranches(gtid)->size(), 2u);
  // The owner commits both branches.
  auto r = driver_->Commit(gtid, CommitWait::kCompletion, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCommitted);
  EXPECT_EQ(a_.handler->Count("commit:b0"), 1);
  EXPECT_EQ(b_.handler->Count("commit:b1"), 1);
  EXPECT_EQ(driver_b_->Enlist(gtid, Branch("b2", a_.endpoint)).code(),
            StatusCode::kIllegalTransition);
  // Owned by a replica whose lease is gone: still enlists.
  const std::string orphan = Begin({});
  ReplaceLeaseOfA(/*live=*/false);
  EXPECT_TRUE(driver_b_->Enlist(orphan, Branch("b0", a_.endpoint)).ok());
}

TEST_F(TwoReplicasTest, PreparingAtALiveReplicaIsWaitedForThenAnswered) {
  a_.handler->SetPrepareDelayMs(400);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  Result<TxnRecord> at_a = Status::Internal("unset");
  std::thread committer([&] { at_a = driver_->Commit(gtid, CommitWait::kDecision, 5000); });
  ASSERT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kPreparing; }));
  // A short wait runs out while A still collects votes: "ask again".
  EXPECT_EQ(driver_b_->Commit(gtid, CommitWait::kDecision, 20).status().code(),
            StatusCode::kTimeout);
  auto at_b = driver_b_->Commit(gtid, CommitWait::kCompletion, 5000);
  committer.join();
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  ASSERT_TRUE(at_b.ok()) << at_b.status();
  EXPECT_EQ(DecisionOf(at_a->state), Decision::kCommit);
  EXPECT_EQ(at_b->state, TxnState::kCommitted);
  EXPECT_EQ(Stored(gtid).owner, "node-a");  // waited for, not taken over
  EXPECT_EQ(a_.handler->Count("prepare:b0"), 1);
  EXPECT_EQ(b_.handler->Count("prepare:b1"), 1);
}

TEST_F(TwoReplicasTest, RollbackAtAnotherReplicaAbortsWhileTheOwnerCollectsVotes) {
  a_.handler->SetPrepareDelayMs(400);
  const std::string gtid = Begin({a_.endpoint, b_.endpoint});
  Result<TxnRecord> at_a = Status::Internal("unset");
  std::thread committer([&] { at_a = driver_->Commit(gtid, CommitWait::kDecision, 5000); });
  ASSERT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kPreparing; }));
  auto r = driver_b_->Rollback(gtid);
  committer.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kAbort);
  // The owner lost its decision write to the abort and followed it.
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  EXPECT_EQ(DecisionOf(at_a->state), Decision::kAbort);
  EXPECT_TRUE(WaitFor([&] { return StoredState(gtid) == TxnState::kAborted; }));
  EXPECT_EQ(a_.handler->Count("commit:b0"), 0);
  EXPECT_EQ(b_.handler->Count("commit:b1"), 0);
  EXPECT_EQ(a_.handler->Count("abort:b0"), 1);
}

TEST_F(TwoReplicasTest, PreparingOfADeadReplicaIsTakenOverAndResumedAtOnce) {
  const std::string multi = Begin({a_.endpoint, b_.endpoint});
  ForcePreparing(multi, kFlagCommitRequested);
  const std::string one_phase = Begin({a_.endpoint});
  ForcePreparing(one_phase, kFlagCommitRequested | kFlagOnePhase);
  ReplaceLeaseOfA(/*live=*/false);
  // No decision was logged: presumed abort, now rather than at the sweeper's claim.
  auto r = driver_b_->Commit(multi, CommitWait::kDecision, 5000);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(DecisionOf(r->state), Decision::kAbort);
  EXPECT_EQ(Stored(multi).owner, "node-b");
  EXPECT_TRUE(WaitFor([&] { return StoredState(multi) == TxnState::kAborted; }));
  EXPECT_EQ(a_.handler->Count("commit:b0"), 0);
  // One-phase: the participant decides; it is asked again.
  auto one = driver_b_->Commit(one_phase, CommitWait::kDecision, 5000);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->state, TxnState::kCommitted);
  EXPECT_EQ(a_.handler->Count("commitOnePhase:b0"), 1);
  // A rollback now is refused: its only branch committed.
  EXPECT_EQ(driver_b_->Rollback(one_phase).status().code(), StatusCode::kIllegalTransition);
}

TEST_F(TwoReplicasTest, WaitCompletionAnswersOnlyWhatIsDurable) {
  // Writes take 5 ms: on a driver that answered COMMITTED before its final
  // write landed, a read right after the answer would see COMMITTING.
  // A slow disk widens the window between a write being queued and durable.
  FaultyStore slow(store_.get());
  slow.Inject(StoreOp::kApply, StoreFault::Delay(5), -1);
  slow.Inject(StoreOp::kApplyGroup, StoreFault::Delay(5), -1);
  GroupCommitter slow_log(&slow, GroupCommitOptions{});
  auto driver = MakeDriver(&slow, &slow_log, node_);
  constexpr int kThreads = 4;
  constexpr int kRounds = 15;
  std::atomic<int> not_final{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string gtid = Begin({a_.endpoint, b_.endpoint});
        auto r = driver->Commit(gtid, CommitWait::kCompletion, 5000);
        if (!r.ok() || r->state != TxnState::kCommitted) {
          ++failures;
          continue;
        }
        // Read at once, on the store itself (what `status` at any replica reads).
        auto stored = store_->GetTxn(gtid);
        auto branches = store_->GetBranches(gtid);
        bool final = stored.ok() && stored->state == TxnState::kCommitted && branches.ok();
        if (final) {
          for (const auto& b : *branches) final = final && b.state == BranchState::kBranchCommitted;
        }
        if (!final) ++not_final;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(not_final.load(), 0) << "answers COMMITTED the store did not hold yet";
}

}  // namespace
}  // namespace txc
