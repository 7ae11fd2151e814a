// PgXaResource on a real PostgreSQL 15 (tests/harness SharedPgCluster,
// max_prepared_transactions = 64).
#include "txc/participant/pg_resource.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <set>

#include "migrations/migrator.h"
#include "tests/harness/pg_cluster.h"

namespace txc {
namespace participant {
namespace {

class PgXaResourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = testing::SharedPgCluster();
    db_ = pg_->CreateUniqueDatabase("xa");
    conninfo_ = pg_->ConnectionString(db_);
    pqxx::connection conn(conninfo_);
    ASSERT_TRUE(MigratePostgres(conn, "participant").ok());
    pqxx::work w(conn);
    w.exec("CREATE TABLE account (id INT PRIMARY KEY, balance BIGINT NOT NULL)");
    w.exec("INSERT INTO account VALUES (1, 100), (2, 0)");
    w.exec("CREATE TABLE ledger (gtid TEXT NOT NULL)");
    w.commit();
  }
  void TearDown() override {
    // Leave no prepared transaction behind (they would pin the database).
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    for (const auto& row :
         n.exec("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")) {
      n.exec("ROLLBACK PREPARED " + n.quote(row[0].as<std::string>()));
    }
  }

  std::unique_ptr<PgXaResource> Resource(const std::string& prefix = "bank",
                                         int64_t prepare_lock_timeout_ms = 2000,
                                         int64_t acquire_timeout_ms = 10000) {
    PgXaOptions o;
    o.conninfo = conninfo_;
    o.prefix = prefix;
    o.prepare_lock_timeout_ms = prepare_lock_timeout_ms;
    o.acquire_timeout_ms = acquire_timeout_ms;
    auto r = PgXaResource::Create(o);
    EXPECT_TRUE(r.ok()) << r.status();
    return std::move(r).value();
  }
  int64_t Balance(int id) {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n.exec_params("SELECT balance FROM account WHERE id = $1", id)[0][0].as<int64_t>();
  }
  int64_t PreparedCount() {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n
        .exec("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")[0][0]
        .as<int64_t>();
  }
  static BranchContext Ctx(const std::string& gtid, const std::string& branch = "b1") {
    BranchContext c;
    c.gtid = gtid;
    c.branch_id = branch;
    c.resource = "accounts";
    return c;
  }
  // Moves `amount` from account 1 to 2; votes abort when funds are short.
  static std::function<Vote(pqxx::work&)> Move(int amount, std::atomic<int>* calls) {
    return [amount, calls](pqxx::work& w) {
      ++*calls;
      auto r = w.exec_params(
          "UPDATE account SET balance = balance - $1 WHERE id = 1 AND balance >= $1", amount);
      if (r.affected_rows() != 1) return Vote::kAbort;
      w.exec_params("UPDATE account SET balance = balance + $1 WHERE id = 2", amount);
      return Vote::kPrepared;
    };
  }

  // Appends a ledger row: takes no row lock another branch needs.
  static std::function<Vote(pqxx::work&)> Record(const std::string& gtid) {
    return [gtid](pqxx::work& w) {
      w.exec_params("INSERT INTO ledger VALUES ($1)", gtid);
      return Vote::kPrepared;
    };
  }
  int64_t LedgerRows() {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n.exec("SELECT count(*) FROM ledger")[0][0].as<int64_t>();
  }

  testing::PgCluster* pg_ = nullptr;
  std::string db_;
  std::string conninfo_;
};

TEST_F(PgXaResourceTest, PrepareThenCommitIsDurableAndIdempotent) {
  auto res = Resource();
  std::atomic<int> calls{0};
  auto vote = res->Prepare(Ctx("g1"), Move(30, &calls));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, Vote::kPrepared);
  EXPECT_EQ(PreparedCount(), 1);
  EXPECT_EQ(Balance(1), 100);  // prepared, not visible yet
  // A redelivered prepare answers PREPARED without running the work again.
  auto again = res->Prepare(Ctx("g1"), Move(30, &calls));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, Vote::kPrepared);
  EXPECT_EQ(calls.load(), 1);
  ASSERT_TRUE(res->Commit(Ctx("g1")).ok());
  EXPECT_EQ(Balance(1), 70);
  EXPECT_EQ(Balance(2), 30);
  EXPECT_EQ(PreparedCount(), 0);
  // Phase 2 redelivered: still success, nothing changes.
  ASSERT_TRUE(res->Commit(Ctx("g1")).ok());
  EXPECT_EQ(Balance(1), 70);
}

TEST_F(PgXaResourceTest, APrepareBlockedByAPreparedBranchGivesUpInsteadOfHoldingItsConnection) {
  auto res = Resource("bank", 200);
  std::atomic<int> calls{0};
  // The first branch is prepared and keeps its lock on account 1 until phase 2.
  auto first = res->Prepare(Ctx("g-lock-1"), Move(10, &calls));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(*first, Vote::kPrepared);
  // A second branch on the same row: without a lock timeout it would wait for
  // the first one's phase 2, holding a pooled connection meanwhile.
  auto second = std::async(std::launch::async,
                           [&] { return res->Prepare(Ctx("g-lock-2"), Move(10, &calls)); });
  ASSERT_EQ(second.wait_for(std::chrono::seconds(30)), std::future_status::ready)
      << "the blocked prepare never gave up";
  auto blocked = second.get();
  EXPECT_FALSE(blocked.ok());
  EXPECT_NE(blocked.status().message().find("lock timeout"), std::string::npos) << blocked.status();
  EXPECT_EQ(PreparedCount(), 1);  // nothing of the second branch is left prepared
  ASSERT_TRUE(res->Commit(Ctx("g-lock-1")).ok());
  EXPECT_EQ(Balance(1), 90);
  EXPECT_EQ(PreparedCount(), 0);
}

TEST_F(PgXaResourceTest, PrepareThenAbortIsIdempotent) {
  auto res = Resource();
  std::atomic<int> calls{0};
  ASSERT_EQ(*res->Prepare(Ctx("g2"), Move(30, &calls)), Vote::kPrepared);
  ASSERT_TRUE(res->Abort(Ctx("g2")).ok());
  ASSERT_TRUE(res->Abort(Ctx("g2")).ok());
  ASSERT_TRUE(res->Abort(Ctx("never-prepared")).ok());
  EXPECT_EQ(Balance(1), 100);
  EXPECT_EQ(PreparedCount(), 0);
}

// The coordinator's prepare timed out, it decided ABORT and aborted the branch;
// then the delayed prepare arrives. It must not leave a prepared transaction
// (holding its locks until recovery) behind.
TEST_F(PgXaResourceTest, APrepareAfterItsAbortVotesAbortWithoutRunningItsWork) {
  auto res = Resource();
  std::atomic<int> calls{0};
  ASSERT_TRUE(res->Abort(Ctx("g-late")).ok());
  auto vote = res->Prepare(Ctx("g-late"), Move(10, &calls));
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, Vote::kAbort);
  EXPECT_EQ(calls.load(), 0);
  EXPECT_EQ(PreparedCount(), 0);
  EXPECT_EQ(Balance(1), 100);
  // Another branch of the same transaction is another branch.
  ASSERT_EQ(*res->Prepare(Ctx("g-late", "b2"), Move(10, &calls)), Vote::kPrepared);
  ASSERT_TRUE(res->Abort(Ctx("g-late", "b2")).ok());
  EXPECT_EQ(PreparedCount(), 0);
  EXPECT_EQ(Balance(1), 100);
}

// A prepare whose work runs until `go` is set, as a future of its vote.
std::future<Result<Vote>> BlockedPrepare(PgXaResource* res, const BranchContext& ctx,
                                         std::promise<void>* in_work, std::shared_future<void> go) {
  return std::async(std::launch::async, [res, ctx, in_work, go] {
    return res->Prepare(ctx, [in_work, go](pqxx::work& w) {
      in_work->set_value();
      go.wait();
      w.exec("UPDATE account SET balance = balance - 10 WHERE id = 1");
      return Vote::kPrepared;
    });
  });
}

TEST_F(PgXaResourceTest, AnAbortDuringItsPrepareWaitsForItAndLeavesNothingPrepared) {
  auto res = Resource();
  std::promise<void> in_work, go;
  auto prepare = BlockedPrepare(res.get(), Ctx("g-race"), &in_work, go.get_future().share());
  in_work.get_future().wait();
  auto abort = std::async(std::launch::async, [&] { return res->Abort(Ctx("g-race")); });
  // Not answered while the prepare's work runs (it would then prepare after the abort).
  EXPECT_EQ(abort.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout);
  go.set_value();
  Result<Vote> vote = prepare.get();
  Status aborted = abort.get();
  ASSERT_TRUE(aborted.ok()) << aborted;
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(PreparedCount(), 0);
  EXPECT_EQ(Balance(1), 100);
}

TEST_F(PgXaResourceTest, AnAbortWaitingTooLongForItsPrepareIsUnavailableAndTheAbortStands) {
  auto res = Resource("bank", 2000, /*acquire_timeout_ms=*/200);
  std::promise<void> in_work, go;
  auto prepare = BlockedPrepare(res.get(), Ctx("g-slow"), &in_work, go.get_future().share());
  in_work.get_future().wait();
  Status first = res->Abort(Ctx("g-slow"));
  EXPECT_EQ(first.code(), StatusCode::kUnavailable) << first;
  go.set_value();
  // The abort was remembered: the prepare rolls back instead of preparing.
  Result<Vote> vote = prepare.get();
  ASSERT_TRUE(vote.ok()) << vote.status();
  EXPECT_EQ(*vote, Vote::kAbort);
  EXPECT_EQ(PreparedCount(), 0);
  ASSERT_TRUE(res->Abort(Ctx("g-slow")).ok());  // the coordinator's retry
  EXPECT_EQ(Balance(1), 100);
}

TEST_F(PgXaResourceTest, AbortAndReadOnlyVotesLeaveNothing) {
  auto res = Resource();
  std::atomic<int> calls{0};
  auto no = res->Prepare(Ctx("g3"), Move(1000, &calls));
  ASSERT_TRUE(no.ok());
  EXPECT_EQ(*no, Vote::kAbort);
  auto ro = res->Prepare(Ctx("g4"), [](pqxx::work& w) {
    w.exec("SELECT balance FROM account");
    w.exec("UPDATE account SET balance = 0");  // even a write is discarded on READ_ONLY
    return Vote::kReadOnly;
  });
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(*ro, Vote::kReadOnly);
  EXPECT_EQ(PreparedCount(), 0);
  EXPECT_EQ(Balance(1), 100);
}

TEST_F(PgXaResourceTest, ThrowingWorkIsAnErrorAndLeavesNothing) {
  auto res = Resource();
  auto r = res->Prepare(Ctx("g5"), [](pqxx::work& w) -> Vote {
    w.exec("UPDATE account SET balance = 0");
    w.exec("SELECT * FROM no_such_table");
    return Vote::kPrepared;
  });
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(PreparedCount(), 0);
  EXPECT_EQ(Balance(1), 100);
  // The pooled connection is still usable.
  std::atomic<int> calls{0};
  EXPECT_EQ(*res->Prepare(Ctx("g6"), Move(1, &calls)), Vote::kPrepared);
}

TEST_F(PgXaResourceTest, RecoverAfterConnectionsDroppedFiltersByPrefix) {
  {
    auto res = Resource("bank");
    ASSERT_EQ(*res->Prepare(Ctx("g7", "b1"), Record("g7")), Vote::kPrepared);
    ASSERT_EQ(*res->Prepare(Ctx("tx:with'odd", "br:2"), Record("odd")), Vote::kPrepared);
    auto other = Resource("bank2");  // "bank" is a prefix of "bank2": must not mix
    ASSERT_EQ(*other->Prepare(Ctx("g8"), Record("g8")), Vote::kPrepared);
  }  // every connection of the first process closed: the prepared transactions stay
  auto res = Resource("bank");
  auto found = res->Recover();
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 2u);
  std::set<std::pair<std::string, std::string>> ids;
  for (const auto& b : *found) {
    ids.insert({b.gtid, b.branch_id});
    EXPECT_EQ(b.resource, "bank");
  }
  EXPECT_EQ(ids.count({"g7", "b1"}), 1u);
  EXPECT_EQ(ids.count({"tx:with'odd", "br:2"}), 1u);
  // Resolve what recovery found: commit one, abort the other.
  ASSERT_TRUE(res->Commit(Ctx("g7", "b1")).ok());
  ASSERT_TRUE(res->Abort(Ctx("tx:with'odd", "br:2")).ok());
  EXPECT_EQ(LedgerRows(), 1);
  auto rest = Resource("bank2")->Recover();
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].gtid, "g8");
}

TEST_F(PgXaResourceTest, ReconnectsAfterServerSideTermination) {
  auto res = Resource();
  std::atomic<int> calls{0};
  ASSERT_EQ(*res->Prepare(Ctx("g9"), Move(5, &calls)), Vote::kPrepared);
  {
    pqxx::connection admin(pg_->ConnectionString("postgres"));
    pqxx::nontransaction n(admin);
    n.exec_params(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> "
        "pg_backend_pid()",
        db_);
  }
  // The pooled connection is dead; phase 2 reconnects and still finds the branch.
  Status s = res->Commit(Ctx("g9"));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Balance(1), 95);
}

TEST_F(PgXaResourceTest, CommitOnePhaseIsIdempotentThroughTheBarrier) {
  auto res = Resource();
  std::atomic<int> calls{0};
  auto first = res->CommitOnePhase(Ctx("g10"), Move(20, &calls));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, Outcome::kCommit);
  auto again = res->CommitOnePhase(Ctx("g10"), Move(20, &calls));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, Outcome::kCommit);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(Balance(1), 80);
  auto no = res->CommitOnePhase(Ctx("g11"), Move(1000, &calls));
  ASSERT_TRUE(no.ok());
  EXPECT_EQ(*no, Outcome::kAbort);
  EXPECT_EQ(Balance(1), 80);
  EXPECT_EQ(PreparedCount(), 0);
}

TEST_F(PgXaResourceTest, TooLongGidAndBadPrefixAreInvalid) {
  auto res = Resource();
  std::atomic<int> calls{0};
  auto r = res->Prepare(Ctx(std::string(128, 'g'), std::string(128, 'b')), Move(1, &calls));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(calls.load(), 0);
  PgXaOptions o;
  o.conninfo = conninfo_;
  o.prefix = "a:b";
  EXPECT_EQ(PgXaResource::Create(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace participant
}  // namespace txc
