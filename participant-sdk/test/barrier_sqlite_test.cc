// Barrier semantics on SQLite (the order-payment saga's services).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "migrations/migrator.h"
#include "tests/harness/process.h"
#include "txc/participant/barrier.h"

namespace txc {
namespace participant {
namespace {

class SqliteBarrierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.Child("svc.db");
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db_), SQLITE_OK);
    ASSERT_TRUE(MigrateSqlite(db_, "participant").ok());
    Exec("CREATE TABLE stock (item TEXT PRIMARY KEY, qty INTEGER NOT NULL)");
    Exec("INSERT INTO stock VALUES ('apple', 10)");
  }
  void TearDown() override { sqlite3_close(db_); }

  void Exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << err;
  }
  static int64_t Scalar(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr), SQLITE_OK);
    int64_t v = -1;
    if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
  }
  int64_t Qty() { return Scalar(db_, "SELECT qty FROM stock WHERE item = 'apple'"); }
  int64_t Rows() { return Scalar(db_, "SELECT count(*) FROM txc_barrier"); }

  static StepContext Ctx(const std::string& gtid, const std::string& step = "reserve") {
    StepContext c;
    c.gtid = gtid;
    c.step_id = step;
    c.name = "reserve";
    return c;
  }
  // Business change: take (or give back) n apples in the barrier's transaction.
  std::function<StepResult(sqlite3*)> Take(int n, std::atomic<int>* calls,
                                           StepResult result = StepResult::Success("taken")) {
    return [n, calls, result](sqlite3* db) {
      ++*calls;
      const std::string sql = "UPDATE stock SET qty = qty - " + std::to_string(n);
      EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
      return result;
    };
  }

  testing::TempDir dir_;
  std::string path_;
  sqlite3* db_ = nullptr;
};

TEST_F(SqliteBarrierTest, DuplicateActionRunsOnceAndAnswersFirstOutcome) {
  std::atomic<int> calls{0};
  auto first = SqliteBarrierAction(db_, Ctx("g1"), Take(3, &calls));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->outcome, StepOutcome::kSuccess);
  auto again = SqliteBarrierAction(db_, Ctx("g1"), Take(3, &calls));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, StepOutcome::kSuccess);
  EXPECT_EQ(again->message, "taken");
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Qty(), 7);
  // Its compensation runs once too.
  auto comp = SqliteBarrierCompensate(db_, Ctx("g1"), Take(-3, &calls));
  ASSERT_TRUE(comp.ok());
  auto comp2 = SqliteBarrierCompensate(db_, Ctx("g1"), Take(-3, &calls));
  ASSERT_TRUE(comp2.ok());
  EXPECT_EQ(comp2->outcome, StepOutcome::kSuccess);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(SqliteBarrierTest, NullCompensationThenHangingActionRefused) {
  std::atomic<int> calls{0};
  auto comp = SqliteBarrierCompensate(db_, Ctx("g2"), Take(-3, &calls));
  ASSERT_TRUE(comp.ok()) << comp.status();
  EXPECT_EQ(comp->outcome, StepOutcome::kSuccess);
  EXPECT_NE(comp->message.find("null compensation"), std::string::npos);
  EXPECT_EQ(calls.load(), 0);
  auto late = SqliteBarrierAction(db_, Ctx("g2"), Take(3, &calls));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome, StepOutcome::kFailure);
  EXPECT_NE(late->message.find("hanging"), std::string::npos);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(SqliteBarrierTest, FailedActionRolledBackAndItsCompensationIsNoOp) {
  std::atomic<int> calls{0};
  auto r = SqliteBarrierAction(db_, Ctx("g3"), Take(3, &calls, StepResult::Failure("no stock")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StepOutcome::kFailure);
  EXPECT_EQ(Qty(), 10);  // the hook's update was rolled back to the savepoint
  auto dup = SqliteBarrierAction(db_, Ctx("g3"), Take(3, &calls));
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->outcome, StepOutcome::kFailure);
  EXPECT_EQ(dup->message, "no stock");
  auto comp = SqliteBarrierCompensate(db_, Ctx("g3"), Take(-3, &calls));
  ASSERT_TRUE(comp.ok());
  EXPECT_EQ(comp->outcome, StepOutcome::kSuccess);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(SqliteBarrierTest, RetryLaterAndThrowLeaveNoRow) {
  std::atomic<int> calls{0};
  auto r = SqliteBarrierAction(db_, Ctx("g4"), Take(3, &calls, StepResult::RetryLater("busy")));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, StepOutcome::kRetryLater);
  EXPECT_EQ(Rows(), 0);
  EXPECT_EQ(Qty(), 10);
  auto thrown = SqliteBarrierAction(db_, Ctx("g4"), [](sqlite3* db) -> StepResult {
    sqlite3_exec(db, "UPDATE stock SET qty = 0", nullptr, nullptr, nullptr);
    throw std::runtime_error("boom");
  });
  EXPECT_FALSE(thrown.ok());
  EXPECT_NE(thrown.status().message().find("boom"), std::string::npos);
  EXPECT_EQ(Rows(), 0);
  EXPECT_EQ(Qty(), 10);
  // A later delivery really runs.
  auto ok = SqliteBarrierAction(db_, Ctx("g4"), Take(3, &calls));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(Qty(), 7);
}

TEST_F(SqliteBarrierTest, PurgeOlderThanRemovesOnlyOldRows) {
  std::atomic<int> calls{0};
  ASSERT_TRUE(SqliteBarrierAction(db_, Ctx("old"), Take(1, &calls)).ok());
  Exec("UPDATE txc_barrier SET created_unix_ms = created_unix_ms - 3600000");
  ASSERT_TRUE(SqliteBarrierAction(db_, Ctx("new"), Take(1, &calls)).ok());
  auto purged = SqliteBarrierPurgeOlderThan(db_, 60000);
  ASSERT_TRUE(purged.ok()) << purged.status();
  EXPECT_EQ(*purged, 1);
  EXPECT_EQ(Rows(), 1);
  EXPECT_EQ(Scalar(db_, "SELECT count(*) FROM txc_barrier WHERE gtid = 'new'"), 1);
}

TEST_F(SqliteBarrierTest, StoreGivesHookTheLocalTransactionAndPurgerRuns) {
  auto store = std::make_shared<SqliteBarrierStore>(path_);
  std::atomic<int> calls{0};
  auto hook = [&](const StepContext& ctx) {
    sqlite3* db = SqliteDbOf(ctx);
    EXPECT_NE(db, nullptr);
    EXPECT_EQ(PgWorkOf(ctx), nullptr);
    EXPECT_FALSE(sqlite3_get_autocommit(db));  // inside the barrier's transaction
    ++calls;
    sqlite3_exec(db, "UPDATE stock SET qty = qty - 2", nullptr, nullptr, nullptr);
    return StepResult::Success();
  };
  ASSERT_TRUE(store->Action(Ctx("s1"), hook).ok());
  ASSERT_TRUE(store->Action(Ctx("s1"), hook).ok());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Qty(), 8);
  Exec("UPDATE txc_barrier SET created_unix_ms = 0");
  {
    BarrierPurger purger(store, 1000, 10);
    EXPECT_TRUE(testing::WaitUntil([&] { return purger.purged_rows() >= 1; }, 5000));
  }
  EXPECT_EQ(Rows(), 0);
}

TEST_F(SqliteBarrierTest, ConcurrentDuplicatesRunOnce) {
  auto store = std::make_shared<SqliteBarrierStore>(path_);
  std::atomic<int> calls{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      auto r = store->Action(Ctx("c1"), [&](const StepContext& ctx) {
        ++calls;
        sqlite3_exec(SqliteDbOf(ctx), "UPDATE stock SET qty = qty - 1", nullptr, nullptr, nullptr);
        return StepResult::Success();
      });
      EXPECT_TRUE(r.ok()) << r.status();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Qty(), 9);
}

}  // namespace
}  // namespace participant
}  // namespace txc
