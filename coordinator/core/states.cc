#include "coordinator/core/states.h"

namespace txc {

const char* TxnKindName(TxnKind kind) {
  switch (kind) {
    case TxnKind::kTwoPhase: return "TWO_PHASE";
    case TxnKind::kSaga: return "SAGA";
  }
  return "?";
}

const char* TxnStateName(TxnState state) {
  switch (state) {
    case TxnState::kActive: return "ACTIVE";
    case TxnState::kPreparing: return "PREPARING";
    case TxnState::kCommitting: return "COMMITTING";
    case TxnState::kCommitted: return "COMMITTED";
    case TxnState::kAborting: return "ABORTING";
    case TxnState::kAborted: return "ABORTED";
    case TxnState::kRunning: return "RUNNING";
    case TxnState::kSucceeded: return "SUCCEEDED";
    case TxnState::kCompensating: return "COMPENSATING";
    case TxnState::kCompensated: return "COMPENSATED";
    case TxnState::kParked: return "PARKED";
  }
  return "?";
}

const char* BranchStateName(BranchState state) {
  switch (state) {
    case BranchState::kRegistered: return "REGISTERED";
    case BranchState::kPrepared: return "PREPARED";
    case BranchState::kReadOnly: return "READ_ONLY";
    case BranchState::kBranchCommitted: return "COMMITTED";
    case BranchState::kBranchAborted: return "ABORTED";
    case BranchState::kPending: return "PENDING";
    case BranchState::kStepRunning: return "RUNNING";
    case BranchState::kDone: return "DONE";
    case BranchState::kFailed: return "FAILED";
    case BranchState::kStepCompensating: return "COMPENSATING";
    case BranchState::kStepCompensated: return "COMPENSATED";
    case BranchState::kSkipped: return "SKIPPED";
  }
  return "?";
}

bool IsFinal(TxnState state) {
  switch (state) {
    case TxnState::kCommitted:
    case TxnState::kAborted:
    case TxnState::kSucceeded:
    case TxnState::kCompensated: return true;
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kAborting:
    case TxnState::kRunning:
    case TxnState::kCompensating:
    case TxnState::kParked: return false;
  }
  return false;
}

bool IsStateOf(TxnKind kind, TxnState state) {
  switch (state) {
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kCommitted:
    case TxnState::kAborting:
    case TxnState::kAborted: return kind == TxnKind::kTwoPhase;
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: return kind == TxnKind::kSaga;
  }
  return false;
}

bool IsStateOf(TxnKind kind, BranchState state) {
  switch (state) {
    case BranchState::kRegistered:
    case BranchState::kPrepared:
    case BranchState::kReadOnly:
    case BranchState::kBranchCommitted:
    case BranchState::kBranchAborted: return kind == TxnKind::kTwoPhase;
    case BranchState::kPending:
    case BranchState::kStepRunning:
    case BranchState::kDone:
    case BranchState::kFailed:
    case BranchState::kStepCompensating:
    case BranchState::kStepCompensated:
    case BranchState::kSkipped: return kind == TxnKind::kSaga;
  }
  return false;
}

}  // namespace txc
