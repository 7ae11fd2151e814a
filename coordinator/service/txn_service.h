// TxnService: the coordinator's operations as the Thrift handlers see them, in
// internal types (no Thrift here). coordinator/rpc converts wire <-> these.
//
// Thread-safety: every method may be called concurrently from the rpc pool.
// Errors (Status codes) map one-to-one to the wire exceptions:
//   kInvalidArgument -> InvalidArgument, kNotFound -> NotFound,
//   kIllegalTransition / kAlreadyExists -> IllegalTransition, kNotOwner -> NotOwner,
//   anything else -> Unavailable (safe to retry).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/two_phase.h"  // Outcome
#include "coordinator/store/txn_store.h"

namespace txc {

enum class CommitWait { kDecision, kCompletion };

struct BeginOptions {
  int64_t timeout_ms = 60000;
  std::string idempotency_key;         // empty: none
  std::vector<BranchRecord> branches;  // enlisted in the same durable write
};

struct TxnView {
  TxnRecord txn;
  std::vector<BranchRecord> branches;
  std::vector<AuditRecord> audit;  // operator actions on it, oldest first
};

// Who asks for an operator action, and why (stored in the audit record).
struct AdminContext {
  std::string who;  // the caller's connection peer ("host:port")
  std::string reason;
};

// What a rebind changed.
struct RebindResult {
  int32_t transactions = 0;  // transactions with at least one branch moved
  int32_t branches = 0;
};

struct SagaSpec {
  std::string gtid;                 // empty: the coordinator picks one
  std::vector<BranchRecord> steps;  // action, compensation, depends_on, retry fields set
  int64_t timeout_ms = 600000;
  bool wait_for_completion = false;
  int64_t wait_timeout_ms = 30000;
};

struct HealthInfo {
  std::string node_id;
  std::string store_kind;
  bool serving = false;
  int64_t epoch = 0;
  std::vector<std::string> replicas;  // endpoints with a live lease
  // Whether the store answers in time (TxnStore::HealthCheck); when not,
  // store_error says why (e.g. commits stuck waiting for a synchronous standby).
  bool store_healthy = true;
  std::string store_error;
};

// Who this process is: fixed for the life of the process. The epoch is the
// lease epoch acquired at start; if the lease is lost the process stops.
struct NodeInfo {
  std::string node_id;
  std::string endpoint;  // "host:port" clients reach this replica at
  int64_t epoch = 0;
};

// The 2PC operations beyond begin/status (coordinator/driver implements them).
class TwoPhaseOps {
 public:
  virtual ~TwoPhaseOps() = default;
  // A transaction this replica just began, durable with its branches: the
  // driver may keep it in memory so that committing it reads nothing back.
  virtual void Begun(const TxnRecord& txn, const std::vector<BranchRecord>& branches) {
    (void)txn;
    (void)branches;
  }
  virtual Status Enlist(const std::string& gtid, const BranchRecord& branch) = 0;
  // Enlist without a thread waiting for the write, for the hot path only (see
  // TxnService::EnlistAsync). Default: not taken.
  virtual bool EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                           std::function<void(Status)> done) {
    (void)gtid, (void)branch, (void)done;
    return false;
  }
  virtual Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                                   int64_t wait_timeout_ms) = 0;
  // Commit(gtid, kDecision, ...) without a thread waiting for the decision,
  // for the hot path only (see TxnService::CommitAsync). Default: not taken.
  virtual bool CommitAsync(const std::string& gtid, std::function<void(Result<TxnRecord>)> done) {
    (void)gtid, (void)done;
    return false;
  }
  virtual Result<TxnRecord> Rollback(const std::string& gtid) = 0;
  virtual Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) = 0;
  // An operator changed the transaction in the store (admin API): drive it
  // from what the store holds now. Default: Resume.
  virtual void AdminChanged(const TxnRecord& txn) { Resume(txn); }
  // Called by the recovery sweeper for a 2PC transaction of this node whose
  // next_attempt_ms is due (timed out, or phase 2 to redrive after a crash).
  // Must not block for long (hand the work to a pool) and must be a no-op for a
  // transaction this process is already driving.
  virtual void Resume(const TxnRecord& txn) = 0;
};

// Saga submission (coordinator/driver implements it).
class SagaOps {
 public:
  virtual ~SagaOps() = default;
  virtual Result<TxnRecord> SubmitSaga(const SagaSpec& spec) = 0;
  // A first submission answered without a waiting thread (see
  // TxnService::SubmitSagaAsync). Default: not taken.
  virtual bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done) {
    (void)spec, (void)done;
    return false;
  }
  // As TwoPhaseOps::Resume, for a saga (RUNNING, COMPENSATING or PARKED) that is due.
  virtual void Resume(const TxnRecord& txn) = 0;
  // An operator changed the saga in the store (admin API: cancel, retry,
  // resolve, rebind): forget any copy driven in memory and drive it from what
  // the store holds now. Default: Resume.
  virtual void AdminChanged(const TxnRecord& txn) { Resume(txn); }
};

class TxnService {
 public:
  virtual ~TxnService() = default;
  virtual Result<TxnRecord> Begin(const BeginOptions& options) = 0;
  // Begin answered through `done` instead of by a waiting caller (the
  // event-loop front end): `done` is called exactly once, on any thread,
  // possibly before BeginAsync returns; it must be short and must not block.
  // False when this path does not apply (a begin with an idempotency key,
  // which reads the store first; no service to take it right now): nothing
  // was done, and the caller calls Begin(). Default: never taken.
  virtual bool BeginAsync(const BeginOptions& options,
                          std::function<void(Result<TxnRecord>)> done) {
    (void)options, (void)done;
    return false;
  }
  virtual Status Enlist(const std::string& gtid, const BranchRecord& branch) = 0;
  // Enlist in a transaction this replica began and still holds in memory,
  // answered through `done` (exactly once, on any thread, possibly before
  // EnlistAsync returns; short, must not block) once the branch is durable.
  // `done` is given OK, or kConflict for anything else (the record moved on,
  // the write failed or its outcome is unknown): the caller then calls
  // Enlist(), which re-reads and answers (a branch that did land is a retried
  // enlist there). False when this path does not apply (not begun here, the
  // branch id already enlisted, a malformed request): nothing was done and the
  // caller calls Enlist(). Default: never taken.
  virtual bool EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                           std::function<void(Status)> done) {
    (void)gtid, (void)branch, (void)done;
    return false;
  }
  virtual Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                                   int64_t wait_timeout_ms) = 0;
  // Commit(gtid, kDecision, ...) for a transaction this replica began and
  // still holds in memory, answered through `done` (at most once, on any
  // thread, possibly before CommitAsync returns) when the decision is durable
  // or the drive ended without one, instead of by a waiting caller. The
  // caller bounds its own wait (the drive decides within its prepare window
  // unless the store stalls). False when that fast path does not apply: then
  // nothing was done and the caller calls Commit(). `done` may be given
  // kConflict (the record moved on under the fast path: the caller then calls
  // Commit(), which re-reads). Default: never taken.
  virtual bool CommitAsync(const std::string& gtid, std::function<void(Result<TxnRecord>)> done) {
    (void)gtid, (void)done;
    return false;
  }
  virtual Result<TxnRecord> Rollback(const std::string& gtid) = 0;
  virtual Result<TxnView> GetStatus(const std::string& gtid) = 0;
  virtual Result<TxnRecord> SubmitSaga(const SagaSpec& spec) = 0;
  // SubmitSaga answered through `done` (at most once, on any thread,
  // possibly before it returns) once the definition is durable or, with
  // wait_for_completion, once the saga ended here; the caller bounds its own
  // wait. False when not taken (nothing done: call SubmitSaga). `done` may be
  // given kConflict: the gtid was already known or the saga was let go
  // before it ended; the caller then calls SubmitSaga, whose resubmission
  // rules answer. Default: never taken.
  virtual bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done) {
    (void)spec, (void)done;
    return false;
  }
  virtual Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) = 0;
  virtual HealthInfo Health() = 0;
  // A new globally unique transaction id ("" when none can be made right
  // now): lets the front end name a saga before submitting it.
  virtual std::string NewGtid() const { return ""; }
  // Endpoints of all live replicas, for TxnContext.coordinators.
  virtual std::vector<std::string> CoordinatorEndpoints() = 0;
  // --- operator actions (admin API) -------------------------------------------
  // Each is idempotent (already so: OK, nothing written), fenced, audited.
  // Errors: kNotFound, kIllegalTransition, kInvalidArgument (nothing changed),
  // kUnavailable. The defaults answer kUnavailable (not served here).
  virtual Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor, int limit) {
    (void)filter, (void)cursor, (void)limit;
    return Status::Unavailable("listTxns: not served here");
  }
  virtual Result<TxnView> RetryNow(const std::string& gtid, const AdminContext& ctx) {
    (void)gtid, (void)ctx;
    return Status::Unavailable("retryNow: not served here");
  }
  virtual Result<TxnView> CancelSaga(const std::string& gtid, const AdminContext& ctx) {
    (void)gtid, (void)ctx;
    return Status::Unavailable("cancelSaga: not served here");
  }
  // resolved: kStepCompensated (saga step), kBranchCommitted / kBranchAborted (2PC).
  virtual Result<TxnView> Resolve(const std::string& gtid, const std::string& branch_id,
                                  BranchState resolved, const AdminContext& ctx) {
    (void)gtid, (void)branch_id, (void)resolved, (void)ctx;
    return Status::Unavailable("resolveBranch: not served here");
  }
  // gtid empty: every unfinished transaction with a branch at from_endpoint.
  virtual Result<RebindResult> Rebind(const std::string& gtid, const std::string& from_endpoint,
                                      const std::string& to_endpoint, const AdminContext& ctx) {
    (void)gtid, (void)from_endpoint, (void)to_endpoint, (void)ctx;
    return Status::Unavailable("rebindEndpoint: not served here");
  }

  // The endpoint of the replica `node_id` from the lease table ("" when not
  // known), for NotOwner.owner_endpoint.
  virtual std::string EndpointOfNode(const std::string& node_id) {
    (void)node_id;
    return "";
  }
};

}  // namespace txc
