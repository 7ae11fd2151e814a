// Barrier semantics on PostgreSQL, including truly concurrent deliveries.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "migrations/migrator.h"
#include "tests/harness/pg_cluster.h"
#include "txc/participant/barrier.h"

namespace txc {
namespace participant {
namespace {

class PgBarrierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = testing::SharedPgCluster();
    conninfo_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("barrier"));
    conn_ = std::make_unique<pqxx::connection>(conninfo_);
    ASSERT_TRUE(MigratePostgres(*conn_, "participant").ok());
    pqxx::work w(*conn_);
    w.exec("CREATE TABLE stock (item TEXT PRIMARY KEY, qty INT NOT NULL)");
    w.exec("INSERT INTO stock VALUES ('apple', 10)");
    w.commit();
  }
  int64_t Scalar(const std::string& sql) {
    pqxx::nontransaction n(*conn_);
    return n.exec(sql)[0][0].as<int64_t>();
  }
  int64_t Qty() { return Scalar("SELECT qty FROM stock"); }
  static StepContext Ctx(const std::string& gtid) {
    StepContext c;
    c.gtid = gtid;
    c.step_id = "reserve";
    return c;
  }
  static std::function<StepResult(pqxx::work&)> Take(
      int n, std::atomic<int>* calls, StepResult result = StepResult::Success("ok")) {
    return [n, calls, result](pqxx::work& w) {
      ++*calls;
      w.exec_params("UPDATE stock SET qty = qty - $1", n);
      return result;
    };
  }

  testing::PgCluster* pg_ = nullptr;
  std::string conninfo_;
  std::unique_ptr<pqxx::connection> conn_;
};

TEST_F(PgBarrierTest, DuplicateActionAndCompensationRunOnce) {
  std::atomic<int> calls{0};
  ASSERT_TRUE(PgBarrierAction(*conn_, Ctx("g1"), Take(3, &calls)).ok());
  auto dup = PgBarrierAction(*conn_, Ctx("g1"), Take(3, &calls));
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_EQ(dup->outcome, StepOutcome::kSuccess);
  EXPECT_EQ(dup->message, "ok");
  ASSERT_TRUE(PgBarrierCompensate(*conn_, Ctx("g1"), Take(-3, &calls)).ok());
  ASSERT_TRUE(PgBarrierCompensate(*conn_, Ctx("g1"), Take(-3, &calls)).ok());
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(PgBarrierTest, NullCompensationAndHangingAction) {
  std::atomic<int> calls{0};
  auto comp = PgBarrierCompensate(*conn_, Ctx("g2"), Take(-3, &calls));
  ASSERT_TRUE(comp.ok()) << comp.status();
  EXPECT_EQ(comp->outcome, StepOutcome::kSuccess);
  auto late = PgBarrierAction(*conn_, Ctx("g2"), Take(3, &calls));
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome, StepOutcome::kFailure);
  EXPECT_NE(late->message.find("hanging"), std::string::npos);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(PgBarrierTest, FailureThenCompensationIsNoOpAndRetryLeavesNoRow) {
  std::atomic<int> calls{0};
  auto f = PgBarrierAction(*conn_, Ctx("g3"), Take(3, &calls, StepResult::Failure("sold out")));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->outcome, StepOutcome::kFailure);
  EXPECT_EQ(Qty(), 10);
  ASSERT_TRUE(PgBarrierCompensate(*conn_, Ctx("g3"), Take(-3, &calls)).ok());
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Qty(), 10);
  auto retry = PgBarrierAction(*conn_, Ctx("g4"), Take(3, &calls, StepResult::RetryLater("x")));
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->outcome, StepOutcome::kRetryLater);
  EXPECT_EQ(Scalar("SELECT count(*) FROM txc_barrier WHERE gtid = 'g4'"), 0);
  EXPECT_EQ(Qty(), 10);
}

TEST_F(PgBarrierTest, RetentionPurge) {
  std::atomic<int> calls{0};
  ASSERT_TRUE(PgBarrierAction(*conn_, Ctx("old"), Take(1, &calls)).ok());
  {
    pqxx::work w(*conn_);
    w.exec("UPDATE txc_barrier SET created_unix_ms = created_unix_ms - 3600000");
    w.commit();
  }
  ASSERT_TRUE(PgBarrierAction(*conn_, Ctx("new"), Take(1, &calls)).ok());
  PgBarrierStore store(conninfo_);
  auto n = store.PurgeOlderThan(60000);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(Scalar("SELECT count(*) FROM txc_barrier"), 1);
}

TEST_F(PgBarrierTest, ConcurrentDuplicatesAndRacingCompensation) {
  PgBarrierStore store(conninfo_, 4);
  std::atomic<int> actions{0}, compensations{0};
  auto action = [&](const StepContext& ctx) {
    ++actions;
    PgWorkOf(ctx)->exec("UPDATE stock SET qty = qty - 1");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return StepResult::Success();
  };
  auto compensate = [&](const StepContext& ctx) {
    ++compensations;
    PgWorkOf(ctx)->exec("UPDATE stock SET qty = qty + 1");
    return StepResult::Success();
  };
  // 20 sagas; each gets 3 concurrent action deliveries and 2 compensations
  // racing them. Whatever the order: the action ran at most once, and stock is
  // back to 10 exactly when every saga's compensation saw its action.
  std::vector<std::thread> threads;
  for (int g = 0; g < 20; ++g) {
    const std::string gtid = "c" + std::to_string(g);
    for (int i = 0; i < 3; ++i) {
      threads.emplace_back([&, gtid] { EXPECT_TRUE(store.Action(Ctx(gtid), action).ok()); });
    }
    for (int i = 0; i < 2; ++i) {
      threads.emplace_back(
          [&, gtid] { EXPECT_TRUE(store.Compensate(Ctx(gtid), compensate).ok()); });
    }
    for (auto& t : threads) t.join();
    threads.clear();
  }
  EXPECT_LE(actions.load(), 20);
  EXPECT_EQ(actions.load(), compensations.load());  // every action that ran was compensated
  EXPECT_EQ(Qty(), 10);
}

}  // namespace
}  // namespace participant
}  // namespace txc
