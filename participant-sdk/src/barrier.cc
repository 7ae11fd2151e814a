#include "txc/participant/barrier.h"

#include <glog/logging.h>

#include <chrono>
#include <optional>

#include "common/backoff.h"
#include "pg_pool.h"

namespace txc {
namespace participant {

namespace {

// Barrier row ops and outcome codes as stored.
constexpr char kOpAction[] = "action";
constexpr char kOpCompensate[] = "compensate";
constexpr int kRowNone = 0;     // marker row: a compensation arrived first (null compensation)
constexpr int kRowSuccess = 1;  // the hook succeeded
constexpr int kRowFailure = 2;  // the action failed for a business reason

struct BarrierRow {
  std::string reason;  // the op whose call inserted the row
  int outcome = kRowNone;
  std::string message;
};

// One open local transaction, seen by the barrier algorithm. Methods throw
// the database library's exceptions.
class BarrierOps {
 public:
  virtual ~BarrierOps() = default;
  // Inserts (gtid, step, op) unless present; true when inserted.
  virtual bool InsertIfAbsent(const char* op, const char* reason, int outcome) = 0;
  virtual std::optional<BarrierRow> Read(const char* op) = 0;
  virtual void Update(const char* op, int outcome, const std::string& message) = 0;
  virtual void Savepoint() = 0;
  virtual void RollbackToSavepoint() = 0;
  virtual StepResult RunHook() = 0;
};

// What to do with the local transaction, and what to answer.
struct Decision {
  StepResult result;
  bool commit = true;
};

StepResult FromRow(const BarrierRow& row) {
  return row.outcome == kRowFailure ? StepResult::Failure(row.message)
                                    : StepResult::Success(row.message);
}

Decision RunAction(BarrierOps& ops, const StepContext& ctx) {
  if (!ops.InsertIfAbsent(kOpAction, kOpAction, kRowSuccess)) {
    std::optional<BarrierRow> row = ops.Read(kOpAction);
    if (row && row->reason == kOpCompensate) {
      VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
              << " barrier: action after its compensation refused (hanging)";
      return {StepResult::Failure("hanging action refused: its compensation already ran"), false};
    }
    VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
            << " barrier: duplicate action, answering the first outcome";
    return {row ? FromRow(*row) : StepResult::Success(), false};
  }
  ops.Savepoint();
  StepResult r = ops.RunHook();
  switch (r.outcome) {
    case StepOutcome::kSuccess:
      ops.Update(kOpAction, kRowSuccess, r.message);
      VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id << " barrier: action done";
      return {r, true};
    case StepOutcome::kFailure:
      ops.RollbackToSavepoint();
      ops.Update(kOpAction, kRowFailure, r.message);
      VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
              << " barrier: action failed, recorded: " << r.message;
      return {r, true};
    case StepOutcome::kRetryLater: return {r, false};
  }
  return {r, false};
}

Decision RunCompensate(BarrierOps& ops, const StepContext& ctx) {
  const bool null_compensation = ops.InsertIfAbsent(kOpAction, kOpCompensate, kRowNone);
  if (!ops.InsertIfAbsent(kOpCompensate, kOpCompensate, kRowSuccess)) {
    std::optional<BarrierRow> row = ops.Read(kOpCompensate);
    VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
            << " barrier: duplicate compensation, answering the first outcome";
    return {row ? FromRow(*row) : StepResult::Success(), false};
  }
  if (null_compensation) {
    VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
            << " barrier: null compensation recorded (action never ran)";
    ops.Update(kOpCompensate, kRowSuccess, "null compensation: the action never ran");
    return {StepResult::Success("null compensation: the action never ran"), true};
  }
  std::optional<BarrierRow> action = ops.Read(kOpAction);
  if (action && action->outcome == kRowFailure) {
    VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id
            << " barrier: action had failed, compensation is a no-op";
    ops.Update(kOpCompensate, kRowSuccess, "the action had failed: nothing to compensate");
    return {StepResult::Success("the action had failed: nothing to compensate"), true};
  }
  StepResult r = ops.RunHook();
  if (r.outcome == StepOutcome::kSuccess) {
    ops.Update(kOpCompensate, kRowSuccess, r.message);
    VLOG(1) << "gtid=" << ctx.gtid << " step=" << ctx.step_id << " barrier: compensated";
    return {r, true};
  }
  return {r, false};
}

// ---- PostgreSQL ---------------------------------------------------------------

class PgLocalTxn : public LocalTxn {
 public:
  explicit PgLocalTxn(pqxx::work* work) : work_(work) {}
  pqxx::work* work() const { return work_; }

 private:
  pqxx::work* work_;
};

class PgOps : public BarrierOps {
 public:
  PgOps(pqxx::work& w, const StepContext& ctx, const std::function<StepResult(pqxx::work&)>& fn)
      : w_(w), ctx_(ctx), fn_(fn) {}
  bool InsertIfAbsent(const char* op, const char* reason, int outcome) override {
    pqxx::result r = w_.exec_params(
        "INSERT INTO txc_barrier (gtid, branch_id, op, reason, outcome, message, "
        "created_unix_ms) VALUES ($1, $2, $3, $4, $5, '', $6) "
        "ON CONFLICT (gtid, branch_id, op) DO NOTHING",
        ctx_.gtid, ctx_.step_id, op, reason, outcome, NowUnixMs());
    return r.affected_rows() == 1;
  }
  std::optional<BarrierRow> Read(const char* op) override {
    pqxx::result r = w_.exec_params(
        "SELECT reason, outcome, message FROM txc_barrier "
        "WHERE gtid = $1 AND branch_id = $2 AND op = $3",
        ctx_.gtid, ctx_.step_id, op);
    if (r.empty()) return std::nullopt;
    return BarrierRow{r[0][0].as<std::string>(), r[0][1].as<int>(), r[0][2].as<std::string>()};
  }
  void Update(const char* op, int outcome, const std::string& message) override {
    w_.exec_params(
        "UPDATE txc_barrier SET outcome = $4, message = $5 "
        "WHERE gtid = $1 AND branch_id = $2 AND op = $3",
        ctx_.gtid, ctx_.step_id, op, outcome, message);
  }
  void Savepoint() override { w_.exec("SAVEPOINT txc_barrier_hook"); }
  void RollbackToSavepoint() override { w_.exec("ROLLBACK TO SAVEPOINT txc_barrier_hook"); }
  StepResult RunHook() override { return fn_(w_); }

 private:
  pqxx::work& w_;
  const StepContext& ctx_;
  const std::function<StepResult(pqxx::work&)>& fn_;
};

Result<StepResult> PgRun(pqxx::connection_base& conn, const StepContext& ctx,
                         const std::function<StepResult(pqxx::work&)>& fn, bool compensate) {
  const char* what = compensate ? "barrier compensate" : "barrier action";
  try {
    pqxx::work w(conn);
    PgOps ops(w, ctx, fn);
    Decision d = compensate ? RunCompensate(ops, ctx) : RunAction(ops, ctx);
    if (d.commit) {
      w.commit();
    } else {
      w.abort();
    }
    return d.result;
  } catch (const std::exception& e) {
    Status s = internal::StatusFromException(e, what);
    LOG(ERROR) << "gtid=" << ctx.gtid << " step=" << ctx.step_id << " " << s;
    return s;
  }
}

// ---- SQLite -----------------------------------------------------------------------

class SqliteLocalTxn : public LocalTxn {
 public:
  explicit SqliteLocalTxn(sqlite3* db) : db_(db) {}
  sqlite3* db() const { return db_; }

 private:
  sqlite3* db_;
};

// Thrown inside the SQLite path; converted to a Status at its edge.
struct SqliteError : std::runtime_error {
  SqliteError(int code, const std::string& what) : std::runtime_error(what), code(code) {}
  int code;
};

void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw SqliteError(rc, std::string(sql) + ": " + msg);
  }
}

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    const int rc = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
    if (rc != SQLITE_OK) throw SqliteError(rc, std::string(sql) + ": " + sqlite3_errmsg(db));
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  // true: a row is available.
  bool Step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    throw SqliteError(rc, std::string("sqlite step: ") + sqlite3_errmsg(db_));
  }
  std::string Text(int col) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p == nullptr ? "" : std::string(p, sqlite3_column_bytes(stmt_, col));
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

class SqliteOps : public BarrierOps {
 public:
  SqliteOps(sqlite3* db, const StepContext& ctx, const std::function<StepResult(sqlite3*)>& fn)
      : db_(db), ctx_(ctx), fn_(fn) {}
  bool InsertIfAbsent(const char* op, const char* reason, int outcome) override {
    Stmt s(db_,
           "INSERT INTO txc_barrier (gtid, branch_id, op, reason, outcome, message, "
           "created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, '', ?6) "
           "ON CONFLICT (gtid, branch_id, op) DO NOTHING");
    s.Bind(1, ctx_.gtid).Bind(2, ctx_.step_id).Bind(3, op).Bind(4, reason).Bind(5, outcome);
    s.Bind(6, NowUnixMs()).Step();
    return sqlite3_changes(db_) == 1;
  }
  std::optional<BarrierRow> Read(const char* op) override {
    Stmt s(db_,
           "SELECT reason, outcome, message FROM txc_barrier "
           "WHERE gtid = ?1 AND branch_id = ?2 AND op = ?3");
    s.Bind(1, ctx_.gtid).Bind(2, ctx_.step_id).Bind(3, op);
    if (!s.Step()) return std::nullopt;
    return BarrierRow{s.Text(0), static_cast<int>(s.Int(1)), s.Text(2)};
  }
  void Update(const char* op, int outcome, const std::string& message) override {
    Stmt s(db_,
           "UPDATE txc_barrier SET outcome = ?4, message = ?5 "
           "WHERE gtid = ?1 AND branch_id = ?2 AND op = ?3");
    s.Bind(1, ctx_.gtid).Bind(2, ctx_.step_id).Bind(3, op).Bind(4, outcome).Bind(5, message);
    s.Step();
  }
  void Savepoint() override { Exec(db_, "SAVEPOINT txc_barrier_hook"); }
  void RollbackToSavepoint() override { Exec(db_, "ROLLBACK TO SAVEPOINT txc_barrier_hook"); }
  StepResult RunHook() override { return fn_(db_); }

 private:
  sqlite3* db_;
  const StepContext& ctx_;
  const std::function<StepResult(sqlite3*)>& fn_;
};

Status SqliteStatus(const SqliteError& e, const std::string& what) {
  if (e.code == SQLITE_BUSY || e.code == SQLITE_LOCKED) {
    return Status::Unavailable(what + ": database busy: " + e.what());
  }
  return Status::Internal(what + ": " + e.what());
}

Result<StepResult> SqliteRun(sqlite3* db, const StepContext& ctx,
                             const std::function<StepResult(sqlite3*)>& fn, bool compensate) {
  const char* what = compensate ? "barrier compensate" : "barrier action";
  bool open = false;
  try {
    Exec(db, "BEGIN IMMEDIATE");
    open = true;
    SqliteOps ops(db, ctx, fn);
    Decision d = compensate ? RunCompensate(ops, ctx) : RunAction(ops, ctx);
    Exec(db, d.commit ? "COMMIT" : "ROLLBACK");
    return d.result;
  } catch (const std::exception& e) {
    if (open && !sqlite3_get_autocommit(db))
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    Status s = dynamic_cast<const SqliteError*>(&e) != nullptr
                   ? SqliteStatus(static_cast<const SqliteError&>(e), what)
                   : Status::Internal(std::string(what) + ": " + e.what());
    LOG(ERROR) << "gtid=" << ctx.gtid << " step=" << ctx.step_id << " " << s;
    return s;
  }
}

}  // namespace

Result<StepResult> PgBarrierAction(pqxx::connection_base& conn, const StepContext& ctx,
                                   const std::function<StepResult(pqxx::work&)>& fn) {
  return PgRun(conn, ctx, fn, false);
}

Result<StepResult> PgBarrierCompensate(pqxx::connection_base& conn, const StepContext& ctx,
                                       const std::function<StepResult(pqxx::work&)>& fn) {
  return PgRun(conn, ctx, fn, true);
}

Result<int64_t> PgBarrierPurgeOlderThan(pqxx::connection_base& conn, int64_t age_ms) {
  try {
    pqxx::work w(conn);
    pqxx::result r =
        w.exec_params("DELETE FROM txc_barrier WHERE created_unix_ms < $1", NowUnixMs() - age_ms);
    w.commit();
    return static_cast<int64_t>(r.affected_rows());
  } catch (const std::exception& e) {
    return internal::StatusFromException(e, "barrier purge");
  }
}

Result<StepResult> SqliteBarrierAction(sqlite3* db, const StepContext& ctx,
                                       const std::function<StepResult(sqlite3*)>& fn) {
  return SqliteRun(db, ctx, fn, false);
}

Result<StepResult> SqliteBarrierCompensate(sqlite3* db, const StepContext& ctx,
                                           const std::function<StepResult(sqlite3*)>& fn) {
  return SqliteRun(db, ctx, fn, true);
}

Result<int64_t> SqliteBarrierPurgeOlderThan(sqlite3* db, int64_t age_ms) {
  try {
    Stmt s(db, "DELETE FROM txc_barrier WHERE created_unix_ms < ?1");
    s.Bind(1, NowUnixMs() - age_ms).Step();
    return static_cast<int64_t>(sqlite3_changes(db));
  } catch (const SqliteError& e) {
    return SqliteStatus(e, "barrier purge");
  }
}

pqxx::work* PgWorkOf(const StepContext& ctx) {
  auto* t = dynamic_cast<PgLocalTxn*>(ctx.local_txn);
  return t == nullptr ? nullptr : t->work();
}

sqlite3* SqliteDbOf(const StepContext& ctx) {
  auto* t = dynamic_cast<SqliteLocalTxn*>(ctx.local_txn);
  return t == nullptr ? nullptr : t->db();
}

// ---- PgBarrierStore ---------------------------------------------------------------

PgBarrierStore::PgBarrierStore(std::string conninfo, size_t max_connections)
    : pool_(std::make_unique<internal::PgPool>(std::move(conninfo), max_connections)) {}

PgBarrierStore::~PgBarrierStore() = default;

namespace {

Result<StepResult> PgStoreRun(internal::PgPool& pool, const StepContext& ctx,
                              const std::function<StepResult(const StepContext&)>& hook,
                              bool compensate) {
  TXC_ASSIGN_OR_RETURN(auto conn, pool.Acquire());
  Result<StepResult> r = PgRun(
      conn->conn, ctx,
      [&](pqxx::work& w) {
        PgLocalTxn local(&w);
        StepContext inner = ctx;
        inner.local_txn = &local;
        return hook(inner);
      },
      compensate);
  const bool healthy = r.ok() || (r.status().code() != StatusCode::kUnavailable &&
                                  r.status().code() != StatusCode::kIndeterminate);
  pool.Release(std::move(conn), healthy);
  return r;
}

}  // namespace

Result<StepResult> PgBarrierStore::Action(
    const StepContext& ctx, const std::function<StepResult(const StepContext&)>& hook) {
  return PgStoreRun(*pool_, ctx, hook, false);
}

Result<StepResult> PgBarrierStore::Compensate(
    const StepContext& ctx, const std::function<StepResult(const StepContext&)>& hook) {
  return PgStoreRun(*pool_, ctx, hook, true);
}

Result<int64_t> PgBarrierStore::PurgeOlderThan(int64_t age_ms) {
  TXC_ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  Result<int64_t> r = PgBarrierPurgeOlderThan(conn->conn, age_ms);
  pool_->Release(std::move(conn), r.ok() || r.status().code() != StatusCode::kUnavailable);
  return r;
}

// ---- SqliteBarrierStore -----------------------------------------------------------

SqliteBarrierStore::SqliteBarrierStore(std::string path) : path_(std::move(path)) {}

SqliteBarrierStore::~SqliteBarrierStore() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Status SqliteBarrierStore::OpenLocked() {
  if (db_ != nullptr) return Status::Ok();
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path_.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return Status::Unavailable("open " + path_ + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", nullptr, nullptr, nullptr);
  db_ = db;
  return Status::Ok();
}

namespace {

Result<StepResult> SqliteStoreRun(sqlite3* db, const StepContext& ctx,
                                  const std::function<StepResult(const StepContext&)>& hook,
                                  bool compensate) {
  return SqliteRun(
      db, ctx,
      [&](sqlite3* handle) {
        SqliteLocalTxn local(handle);
        StepContext inner = ctx;
        inner.local_txn = &local;
        return hook(inner);
      },
      compensate);
}

}  // namespace

Result<StepResult> SqliteBarrierStore::Action(
    const StepContext& ctx, const std::function<StepResult(const StepContext&)>& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  TXC_RETURN_IF_ERROR(OpenLocked());
  return SqliteStoreRun(db_, ctx, hook, false);
}

Result<StepResult> SqliteBarrierStore::Compensate(
    const StepContext& ctx, const std::function<StepResult(const StepContext&)>& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  TXC_RETURN_IF_ERROR(OpenLocked());
  return SqliteStoreRun(db_, ctx, hook, true);
}

Result<int64_t> SqliteBarrierStore::PurgeOlderThan(int64_t age_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  TXC_RETURN_IF_ERROR(OpenLocked());
  return SqliteBarrierPurgeOlderThan(db_, age_ms);
}

// ---- BarrierPurger ------------------------------------------------------------------

BarrierPurger::BarrierPurger(std::shared_ptr<BarrierStore> store, int64_t retention_ms,
                             int64_t interval_ms)
    : store_(std::move(store)),
      retention_ms_(retention_ms),
      interval_ms_(std::max<int64_t>(1, interval_ms)) {
  thread_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stop_; })) {
      lock.unlock();
      Result<int64_t> n = store_->PurgeOlderThan(retention_ms_);
      if (n.ok()) {
        purged_ += *n;
        if (*n > 0)
          VLOG(1) << "barrier: purged " << *n << " rows older than " << retention_ms_ << " ms";
      } else {
        LOG(ERROR) << "barrier purge failed (retried next tick): " << n.status();
      }
      lock.lock();
    }
  });
}

BarrierPurger::~BarrierPurger() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace participant
}  // namespace txc
