#include "coordinator/core/admin.h"

#include "coordinator/core/saga.h"

namespace txc {
namespace {

TxnUpdate FencedTxnUpdate(const TxnRecord& txn) {
  TxnUpdate u;
  u.gtid = txn.gtid;
  u.expected_states = {txn.state};
  u.expected_owner = txn.owner;
  u.expected_epoch = txn.epoch;
  return u;
}

BranchUpdate FencedBranchUpdate(const TxnRecord& txn, const BranchRecord& b) {
  BranchUpdate u;
  u.gtid = txn.gtid;
  u.branch_id = b.branch_id;
  u.expected_states = {b.state};
  u.expected_owner = txn.owner;
  u.expected_epoch = txn.epoch;
  return u;
}

AuditRecord Audit(const TxnRecord& txn, const AdminActor& actor, const char* action,
                  std::string previous_state, std::string new_state, std::string target) {
  AuditRecord a;
  a.id = actor.audit_id;
  a.gtid = txn.gtid;
  a.action = action;
  a.who = actor.who;
  a.at_ms = actor.now_ms;
  a.reason = actor.reason;
  a.previous_state = std::move(previous_state);
  a.new_state = std::move(new_state);
  a.target = std::move(target);
  return a;
}

Status Illegal(const TxnRecord& txn, const std::string& what) {
  return Status::IllegalTransition(txn.gtid + " is " + TxnStateName(txn.state) + ": " + what);
}

Status CheckActor(const AdminActor& actor) {
  if (actor.reason.size() > kMaxAdminReasonBytes) {
    return Status::InvalidArgument("reason: longer than " + std::to_string(kMaxAdminReasonBytes) +
                                   " bytes");
  }
  return Status::Ok();
}

}  // namespace

Result<WriteBatch> PlanRetryNow(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                                const AdminActor& actor) {
  TXC_RETURN_IF_ERROR(CheckActor(actor));
  TxnState next = txn.state;
  switch (txn.state) {
    case TxnState::kCommitted:
    case TxnState::kAborted:
    case TxnState::kSucceeded:
    case TxnState::kCompensated: return Illegal(txn, "finished, nothing to retry");
    case TxnState::kActive:
    case TxnState::kPreparing:
      return Illegal(txn, "undecided: commit or roll it back (its deadline aborts it)");
    case TxnState::kCommitting:
    case TxnState::kAborting:
    case TxnState::kRunning:
    case TxnState::kCompensating: break;
    case TxnState::kParked: next = TxnState::kCompensating; break;
  }
  WriteBatch batch;
  TxnUpdate u = FencedTxnUpdate(txn);
  if (next != txn.state) u.state = next;
  u.next_attempt_ms = actor.now_ms;
  u.attempts = 0;
  batch.txn_updates.push_back(std::move(u));
  for (const BranchRecord& b : branches) {
    // Fresh retry budgets for the calls still to make.
    const bool retried = b.state == BranchState::kStepRunning ||
                         b.state == BranchState::kStepCompensating ||
                         b.state == BranchState::kPrepared || b.state == BranchState::kRegistered;
    if (!retried || (b.attempts == 0 && b.next_attempt_ms == 0)) continue;
    BranchUpdate bu = FencedBranchUpdate(txn, b);
    bu.attempts = 0;
    bu.next_attempt_ms = 0;
    batch.branch_updates.push_back(std::move(bu));
  }
  batch.insert_audits.push_back(
      Audit(txn, actor, "retry", TxnStateName(txn.state), TxnStateName(next), ""));
  return batch;
}

Result<WriteBatch> PlanCancelSaga(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                                  const AdminActor& actor) {
  TXC_RETURN_IF_ERROR(CheckActor(actor));
  if (txn.kind != TxnKind::kSaga) {
    return Illegal(txn, "cancel is for sagas; roll a 2PC transaction back instead");
  }
  switch (txn.state) {
    case TxnState::kRunning: break;
    case TxnState::kCompensating:
    case TxnState::kParked:
    case TxnState::kCompensated:
      // Cancelled already (or failed): compensating or compensated. The step
      // function's rule too (StepSaga: a cancel of a compensated saga is a no-op).
      return WriteBatch{};
    case TxnState::kSucceeded: return Illegal(txn, "succeeded, too late to cancel");
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kCommitted:
    case TxnState::kAborting:
    case TxnState::kAborted: return Illegal(txn, "not a saga state");
  }
  WriteBatch batch;
  TxnUpdate u = FencedTxnUpdate(txn);
  u.state = TxnState::kCompensating;
  u.next_attempt_ms = actor.now_ms;
  u.attempts = 0;
  batch.txn_updates.push_back(std::move(u));
  // The driver's rule for the switch (the log may be behind a live run whose
  // progress is logged lazily: such a step is compensated, not skipped).
  const bool may_have_run = (txn.flags & kFlagLazyProgress) != 0;
  for (const BranchRecord& b : branches) {
    if (b.state != BranchState::kPending) continue;
    BranchUpdate bu = FencedBranchUpdate(txn, b);
    bu.state = SettledPendingStep(may_have_run);
    if (may_have_run) bu.last_error = kMayHaveRunNote;
    batch.branch_updates.push_back(std::move(bu));
  }
  batch.insert_audits.push_back(Audit(txn, actor, "cancel", TxnStateName(txn.state),
                                      TxnStateName(TxnState::kCompensating), ""));
  return batch;
}

Result<WriteBatch> PlanResolve(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                               const std::string& branch_id, BranchState resolved,
                               const AdminActor& actor) {
  TXC_RETURN_IF_ERROR(CheckActor(actor));
  const BranchRecord* branch = nullptr;
  for (const BranchRecord& b : branches) {
    if (b.branch_id == branch_id) branch = &b;
  }
  if (branch == nullptr) {
    return Status::NotFound("transaction " + txn.gtid + " has no branch or step '" + branch_id +
                            "'");
  }
  if (IsFinal(txn.state)) {
    // A retried resolve finds its branch resolved (idempotent); anything else is too late.
    if (branch->state == resolved) return WriteBatch{};
    return Illegal(txn, "finished, nothing to resolve");
  }
  TxnState next = txn.state;
  if (txn.kind == TxnKind::kSaga) {
    if (resolved != BranchState::kStepCompensated) {
      return Status::InvalidArgument(
          "resolved_state: a saga step can only be resolved as "
          "STEP_COMPENSATED");
    }
    if (txn.state != TxnState::kCompensating && txn.state != TxnState::kParked) {
      return Illegal(txn,
                     "only a compensating or parked saga's steps are resolved by hand "
                     "(cancel a running saga first)");
    }
    switch (branch->state) {
      case BranchState::kStepCompensated: return WriteBatch{};
      case BranchState::kStepRunning:
      case BranchState::kDone:
      case BranchState::kFailed:
      case BranchState::kStepCompensating: break;
      case BranchState::kPending:
      case BranchState::kSkipped:
        return Illegal(txn, "step " + branch_id + " never ran: nothing to compensate");
      case BranchState::kRegistered:
      case BranchState::kPrepared:
      case BranchState::kReadOnly:
      case BranchState::kBranchCommitted:
      case BranchState::kBranchAborted: return Illegal(txn, "not a saga step state");
    }
    if (txn.state == TxnState::kParked) next = TxnState::kCompensating;
  } else {
    if (resolved != BranchState::kBranchCommitted && resolved != BranchState::kBranchAborted) {
      return Status::InvalidArgument(
          "resolved_state: a 2PC branch is resolved as BRANCH_COMMITTED or BRANCH_ABORTED");
    }
    const BranchState decided = txn.state == TxnState::kCommitting ? BranchState::kBranchCommitted
                                : txn.state == TxnState::kAborting ? BranchState::kBranchAborted
                                                                   : BranchState::kRegistered;
    if (decided == BranchState::kRegistered) {
      return Illegal(txn, "no decision yet: commit or roll it back");
    }
    if (resolved != decided) {
      return Illegal(txn, std::string("the decision is ") +
                              (decided == BranchState::kBranchCommitted ? "COMMIT" : "ABORT") +
                              "; marking branch " + branch_id + " " + BranchStateName(resolved) +
                              " would mix outcomes");
    }
    if (branch->state == resolved) return WriteBatch{};
    if (branch->state != BranchState::kPrepared && branch->state != BranchState::kRegistered) {
      return Illegal(txn, "branch " + branch_id + " is " + BranchStateName(branch->state));
    }
  }
  WriteBatch batch;
  TxnUpdate u = FencedTxnUpdate(txn);
  if (next != txn.state) u.state = next;
  u.next_attempt_ms = actor.now_ms;
  batch.txn_updates.push_back(std::move(u));
  BranchUpdate bu = FencedBranchUpdate(txn, *branch);
  bu.state = resolved;
  bu.last_error = "resolved by hand by " + actor.who;
  batch.branch_updates.push_back(std::move(bu));
  batch.insert_audits.push_back(
      Audit(txn, actor, "resolve", "step " + branch_id + " " + BranchStateName(branch->state),
            "step " + branch_id + " " + BranchStateName(resolved), branch_id));
  return batch;
}

Result<WriteBatch> PlanRebind(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                              const std::string& from_endpoint, const std::string& to_endpoint,
                              const AdminActor& actor) {
  TXC_RETURN_IF_ERROR(CheckActor(actor));
  if (from_endpoint == to_endpoint) {
    return Status::InvalidArgument("to_endpoint: the same as from_endpoint");
  }
  if (IsFinal(txn.state)) return Illegal(txn, "finished, nothing to rebind");
  WriteBatch batch;
  std::string moved;
  for (const BranchRecord& b : branches) {
    if (b.endpoint != from_endpoint) continue;
    BranchUpdate bu = FencedBranchUpdate(txn, b);
    bu.endpoint = to_endpoint;
    bu.attempts = 0;  // a new address: a fresh retry budget
    batch.branch_updates.push_back(std::move(bu));
    moved += (moved.empty() ? "" : ",") + b.branch_id;
  }
  if (batch.branch_updates.empty()) return WriteBatch{};  // rebound already
  TxnUpdate u = FencedTxnUpdate(txn);
  // Due now so that whoever drives it redrives it; an undecided 2PC keeps its
  // next_attempt_ms (its deadline).
  if (txn.state != TxnState::kActive && txn.state != TxnState::kPreparing) {
    u.next_attempt_ms = actor.now_ms;
  }
  batch.txn_updates.push_back(std::move(u));
  batch.insert_audits.push_back(
      Audit(txn, actor, "rebind", "endpoint " + from_endpoint, "endpoint " + to_endpoint, moved));
  return batch;
}

}  // namespace txc
