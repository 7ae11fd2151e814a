// SQLite-specific behaviour (the shared behaviour is in the conformance suite,
// tests/store/txn_store_conformance_test.cc).
#include "coordinator/store/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

#include "common/backoff.h"
#include "tests/harness/process.h"

namespace txc {
namespace {

TxnRecord Txn(const std::string& gtid) {
  TxnRecord t;
  t.gtid = gtid;
  t.owner = "node-a";
  t.epoch = 1;
  return t;
}

std::string Pragma(const std::string& path, const std::string& pragma) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, ("PRAGMA " + pragma).c_str(), -1, &stmt, nullptr), SQLITE_OK);
  std::string value;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

TEST(SqliteStoreTest, UsesWalAndIsReadableAfterReopen) {
  testing::TempDir dir;
  const std::string path = dir.Child("txc.db");
  {
    auto store = SqliteStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->Migrate().ok());
    WriteBatch b;
    b.insert_txns = {Txn("persisted")};
    ASSERT_TRUE((*store)->Apply(b).ok());
    EXPECT_EQ((*store)->Stats().commits, 1);
  }
  EXPECT_EQ(Pragma(path, "journal_mode"), "wal");
  auto store = SqliteStore::Open(path);
  ASSERT_TRUE(store.ok());
  EXPECT_TRUE((*store)->GetTxn("persisted").ok());
}

TEST(SqliteStoreTest, ReadsDoNotWaitForAnotherWriter) {
  testing::TempDir dir;
  const std::string path = dir.Child("txc.db");
  SqliteStoreOptions options;
  options.busy_timeout_ms = 100;
  auto store = SqliteStore::Open(path, options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Migrate().ok());
  WriteBatch b;
  b.insert_txns = {Txn("visible")};
  ASSERT_TRUE((*store)->Apply(b).ok());

  // Another connection (like another process) holds the write lock.
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE; DELETE FROM txns;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  // Reads see the last committed state at once.
  EXPECT_TRUE((*store)->GetTxn("visible").ok());
  // A write waits busy_timeout, then reports kUnavailable (nothing applied).
  WriteBatch blocked;
  blocked.insert_txns = {Txn("blocked")};
  EXPECT_EQ((*store)->Apply(blocked).code(), StatusCode::kUnavailable);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_TRUE((*store)->Apply(blocked).ok());
  EXPECT_TRUE((*store)->GetTxn("visible").ok());
}

// Checkpoints run on the store's own thread, not inside a commit (SQLite's
// auto-checkpoint is replaced): the WAL's pages still reach the database file,
// which only a checkpoint writes to.
TEST(SqliteStoreTest, CheckpointThreadCopiesTheWalIntoTheDatabaseFile) {
  testing::TempDir dir;
  const std::string path = dir.Child("txc.db");
  SqliteStoreOptions options;
  options.checkpoint_pages = 8;
  auto store = SqliteStore::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Migrate().ok());
  auto file_size = [&] {
    std::error_code ec;
    const auto n = std::filesystem::file_size(path, ec);
    return ec ? uintmax_t{0} : n;
  };
  const uintmax_t before = file_size();
  for (int i = 0; i < 300; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("t-" + std::to_string(i))};
    b.insert_txns[0].payload = std::string(2000, 'x');
    ASSERT_TRUE((*store)->Apply(b).ok());
  }
  // 300 x 2 kB of payload: well past 8 pages of WAL many times over.
  EXPECT_TRUE(testing::WaitUntil([&] { return file_size() > before + 300 * 1000; }, 20000))
      << "database file " << file_size() << " bytes, " << before << " before the writes";
  EXPECT_TRUE((*store)->GetTxn("t-299").ok());
}

// A checkpoint beside a writer that never pauses never sees the whole WAL
// copied, so the WAL would never restart: the writer finishes the copy past
// 4 x checkpoint_pages and the WAL file stays small.
TEST(SqliteStoreTest, WalStaysBoundedUnderContinuousWrites) {
  testing::TempDir dir;
  const std::string path = dir.Child("txc.db");
  SqliteStoreOptions options;
  options.checkpoint_pages = 16;
  auto store = SqliteStore::Open(path, options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Migrate().ok());
  uintmax_t largest = 0;
  for (int i = 0; i < 1500; ++i) {
    WriteBatch b;
    b.insert_txns = {Txn("t-" + std::to_string(i))};
    b.insert_txns[0].payload = std::string(3000, 'x');
    ASSERT_TRUE((*store)->Apply(b).ok());
    std::error_code ec;
    largest = std::max(largest, std::filesystem::file_size(path + "-wal", ec));
  }
  // 1500 x 3 kB written; the WAL holds at most ~4 x 16 pages plus one commit.
  EXPECT_LT(largest, uintmax_t{1} << 20) << "WAL grew to " << largest << " bytes";
}

TEST(SqliteStoreTest, InMemoryDatabaseWorks) {
  auto store = SqliteStore::Open(":memory:");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Migrate().ok());
  WriteBatch b;
  b.insert_txns = {Txn("mem")};
  ASSERT_TRUE((*store)->Apply(b).ok());
  EXPECT_TRUE((*store)->GetTxn("mem").ok());
}

TEST(SqliteStoreTest, OpenStoreChoosesTheBackendFromTheLocation) {
  testing::TempDir dir;
  auto lite = OpenStore(dir.Child("a.db"));
  ASSERT_TRUE(lite.ok()) << lite.status();
  EXPECT_STREQ((*lite)->Kind(), "sqlite");
  // A PostgreSQL location is recognised (and fails to connect: nothing listens there).
  auto pg = OpenStore("host=127.0.0.1 port=1 dbname=none connect_timeout=1");
  EXPECT_EQ(pg.status().code(), StatusCode::kUnavailable);
  auto uri = OpenStore("postgresql://postgres@127.0.0.1:1/none?connect_timeout=1");
  EXPECT_EQ(uri.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(OpenStore("").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace txc
