// Shared wire types of the transaction coordinator.
//
// Field ids are stable: never renumber, never reuse a removed id. New fields are
// optional or carry a default so that old clients keep working.

namespace cpp txc.wire
namespace java io.txc.wire
namespace py txc.wire.common
namespace go txcwire
namespace netstd Txc.Wire

/** Global transaction id: printable ASCII, 1..128 bytes. Chosen by the coordinator
    on begin, or by the client for a saga (submitSaga with a gtid). */
typedef string Gtid

/** Branch (2PC) or step (Saga) id, unique within one global transaction, 1..128 bytes. */
typedef string BranchId

/** A participant endpoint: "host:port" of a server speaking the Participant service. */
typedef string Endpoint

enum TxnKind {
  TWO_PHASE = 1,
  SAGA = 2,
}

/**
 * Global transaction states.
 *
 * 2PC:   ACTIVE -> PREPARING -> COMMITTING -> COMMITTED
 *           |          |
 *           +----------+-----> ABORTING  -> ABORTED
 * Saga:  RUNNING -> SUCCEEDED
 *           |
 *           +----> COMPENSATING -> COMPENSATED
 *                        |
 *                        +------> PARKED (compensation keeps failing; operator needed)
 */
enum TxnState {
  ACTIVE = 1,        // 2PC: begun, branches may enlist
  PREPARING = 2,     // 2PC: commit requested, prepare sent, no decision yet
  COMMITTING = 3,    // 2PC: COMMIT decision logged, phase 2 in progress
  COMMITTED = 4,     // 2PC: every branch acknowledged commit
  ABORTING = 5,      // 2PC: ABORT decision logged, phase 2 in progress
  ABORTED = 6,       // 2PC: every branch acknowledged abort
  RUNNING = 10,      // Saga: actions running
  SUCCEEDED = 11,    // Saga: every action done
  COMPENSATING = 12, // Saga: a step failed, compensations running
  COMPENSATED = 13,  // Saga: every attempted action compensated
  PARKED = 14,       // Saga: compensation exceeded its retry limit; still retried by operators
}

/**
 * Branch / step states.
 *
 * 2PC branch:  REGISTERED -> PREPARED -> COMMITTED
 *                  |     \-> READ_ONLY (no phase 2)
 *                  +---------+-------> ABORTED
 * Saga step:   PENDING -> STEP_RUNNING -> DONE -> STEP_COMPENSATING -> STEP_COMPENSATED
 *                              \-> FAILED -> STEP_COMPENSATING
 */
enum BranchState {
  REGISTERED = 1,
  PREPARED = 2,
  READ_ONLY = 3,
  BRANCH_COMMITTED = 4,
  BRANCH_ABORTED = 5,
  PENDING = 10,
  STEP_RUNNING = 11,
  DONE = 12,
  FAILED = 13,
  STEP_COMPENSATING = 14,
  STEP_COMPENSATED = 15,
  SKIPPED = 16,      // never started because the saga began compensating first
}

/** A participant's answer to prepare. */
enum Vote {
  VOTE_PREPARED = 1,
  VOTE_READ_ONLY = 2,
  VOTE_ABORT = 3,
}

/** A participant's answer to a saga action or compensation. */
enum StepOutcome {
  SUCCESS = 1,      // done (or a duplicate of something already done)
  FAILURE = 2,      // business refusal: no retry; an action failure starts compensation
  RETRY_LATER = 3,  // transient: retried with backoff within the step's retry policy
}

/** The coordinator's answer to "what happened to this transaction?". */
enum Outcome {
  OUTCOME_COMMIT = 1,
  OUTCOME_ABORT = 2,   // also the answer for an unknown id (presumed abort)
  OUTCOME_PENDING = 3, // still deciding: ask again later, do not decide locally
}

/** What commit waits for before it answers. */
enum CommitWait {
  WAIT_DECISION = 1,    // answer once the decision is durable; phase 2 runs behind
  WAIT_COMPLETION = 2,  // answer once every branch acknowledged phase 2 (or the wait timed out)
}

/** Propagated with every call that takes part in a global transaction. */
struct TxnContext {
  1: Gtid gtid,
  2: list<Endpoint> coordinators,   // every replica, for failover
  3: i64 deadline_unix_ms,          // after this the transaction is aborted if undecided
  4: optional BranchId branch_id,
}

struct RetryPolicy {
  1: i32 max_attempts = 5,          // actions: attempts before the step counts as failed
  2: i32 initial_backoff_ms = 100,
  3: i32 max_backoff_ms = 10000,
}

/** A 2PC branch as enlisted. */
struct BranchSpec {
  1: BranchId branch_id,
  2: Endpoint endpoint,
  3: string resource,               // the participant's resource name, free-form
  4: binary payload,                // opaque, handed to the participant's hooks (max 1 MiB)
}

/** A saga step. */
struct SagaStep {
  1: BranchId step_id,
  2: Endpoint endpoint,
  3: string action,
  4: string compensation,
  5: binary payload,                // opaque, handed to action and compensation (max 1 MiB)
  6: optional RetryPolicy retry_policy,
  7: list<BranchId> depends_on,     // steps that must be DONE first; absent: the previous step
  8: optional bool concurrent,      // true with empty depends_on: no dependency at all
}

struct BranchStatus {
  1: BranchId branch_id,
  2: Endpoint endpoint,
  3: string resource,
  4: BranchState state,
  5: i32 attempts,
  6: string last_error,
  7: i64 next_attempt_unix_ms,
  8: string action,
  9: string compensation,
  10: list<BranchId> depends_on,
  11: i64 started_unix_ms,          // enlisted (2PC) / left PENDING (Saga); 0: not yet or not known
  12: i64 finished_unix_ms,         // last reached a resting state; 0: not in one
}

/** One operator action (admin API) on a transaction. */
struct AuditRecord {
  1: string action,                 // "retry", "cancel", "resolve", "rebind"
  2: string who,                    // the caller's connection peer, "host:port"
  3: i64 at_unix_ms,
  4: binary reason,
  5: string previous_state,         // "PARKED", "step s2 STEP_COMPENSATING", "endpoint h:1"
  6: string new_state,
  7: string target,                 // branch id(s) acted on; may be empty
}

struct TxnStatus {
  1: Gtid gtid,
  2: TxnKind kind,
  3: TxnState state,
  4: i64 created_unix_ms,
  5: i64 deadline_unix_ms,
  6: string owner,                  // node id of the replica driving it
  7: i64 epoch,
  8: list<BranchStatus> branches,   // branches (2PC) or steps (Saga), in order
  9: i32 attempts,                  // phase-2 / compensation rounds so far
  10: i64 updated_unix_ms,          // last write
  11: i64 next_attempt_unix_ms,     // when the sweeper looks at it again
  12: list<AuditRecord> audit,      // operator actions, oldest first
}

/** The id is unknown (or its record was removed after completion). */
exception NotFound {
  1: string message,
  2: Gtid gtid,
}

/** The request is not legal in the transaction's current state (commit after rollback, ...). */
exception IllegalTransition {
  1: string message,
  2: Gtid gtid,
  3: TxnState current_state,
}

/** A field is missing, malformed or too large. Nothing was changed. */
exception InvalidArgument {
  1: string message,
  2: string field,
}

/** Another replica drives this transaction: retry there. */
exception NotOwner {
  1: string message,
  2: Endpoint owner_endpoint,
}

/** Temporarily unable to serve (store down, shutting down, overloaded). Safe to retry. */
exception Unavailable {
  1: string message,
  2: i32 retry_after_ms,
}

/**
 * The caller may not make this call: its identity holds no role that allows
 * the method (coordinator: the policy file, --auth_policy), or a participant
 * accepts calls from coordinator identities only. Nothing was changed.
 * Not retried: the caller's identity or the server's policy must change.
 */
exception PermissionDenied {
  1: string message,
  2: string identity,               // the caller's certificate CN; empty: not authenticated
  3: string method,                 // the method refused, e.g. "commit"
  4: string peer_address,           // "host:port" the call came from
}
