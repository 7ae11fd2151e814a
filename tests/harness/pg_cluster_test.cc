#include "tests/harness/pg_cluster.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <pqxx/pqxx>

namespace txc {
namespace testing {
namespace {

TEST(PgClusterTest, SharedClusterServesQueriesWithTheRequiredSettings) {
  PgCluster* pg = SharedPgCluster();
  std::string db = pg->CreateUniqueDatabase("harness");
  pqxx::connection conn(pg->ConnectionString(db));
  pqxx::work tx(conn);
  EXPECT_EQ(tx.exec1("SHOW max_prepared_transactions")[0].as<std::string>(), "64");
  EXPECT_EQ(tx.exec1("SHOW fsync")[0].as<std::string>(), "on");
  EXPECT_EQ(tx.exec1("SHOW max_connections")[0].as<std::string>(), "200");
  EXPECT_EQ(tx.exec1("SELECT current_database()")[0].as<std::string>(), db);
  EXPECT_EQ(pg->CreateDatabase(db).code(), StatusCode::kAlreadyExists);
}

TEST(PgClusterTest, OwnClusterStopsRestartsAndCleansUp) {
  std::string dir;
  {
    auto pg = PgCluster::Start({});
    ASSERT_TRUE(pg.ok()) << pg.status();
    dir = (*pg)->data_dir();
    ASSERT_TRUE(
        (*pg)->Execute("postgres", "CREATE TABLE t (x INT); INSERT INTO t VALUES (7)").ok());
    ASSERT_TRUE((*pg)->Stop("immediate").ok());
    EXPECT_FALSE((*pg)->Execute("postgres", "SELECT 1").ok());
    ASSERT_TRUE((*pg)->Restart().ok());
    pqxx::connection conn((*pg)->ConnectionUri("postgres"));
    pqxx::work tx(conn);
    EXPECT_EQ(tx.exec1("SELECT x FROM t")[0].as<int>(), 7);
  }
  struct stat st;
  EXPECT_NE(stat(dir.c_str(), &st), 0) << dir << " still exists";
}

TEST(PgClusterTest, MissingBinariesNameThePackage) {
  PgClusterOptions o;
  o.bin_dir = "/nonexistent/postgresql/bin";
  auto pg = PgCluster::Start(o);
  ASSERT_FALSE(pg.ok());
  EXPECT_NE(pg.status().message().find("postgresql-15"), std::string::npos) << pg.status();
}

}  // namespace
}  // namespace testing
}  // namespace txc
