// GroupCommitter semantics on a real SQLite store; a slow wrapper store makes
// the write timeout observable.
#include "coordinator/store/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/faulty_store.h"
#include "coordinator/store/sqlite_store.h"
#include "tests/harness/process.h"

namespace txc {
namespace {

TxnRecord Txn(const std::string& gtid) {
  TxnRecord t;
  t.gtid = gtid;
  t.owner = "node-a";
  t.epoch = 1;
  return t;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  // Writes "in-store" and returns once the writer is inside the (held or slow)
  // store call with it, so that later writes queue behind it. An invalid
  // future when the writer never got there.
  static std::future<Status> OccupyWriter(GroupCommitter& committer, FaultyStore& store) {
    WriteBatch first;
    first.insert_txns = {Txn("in-store")};
    auto in_store = committer.WriteAsync(std::move(first));
    if (!testing::WaitUntil([&] { return store.Calls(StoreOp::kApplyGroup) > 0; }, 5000)) {
      return {};
    }
    return in_store;
  }

  void SetUp() override {
    auto opened = SqliteStore::Open(dir_.Child("txc.db"));
    ASSERT_TRUE(opened.ok());
    store_ = std::move(opened).value();
    ASSERT_TRUE(store_->Migrate().ok());
  }
  testing::TempDir dir_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(GroupCommitTest, WriteReturnsTheBatchOutcome) {
  GroupCommitter committer(store_.get(), GroupCommitOptions{});
  WriteBatch b;
  b.insert_txns = {Txn("one")};
  EXPECT_TRUE(committer.Write(b).ok());
  EXPECT_EQ(committer.Write(b).code(), StatusCode::kAlreadyExists);
  EXPECT_TRUE(committer.Write(WriteBatch()).ok());  // empty: nothing to do
  auto future = committer.WriteAsync([] {
    WriteBatch w;
    w.insert_txns = {Txn("two")};
    return w;
  }());
  EXPECT_TRUE(future.get().ok());
  EXPECT_TRUE(store_->GetTxn("two").ok());
  EXPECT_EQ(committer.GetStats().batches, 3);
  EXPECT_EQ(store_->Stats().commits, 2);
}

TEST_F(GroupCommitTest, WriteTimesOutButTheWriteStillLands) {
  FaultyStore slow(store_.get());
  slow.Hold(StoreOp::kApplyGroup);
  {
    GroupCommitOptions options;
    options.write_timeout_ms = 300;
    GroupCommitter committer(&slow, options);
    WriteBatch b;
    b.insert_txns = {Txn("slow")};
    auto answer = std::async(std::launch::async, [&] { return committer.Write(b); });
    // The writer took it into a store call (which is held): past that point the
    // caller can no longer take it back, so its timeout means "unknown".
    ASSERT_TRUE(testing::WaitUntil([&] { return slow.Calls(StoreOp::kApplyGroup) > 0; }, 5000));
    EXPECT_EQ(answer.get().code(), StatusCode::kTimeout);
    slow.Open(StoreOp::kApplyGroup);
  }  // the destructor waits for the writer
  EXPECT_TRUE(store_->GetTxn("slow").ok());
}

TEST_F(GroupCommitTest, GroupsAreCappedAndQueuedWritesShareOne) {
  FaultyStore slow(store_.get());
  slow.Inject(StoreOp::kApplyGroup, StoreFault::Delay(50), -1);
  GroupCommitOptions options;
  options.max_batches_per_group = 4;
  GroupCommitter committer(&slow, options);
  std::vector<std::future<Status>> futures;
  for (int i = 0; i < 13; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("capped-" + std::to_string(i))};
    futures.push_back(committer.WriteAsync(std::move(b)));
  }
  for (auto& f : futures) EXPECT_TRUE(f.get().ok());
  GroupCommitter::Stats stats = committer.GetStats();
  EXPECT_EQ(stats.batches, 13);
  // 13 batches at most 4 per group, queued while the first group was slow.
  EXPECT_GE(stats.groups, 4);
  EXPECT_LE(stats.groups, 5);
}

TEST_F(GroupCommitTest, NothingIsWrittenWhileWritesAreNotAllowed) {
  std::atomic<bool> allowed{false};
  GroupCommitOptions options;
  options.may_write = [&allowed] { return allowed.load(); };
  GroupCommitter committer(store_.get(), options);
  WriteBatch b;
  b.insert_txns = {Txn("refused")};
  Status s = committer.Write(b);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_EQ(store_->GetTxn("refused").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->Stats().commits, 0);
  allowed = true;
  EXPECT_TRUE(committer.Write(b).ok());
  EXPECT_TRUE(store_->GetTxn("refused").ok());
}

TEST_F(GroupCommitTest, FenceRefusesQueuedAndLaterWrites) {
  FaultyStore slow(store_.get());
  slow.Inject(StoreOp::kApplyGroup, StoreFault::Delay(200), -1);
  GroupCommitter committer(&slow, GroupCommitOptions{});
  // The first group is inside the (slow) store call; the rest queue behind it.
  auto in_store = OccupyWriter(committer, slow);
  ASSERT_TRUE(in_store.valid());
  std::vector<std::future<Status>> queued;
  for (int i = 0; i < 5; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("queued-" + std::to_string(i))};
    queued.push_back(committer.WriteAsync(std::move(b)));
  }
  committer.Fence(Status::Timeout("lease lost"));
  // Fence() returned only once the group inside the store call was written
  // (its answer follows on the answer thread): nothing of this committer
  // reaches the store after it.
  EXPECT_TRUE(store_->GetTxn("in-store").ok());
  for (auto& f : queued) EXPECT_EQ(f.get().code(), StatusCode::kUnavailable);
  WriteBatch later;
  later.insert_txns = {Txn("later")};
  EXPECT_EQ(committer.Write(later).code(), StatusCode::kUnavailable);
  committer.WriteLater(later);
  // The group already in the store call finishes; nothing queued reaches the store.
  EXPECT_TRUE(in_store.get().ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(store_->GetTxn("queued-" + std::to_string(i)).status().code(), StatusCode::kNotFound);
  }
  EXPECT_EQ(store_->GetTxn("later").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(slow.Calls(StoreOp::kApplyGroup), 1);
}

TEST_F(GroupCommitTest, AWriteThatTimedOutWhileQueuedIsNeverApplied) {
  FaultyStore slow(store_.get());
  slow.Hold(StoreOp::kApplyGroup);
  GroupCommitOptions options;
  options.write_timeout_ms = 50;
  GroupCommitter committer(&slow, options);
  auto in_store = OccupyWriter(committer, slow);
  ASSERT_TRUE(in_store.valid());
  WriteBatch queued;
  queued.insert_txns = {Txn("taken-back")};
  Status s = committer.Write(std::move(queued));  // the writer is held: it stays queued
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("nothing was written"), std::string::npos) << s;
  slow.Open(StoreOp::kApplyGroup);
  EXPECT_TRUE(in_store.get().ok());
  WriteBatch after;
  after.insert_txns = {Txn("after")};
  EXPECT_TRUE(committer.Write(std::move(after)).ok());  // the writer has passed the taken-back one
  EXPECT_EQ(store_->GetTxn("taken-back").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->GetTxn("after").ok());
  EXPECT_EQ(committer.GetStats().taken_back, 1);
}

// WriteAsync's caller is not there to take its batch back: the group-done
// thread does, on time, while the writer is still stuck in the store call.
TEST_F(GroupCommitTest, AnAsyncWriteQueuedPastItsTimeoutIsTakenBackAndAnswered) {
  FaultyStore slow(store_.get());
  slow.Hold(StoreOp::kApplyGroup);
  GroupCommitOptions options;
  options.write_timeout_ms = 50;
  GroupCommitter committer(&slow, options);
  auto in_store = OccupyWriter(committer, slow);
  ASSERT_TRUE(in_store.valid());
  std::promise<Status> answered;
  std::atomic<int> calls{0};
  WriteBatch queued;
  queued.insert_txns = {Txn("async-taken-back")};
  committer.WriteAsync(std::move(queued), [&](const Status& s) {
    if (calls.fetch_add(1) == 0) answered.set_value(s);
  });
  auto answer = answered.get_future();
  // Answered while the store call is still held (no caller thread waits).
  ASSERT_EQ(answer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Status s = answer.get();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("nothing was written"), std::string::npos) << s;
  EXPECT_EQ(slow.Calls(StoreOp::kApplyGroup), 1);  // still the first one
  slow.Open(StoreOp::kApplyGroup);
  EXPECT_TRUE(in_store.get().ok());
  WriteBatch after;
  after.insert_txns = {Txn("after")};
  EXPECT_TRUE(committer.Write(std::move(after)).ok());
  EXPECT_EQ(store_->GetTxn("async-taken-back").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(committer.GetStats().taken_back, 1);
  EXPECT_EQ(calls.load(), 1);  // exactly once
}

TEST_F(GroupCommitTest, AnAsyncWriteIsAnsweredOnceItIsDurable) {
  GroupCommitter committer(store_.get(), GroupCommitOptions{});
  std::promise<std::pair<Status, bool>> landed;  // (status, row visible when called)
  WriteBatch b;
  b.insert_txns = {Txn("async")};
  committer.WriteAsync(b, [&](const Status& s) {
    landed.set_value({s, store_->GetTxn("async").ok()});
  });
  auto [status, visible] = landed.get_future().get();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_TRUE(visible);
  std::promise<Status> duplicate;
  committer.WriteAsync(b, [&](const Status& s) { duplicate.set_value(s); });
  EXPECT_EQ(duplicate.get_future().get().code(), StatusCode::kAlreadyExists);
}

TEST_F(GroupCommitTest, AFullQueueRefusesInsteadOfGrowing) {
  FaultyStore slow(store_.get());
  slow.Hold(StoreOp::kApplyGroup);
  GroupCommitOptions options;
  options.max_queued_batches = 4;
  GroupCommitter committer(&slow, options);
  auto in_store = OccupyWriter(committer, slow);
  ASSERT_TRUE(in_store.valid());
  std::vector<std::future<Status>> queued;
  for (int i = 0; i < 4; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("queued-" + std::to_string(i))};
    queued.push_back(committer.WriteAsync(std::move(b)));
  }
  WriteBatch over;
  over.insert_txns = {Txn("over")};
  Status s = committer.Write(std::move(over));
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("overloaded"), std::string::npos) << s;
  slow.Open(StoreOp::kApplyGroup);
  EXPECT_TRUE(in_store.get().ok());
  for (auto& f : queued) EXPECT_TRUE(f.get().ok());
  EXPECT_EQ(store_->GetTxn("over").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(committer.GetStats().overloaded, 1);
}

TEST_F(GroupCommitTest, GroupsAreCappedInBytes) {
  FaultyStore slow(store_.get());
  slow.Hold(StoreOp::kApplyGroup);
  GroupCommitOptions options;
  WriteBatch probe;
  probe.insert_txns = {Txn("bytes-x")};
  // Room for two of these batches per group, not three.
  options.max_group_bytes = 2 * GroupCommitter::EstimateBytes(probe) + 1;
  GroupCommitter committer(&slow, options);
  auto in_store = OccupyWriter(committer, slow);
  ASSERT_TRUE(in_store.valid());
  std::vector<std::future<Status>> queued;
  for (int i = 0; i < 6; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("bytes-" + std::to_string(i))};  // same size as the probe
    queued.push_back(committer.WriteAsync(std::move(b)));
  }
  slow.Open(StoreOp::kApplyGroup);
  EXPECT_TRUE(in_store.get().ok());
  for (auto& f : queued) EXPECT_TRUE(f.get().ok());
  EXPECT_EQ(committer.GetStats().groups, 1 + 3);  // the first, then 6 queued in groups of 2
}

TEST_F(GroupCommitTest, StoreFaultsReachTheCallerAsTheyAre) {
  FaultyStore faulty(store_.get());
  GroupCommitter committer(&faulty, GroupCommitOptions{});
  auto write = [&](const std::string& gtid) {
    WriteBatch b;
    b.insert_txns = {Txn(gtid)};
    return committer.Write(std::move(b));
  };
  faulty.Inject(StoreOp::kApplyGroup, StoreFault::Fail(Status::Unavailable("store down")));
  EXPECT_EQ(write("failed").code(), StatusCode::kUnavailable);
  EXPECT_EQ(store_->GetTxn("failed").status().code(), StatusCode::kNotFound);

  faulty.Inject(StoreOp::kApplyGroup, StoreFault::IndeterminateApplied());
  EXPECT_EQ(write("lost-reply").code(), StatusCode::kIndeterminate);
  EXPECT_TRUE(store_->GetTxn("lost-reply").ok());  // re-reading finds it

  faulty.Inject(StoreOp::kApplyGroup, StoreFault::IndeterminateNotApplied());
  EXPECT_EQ(write("lost-commit").code(), StatusCode::kIndeterminate);
  EXPECT_EQ(store_->GetTxn("lost-commit").status().code(), StatusCode::kNotFound);

  EXPECT_TRUE(write("healthy").ok());  // faults are consumed one call each
  EXPECT_EQ(faulty.Calls(StoreOp::kApplyGroup), 4);
}

TEST_F(GroupCommitTest, WriteLaterCallbackRunsOnceTheWriteIsDurable) {
  FaultyStore slow(store_.get());
  slow.Inject(StoreOp::kApplyGroup, StoreFault::Delay(50), -1);
  std::promise<std::pair<Status, bool>> landed;  // (status, row visible when called)
  std::promise<Status> refused;
  {
    GroupCommitter committer(&slow, GroupCommitOptions{});
    WriteBatch b;
    b.insert_txns = {Txn("later")};
    committer.WriteLater(b, [&](const Status& s) {
      landed.set_value({s, store_->GetTxn("later").ok()});
    });
    committer.WriteLater(b, [&](const Status& s) { refused.set_value(s); });  // a duplicate
    auto [status, visible] = landed.get_future().get();
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_TRUE(visible);
    EXPECT_EQ(refused.get_future().get().code(), StatusCode::kAlreadyExists);
  }
}

// The writer only writes: while a callback of one group still runs, the next
// group's store transaction commits; answers still come in queue order.
TEST_F(GroupCommitTest, ASlowCallbackDoesNotHoldTheNextStoreTransaction) {
  GroupCommitter committer(store_.get(), GroupCommitOptions{});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> first_running;
  std::vector<std::string> order;  // appended by callbacks, all on the one answer thread
  WriteBatch first;
  first.insert_txns = {Txn("first")};
  committer.WriteLater(first, [&](const Status& s) {
    EXPECT_TRUE(s.ok()) << s;
    order.push_back("first");
    first_running.set_value();
    released.wait();
  });
  first_running.get_future().wait();
  WriteBatch second;
  second.insert_txns = {Txn("second")};
  std::promise<Status> second_done;
  committer.WriteLater(second, [&](const Status& s) {
    order.push_back("second");
    second_done.set_value(s);
  });
  // The second batch is durable while the first callback still blocks...
  EXPECT_TRUE(testing::WaitUntil([&] { return store_->GetTxn("second").ok(); }, 10000));
  auto answered = second_done.get_future();
  // ...but its answer waits for the first callback: answers keep queue order.
  EXPECT_EQ(answered.wait_for(std::chrono::milliseconds(100)), std::future_status::timeout);
  release.set_value();
  EXPECT_TRUE(answered.get().ok());
  EXPECT_EQ(order, (std::vector<std::string>{"first", "second"}));
}

}  // namespace
}  // namespace txc
