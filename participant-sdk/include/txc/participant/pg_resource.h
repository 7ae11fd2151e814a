// PgXaResource: a PostgreSQL database as a 2PC resource, through PostgreSQL's
// own prepared transactions (PREPARE TRANSACTION / COMMIT PREPARED).
//
//   class Accounts : public txc::participant::Participant {
//    public:
//     Vote Prepare(const BranchContext& ctx) override {
//       auto vote = pg_->Prepare(ctx, [&](pqxx::work& w) {
//         pqxx::result r = w.exec_params(
//             "UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
//             amount, id);
//         return r.affected_rows() == 1 ? Vote::kPrepared : Vote::kAbort;
//       });
//       return vote.ok() ? *vote : Vote::kAbort;
//     }
//     void Commit(const BranchContext& ctx) override { ThrowIfError(pg_->Commit(ctx)); }
//     void Abort(const BranchContext& ctx) override { ThrowIfError(pg_->Abort(ctx)); }
//     std::vector<PreparedBranch> Recover() override { return ValueOrThrow(pg_->Recover()); }
//     Outcome CommitOnePhase(const BranchContext& ctx) override { ... pg_->CommitOnePhase ... }
//    private:
//     std::unique_ptr<PgXaResource> pg_;
//   };
//
// The prepared transaction of a branch is named (its "gid")
//   <prefix>:<gtid>:<branch_id>
// or, when gtid or branch_id contain ':' or '\'', <prefix>:x:<hex gtid>:<hex branch_id>.
// It must fit PostgreSQL's 199-byte limit, else Prepare fails with
// kInvalidArgument. Each resource (database + prefix) recovers only its own
// prepared transactions: those of its prefix in its database.
//
// PostgreSQL keeps a prepared transaction across crashes and restarts of both
// the participant and the server, holding its locks, until COMMIT PREPARED or
// ROLLBACK PREPARED. A participant killed after PREPARE finds it on restart
// via Recover(), and ParticipantServer resolves it with the coordinator.
// Requires max_prepared_transactions > 0 on the server (default 0!).
//
// Crash points (common/crash_point.h, for fault-injection tests):
//   participant.after_prepare           after PREPARE TRANSACTION, before the vote is returned
//   participant.before_commit_prepared  in Commit(), before COMMIT PREPARED is sent
// CommitOnePhase also requires the participant migration (txc_barrier table,
// MigratePostgres(conn, "participant")).
//
// Thread-safety: all methods may be called concurrently; each call uses one
// pooled connection (at most max_connections); a connection that broke is
// replaced on the next call.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "common/status.h"
#include "txc/participant/participant.h"

namespace txc {
namespace participant {

namespace internal {
class PgPool;
}  // namespace internal

struct PgXaOptions {
  std::string conninfo;        // libpq connection string of the participant's database
  std::string prefix = "txc";  // 1..32 chars of [A-Za-z0-9_-]; names this resource's gids
  std::string resource;        // reported in PreparedBranch::resource; empty: prefix
  size_t max_connections = 4;
  int64_t acquire_timeout_ms = 10000;  // waiting for a free pooled connection
  // The prepare work's local transaction waits at most this long for a row
  // lock (SET LOCAL lock_timeout): a lock held by an already prepared branch is
  // only released by its phase 2, which needs a pooled connection of its own,
  // so an unbounded wait could hold every connection and block phase 2 for
  // good. Past it the prepare fails (a vote to abort). 0: wait forever.
  int64_t prepare_lock_timeout_ms = 2000;
};

class PgXaResource {
 public:
  // kInvalidArgument for a bad prefix or empty conninfo. Connects lazily.
  static Result<std::unique_ptr<PgXaResource>> Create(PgXaOptions options);
  ~PgXaResource();

  // Phase 1. Runs fn in a local transaction, then
  //   fn -> kPrepared: PREPARE TRANSACTION '<gid>' (durable, undecided), kPrepared;
  //   fn -> kReadOnly: rolls back (nothing to keep), kReadOnly;
  //   fn -> kAbort:    rolls back, kAbort.
  // A redelivered prepare whose gid is already prepared answers kPrepared
  // without running fn. Errors (treat as a vote to abort; nothing is left
  // prepared): kInvalidArgument (gid too long), kUnavailable (connection lost;
  // also max_prepared_transactions = 0 shows as kInternal with PostgreSQL's
  // text), kInternal (fn threw or SQL failed: the message says which).
  Result<Vote> Prepare(const BranchContext& ctx, const std::function<Vote(pqxx::work&)>& fn);

  // Phase 2: COMMIT PREPARED. Idempotent: a gid no longer prepared counts as
  // committed (a prepared branch only ends through this call or Abort).
  // Errors: kUnavailable (retry later), kInternal.
  Status Commit(const BranchContext& ctx);
  // Phase 2: ROLLBACK PREPARED. Idempotent: an unknown gid succeeds.
  Status Abort(const BranchContext& ctx);

  // One-phase commit of the only branch: runs fn and commits in one local
  // transaction together with a barrier row (gtid, branch, 'commit_one_phase'),
  // so a redelivery after success answers kCommit without running fn again.
  // fn -> kPrepared or kReadOnly: kCommit; kAbort: rolled back, kAbort.
  // Errors: as Prepare; kIndeterminate is never returned (an in-doubt commit
  // is re-read from the barrier row; if still unknown kUnavailable).
  Result<Outcome> CommitOnePhase(const BranchContext& ctx,
                                 const std::function<Vote(pqxx::work&)>& fn);

  // This resource's prepared transactions (its prefix, its database).
  Result<std::vector<PreparedBranch>> Recover();

  // The gid a branch is prepared under (kInvalidArgument when too long).
  Result<std::string> GidFor(const std::string& gtid, const std::string& branch_id) const;
  // Closes idle pooled connections.
  void DropIdleConnections();

  const PgXaOptions& options() const { return options_; }

 private:
  explicit PgXaResource(PgXaOptions options);
  Status FinishPrepared(const BranchContext& ctx, bool commit);
  // Whether `gid` is currently prepared (fresh connection from the pool).
  Result<bool> IsPrepared(const std::string& gid);
  Result<bool> IsPreparedOnce(const std::string& gid);
  Result<std::vector<PreparedBranch>> RecoverOnce();

  const PgXaOptions options_;
  std::unique_ptr<internal::PgPool> pool_;
};

// Helpers for hooks, which report failures by throwing: throws
// std::runtime_error with the status text when !s.ok().
void ThrowIfError(const Status& s);
template <typename T>
T ValueOrThrow(Result<T> r) {
  ThrowIfError(r.status());
  return std::move(r).value();
}

}  // namespace participant
}  // namespace txc
