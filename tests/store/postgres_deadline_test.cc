// PostgresStore deadlines: a store call blocked on a row lock ends in bounded
// time (server-side lock_timeout, or the client-side watchdog's cancel when
// the server timeouts are off), and HealthCheck() reports it until a write
// succeeds. (A session idle inside a transaction losing its locks is tested
// end to end with a SIGSTOPped coordinator in tests/failover.)
#include <gtest/gtest.h>

#include <cstdio>
#include <pqxx/pqxx>
#include <string>

#include "common/backoff.h"
#include "coordinator/store/postgres_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/store/store_test_util.h"

namespace txc {
namespace testing {
namespace {

// Opens a fresh PostgreSQL store with `options` and one ACTIVE row "locked".
std::unique_ptr<PostgresStore> OpenWithRow(const std::string& conninfo,
                                           PostgresStoreOptions options) {
  auto store = PostgresStore::Open(conninfo, options);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  EXPECT_TRUE((*store)->Migrate().ok());
  WriteBatch seed;
  seed.insert_txns = {MakeTxn("locked", "node-a", 1)};
  EXPECT_TRUE((*store)->Apply(seed).ok());
  return std::move(store).value();
}

WriteBatch UpdateLockedRow() {
  WriteBatch batch;
  TxnUpdate u;
  u.gtid = "locked";
  u.expected_owner = "node-a";
  u.expected_epoch = 1;
  u.next_attempt_ms = 42;
  batch.txn_updates = {u};
  return batch;
}

// Runs `blocked` while another session holds the row lock; returns how long it took.
template <typename Fn>
int64_t WhileRowLocked(const std::string& conninfo, Fn&& blocked) {
  pqxx::connection holder(conninfo);
  pqxx::work tx(holder);
  tx.exec("SELECT 1 FROM txns WHERE gtid = 'locked' FOR UPDATE");
  const int64_t t0 = MonotonicMs();
  blocked();
  const int64_t took = MonotonicMs() - t0;
  tx.abort();
  return took;
}

TEST(PostgresDeadlineTest, LockTimeoutEndsABlockedWriteAndHealthSaysSo) {
  PgCluster* pg = SharedPgCluster();
  const std::string conninfo = pg->ConnectionString(pg->CreateUniqueDatabase("deadline"));
  PostgresStoreOptions options;
  options.session_timeout_ms = 300;
  options.call_timeout_ms = 60000;  // the server-side timeout acts first
  auto store = OpenWithRow(conninfo, options);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->HealthCheck().ok());
  Status blocked;
  int64_t took = WhileRowLocked(conninfo, [&] { blocked = store->Apply(UpdateLockedRow()); });
  EXPECT_EQ(blocked.code(), StatusCode::kUnavailable) << blocked;
  EXPECT_LT(took, 30000) << "the write waited for the lock instead of timing out";
  EXPECT_FALSE(store->HealthCheck().ok());
  // Lock gone: the write goes through, health recovers.
  EXPECT_TRUE(store->Apply(UpdateLockedRow()).ok());
  EXPECT_TRUE(store->HealthCheck().ok()) << store->HealthCheck();
  std::printf("[deadline] lock_timeout 300 ms: blocked write ended after %lld ms\n",
              static_cast<long long>(took));
}

TEST(PostgresDeadlineTest, ClientDeadlineCancelsWhenServerTimeoutsAreOff) {
  PgCluster* pg = SharedPgCluster();
  const std::string conninfo = pg->ConnectionString(pg->CreateUniqueDatabase("deadline"));
  PostgresStoreOptions options;
  options.session_timeout_ms = 0;  // the server would wait forever
  options.call_timeout_ms = 300;
  auto store = OpenWithRow(conninfo, options);
  ASSERT_NE(store, nullptr);
  Status blocked;
  int64_t took = WhileRowLocked(conninfo, [&] { blocked = store->Apply(UpdateLockedRow()); });
  EXPECT_EQ(blocked.code(), StatusCode::kUnavailable) << blocked;
  EXPECT_NE(blocked.message().find("cancel"), std::string::npos) << blocked;
  EXPECT_LT(took, 30000);
  EXPECT_FALSE(store->HealthCheck().ok());
  // The cancelled connection was discarded; the next calls work.
  EXPECT_TRUE(store->Apply(UpdateLockedRow()).ok());
  EXPECT_TRUE(store->GetTxn("locked").ok());
  EXPECT_TRUE(store->HealthCheck().ok());
}

}  // namespace
}  // namespace testing
}  // namespace txc
