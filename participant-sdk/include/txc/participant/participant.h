// Participant hooks: what a microservice implements to take part in global
// transactions coordinated by the txc coordinator.
//
// A service derives from `Participant`, overrides the hooks of the protocols it
// speaks (2PC: Prepare/Commit/Abort/Recover, optionally CommitOnePhase; Saga:
// Action/Compensate) and hands the object to a `ParticipantServer`
// (participant_server.h), which serves the coordinator's calls.
//
//   class Payments : public txc::participant::Participant {
//    public:
//     Vote Prepare(const BranchContext& ctx) override { ... }
//     void Commit(const BranchContext& ctx) override { ... }
//     void Abort(const BranchContext& ctx) override { ... }
//     std::vector<PreparedBranch> Recover() override { ... }
//   };
//
// Threading: the server calls hooks concurrently from its connection threads
// (one thread per coordinator connection), also for the same transaction when
// the coordinator redelivers. Hooks must be thread-safe.
//
// Errors: a hook reports a business answer through its return value and an
// infrastructure failure by throwing any std::exception. The server turns a
// throw into a safe outcome: Prepare -> vote abort; CommitOnePhase, Commit,
// Abort -> "unavailable", so the coordinator retries later; Action/Compensate
// -> retry later. Hooks a service does not override answer with a typed
// refusal (see each hook), never a crash.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace txc {
namespace participant {

// A participant's answer to Prepare.
enum class Vote {
  kPrepared,  // the branch's changes are durable and can still be committed or aborted
  kReadOnly,  // the branch changed nothing: it takes no part in phase 2
  kAbort,     // the branch cannot commit; the transaction aborts
};
const char* VoteName(Vote vote);

// A transaction's fate as the coordinator reports it (queryOutcome) or as a
// one-phase commit ended.
enum class Outcome {
  kCommit,
  kAbort,    // also the coordinator's answer for an unknown transaction (presumed abort)
  kPending,  // still deciding: ask again later, never decide locally
};
const char* OutcomeName(Outcome outcome);

// What a saga action or compensation did.
enum class StepOutcome {
  kSuccess,     // done (or a duplicate of something already done)
  kFailure,     // business refusal, not retried; an action's failure starts compensation
  kRetryLater,  // transient: the coordinator retries with backoff within the step's policy
};
const char* StepOutcomeName(StepOutcome outcome);

struct StepResult {
  StepOutcome outcome = StepOutcome::kSuccess;
  std::string message;  // free text, shown in the coordinator's status

  static StepResult Success(std::string m = "") { return {StepOutcome::kSuccess, std::move(m)}; }
  static StepResult Failure(std::string m) { return {StepOutcome::kFailure, std::move(m)}; }
  static StepResult RetryLater(std::string m) { return {StepOutcome::kRetryLater, std::move(m)}; }
};

// A 2PC branch as the coordinator addresses it.
struct BranchContext {
  std::string gtid;       // global transaction id
  std::string branch_id;  // unique within the transaction
  std::string resource;   // the resource name given at enlist (free-form)
  std::string payload;    // opaque bytes given at enlist
  int attempt = 1;        // 1 on the first delivery of this call (not tracked for 2PC: always 1)
  int64_t deadline_unix_ms = 0;           // still ACTIVE past this: aborted; 0: unknown
  std::vector<std::string> coordinators;  // coordinator replicas "host:port" (may be empty)
};

// Opaque handle to the local database transaction a barrier opened around an
// Action/Compensate call. See barrier.h (PgWorkOf, SqliteDbOf) to reach it.
class LocalTxn {
 public:
  virtual ~LocalTxn() = default;
};

// A saga step's action or compensation as the coordinator addresses it.
struct StepContext {
  std::string gtid;
  std::string step_id;  // unique within the saga
  std::string name;     // the action's or the compensation's name from the saga definition
  std::string payload;  // opaque bytes from the saga definition
  int attempt = 1;      // 1 on the first delivery, then 2, 3, ... on retries
  int64_t deadline_unix_ms = 0;
  std::vector<std::string> coordinators;
  // Set when the call runs under a barrier (ParticipantServerOptions::barrier):
  // the local transaction the hook must write its business change into. The
  // barrier commits it together with its own record; the hook never commits it.
  // nullptr otherwise.
  LocalTxn* local_txn = nullptr;
};

// A branch this participant holds prepared locally (from Recover()).
struct PreparedBranch {
  std::string gtid;
  std::string branch_id;
  std::string resource;
};

// Thrown by the default hooks of a protocol the service does not speak. The
// server maps it like any hook exception, and logs its text.
class NotSupportedError : public std::logic_error {
 public:
  explicit NotSupportedError(const std::string& what) : std::logic_error(what) {}
};

class Participant {
 public:
  virtual ~Participant() = default;

  // ---- 2PC -----------------------------------------------------------------

  // Phase 1: do the branch's work and make it durable-but-undecided (e.g.
  // PREPARE TRANSACTION), then vote. kPrepared is a promise: the branch must be
  // able to commit until told otherwise, across crashes (see Recover()).
  // Default: kAbort (a service without 2PC support refuses to take part).
  virtual Vote Prepare(const BranchContext& ctx);

  // The only branch of a transaction: prepare and commit in one step. Must be
  // idempotent: a redelivery after a successful commit answers kCommit
  // (PgXaResource::CommitOnePhase does this through the barrier table).
  // Returns kCommit or kAbort (kPending is not a valid answer).
  // Default: Prepare(); kPrepared -> Commit() and kCommit; kReadOnly -> kCommit;
  // kAbort -> kAbort. This default is idempotent only if Prepare() answers
  // kPrepared again for a branch that was already prepared and committed.
  virtual Outcome CommitOnePhase(const BranchContext& ctx);

  // Phase 2. Idempotent: committing a committed branch succeeds. Throw when the
  // commit could not be done now (the coordinator retries). Default: throws
  // NotSupportedError.
  virtual void Commit(const BranchContext& ctx);

  // Phase 2 abort, or abort before/without prepare. Idempotent: aborting an
  // unknown or already aborted branch succeeds. Default: does nothing (a service
  // that never prepares holds nothing to release).
  virtual void Abort(const BranchContext& ctx);

  // The branches this participant holds prepared locally. Called by the server
  // on Start() (and periodically): each is resolved by asking the coordinator.
  // Default: none.
  virtual std::vector<PreparedBranch> Recover();

  // ---- Saga ----------------------------------------------------------------

  // A step's action. Must be idempotent unless it runs under a barrier
  // (ParticipantServerOptions::barrier), which makes duplicates no-ops and
  // refuses an action that arrives after its compensation.
  // Default: kFailure "action not supported" (the saga compensates).
  virtual StepResult Action(const StepContext& ctx);

  // A step's compensation: undo the action. Must not fail for business
  // reasons (use kRetryLater for transient problems); must be idempotent and
  // accept a compensation whose action never ran, unless under a barrier.
  // Default: kRetryLater "compensation not supported" (the saga stays visible
  // to operators rather than being reported compensated).
  virtual StepResult Compensate(const StepContext& ctx);
};

}  // namespace participant
}  // namespace txc
