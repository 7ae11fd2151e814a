// GroupCommitter semantics on a real SQLite store; a slow wrapper store makes
// the write timeout observable.
#include "coordinator/store/group_commit.h"

#include <gtest/gtest.h>

#include <chrono>
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
  Result<Lease> AcquireLease(const std::string& n, const std::string& e, int64_t t,
                             int64_t now) override {
    return inner_->AcquireLease(n, e, t, now);
  }
  Status RenewLease(const std::string& n, int64_t e, int64_t t, int64_t now) override {
    return inner_->RenewLease(n, e, t, now);
  }
  Result<std::vector<Lease>> ListLeases() override { return inner_->ListLeases(); }
  Result<int> ClaimOrphans(const std::string& n, int64_t e, int64_t now, int l) override {
    return inner_->ClaimOrphans(n, e, now, l);
  }
  StoreStats Stats() const override { return inner_->Stats(); }

 private:
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

}  // namespace
}  // namespace txc
