// The Coordinator service: what clients and participants call.
include "common.thrift"

namespace cpp txc.wire
namespace java io.txc.wire
namespace py txc.wire.coordinator
namespace go txcwire
namespace netstd Txc.Wire

struct BeginRequest {
  // How long the transaction may stay ACTIVE: still ACTIVE (commit not called)
  // this long after begin, it is aborted (presumed abort). Once commit has
  // started (PREPARING) this deadline no longer applies: the votes decide, each
  // prepare bounded by the coordinator's --prepare_timeout_ms (no vote in time:
  // ABORT). See docs/protocol.md.
  1: i64 timeout_ms = 60000,
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
  // WAIT_COMPLETION: the longest wait, for the decision too. Decided by then:
  // the state then (COMMITTING/ABORTING or final). Not decided yet:
  // Unavailable "ask again" while the commit goes on (0: do not wait at all).
  3: i64 wait_timeout_ms = 30000,
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

// --- admin API (operators; txcctl) -------------------------------------------

/** Which transactions listTxns returns; unset conditions match everything. */
struct ListTxnsRequest {
  1: optional common.TxnKind kind,
  2: list<common.TxnState> states,        // one of these; empty: any (finished ones too)
  3: optional string owner,               // node id
  4: i64 created_after_unix_ms = 0,       // 0: no bound
  5: i64 created_before_unix_ms = 0,
  6: i64 updated_after_unix_ms = 0,
  7: i64 updated_before_unix_ms = 0,
  8: optional string gtid_prefix,
  9: optional common.Endpoint endpoint,   // has a branch / step at this endpoint
  10: i32 limit = 100,                    // 1..1000
  11: optional string cursor,             // next_cursor of the previous page
}

/** One row of listTxns. */
struct TxnSummary {
  1: common.Gtid gtid,
  2: common.TxnKind kind,
  3: common.TxnState state,
  4: string owner,
  5: i64 created_unix_ms,
  6: i64 updated_unix_ms,
  7: i32 attempts,
  8: i64 next_attempt_unix_ms,
  9: string last_error,                   // of its last branch / step that has one
}

/** Oldest first (created, then gtid). */
struct ListTxnsResponse {
  1: list<TxnSummary> txns,
  2: optional string next_cursor,         // absent: no more
}

/** retryNow / cancelSaga. */
struct AdminRequest {
  1: common.Gtid gtid,
  2: binary reason,                       // stored in the audit record (max 4096 bytes)
}

struct ResolveRequest {
  1: common.Gtid gtid,
  2: common.BranchId branch_id,
  /** STEP_COMPENSATED (a saga step compensated by hand), BRANCH_COMMITTED or
      BRANCH_ABORTED (a 2PC branch finished by hand; must match the decision). */
  3: common.BranchState resolved_state,
  4: binary reason,
}

struct RebindRequest {
  1: optional common.Gtid gtid,           // absent: every unfinished transaction
  2: common.Endpoint from_endpoint,
  3: common.Endpoint to_endpoint,
  4: binary reason,
}

struct RebindResponse {
  1: i32 transactions,                    // transactions with a branch moved
  2: i32 branches,
}

service Coordinator {
  /** Starts a 2PC transaction; durable before it answers. */
  BeginResponse beginTxn(1: BeginRequest req)
      throws (1: common.InvalidArgument invalid, 2: common.Unavailable unavailable,
              3: common.PermissionDenied denied),

  /** Registers a branch, durably, before the branch does its work. Same branch again: no-op. */
  void enlist(1: EnlistRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable, 6: common.PermissionDenied denied),

  /** Two-phase commit. Idempotent: asking again returns the decision. */
  CommitResponse commit(1: CommitRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable, 6: common.PermissionDenied denied),

  /** Aborts an undecided transaction. Idempotent; refused once COMMIT is decided. */
  CommitResponse rollback(1: common.Gtid gtid)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 4: common.NotOwner not_owner,
              5: common.Unavailable unavailable, 6: common.PermissionDenied denied),

  /** The transaction with its branches or steps. */
  common.TxnStatus status(1: common.Gtid gtid)
      throws (1: common.NotFound not_found, 2: common.InvalidArgument invalid,
              3: common.Unavailable unavailable, 4: common.PermissionDenied denied),

  /** Logs and starts a saga. Same gtid and definition again: idempotent. */
  SubmitSagaResponse submitSaga(1: SubmitSagaRequest req)
      throws (1: common.InvalidArgument invalid, 2: common.IllegalTransition illegal,
              3: common.Unavailable unavailable, 4: common.PermissionDenied denied),

  /** For participant recovery: COMMIT, ABORT (also for unknown ids) or PENDING. */
  common.Outcome queryOutcome(1: common.Gtid gtid, 2: common.BranchId branch_id)
      throws (1: common.InvalidArgument invalid, 2: common.Unavailable unavailable,
              3: common.PermissionDenied denied),

  HealthResponse health() throws (1: common.PermissionDenied denied),

  // --- admin API. Every action is idempotent (already so: answered with the
  // status, nothing written), fenced like any write, and audited; an illegal
  // one changes nothing. The caller recorded is the connection's peer.

  /** Transactions by filter, paged. */
  ListTxnsResponse listTxns(1: ListTxnsRequest req)
      throws (3: common.InvalidArgument invalid, 5: common.Unavailable unavailable,
              6: common.PermissionDenied denied),

  /** Drive now: due at once, retry budgets reset (PARKED saga -> COMPENSATING). */
  common.TxnStatus retryNow(1: AdminRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 5: common.Unavailable unavailable,
              6: common.PermissionDenied denied),

  /** A RUNNING saga starts nothing new and compensates what it did. */
  common.TxnStatus cancelSaga(1: AdminRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 5: common.Unavailable unavailable,
              6: common.PermissionDenied denied),

  /** Marks a step / branch as finished by hand; the transaction then finishes. */
  common.TxnStatus resolveBranch(1: ResolveRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 5: common.Unavailable unavailable,
              6: common.PermissionDenied denied),

  /** Pending and future calls for from_endpoint go to to_endpoint. */
  RebindResponse rebindEndpoint(1: RebindRequest req)
      throws (1: common.NotFound not_found, 2: common.IllegalTransition illegal,
              3: common.InvalidArgument invalid, 5: common.Unavailable unavailable,
              6: common.PermissionDenied denied),
}
