// GroupCommitter on both backends: many concurrent writers share few store
// transactions, every acknowledged write is durable and readable, and a
// refused batch gets its own answer without affecting the others.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/group_commit.h"
#include "tests/store/store_test_util.h"

namespace txc {
namespace testing {
namespace {

class GroupCommitStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    store_ = OpenFreshStore(GetParam(), dir_, &location_);
    ASSERT_NE(store_, nullptr);
  }
  TempDir dir_{"txc-gc-"};
  std::string location_;
  std::unique_ptr<TxnStore> store_;
};

// Starts all threads at once so that their writes overlap.
class StartGate {
 public:
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST_P(GroupCommitStoreTest, ConcurrentWritersShareCommitsAndAreDurable) {
  constexpr int kWriters = 64;
  constexpr int kWritesEach = 5;
  const StoreStats before = store_->Stats();
  std::vector<Status> results(kWriters * kWritesEach);
  {
    GroupCommitter committer(store_.get(), GroupCommitOptions{});
    StartGate gate;
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        gate.Wait();
        for (int i = 0; i < kWritesEach; ++i) {
          std::string gtid = "gc-" + std::to_string(w) + "-" + std::to_string(i);
          WriteBatch b;
          b.insert_txns = {MakeTxn(gtid, "node-a", 1)};
          b.insert_txns[0].payload = std::string("\0", 1) + gtid;
          b.insert_branches = {MakeBranch(gtid, "b1", 0)};
          results[w * kWritesEach + i] = committer.Write(std::move(b));
        }
      });
    }
    gate.Open();
    for (auto& t : threads) t.join();
    GroupCommitter::Stats stats = committer.GetStats();
    EXPECT_EQ(stats.batches, kWriters * kWritesEach);
    EXPECT_LT(stats.groups, kWriters * kWritesEach);
    RecordProperty("groups", std::to_string(stats.groups));
  }
  for (const auto& s : results) ASSERT_TRUE(s.ok()) << s;
  const StoreStats after = store_->Stats();
  EXPECT_EQ(after.batches - before.batches, kWriters * kWritesEach);
  EXPECT_LT(after.commits - before.commits, kWriters * kWritesEach)
      << "no two writes shared a commit";

  // Re-read through a fresh store object: everything acknowledged is there.
  auto reopened = OpenStore(location_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kWritesEach; ++i) {
      std::string gtid = "gc-" + std::to_string(w) + "-" + std::to_string(i);
      auto t = (*reopened)->GetTxn(gtid);
      ASSERT_TRUE(t.ok()) << gtid << ": " << t.status();
      EXPECT_EQ(t->payload, std::string("\0", 1) + gtid);
      EXPECT_EQ((*reopened)->GetBranches(gtid)->size(), 1u);
    }
  }
}

TEST_P(GroupCommitStoreTest, RefusedWritesAreAnsweredOneByOne) {
  WriteBatch seed;
  seed.insert_txns = {MakeTxn("fenced", "node-a", 2)};
  ASSERT_TRUE(store_->Apply(seed).ok());
  constexpr int kWriters = 32;
  std::vector<Status> results(kWriters);
  {
    GroupCommitter committer(store_.get(), GroupCommitOptions{});
    StartGate gate;
    std::vector<std::thread> threads;
    for (int w = 0; w < kWriters; ++w) {
      threads.emplace_back([&, w] {
        gate.Wait();
        WriteBatch b;
        b.insert_txns = {MakeTxn("mixed-" + std::to_string(w), "node-a", 1)};
        if (w % 2 == 1) {  // stale epoch: refused, and its insert must not land
          TxnUpdate u;
          u.gtid = "fenced";
          u.expected_owner = "node-a";
          u.expected_epoch = 1;
          u.state = TxnState::kAborting;
          b.txn_updates = {u};
        }
        results[w] = committer.Write(std::move(b));
      });
    }
    gate.Open();
    for (auto& t : threads) t.join();
  }
  for (int w = 0; w < kWriters; ++w) {
    std::string gtid = "mixed-" + std::to_string(w);
    if (w % 2 == 1) {
      EXPECT_EQ(results[w].code(), StatusCode::kConflict) << gtid;
      EXPECT_EQ(store_->GetTxn(gtid).status().code(), StatusCode::kNotFound) << gtid;
    } else {
      EXPECT_TRUE(results[w].ok()) << gtid << ": " << results[w];
      EXPECT_TRUE(store_->GetTxn(gtid).ok()) << gtid;
    }
  }
  EXPECT_EQ(store_->GetTxn("fenced")->state, TxnState::kActive);
}

TEST_P(GroupCommitStoreTest, WriteLaterIsWrittenByTheNextGroupOrAtShutdown) {
  {
    GroupCommitter committer(store_.get(), GroupCommitOptions{});
    WriteBatch later;
    later.insert_txns = {MakeTxn("later-1", "node-a", 1)};
    committer.WriteLater(std::move(later));
    WriteBatch after;
    after.insert_txns = {MakeTxn("later-2", "node-a", 1)};
    committer.WriteLater(std::move(after));
  }  // the destructor drains the queue
  EXPECT_TRUE(store_->GetTxn("later-1").ok());
  EXPECT_TRUE(store_->GetTxn("later-2").ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, GroupCommitStoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace testing
}  // namespace txc
