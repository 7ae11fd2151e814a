// The Participant service: what the coordinator calls on each microservice.
// The participant SDK (participant-sdk/) implements it around user hooks.
include "common.thrift"

namespace cpp txc.wire
namespace java io.txc.wire
namespace py txc.wire.participant
namespace go txcwire
namespace netstd Txc.Wire

struct BranchRequest {
  1: common.Gtid gtid,
  2: common.BranchId branch_id,
  3: string resource,
  4: binary payload,
  5: common.TxnContext context,
}

struct StepRequest {
  1: common.Gtid gtid,
  2: common.BranchId step_id,
  3: string name,                 // the action's or the compensation's name
  4: binary payload,
  5: i32 attempt,                 // 1 on the first delivery
  6: common.TxnContext context,
}

struct StepResult {
  1: common.StepOutcome outcome,
  2: string message,
}

service Participant {
  /** Phase 1. Any error counts as VOTE_ABORT. */
  common.Vote prepare(1: BranchRequest req) throws (1: common.PermissionDenied denied),

  /** One-phase commit of the only branch: prepare and commit in one call.
      Idempotent: a redelivery after success answers OUTCOME_COMMIT. */
  common.Outcome commitOnePhase(1: BranchRequest req) throws (1: common.Unavailable unavailable,
                                                              2: common.PermissionDenied denied),

  /** Phase 2. Idempotent: committing a committed branch succeeds. */
  void commit(1: BranchRequest req) throws (1: common.Unavailable unavailable,
                                            2: common.PermissionDenied denied),

  /** Phase 2 (or rollback before prepare). Idempotent; aborting an unknown branch succeeds. */
  void abort(1: BranchRequest req) throws (1: common.Unavailable unavailable,
                                           2: common.PermissionDenied denied),

  /** Saga action. Duplicates are no-ops; an action after its compensation is refused. */
  StepResult action(1: StepRequest req) throws (1: common.PermissionDenied denied),

  /** Saga compensation. Must not fail for business reasons; without its action: recorded no-op. */
  StepResult compensate(1: StepRequest req) throws (1: common.PermissionDenied denied),
}
