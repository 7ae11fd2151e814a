// Barrier: makes saga actions and compensations safe to redeliver.
//
// The coordinator redelivers actions and compensations after crashes and
// timeouts, and may deliver a compensation before (or instead of) its action
// when the action's call timed out. The barrier records every action and
// compensation in a table of the participant's OWN database (txc_barrier,
// migrations/participant/0001_barrier.sql, applied with
// MigratePostgres(conn, "participant") / MigrateSqlite(db, "participant")),
// written in the SAME local transaction as the business change, so the record
// and the change commit or vanish together. Semantics (as DTM's barrier):
//
//   call                        barrier row found              result
//   action                      none                           hook runs; its outcome is recorded
//   action (duplicate)          action recorded                first outcome returned, hook not run
//   action after compensation   compensation recorded          kFailure "hanging ..." (refused)
//   compensation                action succeeded               hook runs, recorded
//   compensation (duplicate)    compensation recorded          kSuccess, hook not run
//   compensation, no action     none                           recorded, kSuccess "null
//   compensation",
//                                                              hook not run; a later action is
//                                                              refused
//   compensation                action returned kFailure       recorded, kSuccess, hook not run
//
// An action that returns kFailure has its business changes rolled back (to a
// savepoint) but its barrier row kept, so its compensation is a no-op. A hook
// that returns kRetryLater or throws leaves no row: nothing happened. A
// compensation hook returning kFailure also leaves no row (compensations must
// not fail; the coordinator retries it).
//
// Rows are kept for a retention period and then removed with PurgeOlderThan()
// (or a periodic purge thread, BarrierPurger). The retention must exceed the
// longest time a saga can keep redelivering, or an old duplicate would run
// again.
//
// Two ways to use it:
//  * Directly inside your own hook, with your own connection:
//      StepResult Action(const StepContext& ctx) override {
//        auto r = PgBarrierAction(*conn_, ctx, [&](pqxx::work& w) {
//          w.exec_params("UPDATE account SET balance = balance - $1 ...", ...);
//          return StepResult::Success();
//        });
//        return r.ok() ? *r : StepResult::RetryLater(r.status().ToString());
//      }
//  * Or give the ParticipantServer a BarrierStore (PgBarrierStore or
//    SqliteBarrierStore) in ParticipantServerOptions::barrier: every Action and
//    Compensate hook then runs inside the barrier's local transaction. The hook
//    writes its business change through PgWorkOf(ctx) / SqliteDbOf(ctx) and
//    never commits; the barrier does.
//
// Thread-safety: the free functions use the connection they are given (one
// thread at a time per connection). BarrierStore implementations are
// thread-safe.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "common/status.h"
#include "txc/participant/participant.h"

namespace txc {
namespace participant {

namespace internal {
class PgPool;
}  // namespace internal

// The barrier table (also used by PgXaResource::CommitOnePhase).
constexpr char kBarrierTable[] = "txc_barrier";

// ---- PostgreSQL -------------------------------------------------------------

// Runs `fn` as the action of ctx.gtid/ctx.step_id under the barrier, in one
// local transaction on `conn` (which must not have a transaction open).
// Returns the StepResult to answer with. Errors (the hook never ran or its
// work was rolled back; the caller answers kRetryLater): kUnavailable (broken
// connection: make a new one), kIndeterminate (commit outcome unknown),
// kInternal (SQL error, e.g. the table is missing), and the hook's own
// exception text as kInternal.
Result<StepResult> PgBarrierAction(pqxx::connection_base& conn, const StepContext& ctx,
                                   const std::function<StepResult(pqxx::work&)>& fn);
// Same for the compensation.
Result<StepResult> PgBarrierCompensate(pqxx::connection_base& conn, const StepContext& ctx,
                                       const std::function<StepResult(pqxx::work&)>& fn);
// Deletes rows created more than age_ms ago; returns how many.
Result<int64_t> PgBarrierPurgeOlderThan(pqxx::connection_base& conn, int64_t age_ms);

// ---- SQLite -----------------------------------------------------------------

// As the PostgreSQL functions, on an open SQLite handle (BEGIN IMMEDIATE ...
// COMMIT; the handle must not be inside a transaction). The hook writes with
// the same `db`. kUnavailable when the database stayed busy past its
// busy_timeout.
Result<StepResult> SqliteBarrierAction(sqlite3* db, const StepContext& ctx,
                                       const std::function<StepResult(sqlite3*)>& fn);
Result<StepResult> SqliteBarrierCompensate(sqlite3* db, const StepContext& ctx,
                                           const std::function<StepResult(sqlite3*)>& fn);
Result<int64_t> SqliteBarrierPurgeOlderThan(sqlite3* db, int64_t age_ms);

// ---- Stores for ParticipantServer ------------------------------------------

// A barrier with its own connection(s), used by ParticipantServer to wrap the
// Action/Compensate hooks. `hook` is called with ctx.local_txn set.
class BarrierStore {
 public:
  virtual ~BarrierStore() = default;
  virtual Result<StepResult> Action(const StepContext& ctx,
                                    const std::function<StepResult(const StepContext&)>& hook) = 0;
  virtual Result<StepResult> Compensate(
      const StepContext& ctx, const std::function<StepResult(const StepContext&)>& hook) = 0;
  virtual Result<int64_t> PurgeOlderThan(int64_t age_ms) = 0;
};

// The pqxx::work a barrier opened for this call, or nullptr when the call does
// not run under a PgBarrierStore.
pqxx::work* PgWorkOf(const StepContext& ctx);
// The sqlite3 handle (inside the barrier's open transaction), or nullptr when
// the call does not run under a SqliteBarrierStore.
sqlite3* SqliteDbOf(const StepContext& ctx);

// PostgreSQL barrier store: a small pool of connections to `conninfo` (one per
// concurrent call, at most `max_connections`; a broken connection is replaced
// on the next call).
class PgBarrierStore : public BarrierStore {
 public:
  explicit PgBarrierStore(std::string conninfo, size_t max_connections = 4);
  ~PgBarrierStore() override;
  Result<StepResult> Action(const StepContext& ctx,
                            const std::function<StepResult(const StepContext&)>& hook) override;
  Result<StepResult> Compensate(const StepContext& ctx,
                                const std::function<StepResult(const StepContext&)>& hook) override;
  Result<int64_t> PurgeOlderThan(int64_t age_ms) override;

 private:
  std::unique_ptr<internal::PgPool> pool_;
};

// SQLite barrier store: one connection to the database file at `path`
// (opened on first use with WAL, busy_timeout 5 s); calls are serialized.
// The business tables the hooks write live in the same file.
class SqliteBarrierStore : public BarrierStore {
 public:
  explicit SqliteBarrierStore(std::string path);
  ~SqliteBarrierStore() override;
  Result<StepResult> Action(const StepContext& ctx,
                            const std::function<StepResult(const StepContext&)>& hook) override;
  Result<StepResult> Compensate(const StepContext& ctx,
                                const std::function<StepResult(const StepContext&)>& hook) override;
  Result<int64_t> PurgeOlderThan(int64_t age_ms) override;

 private:
  Status OpenLocked();
  const std::string path_;
  std::mutex mu_;          // guards db_ and serializes every call on it
  sqlite3* db_ = nullptr;  // opened lazily
};

// Calls store->PurgeOlderThan(retention_ms) every interval_ms on a background
// thread until destroyed. Failures are logged and retried at the next tick.
class BarrierPurger {
 public:
  BarrierPurger(std::shared_ptr<BarrierStore> store, int64_t retention_ms, int64_t interval_ms);
  ~BarrierPurger();
  BarrierPurger(const BarrierPurger&) = delete;
  BarrierPurger& operator=(const BarrierPurger&) = delete;
  int64_t purged_rows() const { return purged_.load(); }

 private:
  std::shared_ptr<BarrierStore> store_;
  const int64_t retention_ms_;
  const int64_t interval_ms_;
  std::mutex mu_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::atomic<int64_t> purged_{0};
  std::thread thread_;
};

}  // namespace participant
}  // namespace txc
