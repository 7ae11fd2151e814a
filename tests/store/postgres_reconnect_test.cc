// PostgresStore survives a server restart: calls during the outage fail with
// kUnavailable, the next calls after it reconnect on their own.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace testing
}  // namespace txc
