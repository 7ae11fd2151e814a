#include "migrations/migrator.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace txc {
namespace {

class SqliteDb {
 public:
  explicit SqliteDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
  }
  ~SqliteDb() { sqlite3_close(db_); }
  sqlite3* get() { return db_; }
  int64_t Count(const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
    int64_t n = -1;
    if (sqlite3_step(stmt) == SQLITE_ROW) n = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return n;
  }

 private:
  sqlite3* db_ = nullptr;
};

std::string TempDbPath() {
  char tmpl[] = "/tmp/txc-migrator-test-XXXXXX";
  int fd = mkstemp(tmpl);
  EXPECT_GE(fd, 0);
  close(fd);
  unlink(tmpl);
  return tmpl;
}

Migration Make(int version, const std::string& name, const std::string& sql) {
  Migration m;
  m.version = version;
  m.name = name;
  char prefix[8];
  snprintf(prefix, sizeof(prefix), "%04d_", version);
  m.file_name = prefix + name + ".sql";
  m.sql = sql;
  m.checksum = MigrationChecksum(sql);
  return m;
}

TEST(MigratorTest, EmbedsTheCoordinatorSchema) {
  auto all = EmbeddedMigrations("coordinator", "sqlite");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_FALSE(all->empty());
  EXPECT_EQ((*all)[0].version, 1);
  EXPECT_EQ((*all)[0].file_name, "0001_init.sql");
  EXPECT_NE((*all)[0].sql.find("CREATE TABLE txns"), std::string::npos);
  for (size_t i = 1; i < all->size(); ++i) EXPECT_LT((*all)[i - 1].version, (*all)[i].version);
  auto none = EmbeddedMigrations("no-such-schema", "sqlite");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(MigratorTest, AppliesOnceAndRecords) {
  SqliteDb db(":memory:");
  ASSERT_TRUE(MigrateSqlite(db.get(), "coordinator").ok());
  ASSERT_TRUE(MigrateSqlite(db.get(), "coordinator").ok());
  auto all = EmbeddedMigrations("coordinator", "sqlite");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM schema_migrations WHERE schema = 'coordinator'"),
            static_cast<int64_t>(all->size()));
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM txns"), 0);
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM branches"), 0);
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM leases"), 0);
}

TEST(MigratorTest, RefusesAChangedAppliedMigrationNamingIt) {
  SqliteDb db(":memory:");
  ASSERT_TRUE(
      ApplyMigrationsSqlite(db.get(), "test", {Make(1, "first", "CREATE TABLE a (x INT)")}).ok());
  Status s = ApplyMigrationsSqlite(
      db.get(), "test",
      {Make(1, "first", "CREATE TABLE a (x INT, y INT)"), Make(2, "second", "CREATE TABLE b (x)")});
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("test/0001_first.sql"), std::string::npos) << s;
  EXPECT_NE(s.message().find("changed"), std::string::npos) << s;
  // Nothing of the refused run was applied.
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'"), 0);
}

TEST(MigratorTest, AFailingMigrationAppliesNothingAndNamesTheFile) {
  SqliteDb db(":memory:");
  Status s = ApplyMigrationsSqlite(
      db.get(), "test", {Make(1, "good", "CREATE TABLE a (x INT)"), Make(2, "bad", "CREATE TABL")});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("test/0002_bad.sql"), std::string::npos) << s;
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'a'"), 0);
}

TEST(MigratorTest, SchemasAreIndependent) {
  SqliteDb db(":memory:");
  ASSERT_TRUE(ApplyMigrationsSqlite(db.get(), "one", {Make(1, "a", "CREATE TABLE a (x)")}).ok());
  ASSERT_TRUE(ApplyMigrationsSqlite(db.get(), "two", {Make(1, "b", "CREATE TABLE b (x)")}).ok());
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM schema_migrations"), 2);
}

TEST(MigratorTest, ConcurrentMigratorsApplyEachMigrationOnce) {
  const std::string path = TempDbPath();
  // Not "IF NOT EXISTS": a second application would fail.
  std::vector<Migration> migrations = {Make(1, "a", "CREATE TABLE a (x INT)"),
                                       Make(2, "b", "CREATE TABLE b (x INT)")};
  constexpr int kThreads = 6;
  std::vector<Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      SqliteDb db(path);  // a connection of its own
      results[i] = ApplyMigrationsSqlite(db.get(), "test", migrations);
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s;
  SqliteDb db(path);
  EXPECT_EQ(db.Count("SELECT COUNT(*) FROM schema_migrations WHERE schema = 'test'"), 2);
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) unlink((path + suffix).c_str());
}

}  // namespace
}  // namespace txc
