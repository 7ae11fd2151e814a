// The TxnStore conformance suite: every test runs on SQLite and on PostgreSQL
// (a fresh file / a fresh database of the shared test cluster per test).
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <limits>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "coordinator/store/postgres_store.h"
#include "coordinator/store/store_util.h"
#include "coordinator/store/txn_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/store/store_test_util.h"

namespace txc {
namespace testing {
namespace {

std::string AllBytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s + std::string("\0\0end\0", 7);
}

class TxnStoreConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    store_ = OpenFreshStore(GetParam(), dir_, &location_);
    ASSERT_NE(store_, nullptr);
  }

  // Inserts a txn owned by (owner, epoch) with two branches.
  void Seed(const std::string& gtid, const std::string& owner, int64_t epoch,
            TxnState state = TxnState::kActive, int64_t next_attempt_ms = 2000) {
    WriteBatch b;
    TxnRecord t = MakeTxn(gtid, owner, epoch, state);
    t.next_attempt_ms = next_attempt_ms;
    b.insert_txns.push_back(t);
    b.insert_branches.push_back(MakeBranch(gtid, "b1", 0));
    b.insert_branches.push_back(MakeBranch(gtid, "b2", 1));
    ASSERT_TRUE(store_->Apply(b).ok()) << gtid;
  }

  TxnRecord Get(const std::string& gtid) {
    auto t = store_->GetTxn(gtid);
    EXPECT_TRUE(t.ok()) << gtid << ": " << t.status();
    return t.ok() ? *t : TxnRecord{};
  }

  TempDir dir_{"txc-store-conf-"};
  std::string location_;
  std::unique_ptr<TxnStore> store_;
};

TEST_P(TxnStoreConformanceTest, KindAndReopen) {
  EXPECT_EQ(std::string(store_->Kind()), GetParam());
  Seed("reopen-1", "node-a", 1);
  store_.reset();
  auto again = OpenStore(location_);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Migrate().ok());  // already applied: a no-op
  EXPECT_TRUE((*again)->GetTxn("reopen-1").ok());
}

TEST_P(TxnStoreConformanceTest, EveryFieldRoundTripsIncludingBinaryPayloads) {
  TxnRecord t;
  t.gtid = "gtid-roundtrip";
  t.kind = TxnKind::kSaga;
  t.state = TxnState::kRunning;
  t.owner = "node-a";
  t.epoch = 7;
  t.created_ms = 1700000000123;
  t.deadline_ms = 1700000060123;
  t.next_attempt_ms = 1700000001123;
  t.attempts = 3;
  t.idempotency_key = "client-key-1";
  t.payload = AllBytes();
  t.flags = kFlagOnePhase | kFlagWaitCompletion;
  BranchRecord b;
  b.gtid = t.gtid;
  b.branch_id = "step-1";
  b.ordinal = 4;
  b.endpoint = "10.0.0.1:7001";
  b.resource = "res";
  b.action = "reserve";
  b.compensation = "release";
  b.depends_on = {"step-0", "step-a:b"};
  b.payload = std::string("\0\x01\xff payload \0", 13);
  b.state = BranchState::kStepRunning;
  b.attempts = 2;
  b.max_attempts = 9;
  b.initial_backoff_ms = 50;
  b.max_backoff_ms = 5000;
  b.next_attempt_ms = 1700000002000;
  b.last_error = std::string("err\0or", 6);
  BranchRecord empty = MakeBranch(t.gtid, "step-2", 5);  // empty strings and bytes
  WriteBatch batch;
  batch.insert_txns.push_back(t);
  batch.insert_branches = {b, empty};
  ASSERT_TRUE(store_->Apply(batch).ok());

  TxnRecord got = Get(t.gtid);
  EXPECT_EQ(got.gtid, t.gtid);
  EXPECT_EQ(got.kind, t.kind);
  EXPECT_EQ(got.state, t.state);
  EXPECT_EQ(got.owner, t.owner);
  EXPECT_EQ(got.epoch, t.epoch);
  EXPECT_EQ(got.created_ms, t.created_ms);
  EXPECT_GT(got.updated_ms, 0);  // set by the store
  EXPECT_EQ(got.deadline_ms, t.deadline_ms);
  EXPECT_EQ(got.next_attempt_ms, t.next_attempt_ms);
  EXPECT_EQ(got.attempts, t.attempts);
  EXPECT_EQ(got.idempotency_key, t.idempotency_key);
  EXPECT_EQ(got.payload, t.payload);
  EXPECT_EQ(got.payload.size(), 263u);
  EXPECT_EQ(got.flags, t.flags);

  auto branches = store_->GetBranches(t.gtid);
  ASSERT_TRUE(branches.ok()) << branches.status();
  ASSERT_EQ(branches->size(), 2u);
  const BranchRecord& g = (*branches)[0];
  EXPECT_EQ(g.gtid, b.gtid);
  EXPECT_EQ(g.branch_id, b.branch_id);
  EXPECT_EQ(g.ordinal, b.ordinal);
  EXPECT_EQ(g.endpoint, b.endpoint);
  EXPECT_EQ(g.resource, b.resource);
  EXPECT_EQ(g.action, b.action);
  EXPECT_EQ(g.compensation, b.compensation);
  EXPECT_EQ(g.depends_on, b.depends_on);
  EXPECT_EQ(g.payload, b.payload);
  EXPECT_EQ(g.state, b.state);
  EXPECT_EQ(g.attempts, b.attempts);
  EXPECT_EQ(g.max_attempts, b.max_attempts);
  EXPECT_EQ(g.initial_backoff_ms, b.initial_backoff_ms);
  EXPECT_EQ(g.max_backoff_ms, b.max_backoff_ms);
  EXPECT_EQ(g.next_attempt_ms, b.next_attempt_ms);
  EXPECT_EQ(g.last_error, b.last_error);
  const BranchRecord& e = (*branches)[1];
  EXPECT_EQ(e.branch_id, "step-2");
  EXPECT_TRUE(e.payload.empty());
  EXPECT_TRUE(e.depends_on.empty());
  EXPECT_TRUE(e.last_error.empty());
  EXPECT_TRUE(e.action.empty());

  EXPECT_EQ(store_->GetTxn("unknown").status().code(), StatusCode::kNotFound);
  auto none = store_->GetBranches("unknown");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(TxnStoreConformanceTest, DuplicateInsertIsRefusedAndAppliesNothing) {
  Seed("dup", "node-a", 1);
  WriteBatch b;
  b.insert_txns = {MakeTxn("fresh", "node-a", 1), MakeTxn("dup", "node-a", 1)};
  EXPECT_EQ(store_->Apply(b).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetTxn("fresh").status().code(), StatusCode::kNotFound);

  WriteBatch br;
  br.insert_branches = {MakeBranch("dup", "b3", 2), MakeBranch("dup", "b1", 0)};
  EXPECT_EQ(store_->Apply(br).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetBranches("dup")->size(), 2u);
}

// A group written under a lease epoch that is gone is refused whole on a
// shared (PostgreSQL) store; SQLite has no one to fence and applies it.
TEST_P(TxnStoreConformanceTest, FencedGroupIsRefusedOnceTheLeaseEpochMovedOn) {
  auto first = store_->AcquireLease("node-f", "127.0.0.1:7100", 1000, 10000);
  ASSERT_TRUE(first.ok()) << first.status();
  WriteBatch current;
  current.insert_txns = {MakeTxn("fenced-1", "node-f", first->epoch)};
  std::vector<Status> ok = store_->ApplyGroupFenced({&current}, "node-f", first->epoch);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_TRUE(ok[0].ok()) << ok[0];

  auto second = store_->AcquireLease("node-f", "127.0.0.1:7100", 1000, 20000);
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_GT(second->epoch, first->epoch);
  WriteBatch stale;
  stale.insert_txns = {MakeTxn("fenced-2", "node-f", first->epoch)};
  std::vector<Status> refused = store_->ApplyGroupFenced({&stale}, "node-f", first->epoch);
  ASSERT_EQ(refused.size(), 1u);
  if (GetParam() == "sqlite") {
    EXPECT_TRUE(refused[0].ok()) << refused[0];
    return;
  }
  EXPECT_EQ(refused[0].code(), StatusCode::kUnavailable) << refused[0];
  EXPECT_EQ(store_->GetTxn("fenced-2").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetTxn("fenced-1").ok());
}

TEST_P(TxnStoreConformanceTest, IdempotencyKeyIsUniqueWhenSet) {
  TxnRecord a = MakeTxn("key-a", "node-a", 1);
  a.idempotency_key = "order-42";
  TxnRecord b = MakeTxn("key-b", "node-a", 1);
  b.idempotency_key = "order-42";
  WriteBatch wa, wb;
  wa.insert_txns = {a};
  wb.insert_txns = {b};
  ASSERT_TRUE(store_->Apply(wa).ok());
  EXPECT_EQ(store_->Apply(wb).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->GetTxn("key-b").status().code(), StatusCode::kNotFound);
  auto found = store_->FindByIdempotencyKey("order-42");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->gtid, "key-a");
  EXPECT_EQ(store_->FindByIdempotencyKey("order-43").status().code(), StatusCode::kNotFound);
  // No key: any number of transactions.
  WriteBatch none;
  none.insert_txns = {MakeTxn("nokey-1", "node-a", 1), MakeTxn("nokey-2", "node-a", 1)};
  EXPECT_TRUE(store_->Apply(none).ok());
}

// A commit that knows its branches from memory states how many there are: an
// enlist it did not see (another replica's) makes the write a conflict.
TEST_P(TxnStoreConformanceTest, ExpectedBranchCountGuardsAnUpdate) {
  Seed("t1", "node-a", 3, TxnState::kActive);  // two branches
  auto prepare = [&](int32_t count) {
    WriteBatch b;
    TxnUpdate u;
    u.gtid = "t1";
    u.expected_states = {TxnState::kActive};
    u.expected_owner = "node-a";
    u.expected_epoch = 3;
    u.expected_branch_count = count;
    u.state = TxnState::kPreparing;
    b.txn_updates.push_back(u);
    return store_->Apply(b);
  };
  EXPECT_EQ(prepare(1).code(), StatusCode::kConflict);
  EXPECT_EQ(prepare(3).code(), StatusCode::kConflict);
  EXPECT_EQ(Get("t1").state, TxnState::kActive);
  // A branch landing in the same batch, before the update, is counted.
  WriteBatch with_enlist;
  with_enlist.insert_branches.push_back(MakeBranch("t1", "b3", 2));
  TxnUpdate u;
  u.gtid = "t1";
  u.expected_owner = "node-a";
  u.expected_epoch = 3;
  u.expected_branch_count = 2;
  u.state = TxnState::kPreparing;
  with_enlist.txn_updates.push_back(u);
  EXPECT_EQ(store_->Apply(with_enlist).code(), StatusCode::kConflict);
  EXPECT_EQ(store_->GetBranches("t1")->size(), 2u);  // nothing of the batch applied
  ASSERT_TRUE(prepare(2).ok());
  EXPECT_EQ(Get("t1").state, TxnState::kPreparing);
}

TEST_P(TxnStoreConformanceTest, ConditionalTxnUpdates) {
  Seed("t1", "node-a", 3, TxnState::kActive);
  Seed("t2", "node-a", 3, TxnState::kActive);
  auto update = [](const std::string& gtid, std::vector<TxnState> expected, std::string owner,
                   int64_t epoch) {
    TxnUpdate u;
    u.gtid = gtid;
    u.expected_states = std::move(expected);
    u.expected_owner = std::move(owner);
    u.expected_epoch = epoch;
    u.state = TxnState::kPreparing;
    u.attempts = 5;
    return u;
  };
  // A batch whose second update fails changes nothing, not even the first.
  auto refused = [&](TxnUpdate bad, StatusCode code) {
    WriteBatch b;
    b.txn_updates = {update("t2", {TxnState::kActive}, "node-a", 3), bad};
    EXPECT_EQ(store_->Apply(b).code(), code);
    EXPECT_EQ(Get("t1").state, TxnState::kActive);
    EXPECT_EQ(Get("t2").state, TxnState::kActive);
    EXPECT_EQ(Get("t2").attempts, 0);
  };
  refused(update("t1", {TxnState::kPreparing}, "node-a", 3), StatusCode::kConflict);  // state
  refused(update("t1", {TxnState::kActive}, "node-b", 3), StatusCode::kConflict);     // owner
  refused(update("t1", {TxnState::kActive}, "node-a", 2), StatusCode::kConflict);     // epoch
  refused(update("missing", {}, "node-a", 3), StatusCode::kNotFound);

  // Allowed: any of several expected states; empty list means any state.
  WriteBatch ok;
  TxnUpdate u = update("t1", {TxnState::kPreparing, TxnState::kActive}, "node-a", 3);
  u.next_attempt_ms = 9999;
  u.deadline_ms = 8888;
  u.flags = kFlagWaitCompletion;
  ok.txn_updates = {u};
  ASSERT_TRUE(store_->Apply(ok).ok());
  TxnRecord t1 = Get("t1");
  EXPECT_EQ(t1.state, TxnState::kPreparing);
  EXPECT_EQ(t1.attempts, 5);
  EXPECT_EQ(t1.next_attempt_ms, 9999);
  EXPECT_EQ(t1.deadline_ms, 8888);
  EXPECT_EQ(t1.flags, kFlagWaitCompletion);
  EXPECT_EQ(t1.created_ms, 1000);  // untouched fields keep their values

  // Ownership moves with an update; the old (owner, epoch) is then fenced out.
  TxnUpdate take;
  take.gtid = "t1";
  take.expected_owner = "node-a";
  take.expected_epoch = 3;
  take.owner = "node-b";
  take.epoch = 4;
  WriteBatch tb;
  tb.txn_updates = {take};
  ASSERT_TRUE(store_->Apply(tb).ok());
  EXPECT_EQ(Get("t1").owner, "node-b");
  EXPECT_EQ(Get("t1").epoch, 4);
  WriteBatch stale;
  stale.txn_updates = {update("t1", {}, "node-a", 3)};
  EXPECT_EQ(store_->Apply(stale).code(), StatusCode::kConflict);
  EXPECT_EQ(Get("t1").state, TxnState::kPreparing);

  // A pure precondition check (sets nothing) guards other writes of its batch.
  TxnUpdate check;
  check.gtid = "t1";
  check.expected_owner = "node-a";
  check.expected_epoch = 3;
  WriteBatch guarded;
  guarded.txn_updates = {check};
  guarded.insert_branches = {MakeBranch("t1", "b9", 9)};
  EXPECT_EQ(store_->Apply(guarded).code(), StatusCode::kConflict);
  EXPECT_EQ(store_->GetBranches("t1")->size(), 2u);
  guarded.txn_updates[0].expected_owner = "node-b";
  guarded.txn_updates[0].expected_epoch = 4;
  EXPECT_TRUE(store_->Apply(guarded).ok());
  EXPECT_EQ(store_->GetBranches("t1")->size(), 3u);
}

TEST_P(TxnStoreConformanceTest, BranchUpdatesAreFencedByTheirTransaction) {
  Seed("t", "node-a", 2);
  auto bu = [](std::string branch, std::vector<BranchState> expected, std::string owner,
               int64_t epoch) {
    BranchUpdate u;
    u.gtid = "t";
    u.branch_id = std::move(branch);
    u.expected_states = std::move(expected);
    u.expected_owner = std::move(owner);
    u.expected_epoch = epoch;
    u.state = BranchState::kPrepared;
    u.attempts = 1;
    u.next_attempt_ms = 777;
    u.last_error = std::string("bad\0thing", 9);
    return u;
  };
  auto expect_unchanged = [&] {
    auto branches = store_->GetBranches("t");
    ASSERT_TRUE(branches.ok());
    for (const auto& b : *branches) {
      EXPECT_EQ(b.state, BranchState::kRegistered) << b.branch_id;
      EXPECT_EQ(b.attempts, 0);
      EXPECT_TRUE(b.last_error.empty());
    }
  };
  struct Case {
    BranchUpdate bad;
    StatusCode code;
  };
  std::vector<Case> cases = {
      {bu("b2", {BranchState::kRegistered}, "node-a", 1), StatusCode::kConflict},  // stale epoch
      {bu("b2", {BranchState::kRegistered}, "node-x", 2), StatusCode::kConflict},  // wrong owner
      {bu("b2", {BranchState::kPrepared}, "node-a", 2), StatusCode::kConflict},    // wrong state
      {bu("b7", {}, "node-a", 2), StatusCode::kNotFound},                          // no branch
  };
  BranchUpdate missing_txn = bu("b1", {}, "node-a", 2);
  missing_txn.gtid = "no-such-txn";
  cases.push_back({missing_txn, StatusCode::kNotFound});
  for (const auto& c : cases) {
    WriteBatch b;
    b.branch_updates = {bu("b1", {BranchState::kRegistered}, "node-a", 2), c.bad};
    EXPECT_EQ(store_->Apply(b).code(), c.code) << c.bad.branch_id;
    expect_unchanged();
  }
  WriteBatch ok;
  ok.branch_updates = {bu("b1", {BranchState::kRegistered, BranchState::kPrepared}, "node-a", 2),
                       bu("b2", {}, "node-a", 2)};
  ASSERT_TRUE(store_->Apply(ok).ok());
  auto branches = store_->GetBranches("t");
  ASSERT_TRUE(branches.ok());
  for (const auto& b : *branches) {
    EXPECT_EQ(b.state, BranchState::kPrepared);
    EXPECT_EQ(b.attempts, 1);
    EXPECT_EQ(b.next_attempt_ms, 777);
    EXPECT_EQ(b.last_error, std::string("bad\0thing", 9));
    EXPECT_EQ(b.endpoint, "127.0.0.1:9000");
  }
}

TEST_P(TxnStoreConformanceTest, DeleteRemovesTheTransactionAndItsBranches) {
  Seed("gone", "node-a", 1);
  Seed("kept", "node-a", 1);
  WriteBatch d;
  d.delete_txns = {"gone", "never-existed"};
  ASSERT_TRUE(store_->Apply(d).ok());
  EXPECT_EQ(store_->GetTxn("gone").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetBranches("gone")->empty());
  EXPECT_TRUE(store_->GetTxn("kept").ok());
  EXPECT_EQ(store_->GetBranches("kept")->size(), 2u);
  // The id can be used again.
  Seed("gone", "node-a", 1);
}

// Seeds one transaction per state of `states` (prefix + state name), of the
// state's kind; returns the largest updated_ms the store gave them.
int64_t SeedStates(TxnStore* store, const std::string& prefix,
                   const std::vector<TxnState>& states) {
  int64_t newest = 0;
  for (TxnState st : states) {
    const std::string gtid = prefix + TxnStateName(st);
    WriteBatch b;
    TxnRecord t = MakeTxn(gtid, "node-a", 1, st);
    t.kind = IsStateOf(TxnKind::kSaga, st) ? TxnKind::kSaga : TxnKind::kTwoPhase;
    b.insert_txns.push_back(t);
    b.insert_branches.push_back(MakeBranch(gtid, "b1", 0));
    b.insert_branches.push_back(MakeBranch(gtid, "b2", 1));
    EXPECT_TRUE(store->Apply(b).ok()) << gtid;
    auto got = store->GetTxn(gtid);
    EXPECT_TRUE(got.ok()) << gtid;
    if (got.ok()) newest = std::max(newest, got->updated_ms);
  }
  return newest;
}

// Waits (bounded) until the wall clock is past `ms`, so later writes get a
// larger updated_ms.
void WaitPast(int64_t ms) {
  for (int i = 0; i < 1000 && NowUnixMs() <= ms; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_GT(NowUnixMs(), ms);
}

const std::vector<TxnState> kFinalStates = {TxnState::kCommitted, TxnState::kAborted,
                                            TxnState::kSucceeded, TxnState::kCompensated};
const std::vector<TxnState> kUnfinishedStates = {
    TxnState::kActive,  TxnState::kPreparing,    TxnState::kCommitting, TxnState::kAborting,
    TxnState::kRunning, TxnState::kCompensating, TxnState::kParked};

TEST_P(TxnStoreConformanceTest, DeleteFinishedBeforeRemovesOnlyOldFinishedTransactions) {
  for (TxnState st : kFinalStates) ASSERT_TRUE(IsFinal(st)) << TxnStateName(st);
  for (TxnState st : kUnfinishedStates) ASSERT_FALSE(IsFinal(st)) << TxnStateName(st);

  int64_t old_newest = SeedStates(store_.get(), "old-", kFinalStates);
  old_newest = std::max(old_newest, SeedStates(store_.get(), "old-", kUnfinishedStates));
  WaitPast(old_newest);
  SeedStates(store_.get(), "young-", kFinalStates);
  int64_t cutoff = std::numeric_limits<int64_t>::max();
  for (TxnState st : kFinalStates) {
    cutoff = std::min(cutoff, Get(std::string("young-") + TxnStateName(st)).updated_ms);
  }
  ASSERT_GT(cutoff, old_newest);

  auto deleted = store_->DeleteFinishedBefore(cutoff, 100);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, static_cast<int>(kFinalStates.size()));
  for (TxnState st : kFinalStates) {
    const std::string old_gtid = std::string("old-") + TxnStateName(st);
    EXPECT_EQ(store_->GetTxn(old_gtid).status().code(), StatusCode::kNotFound) << old_gtid;
    auto branches = store_->GetBranches(old_gtid);
    ASSERT_TRUE(branches.ok());
    EXPECT_TRUE(branches->empty()) << old_gtid;
    const std::string young_gtid = std::string("young-") + TxnStateName(st);
    EXPECT_EQ(Get(young_gtid).state, st) << young_gtid;
    EXPECT_EQ(store_->GetBranches(young_gtid)->size(), 2u) << young_gtid;
  }
  for (TxnState st : kUnfinishedStates) {
    const std::string gtid = std::string("old-") + TxnStateName(st);
    EXPECT_EQ(Get(gtid).state, st) << gtid;
    EXPECT_EQ(store_->GetBranches(gtid)->size(), 2u) << gtid;
  }

  // However old: unfinished transactions are never deleted.
  deleted = store_->DeleteFinishedBefore(std::numeric_limits<int64_t>::max(), 100);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, static_cast<int>(kFinalStates.size()));  // the young ones
  EXPECT_EQ(*store_->CountInStates(kFinalStates), 0);
  EXPECT_EQ(*store_->CountInStates(kUnfinishedStates),
            static_cast<int64_t>(kUnfinishedStates.size()));
  for (TxnState st : kUnfinishedStates) {
    const std::string gtid = std::string("old-") + TxnStateName(st);
    EXPECT_EQ(Get(gtid).state, st) << gtid;
    EXPECT_EQ(store_->GetBranches(gtid)->size(), 2u) << gtid;
  }
  deleted = store_->DeleteFinishedBefore(std::numeric_limits<int64_t>::max(), 100);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 0);
}

TEST_P(TxnStoreConformanceTest, DeleteFinishedBeforeRespectsTheLimit) {
  for (int i = 0; i < 5; ++i) {
    const std::string gtid = "done-" + std::to_string(i);
    WriteBatch b;
    b.insert_txns.push_back(MakeTxn(gtid, "node-a", 1, TxnState::kCommitted));
    b.insert_branches.push_back(MakeBranch(gtid, "b1", 0));
    ASSERT_TRUE(store_->Apply(b).ok()) << gtid;
  }
  const int64_t cutoff = std::numeric_limits<int64_t>::max();
  EXPECT_EQ(*store_->DeleteFinishedBefore(cutoff, 0), 0);
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitted}), 5);
  auto deleted = store_->DeleteFinishedBefore(cutoff, 2);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitted}), 3);
  int branches_left = 0;
  for (int i = 0; i < 5; ++i) {
    const std::string gtid = "done-" + std::to_string(i);
    auto t = store_->GetTxn(gtid);
    auto b = store_->GetBranches(gtid);
    ASSERT_TRUE(b.ok());
    // A transaction and its branches go together.
    EXPECT_EQ(t.ok(), b->size() == 1u) << gtid;
    branches_left += static_cast<int>(b->size());
  }
  EXPECT_EQ(branches_left, 3);
  deleted = store_->DeleteFinishedBefore(cutoff, 10);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 3);
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitted}), 0);
}

TEST_P(TxnStoreConformanceTest, SummarizeStatesCountsAndFindsTheOldest) {
  auto add = [&](const std::string& gtid, TxnState state, int64_t created_ms) {
    WriteBatch b;
    TxnRecord t = MakeTxn(gtid, "node-a", 1, state);
    t.kind = IsStateOf(TxnKind::kSaga, state) ? TxnKind::kSaga : TxnKind::kTwoPhase;
    t.created_ms = created_ms;
    b.insert_txns.push_back(t);
    ASSERT_TRUE(store_->Apply(b).ok()) << gtid;
  };
  add("a1", TxnState::kActive, 500);
  add("a2", TxnState::kActive, 300);
  add("p1", TxnState::kParked, 700);
  add("c1", TxnState::kCommitted, 100);  // not asked for
  auto summary =
      store_->SummarizeStates({TxnState::kActive, TxnState::kCommitting, TxnState::kParked});
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(summary->size(), 2u);  // kCommitting has none: left out
  EXPECT_EQ((*summary)[0].state, TxnState::kActive);
  EXPECT_EQ((*summary)[0].count, 2);
  EXPECT_EQ((*summary)[0].oldest_created_ms, 300);
  EXPECT_EQ((*summary)[1].state, TxnState::kParked);
  EXPECT_EQ((*summary)[1].count, 1);
  EXPECT_EQ((*summary)[1].oldest_created_ms, 700);
  EXPECT_TRUE(store_->SummarizeStates({})->empty());
}

TEST_P(TxnStoreConformanceTest, ListDueOrdersAndFilters) {
  Seed("due-3", "node-a", 5, TxnState::kCommitting, 300);
  Seed("due-1", "node-a", 5, TxnState::kAborting, 100);
  Seed("due-2", "node-a", 5, TxnState::kCommitting, 200);
  Seed("later", "node-a", 5, TxnState::kCommitting, 5000);
  Seed("other-state", "node-a", 5, TxnState::kActive, 50);
  Seed("other-owner", "node-b", 5, TxnState::kCommitting, 50);
  Seed("old-epoch", "node-a", 4, TxnState::kCommitting, 50);
  Seed("final", "node-a", 5, TxnState::kCommitted, 50);
  auto due = store_->ListDue({TxnState::kCommitting, TxnState::kAborting}, "node-a", 5, 1000, 10);
  ASSERT_TRUE(due.ok()) << due.status();
  std::vector<std::string> ids;
  for (const auto& t : *due) ids.push_back(t.gtid);
  EXPECT_EQ(ids, (std::vector<std::string>{"due-1", "due-2", "due-3"}));
  auto limited =
      store_->ListDue({TxnState::kCommitting, TxnState::kAborting}, "node-a", 5, 1000, 2);
  ASSERT_TRUE(limited.ok());
  ASSERT_EQ(limited->size(), 2u);
  EXPECT_EQ((*limited)[1].gtid, "due-2");
  auto at_boundary = store_->ListDue({TxnState::kCommitting}, "node-a", 5, 200, 10);
  ASSERT_TRUE(at_boundary.ok());
  EXPECT_EQ(at_boundary->size(), 1u);  // next_attempt_ms <= now
  EXPECT_TRUE(store_->ListDue({}, "node-a", 5, 1000, 10)->empty());

  auto count = store_->CountInStates({TxnState::kCommitting});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 5);
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitted, TxnState::kActive}), 2);
}

TEST_P(TxnStoreConformanceTest, LeasesBumpEpochsAndFenceRenewals) {
  auto a1 = store_->AcquireLease("node-a", "127.0.0.1:7000", 1000, 10000);
  ASSERT_TRUE(a1.ok()) << a1.status();
  EXPECT_EQ(a1->epoch, 1);
  EXPECT_EQ(a1->expires_ms, 11000);
  EXPECT_TRUE(store_->RenewLease("node-a", 1, 1000, 10500).ok());
  auto a2 = store_->AcquireLease("node-a", "127.0.0.1:7001", 1000, 11000);
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->epoch, 2);
  EXPECT_EQ(store_->RenewLease("node-a", 1, 1000, 11100).code(), StatusCode::kConflict);
  EXPECT_EQ(store_->RenewLease("node-unknown", 1, 1000, 11100).code(), StatusCode::kConflict);
  EXPECT_TRUE(store_->RenewLease("node-a", 2, 5000, 11100).ok());
  ASSERT_TRUE(store_->AcquireLease("node-b", "127.0.0.1:7002", 1000, 11000).ok());
  auto leases = store_->ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 2u);
  EXPECT_EQ((*leases)[0].node_id, "node-a");
  EXPECT_EQ((*leases)[0].endpoint, "127.0.0.1:7001");
  EXPECT_EQ((*leases)[0].epoch, 2);
  EXPECT_EQ((*leases)[0].expires_ms, 16100);
  EXPECT_EQ((*leases)[1].node_id, "node-b");
  EXPECT_EQ((*leases)[1].epoch, 1);
}

TEST_P(TxnStoreConformanceTest, AcquireLeaseIfExpiredLeavesALiveLeaseAlone) {
  auto first = store_->AcquireLease("node-a", "a:1", 1000, 10000, LeaseTakeover::kIfExpired);
  ASSERT_TRUE(first.ok()) << first.status();  // no row yet: created
  EXPECT_EQ(first->epoch, 1);
  // Live until 11000: a second process of node-a is refused and changes nothing.
  auto second = store_->AcquireLease("node-a", "a:2", 1000, 10999, LeaseTakeover::kIfExpired);
  ASSERT_EQ(second.status().code(), StatusCode::kAlreadyExists) << second.status();
  EXPECT_NE(second.status().message().find("a:1"), std::string::npos) << second.status();
  auto leases = store_->ListLeases();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  EXPECT_EQ((*leases)[0].epoch, 1);
  EXPECT_EQ((*leases)[0].endpoint, "a:1");
  EXPECT_TRUE(store_->RenewLease("node-a", 1, 1000, 10999).ok());  // the holder is unaffected
  // Expired (or given back with a zero ttl): taken with the next epoch.
  EXPECT_TRUE(store_->RenewLease("node-a", 1, 0, 11500).ok());
  auto third = store_->AcquireLease("node-a", "a:3", 1000, 11500, LeaseTakeover::kIfExpired);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->epoch, 2);
  // kAlways takes a live lease.
  auto forced = store_->AcquireLease("node-a", "a:4", 1000, 11600, LeaseTakeover::kAlways);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->epoch, 3);
  EXPECT_EQ(store_->RenewLease("node-a", 2, 1000, 11700).code(), StatusCode::kConflict);
}

TEST_P(TxnStoreConformanceTest, ClaimOrphansTakesUnfinishedTransactionsOfExpiredLeases) {
  ASSERT_TRUE(store_->AcquireLease("node-a", "a:1", 1000, 10000).ok());  // expires 11000
  auto b = store_->AcquireLease("node-b", "b:1", 100000, 10000);
  ASSERT_TRUE(b.ok());
  Seed("a-active", "node-a", 1, TxnState::kActive);
  Seed("a-committing", "node-a", 1, TxnState::kCommitting);
  Seed("a-parked", "node-a", 1, TxnState::kParked);
  Seed("a-committed", "node-a", 1, TxnState::kCommitted);
  Seed("a-compensated", "node-a", 1, TxnState::kCompensated);
  Seed("b-own", "node-b", b->epoch, TxnState::kActive);
  Seed("nobody", "node-gone", 9, TxnState::kRunning);  // owner never had a lease row

  // node-a still live: only the ownerless one is claimable.
  auto claimed = store_->ClaimOrphans("node-b", b->epoch, 10500, 100);
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(*claimed, 1);
  EXPECT_EQ(Get("nobody").owner, "node-b");
  EXPECT_EQ(Get("a-active").owner, "node-a");

  // A claimer whose own lease is not live (stale epoch) claims nothing.
  EXPECT_EQ(store_->ClaimOrphans("node-b", b->epoch - 1 + 100, 12000, 100).status().code(),
            StatusCode::kConflict);
  EXPECT_EQ(Get("a-active").owner, "node-a");

  // node-a expired: its unfinished transactions move, finished ones stay.
  claimed = store_->ClaimOrphans("node-b", b->epoch, 12000, 2);  // limit
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(*claimed, 2);
  claimed = store_->ClaimOrphans("node-b", b->epoch, 12000, 100);
  ASSERT_TRUE(claimed.ok());
  EXPECT_EQ(*claimed, 1);
  for (const char* gtid : {"a-active", "a-committing", "a-parked"}) {
    TxnRecord t = Get(gtid);
    EXPECT_EQ(t.owner, "node-b") << gtid;
    EXPECT_EQ(t.epoch, b->epoch) << gtid;
    EXPECT_EQ(t.next_attempt_ms, 12000) << gtid;
  }
  EXPECT_EQ(Get("a-committed").owner, "node-a");
  EXPECT_EQ(Get("a-compensated").owner, "node-a");
  EXPECT_EQ(Get("b-own").owner, "node-b");
  EXPECT_EQ(*store_->ClaimOrphans("node-b", b->epoch, 12000, 100), 0);

  // The old owner is fenced out.
  TxnUpdate late;
  late.gtid = "a-committing";
  late.expected_owner = "node-a";
  late.expected_epoch = 1;
  late.state = TxnState::kCommitted;
  WriteBatch w;
  w.txn_updates = {late};
  EXPECT_EQ(store_->Apply(w).code(), StatusCode::kConflict);
  EXPECT_EQ(Get("a-committing").state, TxnState::kCommitting);

  // A restarted node re-acquires with a higher epoch and claims its own
  // transactions held under the older epoch.
  auto b2 = store_->AcquireLease("node-b", "b:1", 100000, 13000);
  ASSERT_TRUE(b2.ok());
  claimed = store_->ClaimOrphans("node-b", b2->epoch, 13000, 100);
  ASSERT_TRUE(claimed.ok());
  EXPECT_EQ(*claimed, 5);  // a-active, a-committing, a-parked, b-own, nobody
  EXPECT_EQ(Get("b-own").epoch, b2->epoch);
}

TEST_P(TxnStoreConformanceTest, ApplyGroupIsolatesARefusedBatch) {
  Seed("g-existing", "node-a", 1);
  const StoreStats before = store_->Stats();
  WriteBatch first, refused, third, dup_key_in_group;
  first.insert_txns = {MakeTxn("g-1", "node-a", 1)};
  first.insert_branches = {MakeBranch("g-1", "b", 0)};
  // Refused: its insert would work, its fenced update does not.
  refused.insert_txns = {MakeTxn("g-2", "node-a", 1)};
  TxnUpdate bad;
  bad.gtid = "g-existing";
  bad.expected_owner = "node-a";
  bad.expected_epoch = 99;
  bad.state = TxnState::kAborting;
  refused.txn_updates = {bad};
  TxnUpdate good = bad;
  good.expected_epoch = 1;
  good.state = TxnState::kPreparing;
  third.txn_updates = {good};
  third.insert_txns = {MakeTxn("g-3", "node-a", 1)};
  dup_key_in_group.insert_txns = {MakeTxn("g-1", "node-a", 1)};  // same gtid as `first`

  auto statuses = store_->ApplyGroup({&first, &refused, &third, &dup_key_in_group});
  ASSERT_EQ(statuses.size(), 4u);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_EQ(statuses[1].code(), StatusCode::kConflict);
  EXPECT_TRUE(statuses[2].ok()) << statuses[2];
  EXPECT_EQ(statuses[3].code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->GetTxn("g-1").ok());
  EXPECT_EQ(store_->GetBranches("g-1")->size(), 1u);
  EXPECT_EQ(store_->GetTxn("g-2").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetTxn("g-3").ok());
  EXPECT_EQ(Get("g-existing").state, TxnState::kPreparing);
  const StoreStats after = store_->Stats();
  EXPECT_EQ(after.commits - before.commits, 1);
  EXPECT_EQ(after.batches - before.batches, 4);

  // A group of only refused batches commits nothing and reports each.
  WriteBatch r1, r2;
  r1.insert_txns = {MakeTxn("g-1", "node-a", 1)};
  r2.txn_updates = {bad};
  auto all_refused = store_->ApplyGroup({&r1, &r2});
  EXPECT_EQ(all_refused[0].code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(all_refused[1].code(), StatusCode::kConflict);
  EXPECT_TRUE(store_->ApplyGroup({}).empty());
}

TEST_P(TxnStoreConformanceTest, TextThatABackendCannotStoreIsRefusedAlone) {
  WriteBatch good, bad_utf8, nul_in_id, good_too;
  good.insert_txns = {MakeTxn("text-ok-1", "node-a", 1)};
  bad_utf8.insert_txns = {MakeTxn("text-bad-1", "node-\xff\xfe", 1)};
  nul_in_id.insert_txns = {MakeTxn(std::string("text-bad\0-2", 12), "node-a", 1)};
  good_too.insert_txns = {MakeTxn("text-ok-2", "node-a", 1)};
  good_too.insert_txns[0].payload = "\xff\xfe binary is fine";
  auto statuses = store_->ApplyGroup({&good, &bad_utf8, &nul_in_id, &good_too});
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_EQ(statuses[1].code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(statuses[2].code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(statuses[3].ok()) << statuses[3];
  EXPECT_EQ(store_->GetTxn("text-bad-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetTxn("text-bad").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Get("text-ok-2").payload, "\xff\xfe binary is fine");
  EXPECT_EQ(store_->Apply(bad_utf8).code(), StatusCode::kInvalidArgument);
}

TEST_P(TxnStoreConformanceTest, BatchesOfOneTransactionInAGroupApplyInOrder) {
  Seed("seq", "node-a", 1, TxnState::kActive);
  Seed("other-1", "node-a", 1, TxnState::kActive);
  Seed("other-2", "node-a", 1, TxnState::kActive);
  auto move = [](const std::string& gtid, TxnState from, TxnState to) {
    WriteBatch b;
    TxnUpdate u;
    u.gtid = gtid;
    u.expected_states = {from};
    u.expected_owner = "node-a";
    u.expected_epoch = 1;
    u.state = to;
    b.txn_updates = {u};
    return b;
  };
  WriteBatch b1 = move("seq", TxnState::kActive, TxnState::kPreparing);
  WriteBatch b2 = move("other-1", TxnState::kActive, TxnState::kAborting);
  WriteBatch b3 = move("seq", TxnState::kPreparing, TxnState::kCommitting);
  WriteBatch b4 = move("seq", TxnState::kActive, TxnState::kAborting);  // too late: refused
  WriteBatch b5 = move("other-2", TxnState::kActive, TxnState::kPreparing);
  b5.insert_txns = {MakeTxn("seq-new", "node-a", 1)};
  WriteBatch b6;
  b6.delete_txns = {"other-1"};
  auto statuses = store_->ApplyGroup({&b1, &b2, &b3, &b4, &b5, &b6});
  ASSERT_EQ(statuses.size(), 6u);
  for (int i : {0, 1, 2, 4, 5}) EXPECT_TRUE(statuses[i].ok()) << i << ": " << statuses[i];
  EXPECT_EQ(statuses[3].code(), StatusCode::kConflict);
  EXPECT_EQ(Get("seq").state, TxnState::kCommitting);
  EXPECT_EQ(store_->GetTxn("other-1").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Get("other-2").state, TxnState::kPreparing);
  EXPECT_TRUE(store_->GetTxn("seq-new").ok());

  // Without a refusal the same shape commits through the multi-row path.
  WriteBatch c1 = move("seq", TxnState::kCommitting, TxnState::kCommitted);
  WriteBatch c2 = move("other-2", TxnState::kPreparing, TxnState::kAborting);
  WriteBatch c3;
  c3.delete_txns = {"seq"};
  statuses = store_->ApplyGroup({&c1, &c2, &c3});
  for (const auto& s : statuses) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(store_->GetTxn("seq").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Get("other-2").state, TxnState::kAborting);
}

TEST_P(TxnStoreConformanceTest, ARefusedBatchLeavesNoPartialWriteForLaterBatches) {
  // A batch that wrote a row and was then refused leaves nothing behind, not
  // even for the batches after it in the same group: a later batch inserting
  // the same gtid succeeds, and a second refusal further on is isolated too.
  Seed("pw-existing", "node-a", 1);
  TxnUpdate stale;
  stale.gtid = "pw-existing";
  stale.expected_owner = "node-a";
  stale.expected_epoch = 7;  // not the seeded epoch: refused
  stale.state = TxnState::kAborting;
  WriteBatch ok1, partial, same_gtid, partial_again, ok2;
  ok1.insert_txns = {MakeTxn("pw-1", "node-a", 1)};
  partial.insert_txns = {MakeTxn("pw-x", "node-a", 1)};
  partial.insert_branches = {MakeBranch("pw-x", "b", 0)};
  partial.txn_updates = {stale};
  same_gtid.insert_txns = {MakeTxn("pw-x", "node-b", 2)};
  partial_again.insert_txns = {MakeTxn("pw-y", "node-a", 1)};
  partial_again.txn_updates = {stale};
  ok2.insert_txns = {MakeTxn("pw-2", "node-a", 1)};
  ok2.insert_branches = {MakeBranch("pw-x", "c", 0)};
  const StoreStats before = store_->Stats();
  auto statuses = store_->ApplyGroup({&ok1, &partial, &same_gtid, &partial_again, &ok2});
  ASSERT_EQ(statuses.size(), 5u);
  EXPECT_TRUE(statuses[0].ok()) << statuses[0];
  EXPECT_EQ(statuses[1].code(), StatusCode::kConflict) << statuses[1];
  EXPECT_TRUE(statuses[2].ok()) << statuses[2];
  EXPECT_EQ(statuses[3].code(), StatusCode::kConflict) << statuses[3];
  EXPECT_TRUE(statuses[4].ok()) << statuses[4];
  EXPECT_EQ(Get("pw-x").owner, "node-b");
  auto branches = store_->GetBranches("pw-x");
  ASSERT_TRUE(branches.ok()) << branches.status();
  ASSERT_EQ(branches->size(), 1u);
  EXPECT_EQ((*branches)[0].branch_id, "c");
  EXPECT_EQ(store_->GetTxn("pw-y").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetTxn("pw-1").ok());
  EXPECT_TRUE(store_->GetTxn("pw-2").ok());
  EXPECT_EQ(Get("pw-existing").state, TxnState::kActive);
  const StoreStats after = store_->Stats();
  EXPECT_EQ(after.commits - before.commits, 1);
  EXPECT_EQ(after.batches - before.batches, 5);

  // The same group with the refused batches alone: nothing is committed.
  WriteBatch again1 = partial, again2 = partial_again;
  again1.insert_txns = {MakeTxn("pw-z", "node-a", 1)};
  again1.insert_branches.clear();
  auto refused = store_->ApplyGroup({&again1, &again2});
  EXPECT_EQ(refused[0].code(), StatusCode::kConflict);
  EXPECT_EQ(refused[1].code(), StatusCode::kConflict);
  EXPECT_EQ(store_->GetTxn("pw-z").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Stats().commits, after.commits);
}

TEST_P(TxnStoreConformanceTest, BranchUpdatesAreFencedByTheTransactionRowAsTheBatchLeftIt) {
  // A branch update is fenced by its transaction's (owner, epoch) as the row
  // stands after the batch's own transaction updates: a takeover in the same
  // batch counts, and of two updates of the row the later one.
  Seed("bf-1", "node-a", 1);
  auto take = [](const std::string& gtid, const std::string& from, int64_t from_epoch,
                 const std::string& to, int64_t to_epoch) {
    TxnUpdate u;
    u.gtid = gtid;
    u.expected_owner = from;
    u.expected_epoch = from_epoch;
    u.owner = to;
    u.epoch = to_epoch;
    return u;
  };
  auto branch = [](const std::string& gtid, const std::string& owner, int64_t epoch) {
    BranchUpdate u;
    u.gtid = gtid;
    u.branch_id = "b1";
    u.expected_owner = owner;
    u.expected_epoch = epoch;
    u.attempts = 3;
    return u;
  };
  WriteBatch under_new;  // takeover a -> b, branch fenced by b: applies
  under_new.txn_updates = {take("bf-1", "node-a", 1, "node-b", 2)};
  under_new.branch_updates = {branch("bf-1", "node-b", 2)};
  EXPECT_TRUE(store_->Apply(under_new).ok());
  EXPECT_EQ(Get("bf-1").owner, "node-b");

  WriteBatch under_old;  // takeover b -> c, branch fenced by b (the old owner): refused
  under_old.txn_updates = {take("bf-1", "node-b", 2, "node-c", 3)};
  under_old.branch_updates = {branch("bf-1", "node-b", 2)};
  EXPECT_EQ(store_->Apply(under_old).code(), StatusCode::kConflict);
  EXPECT_EQ(Get("bf-1").owner, "node-b");  // nothing of the batch applied

  WriteBatch twice;  // b -> c, then c -> d; branch fenced by c (the middle owner): refused
  twice.txn_updates = {take("bf-1", "node-b", 2, "node-c", 3),
                       take("bf-1", "node-c", 3, "node-d", 4)};
  twice.branch_updates = {branch("bf-1", "node-c", 3)};
  EXPECT_EQ(store_->Apply(twice).code(), StatusCode::kConflict);
  WriteBatch twice_last = twice;  // the same, fenced by d (the last owner): applies
  twice_last.branch_updates = {branch("bf-1", "node-d", 4)};
  EXPECT_TRUE(store_->Apply(twice_last).ok());
  EXPECT_EQ(Get("bf-1").owner, "node-d");
  auto branches = store_->GetBranches("bf-1");
  ASSERT_TRUE(branches.ok()) << branches.status();
  EXPECT_EQ((*branches)[0].attempts, 3);
}

TEST_P(TxnStoreConformanceTest, LargeGroupOfDistinctTransactions) {
  // Many rows of each kind in one group (multi-row statements on PostgreSQL,
  // chunked past the per-statement limit).
  std::vector<WriteBatch> batches(300);
  std::vector<const WriteBatch*> ptrs;
  for (int i = 0; i < 300; ++i) {
    std::string gtid = "big-" + std::to_string(i);
    batches[i].insert_txns = {MakeTxn(gtid, "node-a", 1)};
    batches[i].insert_txns[0].payload = std::string("\0p", 2) + std::to_string(i);
    batches[i].insert_branches = {MakeBranch(gtid, "x", 0), MakeBranch(gtid, "y", 1)};
    ptrs.push_back(&batches[i]);
  }
  auto statuses = store_->ApplyGroup(ptrs);
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s;
  for (auto& b : batches) {
    TxnUpdate u;
    u.gtid = b.insert_txns[0].gtid;
    u.expected_owner = "node-a";
    u.expected_epoch = 1;
    u.state = TxnState::kCommitting;
    BranchUpdate bu;
    bu.gtid = u.gtid;
    bu.branch_id = "y";
    bu.expected_owner = "node-a";
    bu.expected_epoch = 1;
    bu.state = BranchState::kBranchCommitted;
    b = WriteBatch();
    b.txn_updates = {u};
    b.branch_updates = {bu};
  }
  statuses = store_->ApplyGroup(ptrs);
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitting}), 300);
  TxnRecord t = Get("big-299");
  EXPECT_EQ(t.payload, std::string("\0p299", 5));
  auto branches = store_->GetBranches("big-299");
  ASSERT_EQ(branches->size(), 2u);
  EXPECT_EQ((*branches)[0].state, BranchState::kRegistered);
  EXPECT_EQ((*branches)[1].state, BranchState::kBranchCommitted);
  for (auto& b : batches) {
    std::string gtid = b.txn_updates[0].gtid;
    b = WriteBatch();
    b.delete_txns = {gtid};
  }
  statuses = store_->ApplyGroup(ptrs);
  for (const auto& s : statuses) ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(*store_->CountInStates({TxnState::kCommitting}), 0);
  if (auto* pg = dynamic_cast<PostgresStore*>(store_.get())) {
    EXPECT_GE(pg->FastGroupsForTests(), 3);
  }
}

// --- admin API (issue 8): listing, audit, branch times, rebind ---------------

// Inserts a transaction created at created_ms with one branch at `endpoint`.
void SeedListed(TxnStore* store, const std::string& gtid, TxnKind kind, TxnState state,
                int64_t created_ms, const std::string& owner = "node-a",
                const std::string& endpoint = "127.0.0.1:9000",
                const std::string& last_error = "") {
  WriteBatch b;
  TxnRecord t = MakeTxn(gtid, owner, 1, state);
  t.kind = kind;
  t.created_ms = created_ms;
  b.insert_txns.push_back(t);
  BranchRecord br = MakeBranch(
      gtid, "b1", 0, kind == TxnKind::kSaga ? BranchState::kPending : BranchState::kRegistered);
  br.endpoint = endpoint;
  br.last_error = last_error;
  b.insert_branches.push_back(br);
  ASSERT_TRUE(store->Apply(b).ok()) << gtid;
}

std::vector<std::string> Gtids(const TxnPage& page) {
  std::vector<std::string> out;
  for (const auto& r : page.rows) out.push_back(r.txn.gtid);
  return out;
}

TEST_P(TxnStoreConformanceTest, ListTxnsFiltersOrdersAndPages) {
  SeedListed(store_.get(), "p-3", TxnKind::kSaga, TxnState::kParked, 3000, "node-a", "10.0.0.1:1",
             "compensation not done");
  SeedListed(store_.get(), "p-1", TxnKind::kSaga, TxnState::kParked, 1000);
  SeedListed(store_.get(), "r-2", TxnKind::kSaga, TxnState::kRunning, 2000, "node-b");
  SeedListed(store_.get(), "c-4", TxnKind::kTwoPhase, TxnState::kCommitting, 4000);
  SeedListed(store_.get(), "f-5", TxnKind::kTwoPhase, TxnState::kCommitted, 500);
  SeedListed(store_.get(), "p-0", TxnKind::kSaga, TxnState::kParked, 3000);  // ties on created

  auto list = [&](const TxnFilter& f, int limit = 100, const std::string& cursor = "") {
    auto page = store_->ListTxns(f, cursor, limit);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *page : TxnPage{};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(Gtids(list({})), (V{"f-5", "p-1", "r-2", "p-0", "p-3", "c-4"}));
  TxnFilter parked;
  parked.states = {TxnState::kParked};
  TxnPage page = list(parked);
  EXPECT_EQ(Gtids(page), (V{"p-1", "p-0", "p-3"}));
  EXPECT_TRUE(page.next_cursor.empty());
  EXPECT_EQ(page.rows[2].last_error, "compensation not done");
  EXPECT_EQ(page.rows[2].txn.kind, TxnKind::kSaga);
  EXPECT_EQ(page.rows[2].txn.created_ms, 3000);

  TxnFilter f;
  f.kind = TxnKind::kTwoPhase;
  EXPECT_EQ(Gtids(list(f)), (V{"f-5", "c-4"}));
  f = {};
  f.owner = "node-b";
  EXPECT_EQ(Gtids(list(f)), (V{"r-2"}));
  f = {};
  f.created_before_ms = 3000;
  f.created_after_ms = 500;
  EXPECT_EQ(Gtids(list(f)), (V{"p-1", "r-2"}));
  f = {};
  f.gtid_prefix = "p-";
  EXPECT_EQ(Gtids(list(f)), (V{"p-1", "p-0", "p-3"}));
  f = {};
  f.endpoint = "10.0.0.1:1";
  EXPECT_EQ(Gtids(list(f)), (V{"p-3"}));
  f = {};
  f.updated_before_ms = NowUnixMs() + 60000;
  EXPECT_EQ(list(f).rows.size(), 6u);
  f.updated_after_ms = NowUnixMs() + 30000;
  EXPECT_TRUE(list(f).rows.empty());
  f = {};
  f.states = store_internal::UnfinishedTxnStates();
  f.created_before_ms = 3500;
  EXPECT_EQ(Gtids(list(f)), (V{"p-1", "r-2", "p-0", "p-3"}));

  // Pages of 2: every row once, in order, whatever is inserted meanwhile.
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    TxnPage p = list({}, 2, cursor);
    for (auto& g : Gtids(p)) seen.push_back(g);
    cursor = p.next_cursor;
    if (++pages == 1) SeedListed(store_.get(), "late", TxnKind::kSaga, TxnState::kRunning, 100);
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(seen, (V{"f-5", "p-1", "r-2", "p-0", "p-3", "c-4"}));
  EXPECT_EQ(pages, 3);

  EXPECT_EQ(store_->ListTxns({}, "garbage", 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListTxns({}, "c1zz", 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListTxns({}, "", 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ListTxns({}, "", 1001).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(TxnStoreConformanceTest, AuditRecordsCommitWithTheirBatchOnly) {
  Seed("aud", "node-a", 1, TxnState::kCommitting);
  auto audit = [](const std::string& id, int64_t at, const std::string& action) {
    AuditRecord a;
    a.id = id;
    a.gtid = "aud";
    a.action = action;
    a.who = "127.0.0.1:5555";
    a.at_ms = at;
    a.reason = AllBytes();
    a.previous_state = "COMMITTING";
    a.new_state = "COMMITTING";
    a.target = "b1";
    return a;
  };
  WriteBatch ok;
  TxnUpdate u;
  u.gtid = "aud";
  u.expected_owner = "node-a";
  u.expected_epoch = 1;
  u.next_attempt_ms = 7;
  ok.txn_updates.push_back(u);
  ok.insert_audits.push_back(audit("id-2", 200, "retry"));
  ASSERT_TRUE(store_->Apply(ok).ok());
  // Fenced: a stale epoch writes neither the update nor its audit record.
  WriteBatch stale = ok;
  stale.txn_updates[0].expected_epoch = 0;
  stale.insert_audits = {audit("id-3", 300, "cancel")};
  EXPECT_EQ(store_->Apply(stale).code(), StatusCode::kConflict);
  WriteBatch again;
  again.insert_audits = {audit("id-1", 100, "resolve")};
  ASSERT_TRUE(store_->Apply(again).ok());
  EXPECT_EQ(store_->Apply(again).code(), StatusCode::kAlreadyExists);
  auto records = store_->GetAudit("aud");
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].id, "id-1");
  EXPECT_EQ((*records)[1].id, "id-2");
  EXPECT_EQ((*records)[1].action, "retry");
  EXPECT_EQ((*records)[1].who, "127.0.0.1:5555");
  EXPECT_EQ((*records)[1].at_ms, 200);
  EXPECT_EQ((*records)[1].reason, AllBytes());
  EXPECT_EQ((*records)[1].target, "b1");
  EXPECT_TRUE(store_->GetAudit("nope")->empty());
}

TEST_P(TxnStoreConformanceTest, BranchTimesFollowStateMovesAndRebindMovesTheEndpoint) {
  WriteBatch b;
  TxnRecord t = MakeTxn("times", "node-a", 1, TxnState::kRunning);
  t.kind = TxnKind::kSaga;
  b.insert_txns.push_back(t);
  b.insert_branches.push_back(MakeBranch("times", "s1", 0, BranchState::kPending));
  b.insert_branches.push_back(MakeBranch("times", "s2", 1, BranchState::kStepRunning));
  const int64_t before = NowUnixMs();
  ASSERT_TRUE(store_->Apply(b).ok());
  auto branches = [&] { return *store_->GetBranches("times"); };
  EXPECT_EQ(branches()[0].started_ms, 0);
  EXPECT_GE(branches()[1].started_ms, before);
  EXPECT_EQ(branches()[1].finished_ms, 0);
  auto move = [&](const std::string& id, BranchState from, BranchState to) {
    WriteBatch w;
    BranchUpdate u;
    u.gtid = "times";
    u.branch_id = id;
    u.expected_states = {from};
    u.expected_owner = "node-a";
    u.expected_epoch = 1;
    u.state = to;
    w.branch_updates.push_back(u);
    return store_->Apply(w);
  };
  ASSERT_TRUE(move("s1", BranchState::kPending, BranchState::kStepRunning).ok());
  const int64_t s1_started = branches()[0].started_ms;
  EXPECT_GE(s1_started, before);
  ASSERT_TRUE(move("s1", BranchState::kStepRunning, BranchState::kDone).ok());
  const int64_t s1_finished = branches()[0].finished_ms;
  EXPECT_GE(s1_finished, s1_started);
  EXPECT_EQ(branches()[0].started_ms, s1_started);  // started stays
  // Writing the same state again (a retry) keeps the times.
  ASSERT_TRUE(move("s1", BranchState::kDone, BranchState::kDone).ok());
  EXPECT_EQ(branches()[0].finished_ms, s1_finished);
  // Out of a resting state: finished is cleared until it rests again.
  ASSERT_TRUE(move("s1", BranchState::kDone, BranchState::kStepCompensating).ok());
  EXPECT_EQ(branches()[0].finished_ms, 0);

  WriteBatch rebind;
  BranchUpdate u;
  u.gtid = "times";
  u.branch_id = "s2";
  u.expected_states = {BranchState::kStepRunning};
  u.expected_owner = "node-a";
  u.expected_epoch = 1;
  u.endpoint = "10.1.1.1:77";
  rebind.branch_updates.push_back(u);
  ASSERT_TRUE(store_->Apply(rebind).ok());
  EXPECT_EQ(branches()[1].endpoint, "10.1.1.1:77");
  EXPECT_EQ(branches()[1].state, BranchState::kStepRunning);
  rebind.branch_updates[0].expected_epoch = 2;  // fenced like every write
  rebind.branch_updates[0].endpoint = "10.1.1.1:78";
  EXPECT_EQ(store_->Apply(rebind).code(), StatusCode::kConflict);
  EXPECT_EQ(branches()[1].endpoint, "10.1.1.1:77");
}

// Listing PARKED or "unfinished older than 10 min" reads the rows of those
// states through an index on state (migration 0002: txns_state_created), never
// a scan of the whole table with its finished history. The statements have
// the shape ListTxns issues (state list as literals, ordered by created_ms,
// gtid). PostgreSQL picks a sequential scan on a tiny table, so its planner is
// asked with enable_seqscan off: the index must be usable at all.
TEST_P(TxnStoreConformanceTest, ListingUnfinishedUsesTheStateIndex) {
  const std::string unfinished = store_internal::StateList(store_internal::UnfinishedTxnStates());
  const std::vector<std::string> queries = {
      "SELECT gtid FROM txns WHERE state IN (14) ORDER BY created_ms, gtid LIMIT 51",
      "SELECT gtid FROM txns WHERE state IN (" + unfinished +
          ") AND created_ms < 1000 ORDER BY created_ms, gtid LIMIT 51"};
  for (const std::string& q : queries) {
    std::string plan;
    if (GetParam() == "sqlite") {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open_v2(location_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
      sqlite3_stmt* stmt = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(db, ("EXPLAIN QUERY PLAN " + q).c_str(), -1, &stmt, nullptr),
                SQLITE_OK)
          << sqlite3_errmsg(db);
      while (sqlite3_step(stmt) == SQLITE_ROW) {
        plan += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3));
        plan += "\n";
      }
      sqlite3_finalize(stmt);
      sqlite3_close(db);
      EXPECT_EQ(plan.find("SCAN txns"), std::string::npos) << q << "\n" << plan;
      EXPECT_NE(plan.find("INDEX txns_state"), std::string::npos) << q << "\n" << plan;
    } else {
      pqxx::connection conn(location_);
      pqxx::work tx(conn);
      tx.exec("SET LOCAL enable_seqscan = off");
      for (const auto& row : tx.exec("EXPLAIN " + q)) plan += row[0].as<std::string>() + "\n";
      EXPECT_EQ(plan.find("Seq Scan on txns"), std::string::npos) << q << "\n" << plan;
      EXPECT_NE(plan.find("txns_state"), std::string::npos) << q << "\n" << plan;
    }
    std::cout << GetParam() << ": " << q << "\n" << plan;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, TxnStoreConformanceTest,
                         ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace testing
}  // namespace txc
