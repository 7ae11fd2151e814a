#include "coordinator/store/sqlite_wal_vfs.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "tests/harness/process.h"

namespace txc {
namespace {

sqlite3* OpenDb(const std::string& path, const char* vfs) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, vfs),
            SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  return db;
}

void Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err != nullptr ? err : "");
  sqlite3_free(err);
}

int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  int64_t v = -1;
  if (sqlite3_step(stmt) == SQLITE_ROW) v = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  return v;
}

std::string QueryText(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
  std::string v;
  if (sqlite3_step(stmt) == SQLITE_ROW) {
    v = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  return v;
}

void SetupDb(sqlite3* db) {
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA synchronous=FULL");
  Exec(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
}

// Counts the default (unix) VFS's write system calls, through its
// xSetSystemCall hook: what reaches the kernel, whichever VFS is on top.
std::atomic<int> writes{0};
sqlite3_syscall_ptr real_pwrite64 = nullptr;
sqlite3_syscall_ptr real_pwrite = nullptr;
ssize_t CountingPwrite64(int fd, const void* buf, size_t n, off_t off) {
  ++writes;
  return reinterpret_cast<ssize_t (*)(int, const void*, size_t, off_t)>(real_pwrite64)(fd, buf, n,
                                                                                       off);
}
ssize_t CountingPwrite(int fd, const void* buf, size_t n, off_t off) {
  ++writes;
  return reinterpret_cast<ssize_t (*)(int, const void*, size_t, off_t)>(real_pwrite)(fd, buf, n,
                                                                                     off);
}

class CountWrites {
 public:
  CountWrites() : root_(sqlite3_vfs_find("unix")) {
    real_pwrite64 = root_->xGetSystemCall(root_, "pwrite64");
    real_pwrite = root_->xGetSystemCall(root_, "pwrite");
    if (real_pwrite64 != nullptr) {
      root_->xSetSystemCall(root_, "pwrite64",
                            reinterpret_cast<sqlite3_syscall_ptr>(CountingPwrite64));
    }
    if (real_pwrite != nullptr) {
      root_->xSetSystemCall(root_, "pwrite", reinterpret_cast<sqlite3_syscall_ptr>(CountingPwrite));
    }
  }
  ~CountWrites() {
    if (real_pwrite64 != nullptr) root_->xSetSystemCall(root_, "pwrite64", real_pwrite64);
    if (real_pwrite != nullptr) root_->xSetSystemCall(root_, "pwrite", real_pwrite);
  }
  bool ok() const { return real_pwrite64 != nullptr || real_pwrite != nullptr; }

 private:
  sqlite3_vfs* root_;
};

// One transaction of 200 rows of 1 KiB (some 60 pages) against `vfs`: the
// write system calls it made.
int WritesOfOneCommit(const std::string& path, const char* vfs) {
  sqlite3* db = OpenDb(path, vfs);
  SetupDb(db);
  CountWrites counting;
  EXPECT_TRUE(counting.ok());
  writes = 0;
  Exec(db, "BEGIN");
  for (int i = 0; i < 200; ++i) Exec(db, "INSERT INTO t (body) VALUES (zeroblob(1024))");
  Exec(db, "COMMIT");
  const int n = writes.load();
  sqlite3_close(db);
  return n;
}

TEST(SqliteWalVfsTest, ACommitReachesTheWalInAFewLargeWrites) {
  ASSERT_NE(CoalescingWalVfsName(), nullptr);
  testing::TempDir dir;
  const int plain = WritesOfOneCommit(dir.Child("plain.db"), nullptr);
  const int gathered = WritesOfOneCommit(dir.Child("gathered.db"), CoalescingWalVfsName());
  // SQLite writes a frame as two calls: some 140 for the plain file. Gathered:
  // one write per 124 KiB of frames (about 280 KiB here).
  EXPECT_GT(plain, 100);
  EXPECT_LE(gathered, 4) << "plain: " << plain;
}

TEST(SqliteWalVfsTest, ReadersAndCheckpointsOnOtherConnectionsSeeEveryCommit) {
  testing::TempDir dir;
  const std::string path = dir.Child("shared.db");
  sqlite3* writer = OpenDb(path, CoalescingWalVfsName());
  SetupDb(writer);
  constexpr int kTxns = 300, kRows = 10;
  std::atomic<int> committed{0};
  std::atomic<bool> done{false};
  std::string reader_error;
  std::thread reader([&] {
    sqlite3* db = OpenDb(path, CoalescingWalVfsName());
    int64_t last = 0;
    while (!done.load()) {
      const int before = committed.load();
      const int64_t rows = QueryInt(db, "SELECT count(*) FROM t");
      const int64_t bytes = QueryInt(db, "SELECT coalesce(sum(length(body)), 0) FROM t");
      // Every transaction the writer finished before the read is there, whole.
      if (rows < static_cast<int64_t>(before) * kRows || rows < last || rows % kRows != 0 ||
          bytes < rows * 100) {
        reader_error = "read " + std::to_string(rows) + " rows, " + std::to_string(bytes) +
                       " bytes after " + std::to_string(before) + " commits";
        break;
      }
      last = rows;
      Exec(db, "PRAGMA wal_checkpoint(PASSIVE)");
    }
    sqlite3_close(db);
  });
  for (int t = 0; t < kTxns; ++t) {
    Exec(writer, "BEGIN");
    for (int r = 0; r < kRows; ++r) Exec(writer, "INSERT INTO t (body) VALUES (randomblob(700))");
    Exec(writer, "COMMIT");
    committed.store(t + 1);
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(reader_error, "");
  EXPECT_EQ(QueryInt(writer, "SELECT count(*) FROM t"), kTxns * kRows);
  sqlite3_close(writer);
  // Read back through the default VFS: what is in the files is the truth.
  sqlite3* check = OpenDb(path, nullptr);
  EXPECT_EQ(QueryText(check, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryInt(check, "SELECT count(*) FROM t"), kTxns * kRows);
  sqlite3_close(check);
}

TEST(SqliteWalVfsTest, EveryCommitReportedBeforeSigkillIsThere) {
  testing::TempDir dir;
  const std::string path = dir.Child("killed.db");
  {
    sqlite3* db = OpenDb(path, nullptr);
    SetupDb(db);
    sqlite3_close(db);
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(fds[0]);
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, CoalescingWalVfsName()) !=
        SQLITE_OK) {
      _exit(2);
    }
    sqlite3_exec(db, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr);
    for (int i = 1;; ++i) {
      const std::string sql = "BEGIN; INSERT INTO t (id, body) VALUES (" + std::to_string(i) +
                              ", randomblob(3000)); INSERT INTO t (id, body) VALUES (" +
                              std::to_string(1000000 + i) + ", randomblob(900)); COMMIT;";
      if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(3);
      // Reported only once the commit returned.
      if (write(fds[1], &i, sizeof(i)) != sizeof(i)) _exit(4);
    }
  }
  close(fds[1]);
  int last = 0, got = 0;
  while (last < 400 && read(fds[0], &got, sizeof(got)) == sizeof(got)) last = got;
  ASSERT_EQ(kill(child, SIGKILL), 0);
  // Commits the child finished before the kill may still be in the pipe.
  while (read(fds[0], &got, sizeof(got)) == sizeof(got)) last = got;
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  ASSERT_GE(last, 400);
  sqlite3* db = OpenDb(path, nullptr);
  EXPECT_EQ(QueryText(db, "PRAGMA integrity_check"), "ok");
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM t WHERE id <= " + std::to_string(last) +
                             " AND length(body) = 3000"),
            last);
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM t WHERE id > 1000000 AND id <= " +
                             std::to_string(1000000 + last)),
            last);
  sqlite3_close(db);
}

}  // namespace
}  // namespace txc
