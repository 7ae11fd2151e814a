// The Coordinator service: what clients and participants call.
include "common.thrift"

namespace cpp txc.wire
namespace java io.txc.wire
namespace py txc.wire.coordinator
namespace go txcwire
namespace netstd Txc.Wire

struct BeginRequest {
  1: i64 timeout_ms = 60000,              // undecided past this: aborted (presumed abort)
  2: optional string idempotency_key,     // same key again: the same transaction is returned
  3: optional list<common.BranchSpec> branches,  // enlisted in the same durable write
}

struct BeginResponse {
  1: common.Gtid gtid,
  2: common.TxnContext context,
}

struct EnlistRequest {
  1: common.Gtid gtid,
  2: common.BranchSpec branch,
}

struct CommitRequest {
  1: common.Gtid gtid,
  2: common.CommitWait wait = common.CommitWait.WAIT_DECISION,
  3: i64 wait_timeout_ms = 30000,         // WAIT_COMPLETION: answer with the current state after this
}

struct CommitResponse {
  1: common.Gtid gtid,
  2: common.TxnState state,               // COMMITTING/COMMITTED or ABORTING/ABORTED
  3: common.Outcome outcome,              // COMMIT or ABORT
}

struct SubmitSagaRequest {
  1: optional common.Gtid gtid,           // client-chosen id makes resubmission idempotent
  2: list<common.SagaStep> steps,
  3: bool wait_for_completion = false,
  4: i64 wait_timeout_ms = 30000,
  5: i64 timeout_ms = 600000,
}

struct SubmitSagaResponse {
  1: common.Gtid gtid,
  2: common.TxnState state,
}

struct HealthResponse {
  1: string node_id,
  2: string version,
  3: string store,                        // "sqlite" or "postgresql"
  4: bool serving,
  5: i64 epoch,                           // this replica's lease epoch
  6: list<common.Endpoint> replicas,      // live replicas known from the lease table
  7: bool store_healthy = true,           // store calls answer within their deadline
  8: string store_error,                  // why not, when store_healthy is false
}

service Coordinator {
  /** Starts a 2PC transaction; durable before it answers. */
  BeginResponse beginTxn(1: BeginRequest req)
      throws (1: common.InvalidArgument invalid, 2: common.Unavailable unavailable),

  /** Registers a branch, durably, before the branch does its work. Same branch again: no-op. */
  void enlist(1: EnlistRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable),

  /** Two-phase commit. Idempotent: asking again returns the decision. */
  CommitResponse commit(1: CommitRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable),

  /** Aborts an undecided transaction. Idempotent; refused once COMMIT is decided. */
  CommitResponse rollback(1: common.Gtid gtid)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable),

  /** The transaction with its branches or steps. */
  common.TxnStatus status(1: common.Gtid gtid)
      throws (1: common.NotFound not_found, 2: common.InvalidArgument invalid,
              3: common.Unavailable unavailable),

  /** Logs and starts a saga. Same gtid and definition again: idempotent. */
  SubmitSagaResponse submitSaga(1: SubmitSagaRequest req)
      throws (1: common.InvalidArgument invalid, 2: common.IllegalTransition illegal,
              3: common.Unavailable unavailable),

  /** For participant recovery: COMMIT, ABORT (also for unknown ids) or PENDING. */
  common.Outcome queryOutcome(1: common.Gtid gtid, 2: common.BranchId branch_id)
      throws (1: common.InvalidArgument invalid, 2: common.Unavailable unavailable),

  HealthResponse health(),
}
