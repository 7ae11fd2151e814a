#include "coordinator/store/sqlite_store.h"

#include <glog/logging.h>
#include <pthread.h>

#include <algorithm>
#include <functional>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "common/backoff.h"
#include "coordinator/store/sqlite_wal_vfs.h"
#include "coordinator/store/store_util.h"
#include "migrations/migrator.h"

namespace txc {

using store_internal::DecodeStringList;
using store_internal::EncodeStringList;
using store_internal::IsRefusal;
using store_internal::kAuditColumns;
using store_internal::kBranchColumns;
using store_internal::kTxnColumns;
using store_internal::StateList;
using store_internal::StateMask;

namespace {

// Maps a failed sqlite call to a Status. Lock contention and I/O trouble are
// kUnavailable (the transaction did not commit); the rest kInternal.
Status SqliteStatus(sqlite3* db, int rc, const std::string& what) {
  std::string msg = what + ": " + sqlite3_errmsg(db) + " (" + sqlite3_errstr(rc) + ")";
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL: return Status::Unavailable(msg);
    default: return Status::Internal(msg);
  }
}

std::string ColumnBytes(sqlite3_stmt* stmt, int col) {
  const void* data = sqlite3_column_blob(stmt, col);
  int size = sqlite3_column_bytes(stmt, col);
  if (data == nullptr || size <= 0) return "";
  return std::string(static_cast<const char*>(data), static_cast<size_t>(size));
}

}  // namespace

// The writer connection's page cache, in KiB (SQLite's default is 2 MiB).
constexpr int kWriterCacheKiB = 32 * 1024;

// Keys of the writer's statements that are cached by key (PrepareKeyed):
// updates use (1 << 32) and (2 << 32) with the set columns in the low bits.
constexpr uint64_t kInsertTxnKey = uint64_t{3} << 32;
constexpr uint64_t kInsertBranchKey = uint64_t{4} << 32;

// A connection and its cached prepared statements. Used by one thread at a time.
class SqliteStore::Conn {
 public:
  static Result<std::unique_ptr<Conn>> Open(const std::string& path, bool read_only,
                                            int busy_timeout_ms, bool big_cache = false) {
    sqlite3* db = nullptr;
    int flags = (read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
                SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path.c_str(), &db, flags, CoalescingWalVfsName());
    if (rc != SQLITE_OK) {
      std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close(db);
      return Status::Unavailable("opening sqlite database " + path + ": " + msg);
    }
    std::unique_ptr<Conn> conn(new Conn(db));
    sqlite3_busy_timeout(db, busy_timeout_ms);
    sqlite3_extended_result_codes(db, 1);
    if (!read_only) {
      TXC_RETURN_IF_ERROR(conn->Exec("PRAGMA journal_mode=WAL"));
      TXC_RETURN_IF_ERROR(conn->Exec("PRAGMA synchronous=FULL"));
    }
    // Statement journals (every write of a group runs in its own SAVEPOINT)
    // stay in memory: on disk they were a temporary file created, written
    // page by page and unlinked per group, more than half of the writer's
    // pwrite calls. Nothing in them must survive a crash: a store
    // transaction that did not commit is rolled back from the WAL.
    TXC_RETURN_IF_ERROR(conn->Exec("PRAGMA temp_store=MEMORY"));
    // The writer's page cache larger than SQLite's 2 MiB default: index pages
    // of a busy store were read again from the file per miss (pread). The
    // checkpointer and the readers keep the default (memory is per connection).
    if (big_cache) {
      TXC_RETURN_IF_ERROR(conn->Exec("PRAGMA cache_size=-" + std::to_string(kWriterCacheKiB)));
    }
    return conn;
  }

  ~Conn() {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    for (auto& [key, stmt] : keyed_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  // One SQL statement without parameters or rows (BEGIN, SAVEPOINT, COMMIT)
  // from the statement cache: parsed once per connection, not per call.
  Status RunCached(const std::string& sql) {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return SqliteStatus(db_, rc, sql);
    return Status::Ok();
  }

  // A cached statement whose text depends on `key` (e.g. which columns an
  // UPDATE sets); `sql` builds the text the first time a key is seen.
  template <typename BuildSql>
  Result<sqlite3_stmt*> PrepareKeyed(uint64_t key, BuildSql&& sql) {
    auto it = keyed_.find(key);
    if (it != keyed_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    const std::string text = sql();
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, text.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "prepare " + text);
    keyed_.emplace(key, stmt);
    return stmt;
  }

  sqlite3* db() const { return db_; }

  Status Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err != nullptr ? err : "";
      sqlite3_free(err);
      return SqliteStatus(db_, rc, sql + " " + msg);
    }
    return Status::Ok();
  }

  // A cached prepared statement, reset and with bindings cleared.
  Result<sqlite3_stmt*> Prepare(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) {
      sqlite3_reset(it->second);
      sqlite3_clear_bindings(it->second);
      return it->second;
    }
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteStatus(db_, rc, "prepare " + sql);
    statements_.emplace(sql, stmt);
    return stmt;
  }

 private:
  explicit Conn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
  std::unordered_map<uint64_t, sqlite3_stmt*> keyed_;
};

namespace {

// Binds and steps one statement; resets it when it goes out of scope.
class Stmt {
 public:
  Stmt(SqliteStore::Conn& conn, sqlite3_stmt* stmt) : conn_(conn), stmt_(stmt) {}
  ~Stmt() { sqlite3_reset(stmt_); }

  Stmt& Text(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& TextOrNull(int i, const std::string& v) {
    if (v.empty()) return Null(i);
    return Text(i, v);
  }
  Stmt& Blob(int i, const std::string& v) {
    // A zero-length blob, not NULL, for an empty value.
    sqlite3_bind_blob(stmt_, i, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Stmt& Null(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  template <typename T>
  Stmt& OptInt(int i, const std::optional<T>& v) {
    return v.has_value() ? Int(i, static_cast<int64_t>(*v)) : Null(i);
  }

  // SQLITE_ROW / SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  // Steps to completion; OK or the error, described as "what id[/sub]" (the
  // text is built only on an error: these run on the writer per statement).
  Status Run(const char* what, const std::string& id = {}, const std::string& sub = {}) {
    int rc;
    while ((rc = Step()) == SQLITE_ROW) {
    }
    if (rc == SQLITE_DONE) return Status::Ok();
    std::string text = what;
    if (!id.empty()) text += " " + id;
    if (!sub.empty()) text += "/" + sub;
    return SqliteStatus(conn_.db(), rc, text);
  }
  int Changes() const { return sqlite3_changes(conn_.db()); }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  SqliteStore::Conn& conn_;
  sqlite3_stmt* stmt_;
};

Result<TxnRecord> ReadTxn(sqlite3_stmt* s) {
  TxnRecord t;
  t.gtid = ColumnBytes(s, 0);
  t.kind = static_cast<TxnKind>(sqlite3_column_int(s, 1));
  t.state = static_cast<TxnState>(sqlite3_column_int(s, 2));
  t.owner = ColumnBytes(s, 3);
  t.epoch = sqlite3_column_int64(s, 4);
  t.created_ms = sqlite3_column_int64(s, 5);
  t.updated_ms = sqlite3_column_int64(s, 6);
  t.deadline_ms = sqlite3_column_int64(s, 7);
  t.next_attempt_ms = sqlite3_column_int64(s, 8);
  t.attempts = sqlite3_column_int(s, 9);
  t.idempotency_key = ColumnBytes(s, 10);
  t.payload = ColumnBytes(s, 11);
  t.flags = sqlite3_column_int(s, 12);
  return t;
}

Result<BranchRecord> ReadBranch(sqlite3_stmt* s) {
  BranchRecord b;
  b.gtid = ColumnBytes(s, 0);
  b.branch_id = ColumnBytes(s, 1);
  b.ordinal = sqlite3_column_int(s, 2);
  b.endpoint = ColumnBytes(s, 3);
  b.resource = ColumnBytes(s, 4);
  b.action = ColumnBytes(s, 5);
  b.compensation = ColumnBytes(s, 6);
  TXC_ASSIGN_OR_RETURN(b.depends_on, DecodeStringList(ColumnBytes(s, 7)));
  b.payload = ColumnBytes(s, 8);
  b.state = static_cast<BranchState>(sqlite3_column_int(s, 9));
  b.attempts = sqlite3_column_int(s, 10);
  b.max_attempts = sqlite3_column_int(s, 11);
  b.initial_backoff_ms = sqlite3_column_int(s, 12);
  b.max_backoff_ms = sqlite3_column_int(s, 13);
  b.next_attempt_ms = sqlite3_column_int64(s, 14);
  b.last_error = ColumnBytes(s, 15);
  b.started_ms = sqlite3_column_int64(s, 16);
  b.finished_ms = sqlite3_column_int64(s, 17);
  return b;
}

template <typename T, typename ReadFn>
Result<std::vector<T>> ReadAll(SqliteStore::Conn& conn, Stmt& stmt, ReadFn read,
                               const std::string& what) {
  std::vector<T> out;
  int rc;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    TXC_ASSIGN_OR_RETURN(T row, read(stmt.get()));
    out.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return SqliteStatus(conn.db(), rc, what);
  return out;
}

Result<bool> Exists(SqliteStore::Conn& conn, const std::string& sql, const std::string& a,
                    const std::string& b = "") {
  TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, conn.Prepare(sql));
  Stmt stmt(conn, raw);
  stmt.Text(1, a);
  if (!b.empty()) stmt.Text(2, b);
  int rc = stmt.Step();
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return SqliteStatus(conn.db(), rc, sql);
}

}  // namespace

SqliteStore::SqliteStore(std::string path, SqliteStoreOptions options)
    : path_(std::move(path)), options_(options) {}

SqliteStore::~SqliteStore() {
  if (checkpointer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoint_stop_ = true;
    }
    checkpoint_cv_.notify_all();
    checkpointer_.join();
  }
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path,
                                                       SqliteStoreOptions options) {
  static std::once_flag configured;
  std::call_once(configured, [] {
    // No allocation statistics: with them every sqlite3_malloc and free takes
    // a process-wide mutex (the writer's statements allocate per row). Only
    // possible before SQLite initialises; if something in this process used
    // SQLite first, it keeps its setting (SQLITE_MISUSE, harmless).
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, options));
  TXC_ASSIGN_OR_RETURN(store->writer_,
                       Conn::Open(path, false, options.busy_timeout_ms, /*big_cache=*/true));
  if (path != ":memory:" && !path.empty()) {
    TXC_ASSIGN_OR_RETURN(std::unique_ptr<Conn> conn,
                         Conn::Open(path, false, options.busy_timeout_ms));
    // Replaces SQLite's auto-checkpoint (itself a WAL hook) on the writer.
    sqlite3_wal_hook(store->writer_->db(), &SqliteStore::WalCommitted, store.get());
    store->checkpointer_ = std::thread([self = store.get(), c = std::move(conn)]() mutable {
      self->CheckpointLoop(std::move(c));
    });
    pthread_setname_np(store->checkpointer_.native_handle(), "sqlite-ckpt");
  }
  return store;
}

int SqliteStore::WalCommitted(void* self, sqlite3* db, const char* /*name*/, int pages) {
  auto* store = static_cast<SqliteStore*>(self);
  const int step = store->options_.checkpoint_pages;
  if (pages < store->wal_pages_signalled_) store->wal_pages_signalled_ = 0;  // the WAL restarted
  if (pages >= 4 * step) {
    // The WAL is reused from its start only when a write transaction begins
    // with all of it copied, which a checkpoint running beside a busy writer
    // never sees: here, on the writer, between two of its transactions, the
    // rest is copied (most of it already was) and the next write restarts
    // the WAL. This bounds the WAL at ~4 x checkpoint_pages.
    int wal_pages = 0;
    int copied = 0;
    sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &wal_pages, &copied);
    store->wal_pages_signalled_ = 0;
    return SQLITE_OK;
  }
  // One background pass per checkpoint_pages new pages: each pass walks the
  // WAL's whole index, so a pass per commit would cost more than it copies.
  if (pages - store->wal_pages_signalled_ < step) return SQLITE_OK;
  store->wal_pages_signalled_ = pages;
  {
    std::lock_guard<std::mutex> lock(store->checkpoint_mu_);
    store->checkpoint_due_ = true;
  }
  store->checkpoint_cv_.notify_one();
  return SQLITE_OK;
}

void SqliteStore::CheckpointLoop(std::unique_ptr<Conn> conn) {
  std::unique_lock<std::mutex> lock(checkpoint_mu_);
  for (;;) {
    checkpoint_cv_.wait(lock, [this] { return checkpoint_due_ || checkpoint_stop_; });
    if (checkpoint_stop_) return;
    checkpoint_due_ = false;
    lock.unlock();
    // PASSIVE: copies what no reader still needs, never waits for the writer
    // or readers; the WAL is reused from its start by the next commit once
    // all of it was copied.
    int wal_pages = 0;
    int copied = 0;
    const int rc = sqlite3_wal_checkpoint_v2(conn->db(), nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                             &wal_pages, &copied);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
      LOG_EVERY_N(ERROR, 100) << "sqlite checkpoint of " << path_
                              << " failed: " << sqlite3_errmsg(conn->db());
    }
    VLOG(2) << "sqlite checkpoint: " << copied << " of " << wal_pages << " WAL pages copied";
    lock.lock();
  }
}

template <typename Fn>
auto SqliteStore::WithReader(Fn&& fn) -> decltype(fn(std::declval<Conn&>())) {
  if (path_ == ":memory:" || path_.empty()) {
    // A private in-memory database exists on the writer's connection only.
    std::lock_guard<std::mutex> lock(write_mu_);
    return fn(*writer_);
  }
  std::unique_ptr<Conn> reader;
  {
    std::lock_guard<std::mutex> lock(readers_mu_);
    if (!idle_readers_.empty()) {
      reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (reader == nullptr) {
    auto opened = Conn::Open(path_, true, options_.busy_timeout_ms);
    if (!opened.ok()) return opened.status();
    reader = std::move(opened).value();
  }
  auto result = fn(*reader);
  // A read never leaves a transaction open (each statement is autocommit).
  std::lock_guard<std::mutex> lock(readers_mu_);
  if (idle_readers_.size() < options_.max_idle_readers) idle_readers_.push_back(std::move(reader));
  return result;
}

Status SqliteStore::Migrate() {
  std::lock_guard<std::mutex> lock(write_mu_);
  return MigrateSqlite(writer_->db(), "coordinator");
}

// --- writes -------------------------------------------------------------------

Status SqliteStore::ApplyBatchLocked(const WriteBatch& batch, int64_t now_ms) {
  TXC_RETURN_IF_ERROR(store_internal::CheckBatch(batch));
  Conn& c = *writer_;
  for (const TxnRecord& t : batch.insert_txns) {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.PrepareKeyed(kInsertTxnKey, [] {
      return std::string("INSERT INTO txns (") + kTxnColumns +
             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) "
             "ON CONFLICT DO NOTHING";
    }));
    Stmt s(c, raw);
    s.Text(1, t.gtid)
        .Int(2, static_cast<int>(t.kind))
        .Int(3, static_cast<int>(t.state))
        .Text(4, t.owner)
        .Int(5, t.epoch)
        .Int(6, t.created_ms)
        .Int(7, now_ms)
        .Int(8, t.deadline_ms)
        .Int(9, t.next_attempt_ms)
        .Int(10, t.attempts)
        .TextOrNull(11, t.idempotency_key)
        .Blob(12, t.payload)
        .Int(13, t.flags);
    TXC_RETURN_IF_ERROR(s.Run("insert txn", t.gtid));
    if (s.Changes() != 1) {
      return Status::AlreadyExists("transaction " + t.gtid + " or idempotency key '" +
                                   t.idempotency_key + "' exists");
    }
  }
  for (const BranchRecord& b : batch.insert_branches) {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.PrepareKeyed(kInsertBranchKey, [] {
      return std::string("INSERT INTO branches (") + kBranchColumns +
             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, "
             "?13, ?14, ?15, ?16, ?17, ?18) ON CONFLICT DO NOTHING";
    }));
    Stmt s(c, raw);
    s.Text(1, b.gtid)
        .Text(2, b.branch_id)
        .Int(3, b.ordinal)
        .Text(4, b.endpoint)
        .Text(5, b.resource)
        .Text(6, b.action)
        .Text(7, b.compensation)
        .Blob(8, EncodeStringList(b.depends_on))
        .Blob(9, b.payload)
        .Int(10, static_cast<int>(b.state))
        .Int(11, b.attempts)
        .Int(12, b.max_attempts)
        .Int(13, b.initial_backoff_ms)
        .Int(14, b.max_backoff_ms)
        .Int(15, b.next_attempt_ms)
        .Blob(16, b.last_error)
        .Int(17, store_internal::BranchStartedMs(b.state, now_ms))
        .Int(18, store_internal::BranchFinishedMs(b.state, now_ms));
    TXC_RETURN_IF_ERROR(s.Run("insert branch", b.gtid, b.branch_id));
    if (s.Changes() != 1) {
      return Status::AlreadyExists("branch " + b.gtid + "/" + b.branch_id + " exists");
    }
  }
  // (gtid, owner, epoch) of the transactions this batch updated under their
  // fence: a branch update of the batch under the same fence needs no second
  // look at the transaction row (nothing else writes between the two).
  std::vector<std::tuple<const std::string*, std::string, int64_t>> fenced;
  for (const TxnUpdate& u : batch.txn_updates) {
    // Only the columns the update sets are in the statement (one cached
    // statement per combination): an index on a column is rewritten only
    // when that column is assigned, even to its own value.
    const uint64_t key = (uint64_t{1} << 32) | (u.state ? 1u : 0u) | (u.owner ? 2u : 0u) |
                         (u.epoch ? 4u : 0u) | (u.next_attempt_ms ? 8u : 0u) |
                         (u.attempts ? 16u : 0u) | (u.deadline_ms ? 32u : 0u) |
                         (u.flags ? 64u : 0u) | (u.expected_branch_count ? 128u : 0u);
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.PrepareKeyed(key, [&] {
      std::string sql = "UPDATE txns SET updated_ms = ?8";
      if (u.state) sql += ", state = ?1";
      if (u.owner) sql += ", owner = ?2";
      if (u.epoch) sql += ", epoch = ?3";
      if (u.next_attempt_ms) sql += ", next_attempt_ms = ?4";
      if (u.attempts) sql += ", attempts = ?5";
      if (u.deadline_ms) sql += ", deadline_ms = ?6";
      if (u.flags) sql += ", flags = ?7";
      sql +=
          " WHERE gtid = ?9 AND owner = ?10 AND epoch = ?11 "
          "AND (?12 = 0 OR ((?12 >> state) & 1) = 1)";
      if (u.expected_branch_count) {
        sql += " AND (SELECT count(*) FROM branches WHERE gtid = ?9) = ?13";
      }
      return sql;
    }));
    Stmt s(c, raw);
    if (u.state) s.Int(1, static_cast<int64_t>(*u.state));
    if (u.owner) s.Text(2, *u.owner);
    if (u.epoch) s.Int(3, *u.epoch);
    if (u.next_attempt_ms) s.Int(4, *u.next_attempt_ms);
    if (u.attempts) s.Int(5, *u.attempts);
    if (u.deadline_ms) s.Int(6, *u.deadline_ms);
    if (u.flags) s.Int(7, *u.flags);
    s.Int(8, now_ms)
        .Text(9, u.gtid)
        .Text(10, u.expected_owner)
        .Int(11, u.expected_epoch)
        .Int(12, StateMask(u.expected_states));
    if (u.expected_branch_count) s.Int(13, *u.expected_branch_count);
    TXC_RETURN_IF_ERROR(s.Run("update txn", u.gtid));
    if (s.Changes() != 1) {
      TXC_ASSIGN_OR_RETURN(bool exists, Exists(c, "SELECT 1 FROM txns WHERE gtid = ?1", u.gtid));
      if (!exists) return Status::NotFound("transaction " + u.gtid + " not found");
      return Status::Conflict("transaction " + u.gtid +
                              " is not in the expected state or (owner, epoch)");
    }
    // The row's (owner, epoch) now: a later update of the same row replaces it.
    fenced.erase(std::remove_if(fenced.begin(), fenced.end(),
                                [&u](const auto& f) { return *std::get<0>(f) == u.gtid; }),
                 fenced.end());
    fenced.emplace_back(&u.gtid, u.owner.value_or(u.expected_owner),
                        u.epoch.value_or(u.expected_epoch));
  }
  for (const BranchUpdate& u : batch.branch_updates) {
    // As for transactions: only the columns set (the endpoint, indexed, only
    // on an operator's rebind).
    const bool txn_checked = std::any_of(fenced.begin(), fenced.end(), [&u](const auto& f) {
      return *std::get<0>(f) == u.gtid && std::get<1>(f) == u.expected_owner &&
             std::get<2>(f) == u.expected_epoch;
    });
    const uint64_t key = (uint64_t{2} << 32) | (u.state ? 1u : 0u) | (u.attempts ? 2u : 0u) |
                         (u.next_attempt_ms ? 4u : 0u) | (u.last_error ? 8u : 0u) |
                         (u.endpoint ? 16u : 0u) | (txn_checked ? 32u : 0u);
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.PrepareKeyed(key, [&] {
      std::vector<std::string> set;
      if (u.state) {
        set.push_back("state = ?1");
        set.push_back(
            "started_ms = CASE WHEN ?1 <> state AND started_ms = 0 THEN ?10 "
            "ELSE started_ms END");
        set.push_back("finished_ms = CASE WHEN ?1 <> state THEN ?11 ELSE finished_ms END");
      }
      if (u.attempts) set.push_back("attempts = ?2");
      if (u.next_attempt_ms) set.push_back("next_attempt_ms = ?3");
      if (u.last_error) set.push_back("last_error = ?4");
      if (u.endpoint) set.push_back("endpoint = ?12");
      // Nothing set: still a fenced no-op write (it must match to succeed).
      if (set.empty()) set.push_back("state = state");
      std::string sql = "UPDATE branches SET ";
      for (size_t i = 0; i < set.size(); ++i) sql += (i == 0 ? "" : ", ") + set[i];
      sql += " WHERE gtid = ?5 AND branch_id = ?6 AND (?7 = 0 OR ((?7 >> state) & 1) = 1) ";
      // ?8 and ?9 stay in the statement either way (bound alike).
      sql += txn_checked
                 ? "AND ?8 IS NOT NULL AND ?9 IS NOT NULL"
                 : "AND EXISTS (SELECT 1 FROM txns WHERE gtid = ?5 AND owner = ?8 AND epoch = ?9)";
      return sql;
    }));
    Stmt s(c, raw);
    if (u.state) {
      s.Int(1, static_cast<int64_t>(*u.state))
          .Int(10, store_internal::BranchStartedMs(*u.state, now_ms))
          .Int(11, store_internal::BranchFinishedMs(*u.state, now_ms));
    }
    if (u.attempts) s.Int(2, *u.attempts);
    if (u.next_attempt_ms) s.Int(3, *u.next_attempt_ms);
    if (u.last_error) s.Blob(4, *u.last_error);
    if (u.endpoint) s.Text(12, *u.endpoint);
    s.Text(5, u.gtid)
        .Text(6, u.branch_id)
        .Int(7, StateMask(u.expected_states))
        .Text(8, u.expected_owner)
        .Int(9, u.expected_epoch);
    TXC_RETURN_IF_ERROR(s.Run("update branch", u.gtid, u.branch_id));
    if (s.Changes() != 1) {
      TXC_ASSIGN_OR_RETURN(bool txn, Exists(c, "SELECT 1 FROM txns WHERE gtid = ?1", u.gtid));
      if (!txn) return Status::NotFound("transaction " + u.gtid + " not found");
      TXC_ASSIGN_OR_RETURN(bool branch,
                           Exists(c, "SELECT 1 FROM branches WHERE gtid = ?1 AND branch_id = ?2",
                                  u.gtid, u.branch_id));
      if (!branch) return Status::NotFound("branch " + u.gtid + "/" + u.branch_id + " not found");
      return Status::Conflict("branch " + u.gtid + "/" + u.branch_id +
                              " is not in the expected state or its transaction's (owner, epoch)");
    }
  }
  for (const std::string& gtid : batch.delete_txns) {
    for (const char* sql :
         {"DELETE FROM branches WHERE gtid = ?1", "DELETE FROM txns WHERE gtid = ?1"}) {
      TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.Prepare(sql));
      Stmt s(c, raw);
      s.Text(1, gtid);
      TXC_RETURN_IF_ERROR(s.Run("delete txn", gtid));
    }
  }
  for (const AuditRecord& a : batch.insert_audits) {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                         c.Prepare(std::string("INSERT INTO audit (") + kAuditColumns +
                                   ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) "
                                   "ON CONFLICT DO NOTHING"));
    Stmt s(c, raw);
    s.Text(1, a.id)
        .Text(2, a.gtid)
        .Text(3, a.action)
        .Text(4, a.who)
        .Int(5, a.at_ms)
        .Blob(6, a.reason)
        .Text(7, a.previous_state)
        .Text(8, a.new_state)
        .Text(9, a.target);
    TXC_RETURN_IF_ERROR(s.Run("insert audit", a.gtid));
    if (s.Changes() != 1) return Status::AlreadyExists("audit record " + a.id + " exists");
  }
  return Status::Ok();
}

std::vector<Status> SqliteStore::ApplyGroupLocked(const std::vector<const WriteBatch*>& batches) {
  std::vector<Status> results(batches.size());
  if (batches.empty()) return results;
  // First pass: every batch straight into one transaction, no savepoints. A
  // savepoint per batch costs two statements and a copy of every page the
  // batch touches into the statement journal, and refusals are rare. If a
  // batch is refused, the transaction is rolled back and the second pass
  // applies the others with a savepoint each, without the refused batch: it
  // was refused on the same prefix of the group, so leaving it out is what
  // rolling back its savepoint would have done.
  std::vector<bool> refused(batches.size(), false);
  bool redo = false;
  Status s = ApplyPassLocked(batches, /*savepoints=*/false, &refused, &results, &redo);
  if (s.ok() && redo) {
    s = ApplyPassLocked(batches, /*savepoints=*/true, &refused, &results, &redo);
  }
  if (!s.ok()) {
    for (size_t i = 0; i < results.size(); ++i) {
      if (!refused[i]) results[i] = s;
    }
  }
  return results;
}

Status SqliteStore::ApplyPassLocked(const std::vector<const WriteBatch*>& batches, bool savepoints,
                                    std::vector<bool>* refused, std::vector<Status>* results,
                                    bool* redo) {
  *redo = false;
  Status begin = writer_->RunCached("BEGIN IMMEDIATE");
  if (!begin.ok()) return Status::Unavailable(begin.message());
  const int64_t now_ms = NowUnixMs();
  int64_t applied = 0;
  for (size_t i = 0; i < batches.size(); ++i) {
    if ((*refused)[i]) continue;
    if (savepoints) {
      Status sp = writer_->RunCached("SAVEPOINT batch");
      if (!sp.ok()) {
        writer_->Exec("ROLLBACK").IgnoreError();
        return sp;
      }
    }
    Status s = ApplyBatchLocked(*batches[i], now_ms);
    if (!s.ok() && !IsRefusal(s)) {
      LOG(ERROR) << "sqlite group write failed, rolling back " << batches.size()
                 << " batches: " << s;
      writer_->Exec("ROLLBACK").IgnoreError();
      return s;
    }
    if (!s.ok()) {
      (*refused)[i] = true;
      (*results)[i] = s;
      counters_.batches += 1;
      if (!savepoints) {
        // Without savepoints the batch's partial writes cannot be undone
        // alone: the whole transaction goes, and the caller runs the pass
        // again with savepoints, this batch left out.
        Status rb = writer_->Exec("ROLLBACK");
        if (!rb.ok()) return rb;
        *redo = std::find(refused->begin(), refused->end(), false) != refused->end();
        return Status::Ok();
      }
      Status rb = writer_->Exec("ROLLBACK TO SAVEPOINT batch; RELEASE SAVEPOINT batch");
      if (!rb.ok()) {
        writer_->Exec("ROLLBACK").IgnoreError();
        return rb;
      }
      continue;
    }
    ++applied;
    if (savepoints) {
      Status rel = writer_->RunCached("RELEASE SAVEPOINT batch");
      if (!rel.ok()) {
        writer_->Exec("ROLLBACK").IgnoreError();
        return rel;
      }
    }
  }
  if (applied == 0) {
    writer_->Exec("ROLLBACK").IgnoreError();
    return Status::Ok();
  }
  Status commit = writer_->RunCached("COMMIT");
  if (!commit.ok()) {
    // The outcome of a failed COMMIT is not reported reliably: re-read.
    writer_->Exec("ROLLBACK").IgnoreError();
    return Status::Indeterminate("sqlite commit failed: " + commit.message());
  }
  counters_.commits += 1;
  counters_.batches += applied;
  return Status::Ok();
}

Status SqliteStore::Apply(const WriteBatch& batch) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return ApplyGroupLocked({&batch})[0];
}

std::vector<Status> SqliteStore::ApplyGroup(const std::vector<const WriteBatch*>& batches) {
  std::lock_guard<std::mutex> lock(write_mu_);
  return ApplyGroupLocked(batches);
}

// --- reads --------------------------------------------------------------------

Result<TxnRecord> SqliteStore::GetTxn(const std::string& gtid) {
  return WithReader([&](Conn& c) -> Result<TxnRecord> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.Prepare(std::string("SELECT ") + kTxnColumns +
                                                       " FROM txns WHERE gtid = ?1"));
    Stmt s(c, raw);
    s.Text(1, gtid);
    TXC_ASSIGN_OR_RETURN(auto rows, ReadAll<TxnRecord>(c, s, ReadTxn, "get txn " + gtid));
    if (rows.empty()) return Status::NotFound("transaction " + gtid + " not found");
    return std::move(rows[0]);
  });
}

Result<TxnRecord> SqliteStore::FindByIdempotencyKey(const std::string& key) {
  if (key.empty()) return Status::InvalidArgument("empty idempotency key");
  return WithReader([&](Conn& c) -> Result<TxnRecord> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.Prepare(std::string("SELECT ") + kTxnColumns +
                                                       " FROM txns WHERE idempotency_key = ?1"));
    Stmt s(c, raw);
    s.Text(1, key);
    TXC_ASSIGN_OR_RETURN(auto rows, ReadAll<TxnRecord>(c, s, ReadTxn, "find by key"));
    if (rows.empty()) return Status::NotFound("no transaction with idempotency key " + key);
    return std::move(rows[0]);
  });
}

Result<std::vector<BranchRecord>> SqliteStore::GetBranches(const std::string& gtid) {
  return WithReader([&](Conn& c) -> Result<std::vector<BranchRecord>> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                         c.Prepare(std::string("SELECT ") + kBranchColumns +
                                   " FROM branches WHERE gtid = ?1 ORDER BY ordinal, branch_id"));
    Stmt s(c, raw);
    s.Text(1, gtid);
    return ReadAll<BranchRecord>(c, s, ReadBranch, "get branches " + gtid);
  });
}

Result<std::vector<TxnRecord>> SqliteStore::ListDue(const std::vector<TxnState>& states,
                                                    const std::string& owner, int64_t epoch,
                                                    int64_t now_ms, int limit) {
  if (states.empty() || limit <= 0) return std::vector<TxnRecord>{};
  return WithReader([&](Conn& c) -> Result<std::vector<TxnRecord>> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                         c.Prepare(std::string("SELECT ") + kTxnColumns +
                                   " FROM txns WHERE state IN (" + StateList(states) +
                                   ") AND next_attempt_ms <= ?1 AND owner = ?2 AND epoch = ?3 "
                                   "ORDER BY next_attempt_ms, created_ms, gtid LIMIT ?4"));
    Stmt s(c, raw);
    s.Int(1, now_ms).Text(2, owner).Int(3, epoch).Int(4, limit);
    return ReadAll<TxnRecord>(c, s, ReadTxn, "list due");
  });
}

Result<TxnPage> SqliteStore::ListTxns(const TxnFilter& filter, const std::string& cursor,
                                      int limit) {
  TXC_RETURN_IF_ERROR(store_internal::CheckListLimit(limit));
  int64_t after_created = 0;
  std::string after_gtid;
  if (!cursor.empty()) {
    TXC_RETURN_IF_ERROR(store_internal::DecodeListCursor(cursor, &after_created, &after_gtid));
  }
  // Only the conditions set are in the SQL: the planner sees the literal
  // state list and uses (state, created_ms, gtid) for it.
  std::vector<std::function<void(Stmt&)>> binds;
  std::string where = "1 = 1";
  auto param = [&](std::function<void(Stmt&, int)> bind) {
    const int n = static_cast<int>(binds.size()) + 1;
    binds.push_back([bind, n](Stmt& st) { bind(st, n); });
    return "?" + std::to_string(n);
  };
  auto int_param = [&](int64_t v) { return param([v](Stmt& st, int n) { st.Int(n, v); }); };
  auto text_param = [&](const std::string& v) {
    return param([v](Stmt& st, int n) { st.Text(n, v); });
  };
  if (!filter.states.empty()) where += " AND state IN (" + StateList(filter.states) + ")";
  if (filter.kind.has_value()) where += " AND kind = " + int_param(static_cast<int>(*filter.kind));
  if (!filter.owner.empty()) where += " AND owner = " + text_param(filter.owner);
  if (filter.created_after_ms > 0)
    where += " AND created_ms > " + int_param(filter.created_after_ms);
  if (filter.created_before_ms > 0) {
    where += " AND created_ms < " + int_param(filter.created_before_ms);
  }
  if (filter.updated_after_ms > 0)
    where += " AND updated_ms > " + int_param(filter.updated_after_ms);
  if (filter.updated_before_ms > 0) {
    where += " AND updated_ms < " + int_param(filter.updated_before_ms);
  }
  if (!filter.gtid_prefix.empty()) {
    where += " AND substr(gtid, 1, " + std::to_string(filter.gtid_prefix.size()) +
             ") = " + text_param(filter.gtid_prefix);
  }
  if (!filter.endpoint.empty()) {
    where +=
        " AND EXISTS (SELECT 1 FROM branches b WHERE b.endpoint = " + text_param(filter.endpoint) +
        " AND b.gtid = txns.gtid)";
  }
  if (!cursor.empty()) {
    where += " AND (created_ms, gtid) > (" + int_param(after_created) + ", " +
             text_param(after_gtid) + ")";
  }
  const std::string sql =
      std::string("SELECT ") + kTxnColumns +
      ", (SELECT b.last_error FROM branches b WHERE b.gtid = txns.gtid AND "
      "length(b.last_error) > 0 ORDER BY b.ordinal DESC LIMIT 1) FROM txns WHERE " +
      where + " ORDER BY created_ms, gtid LIMIT " + int_param(limit + 1);
  return WithReader([&](Conn& c) -> Result<TxnPage> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.Prepare(sql));
    Stmt s(c, raw);
    for (auto& bind : binds) bind(s);
    TXC_ASSIGN_OR_RETURN(auto rows, ReadAll<TxnListRow>(
                                        c, s,
                                        [](sqlite3_stmt* r) -> Result<TxnListRow> {
                                          TxnListRow row;
                                          TXC_ASSIGN_OR_RETURN(row.txn, ReadTxn(r));
                                          row.last_error = ColumnBytes(r, 13);
                                          return row;
                                        },
                                        "list txns"));
    TxnPage page;
    if (rows.size() > static_cast<size_t>(limit)) {
      rows.resize(static_cast<size_t>(limit));
      page.next_cursor =
          store_internal::EncodeListCursor(rows.back().txn.created_ms, rows.back().txn.gtid);
    }
    page.rows = std::move(rows);
    return page;
  });
}

Result<std::vector<AuditRecord>> SqliteStore::GetAudit(const std::string& gtid) {
  return WithReader([&](Conn& c) -> Result<std::vector<AuditRecord>> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                         c.Prepare(std::string("SELECT ") + kAuditColumns +
                                   " FROM audit WHERE gtid = ?1 ORDER BY at_ms, id"));
    Stmt s(c, raw);
    s.Text(1, gtid);
    return ReadAll<AuditRecord>(
        c, s,
        [](sqlite3_stmt* r) -> Result<AuditRecord> {
          AuditRecord a;
          a.id = ColumnBytes(r, 0);
          a.gtid = ColumnBytes(r, 1);
          a.action = ColumnBytes(r, 2);
          a.who = ColumnBytes(r, 3);
          a.at_ms = sqlite3_column_int64(r, 4);
          a.reason = ColumnBytes(r, 5);
          a.previous_state = ColumnBytes(r, 6);
          a.new_state = ColumnBytes(r, 7);
          a.target = ColumnBytes(r, 8);
          return a;
        },
        "get audit " + gtid);
  });
}

Result<int64_t> SqliteStore::CountInStates(const std::vector<TxnState>& states) {
  if (states.empty()) return int64_t{0};
  return WithReader([&](Conn& c) -> Result<int64_t> {
    TXC_ASSIGN_OR_RETURN(
        sqlite3_stmt * raw,
        c.Prepare("SELECT COUNT(*) FROM txns WHERE state IN (" + StateList(states) + ")"));
    Stmt s(c, raw);
    int rc = s.Step();
    if (rc != SQLITE_ROW) return SqliteStatus(c.db(), rc, "count");
    return static_cast<int64_t>(sqlite3_column_int64(raw, 0));
  });
}

Result<std::vector<StateSummary>> SqliteStore::SummarizeStates(
    const std::vector<TxnState>& states) {
  if (states.empty()) return std::vector<StateSummary>{};
  return WithReader([&](Conn& c) -> Result<std::vector<StateSummary>> {
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw,
                         c.Prepare("SELECT state, COUNT(*), MIN(created_ms) FROM txns WHERE state "
                                   "IN (" +
                                   StateList(states) + ") GROUP BY state ORDER BY state"));
    Stmt s(c, raw);
    std::vector<StateSummary> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) {
      StateSummary summary;
      summary.state = static_cast<TxnState>(sqlite3_column_int(raw, 0));
      summary.count = static_cast<int64_t>(sqlite3_column_int64(raw, 1));
      summary.oldest_created_ms = static_cast<int64_t>(sqlite3_column_int64(raw, 2));
      out.push_back(summary);
    }
    if (rc != SQLITE_DONE) return SqliteStatus(c.db(), rc, "summarize");
    return out;
  });
}

// --- retention ----------------------------------------------------------------

Result<int> SqliteStore::DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) {
  if (limit <= 0) return 0;
  std::lock_guard<std::mutex> lock(write_mu_);
  Conn& c = *writer_;
  TXC_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE"));
  auto remove = [&]() -> Result<int> {
    // state IN (final states) uses the (state, next_attempt_ms) index.
    TXC_ASSIGN_OR_RETURN(sqlite3_stmt * pick,
                         c.Prepare("SELECT gtid FROM txns WHERE state IN (" +
                                   StateList(store_internal::FinalTxnStates()) +
                                   ") AND updated_ms < ?1 ORDER BY updated_ms, gtid LIMIT ?2"));
    std::vector<std::string> gtids;
    {
      Stmt s(c, pick);
      s.Int(1, cutoff_updated_ms).Int(2, limit);
      int rc;
      while ((rc = s.Step()) == SQLITE_ROW) gtids.push_back(ColumnBytes(pick, 0));
      if (rc != SQLITE_DONE) return SqliteStatus(c.db(), rc, "retention: pick finished txns");
    }
    for (const std::string& gtid : gtids) {
      for (const char* sql :
           {"DELETE FROM branches WHERE gtid = ?1", "DELETE FROM txns WHERE gtid = ?1"}) {
        TXC_ASSIGN_OR_RETURN(sqlite3_stmt * raw, c.Prepare(sql));
        Stmt s(c, raw);
        s.Text(1, gtid);
        TXC_RETURN_IF_ERROR(s.Run("retention: delete txn", gtid));
      }
    }
    return static_cast<int>(gtids.size());
  };
  auto deleted = remove();
  if (!deleted.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return deleted.status();
  }
  Status commit = c.Exec("COMMIT");
  if (!commit.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return Status::Indeterminate("retention commit: " + commit.message());
  }
  return deleted;
}

// --- leases -------------------------------------------------------------------

Result<Lease> SqliteStore::AcquireLease(const std::string& node_id, const std::string& endpoint,
                                        int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) {
  std::lock_guard<std::mutex> lock(write_mu_);
  Conn& c = *writer_;
  TXC_ASSIGN_OR_RETURN(
      sqlite3_stmt * raw,
      c.Prepare("INSERT INTO leases (node_id, endpoint, epoch, expires_ms) VALUES (?1, ?2, 1, ?3) "
                "ON CONFLICT (node_id) DO UPDATE SET endpoint = excluded.endpoint, "
                "epoch = leases.epoch + 1, expires_ms = excluded.expires_ms "
                "WHERE ?4 OR leases.expires_ms <= ?5 "
                "RETURNING epoch"));
  Stmt s(c, raw);
  s.Text(1, node_id).Text(2, endpoint).Int(3, now_ms + ttl_ms);
  s.Int(4, takeover == LeaseTakeover::kAlways ? 1 : 0).Int(5, now_ms);
  int rc = s.Step();
  if (rc == SQLITE_ROW) {
    Lease lease{node_id, endpoint, sqlite3_column_int64(raw, 0), now_ms + ttl_ms};
    TXC_RETURN_IF_ERROR(s.Run("acquire lease", node_id));
    return lease;
  }
  if (rc != SQLITE_DONE) return SqliteStatus(c.db(), rc, "acquire lease " + node_id);
  // The lease is live and was left alone: say who holds it.
  TXC_ASSIGN_OR_RETURN(
      sqlite3_stmt * held_raw,
      c.Prepare("SELECT endpoint, epoch, expires_ms FROM leases WHERE node_id = ?1"));
  Stmt held(c, held_raw);
  held.Text(1, node_id);
  rc = held.Step();
  if (rc != SQLITE_ROW) return SqliteStatus(c.db(), rc, "read lease " + node_id);
  Lease live{node_id, ColumnBytes(held_raw, 0), sqlite3_column_int64(held_raw, 1),
             sqlite3_column_int64(held_raw, 2)};
  return store_internal::LiveLeaseRefusal(live, now_ms);
}

Status SqliteStore::RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                               int64_t now_ms) {
  std::lock_guard<std::mutex> lock(write_mu_);
  Conn& c = *writer_;
  TXC_ASSIGN_OR_RETURN(
      sqlite3_stmt * raw,
      c.Prepare("UPDATE leases SET expires_ms = ?1 WHERE node_id = ?2 AND epoch = ?3"));
  Stmt s(c, raw);
  s.Int(1, now_ms + ttl_ms).Text(2, node_id).Int(3, epoch);
  TXC_RETURN_IF_ERROR(s.Run("renew lease", node_id));
  if (s.Changes() != 1) {
    return Status::Conflict("lease of " + node_id + " epoch " + std::to_string(epoch) +
                            " was taken over");
  }
  return Status::Ok();
}

Result<std::vector<Lease>> SqliteStore::ListLeases() {
  return WithReader([&](Conn& c) -> Result<std::vector<Lease>> {
    TXC_ASSIGN_OR_RETURN(
        sqlite3_stmt * raw,
        c.Prepare("SELECT node_id, endpoint, epoch, expires_ms FROM leases ORDER BY node_id"));
    Stmt s(c, raw);
    return ReadAll<Lease>(
        c, s,
        [](sqlite3_stmt* r) -> Result<Lease> {
          return Lease{ColumnBytes(r, 0), ColumnBytes(r, 1), sqlite3_column_int64(r, 2),
                       sqlite3_column_int64(r, 3)};
        },
        "list leases");
  });
}

Result<int> SqliteStore::ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                                      int limit) {
  if (limit <= 0) return 0;
  std::lock_guard<std::mutex> lock(write_mu_);
  Conn& c = *writer_;
  TXC_RETURN_IF_ERROR(c.Exec("BEGIN IMMEDIATE"));
  auto claim = [&]() -> Result<int> {
    // Only a live lease holder may claim (fencing of the claimer itself).
    TXC_ASSIGN_OR_RETURN(
        sqlite3_stmt * check,
        c.Prepare("SELECT 1 FROM leases WHERE node_id = ?1 AND epoch = ?2 AND expires_ms >= ?3"));
    {
      Stmt s(c, check);
      s.Text(1, node_id).Int(2, epoch).Int(3, now_ms);
      int rc = s.Step();
      if (rc == SQLITE_DONE) {
        return Status::Conflict("lease of " + node_id + " epoch " + std::to_string(epoch) +
                                " is not live");
      }
      if (rc != SQLITE_ROW) return SqliteStatus(c.db(), rc, "claim: lease check");
    }
    TXC_ASSIGN_OR_RETURN(
        sqlite3_stmt * raw,
        c.Prepare("UPDATE txns SET owner = ?1, epoch = ?2, next_attempt_ms = ?3, updated_ms = ?3 "
                  "WHERE gtid IN (SELECT t.gtid FROM txns t WHERE t.state IN (" +
                  StateList(store_internal::UnfinishedTxnStates()) +
                  ") AND ((t.owner = ?1 AND t.epoch < ?2) OR (t.owner <> ?1 AND NOT EXISTS "
                  "(SELECT 1 FROM leases l WHERE l.node_id = t.owner AND l.expires_ms >= ?3))) "
                  "ORDER BY t.next_attempt_ms LIMIT ?4)"));
    Stmt s(c, raw);
    s.Text(1, node_id).Int(2, epoch).Int(3, now_ms).Int(4, limit);
    TXC_RETURN_IF_ERROR(s.Run("claim orphans"));
    return s.Changes();
  };
  auto claimed = claim();
  if (!claimed.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return claimed.status();
  }
  Status commit = c.Exec("COMMIT");
  if (!commit.ok()) {
    c.Exec("ROLLBACK").IgnoreError();
    return Status::Indeterminate("claim commit: " + commit.message());
  }
  if (*claimed > 0) VLOG(1) << node_id << " epoch " << epoch << " claimed " << *claimed << " txns";
  return claimed;
}

StoreStats SqliteStore::Stats() const { return counters_.Snapshot(); }

}  // namespace txc
