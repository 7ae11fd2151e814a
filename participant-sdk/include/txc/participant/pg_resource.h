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
// A prepare that arrives after its branch's abort (it was delayed, the
// coordinator's prepare timed out and it decided ABORT) must not leave a
// prepared transaction holding locks until recovery finds it: Abort()
// remembers the branch (abort_memory_ms, at most abort_memory_entries
// branches), and a Prepare() of a remembered branch votes kAbort without
// running its work. An Abort() that meets a Prepare() of the same branch still
// running waits for it (at most acquire_timeout_ms; past that kUnavailable,
// and the coordinator retries) and then rolls back what it prepared; a
// Prepare() that sees the abort before PREPARE TRANSACTION rolls back and
// votes kAbort. The memory is per process: after a restart the coordinator's
// recovery (ParticipantServer's Recover()) resolves anything left.
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

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
  // How long, and for how many branches at most, an abort is remembered to
  // refuse a late prepare of the same branch (see above).
  int64_t abort_memory_ms = 600000;
  size_t abort_memory_entries = 100000;
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
  // without running fn; a prepare of a branch aborted here answers kAbort
  // without running fn. Errors (treat as a vote to abort; nothing is left
  // prepared): kInvalidArgument (gid too long), kUnavailable (connection lost;
  // also max_prepared_transactions = 0 shows as kInternal with PostgreSQL's
  // text), kInternal (fn threw or SQL failed: the message says which).
  Result<Vote> Prepare(const BranchContext& ctx, const std::function<Vote(pqxx::work&)>& fn);

  // Phase 2: COMMIT PREPARED. Idempotent: a gid no longer prepared counts as
  // committed (a prepared branch only ends through this call or Abort).
  // Errors: kUnavailable (retry later), kInternal.
  Status Commit(const BranchContext& ctx);
  // Phase 2: ROLLBACK PREPARED. Idempotent: an unknown gid succeeds (and is
  // remembered: a later prepare of it votes kAbort). kUnavailable also when a
  // prepare of the branch is still running after acquire_timeout_ms.
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

  // The abort memory (see above). PrepareGuard registers a running prepare.
  class PrepareGuard;
  bool AbortedLocked(const std::string& gid, int64_t now_ms);
  void RememberAbortLocked(const std::string& gid, int64_t now_ms);

  const PgXaOptions options_;
  std::unique_ptr<internal::PgPool> pool_;

  std::mutex aborts_mu_;  // guards the three fields below
  std::condition_variable prepare_done_;
  std::map<std::string, int> preparing_;    // gid -> prepares of it running now
  std::map<std::string, int64_t> aborted_;  // gid -> remembered until (MonotonicMs)
  std::deque<std::pair<int64_t, std::string>> abort_order_;  // (until, gid), oldest first
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
