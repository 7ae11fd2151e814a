// PostgresStore's prepared statements do not keep a plan made when the tables
// were small: a multi-row UPDATE of txns planned on a near-empty table (hash
// join over a sequential scan of txns) must not be reused once txns is large.
// The plans are read from the server log (auto_explain on the test database).
#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <pqxx/pqxx>
#include <sstream>
#include <string>
#include <vector>

#include "coordinator/store/postgres_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/store/store_test_util.h"

namespace txc {
namespace testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The auto_explain entries ("duration: ... plan:") after `marker` whose query
// text starts with `query_prefix`, one string per entry.
std::vector<std::string> PlansAfter(const std::string& log, const std::string& marker,
                                    const std::string& query_prefix) {
  std::vector<std::string> plans;
  size_t pos = log.find(marker);
  if (pos == std::string::npos) return plans;
  while ((pos = log.find("plan:", pos)) != std::string::npos) {
    size_t end = log.find("plan:", pos + 5);
    // An entry ends where the next log line with a timestamp starts.
    size_t next_line = log.find("\n20", pos);
    if (next_line != std::string::npos && (end == std::string::npos || next_line < end)) {
      end = next_line;
    }
    const std::string entry =
        log.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (entry.find("Query Text: " + query_prefix) != std::string::npos) plans.push_back(entry);
    pos += 5;
  }
  return plans;
}

// A fresh database on its own cluster with auto_explain logging every plan and
// no autovacuum (an ANALYZE would invalidate cached plans and give the planner
// statistics: both hide the problems tested here), and a one-connection store.
class PostgresPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pg = PgCluster::Start({});  // our own: its log holds only this test's plans
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = std::move(pg).value();
    db_ = pg_->CreateUniqueDatabase("plans");
    Sql("postgres", "ALTER DATABASE " + db_ + " SET session_preload_libraries = 'auto_explain'");
    Sql("postgres", "ALTER DATABASE " + db_ + " SET auto_explain.log_min_duration = 0");
    PostgresStoreOptions options;
    options.max_connections = 1;  // every statement on the same connection
    auto store = PostgresStore::Open(pg_->ConnectionString(db_), options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    // DDL, so before any statement is prepared.
    Sql(db_, "ALTER TABLE txns SET (autovacuum_enabled = false)");
    Sql(db_, "ALTER TABLE branches SET (autovacuum_enabled = false)");
  }

  void Sql(const std::string& db, const std::string& sql) {
    pqxx::connection conn(pg_->ConnectionString(db));
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  }

  // Other transactions' rows, `branches_each` branches per transaction.
  void Grow(int txns, int branches_each) {
    Sql(db_,
        "INSERT INTO txns (gtid, kind, state, owner, epoch, created_ms, updated_ms, deadline_ms, "
        "next_attempt_ms, attempts, payload, flags) SELECT 'bulk-' || i, 1, 1, 'node-a', 1, 0, 0, "
        "0, 0, 0, '\\x00', 0 FROM generate_series(1, " +
            std::to_string(txns) + ") AS i");
    if (branches_each == 0) return;
    Sql(db_,
        "INSERT INTO branches (gtid, branch_id, ordinal, endpoint, resource, action, "
        "compensation, depends_on, payload, state, attempts, max_attempts, initial_backoff_ms, "
        "max_backoff_ms, next_attempt_ms, last_error, started_ms, finished_ms) SELECT 'bulk-' || "
        "i, 'b' || j, j, 'e', '', '', '', '', '', 1, 0, 0, 0, 0, 0, '', 0, 0 FROM "
        "generate_series(1, " +
            std::to_string(txns) + ") AS i, generate_series(1, " + std::to_string(branches_each) +
            ") AS j");
  }

  // Four transactions of node-a with two branches each.
  void Seed() {
    WriteBatch seed;
    for (const auto& g : gtids_) {
      seed.insert_txns.push_back(MakeTxn(g, "node-a", 1));
      seed.insert_branches.push_back(MakeBranch(g, "b1", 0));
      seed.insert_branches.push_back(MakeBranch(g, "b2", 1));
    }
    ASSERT_TRUE(store_->Apply(seed).ok());
  }

  // One 4-row UPDATE of txns, as a commit that knows its branches sends it.
  Status UpdateAll(int64_t next_attempt_ms) {
    WriteBatch batch;
    for (const auto& g : gtids_) {
      TxnUpdate u;
      u.gtid = g;
      u.expected_owner = "node-a";
      u.expected_epoch = 1;
      u.expected_states = {TxnState::kActive};
      u.next_attempt_ms = next_attempt_ms;
      u.expected_branch_count = 2;
      batch.txn_updates.push_back(u);
    }
    return store_->Apply(batch);
  }

  void Mark(const std::string& marker) {
    Sql(db_, "DO $$ BEGIN RAISE LOG '" + marker + "'; END $$");
  }

  // The one UPDATE of txns planned after `marker`: by the index, not by
  // reading the whole table.
  void ExpectIndexPlanAfter(const std::string& marker) {
    const std::vector<std::string> plans =
        PlansAfter(ReadFile(pg_->log_path()), marker, "UPDATE txns AS t");
    ASSERT_EQ(plans.size(), 1u) << "auto_explain output missing; log: " << pg_->log_path();
    EXPECT_EQ(plans[0].find("Seq Scan on txns"), std::string::npos) << plans[0];
    EXPECT_NE(plans[0].find("Index Scan using txns_pkey"), std::string::npos) << plans[0];
  }

  std::unique_ptr<PgCluster> pg_;
  // Marks the server log with `tag`, moves every seeded transaction's
  // next_attempt_ms to `next_attempt_ms` in one multi-row UPDATE, checks that
  // `gtid` got it, and that the UPDATE after the mark used the gtid index.
  void UpdateAllThenExpectIndexPlan(const std::string& tag, int64_t next_attempt_ms,
                                    const std::string& gtid) {
    Mark(tag);
    ASSERT_TRUE(UpdateAll(next_attempt_ms).ok());
    auto txn = store_->GetTxn(gtid);
    ASSERT_TRUE(txn.ok()) << txn.status();
    EXPECT_EQ(txn->next_attempt_ms, next_attempt_ms);
    ExpectIndexPlanAfter(tag);
  }

  std::string db_;
  std::unique_ptr<PostgresStore> store_;
  const std::vector<std::string> gtids_ = {"p-1", "p-2", "p-3", "p-4"};
};

TEST_F(PostgresPlanTest, AGrownTableIsNotUpdatedWithAPlanFromWhenItWasSmall) {
  Seed();
  // While txns has four rows: more executions than PostgreSQL's five custom
  // plans before it may settle on a cached generic one.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(UpdateAll(3000 + i).ok());
  Grow(50000, 0);
  UpdateAllThenExpectIndexPlan("txc-plan-test-grown", 4000, "p-3");
}

TEST_F(PostgresPlanTest, ATableWithoutStatisticsIsUpdatedByItsIndex) {
  // Large and never analyzed (a new database autovacuum has not visited yet).
  Grow(20000, 5);
  Seed();
  UpdateAllThenExpectIndexPlan("txc-plan-test-first", 5000, "p-2");
}

}  // namespace
}  // namespace testing
}  // namespace txc
