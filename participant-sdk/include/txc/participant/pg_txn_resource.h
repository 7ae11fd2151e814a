// PgTxnResource: a PostgreSQL database that enlists itself in the caller's
// global transaction (txn_resources.h) and keeps the work of every call of
// one transaction in ONE local PostgreSQL transaction, prepared at prepare.
//
//   auto db = PgTxnResource::Create(resources, "stock-db", options);
//   // in a handler running under a propagated context:
//   txc::Status s = (*db)->Run([&](pqxx::transaction_base& t) {
//     pqxx::result r = t.exec_params(
//         "UPDATE stock SET qty = qty - $1 WHERE item = $2 AND qty >= $1", n, item);
//     if (r.affected_rows() != 1) throw OutOfStock();  // this call's work is undone
//   });
//
// Run(fn) inside a current context:
//   1. enlists the resource (once per gtid; TxnResources::Join);
//   2. runs fn in the gtid's local transaction, opened on a dedicated pooled
//      connection by the first call and kept open between calls; each call is
//      a savepoint: fn throwing undoes that call's work only (Run returns
//      kInternal with the exception text), earlier calls' work stays;
//   3. the coordinator's prepare runs PREPARE TRANSACTION on it (vote
//      kPrepared; kReadOnly when no call succeeded), commit/abort finish it
//      with COMMIT/ROLLBACK PREPARED (PgXaResource), one-phase commit
//      commits it with a txc_barrier row (needs the participant migration).
// Calls of one gtid run one at a time. Outside any context Run(fn) runs fn in
// a local transaction of its own and commits it.
//
// Bounds: at most max_open_transactions local transactions are open at once
// (more: kUnavailable, the call is refused before any work); one that saw no
// call and no prepare for idle_timeout_ms, or whose transaction's deadline
// passed more than deadline_grace_ms ago, is rolled back (a later prepare
// votes abort), and so is one whose branch is aborted. An open (not yet
// prepared) local transaction does not survive a restart of the service: its
// prepare then votes abort. A prepared one does, and is resolved by
// ParticipantServer's recovery (Recover()).
//
// Crash points: participant.after_prepare (after PREPARE TRANSACTION, before
// the vote is returned), and PgXaResource's participant.before_commit_prepared.
//
// Thread-safety: all methods may be called concurrently.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "common/status.h"
#include "txc/participant/pg_resource.h"
#include "txc/participant/txn_resources.h"

namespace txc {
namespace participant {

namespace internal {
class PgPool;
}  // namespace internal

struct PgTxnResourceOptions {
  // conninfo and prefix of the prepared transactions (gids); xa.resource is
  // set to the registered name. xa.max_connections serves calls outside a
  // context and phase 2.
  PgXaOptions xa;
  size_t max_open_transactions = 16;
  int64_t idle_timeout_ms = 60000;
  int64_t deadline_grace_ms = 5000;
  // Wait for a row lock inside a call (SET LOCAL lock_timeout); 0: forever.
  int64_t lock_timeout_ms = 2000;
};

class PgTxnResource : public TxnResource {
 public:
  // Creates the resource and registers it under `name` with `registry`.
  // kInvalidArgument / kAlreadyExists as PgXaResource::Create and Register.
  static Result<std::shared_ptr<PgTxnResource>> Create(std::shared_ptr<TxnResources> registry,
                                                       const std::string& name,
                                                       PgTxnResourceOptions options);
  ~PgTxnResource() override;  // rolls back open local transactions

  // See above. Errors: Join's (fn not run), kUnavailable (too many open
  // transactions, database unreachable), kIllegalTransition (this
  // transaction's branch was already prepared or rolled back here), kInternal
  // (fn threw: this call's work was undone).
  Status Run(const std::function<void(pqxx::transaction_base&)>& fn);

  Vote Prepare(const BranchContext& ctx) override;
  Outcome CommitOnePhase(const BranchContext& ctx) override;
  void Commit(const BranchContext& ctx) override;
  void Abort(const BranchContext& ctx) override;
  std::vector<PreparedBranch> Recover() override;

  // Local transactions open right now (for tests and metrics).
  size_t open_transactions() const;
  const std::string& name() const { return name_; }

 private:
  struct Session;
  PgTxnResource(std::shared_ptr<TxnResources> registry, std::string name,
                PgTxnResourceOptions options, std::unique_ptr<PgXaResource> xa);
  Status RunLocal(const std::function<void(pqxx::transaction_base&)>& fn);
  // Removes gtid's session and remembers the gtid as finished.
  void Retire(const std::string& gtid, int64_t deadline_unix_ms);
  // The open session of `gtid`, or nullptr (take_out: also removes it).
  std::shared_ptr<Session> FindSession(const std::string& gtid, bool take_out);
  // Rolls back and closes a session whose mu is held.
  void CloseSessionLocked(Session* session, bool rollback);
  void ReaperLoop();

  // Not owned: the registry owns this resource (a shared_ptr back would be a cycle).
  std::weak_ptr<TxnResources> registry_;
  const std::string name_;
  const PgTxnResourceOptions options_;
  std::unique_ptr<PgXaResource> xa_;                   // phase 2, recovery, redeliveries
  std::unique_ptr<internal::PgPool> session_pool_;     // dedicated connections of sessions
  std::unique_ptr<internal::PgPool> autocommit_pool_;  // calls outside a context

  // Guards sessions_, finished_ and stopping_. Never held together with a
  // Session::mu (each is taken and released on its own).
  mutable std::mutex mu_;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<Session>> sessions_;  // by gtid
  // gtids whose local transaction ended here -> deadline; a later call of them
  // is refused instead of opening a second, partial local transaction.
  std::map<std::string, int64_t> finished_;
  std::thread reaper_;
};

}  // namespace participant
}  // namespace txc
