// PostgresStore survives a server restart: calls during the outage fail with
// kUnavailable, the next calls after it reconnect on their own.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <pqxx/pqxx>
#include <thread>
#include <vector>

#include "coordinator/store/postgres_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/store/store_test_util.h"

namespace txc {
namespace testing {
namespace {

TEST(PostgresReconnectTest, ReconnectsAfterAServerRestart) {
  auto pg = PgCluster::Start({});  // our own: the test restarts it
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto store = PostgresStore::Open((*pg)->ConnectionString("postgres"));
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Migrate().ok());
  WriteBatch before;
  before.insert_txns = {MakeTxn("before", "node-a", 1)};
  ASSERT_TRUE((*store)->Apply(before).ok());
  ASSERT_TRUE((*store)->GetTxn("before").ok());

  ASSERT_TRUE((*pg)->Stop("immediate").ok());
  WriteBatch during;
  during.insert_txns = {MakeTxn("during", "node-a", 1)};
  EXPECT_EQ((*store)->Apply(during).code(), StatusCode::kUnavailable);
  EXPECT_EQ((*store)->GetTxn("before").status().code(), StatusCode::kUnavailable);

  ASSERT_TRUE((*pg)->Restart().ok());
  WriteBatch after;
  after.insert_txns = {MakeTxn("after", "node-a", 1)};
  EXPECT_TRUE((*store)->Apply(after).ok());
  EXPECT_TRUE((*store)->GetTxn("before").ok());
  EXPECT_TRUE((*store)->GetTxn("after").ok());
  EXPECT_EQ((*store)->GetTxn("during").status().code(), StatusCode::kNotFound);
}

TEST(PostgresPoolTest, ConnectionsAreBoundedAndKept) {
  PgCluster* pg = SharedPgCluster();
  const std::string db = pg->CreateUniqueDatabase("pool");
  PostgresStoreOptions options;
  options.max_connections = 3;
  auto store = PostgresStore::Open(pg->ConnectionString(db), options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Migrate().ok());
  WriteBatch seed;
  seed.insert_txns = {MakeTxn("pooled", "node-a", 1)};
  ASSERT_TRUE((*store)->Apply(seed).ok());
  auto backends = [&] {
    pqxx::connection conn(pg->ConnectionString("postgres"));
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1", db)[0]
        .as<int>();
  };
  std::atomic<int> failures{0};
  std::atomic<int> max_seen{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 40; ++i) {
        if (!(*store)->GetTxn("pooled").ok()) ++failures;
      }
    });
  }
  for (int i = 0; i < 5; ++i) max_seen = std::max(max_seen.load(), backends());
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_LE(max_seen.load(), 3);
  EXPECT_LE(backends(), 3);
  EXPECT_GE(backends(), 1);  // kept open for the next call
}

}  // namespace
}  // namespace testing
}  // namespace txc
