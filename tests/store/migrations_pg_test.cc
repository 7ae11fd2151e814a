// Migrations on PostgreSQL: concurrent migrators apply each migration once; a
// changed applied migration is refused with a message naming the file.
#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "migrations/migrator.h"
#include "tests/harness/pg_cluster.h"

namespace txc {
namespace testing {
namespace {

Migration Make(int version, const std::string& file_name, const std::string& sql) {
  Migration m;
  m.version = version;
  m.name = file_name;
  m.file_name = file_name;
  m.sql = sql;
  m.checksum = MigrationChecksum(sql);
  return m;
}

int64_t Count(const std::string& conn_str, const std::string& sql) {
  pqxx::connection conn(conn_str);
  pqxx::nontransaction tx(conn);
  return tx.exec1(sql)[0].as<int64_t>();
}

TEST(MigrationsPgTest, ConcurrentMigratorsApplyEachMigrationOnce) {
  PgCluster* pg = SharedPgCluster();
  const std::string conn_str = pg->ConnectionString(pg->CreateUniqueDatabase("migrate"));
  // Not idempotent on purpose: a second application would fail.
  std::vector<Migration> custom = {
      Make(1, "0001_counter.sql", "CREATE TABLE counter (n INT); INSERT INTO counter VALUES (1)"),
      Make(2, "0002_more.sql", "UPDATE counter SET n = n + 1")};
  constexpr int kMigrators = 6;
  std::vector<Status> coordinator(kMigrators), test(kMigrators);
  std::vector<std::thread> threads;
  for (int i = 0; i < kMigrators; ++i) {
    threads.emplace_back([&, i] {
      pqxx::connection conn(conn_str);  // a connection of its own, like a process
      coordinator[i] = MigratePostgres(conn, "coordinator");
      test[i] = ApplyMigrationsPostgres(conn, "test", custom);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kMigrators; ++i) {
    EXPECT_TRUE(coordinator[i].ok()) << coordinator[i];
    EXPECT_TRUE(test[i].ok()) << test[i];
  }
  auto embedded = EmbeddedMigrations("coordinator", "postgresql");
  ASSERT_TRUE(embedded.ok());
  EXPECT_EQ(Count(conn_str, "SELECT COUNT(*) FROM schema_migrations WHERE schema = 'coordinator'"),
            static_cast<int64_t>(embedded->size()));
  EXPECT_EQ(Count(conn_str, "SELECT COUNT(*) FROM schema_migrations WHERE schema = 'test'"), 2);
  EXPECT_EQ(Count(conn_str, "SELECT n FROM counter"), 2);
  EXPECT_EQ(Count(conn_str, "SELECT COUNT(*) FROM txns"), 0);
}

TEST(MigrationsPgTest, ChangedAppliedMigrationIsRefusedNamingTheFile) {
  PgCluster* pg = SharedPgCluster();
  pqxx::connection conn(pg->ConnectionString(pg->CreateUniqueDatabase("migrate")));
  ASSERT_TRUE(
      ApplyMigrationsPostgres(conn, "test", {Make(1, "0001_a.sql", "CREATE TABLE a (x INT)")})
          .ok());
  Status s = ApplyMigrationsPostgres(conn, "test",
                                     {Make(1, "0001_a.sql", "CREATE TABLE a (x BIGINT)"),
                                      Make(2, "0002_b.sql", "CREATE TABLE b (x INT)")});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("test/0001_a.sql"), std::string::npos) << s;
  pqxx::nontransaction tx(conn);
  EXPECT_EQ(tx.exec1("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'b'")[0].as<int>(), 0);
}

TEST(MigrationsPgTest, AFailingMigrationNamesTheFileAndAppliesNothing) {
  PgCluster* pg = SharedPgCluster();
  pqxx::connection conn(pg->ConnectionString(pg->CreateUniqueDatabase("migrate")));
  Status s = ApplyMigrationsPostgres(conn, "test",
                                     {Make(1, "0001_ok.sql", "CREATE TABLE ok (x INT)"),
                                      Make(2, "0002_broken.sql", "CREATE TABLE broken (")});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("0002_broken.sql"), std::string::npos) << s;
  pqxx::nontransaction tx(conn);
  EXPECT_EQ(tx.exec1("SELECT COUNT(*) FROM pg_tables WHERE tablename = 'ok'")[0].as<int>(), 0);
}

}  // namespace
}  // namespace testing
}  // namespace txc
