// GroupCommitter semantics on a real SQLite store; a slow wrapper store makes
// the write timeout observable.
#include "coordinator/store/group_commit.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

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

// Delegates to a real store; ApplyGroup first sleeps `delay_ms`.
class SlowStore : public TxnStore {
 public:
  SlowStore(TxnStore* inner, int delay_ms) : inner_(inner), delay_ms_(delay_ms) {}
  const char* Kind() const override { return inner_->Kind(); }
  Status Migrate() override { return inner_->Migrate(); }
  Status Apply(const WriteBatch& b) override { return inner_->Apply(b); }
  std::vector<Status> ApplyGroup(const std::vector<const WriteBatch*>& batches) override {
    calls_.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    return inner_->ApplyGroup(batches);
  }
  Result<TxnRecord> GetTxn(const std::string& g) override { return inner_->GetTxn(g); }
  Result<TxnRecord> FindByIdempotencyKey(const std::string& k) override {
    return inner_->FindByIdempotencyKey(k);
  }
  Result<std::vector<BranchRecord>> GetBranches(const std::string& g) override {
    return inner_->GetBranches(g);
  }
  Result<std::vector<TxnRecord>> ListDue(const std::vector<TxnState>& s, const std::string& o,
                                         int64_t e, int64_t n, int l) override {
    return inner_->ListDue(s, o, e, n, l);
  }
  Result<int64_t> CountInStates(const std::vector<TxnState>& s) override {
    return inner_->CountInStates(s);
  }
  Result<int> DeleteFinishedBefore(int64_t cutoff, int limit) override {
    return inner_->DeleteFinishedBefore(cutoff, limit);
  }
  using TxnStore::AcquireLease;
  Result<Lease> AcquireLease(const std::string& n, const std::string& e, int64_t t, int64_t now,
                             LeaseTakeover takeover) override {
    return inner_->AcquireLease(n, e, t, now, takeover);
  }
  Status RenewLease(const std::string& n, int64_t e, int64_t t, int64_t now) override {
    return inner_->RenewLease(n, e, t, now);
  }
  Result<std::vector<Lease>> ListLeases() override { return inner_->ListLeases(); }
  Result<int> ClaimOrphans(const std::string& n, int64_t e, int64_t now, int l) override {
    return inner_->ClaimOrphans(n, e, now, l);
  }
  StoreStats Stats() const override { return inner_->Stats(); }
  int calls() const { return calls_.load(); }  // ApplyGroup calls so far

 private:
  std::atomic<int> calls_{0};
  TxnStore* inner_;
  int delay_ms_;
};

class GroupCommitTest : public ::testing::Test {
 protected:
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
  SlowStore slow(store_.get(), 300);
  {
    GroupCommitOptions options;
    options.write_timeout_ms = 30;
    GroupCommitter committer(&slow, options);
    WriteBatch b;
    b.insert_txns = {Txn("slow")};
    EXPECT_EQ(committer.Write(b).code(), StatusCode::kTimeout);
  }  // the destructor waits for the writer
  EXPECT_TRUE(store_->GetTxn("slow").ok());
}

TEST_F(GroupCommitTest, GroupsAreCappedAndQueuedWritesShareOne) {
  SlowStore slow(store_.get(), 50);
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
  SlowStore slow(store_.get(), 200);
  GroupCommitter committer(&slow, GroupCommitOptions{});
  // The first group is inside the (slow) store call; the rest queue behind it.
  WriteBatch first;
  first.insert_txns = {Txn("in-store")};
  auto in_store = committer.WriteAsync(std::move(first));
  ASSERT_TRUE(testing::WaitUntil([&] { return slow.calls() > 0; }, 5000));
  std::vector<std::future<Status>> queued;
  for (int i = 0; i < 5; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("queued-" + std::to_string(i))};
    queued.push_back(committer.WriteAsync(std::move(b)));
  }
  committer.Fence(Status::Timeout("lease lost"));
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
  EXPECT_EQ(slow.calls(), 1);
}

TEST_F(GroupCommitTest, WriteLaterCallbackRunsOnceTheWriteIsDurable) {
  SlowStore slow(store_.get(), 50);
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

}  // namespace
}  // namespace txc
