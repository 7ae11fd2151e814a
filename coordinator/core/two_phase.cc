#include "coordinator/core/two_phase.h"

#include <algorithm>
#include <array>
#include <string>

namespace txc {
namespace {

// The two paths a 2PC transaction can take; a state "past" another is later on
// a path holding both.
constexpr std::array<TxnState, 4> kCommitPath = {TxnState::kActive, TxnState::kPreparing,
                                                 TxnState::kCommitting, TxnState::kCommitted};
constexpr std::array<TxnState, 4> kAbortPath = {TxnState::kActive, TxnState::kPreparing,
                                                TxnState::kAborting, TxnState::kAborted};

template <typename T, size_t N>
int IndexOn(const std::array<T, N>& path, T state) {
  auto it = std::find(path.begin(), path.end(), state);
  return it == path.end() ? -1 : static_cast<int>(it - path.begin());
}

template <typename T, size_t N>
bool PastOn(const std::array<T, N>& path, T from, T to) {
  const int f = IndexOn(path, from);
  const int t = IndexOn(path, to);
  return f >= 0 && t >= 0 && f >= t;
}

bool IsTwoPhaseState(TxnState state) { return IsStateOf(TxnKind::kTwoPhase, state); }

bool IsTwoPhaseBranchState(BranchState state) { return IsStateOf(TxnKind::kTwoPhase, state); }

bool IsLegalTxnEdge(TxnState from, TxnState to, bool one_phase) {
  switch (from) {
    case TxnState::kActive: return to == TxnState::kPreparing || to == TxnState::kAborting;
    case TxnState::kPreparing:
      return to == TxnState::kCommitting || to == TxnState::kAborting ||
             (one_phase && (to == TxnState::kCommitted || to == TxnState::kAborted));
    case TxnState::kCommitting: return to == TxnState::kCommitted;
    case TxnState::kAborting: return to == TxnState::kAborted;
    case TxnState::kCommitted:
    case TxnState::kAborted:
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: return false;
  }
  return false;
}

bool IsLegalBranchEdge(BranchState from, BranchState to) {
  switch (from) {
    case BranchState::kRegistered:
      return to == BranchState::kPrepared || to == BranchState::kReadOnly ||
             to == BranchState::kBranchAborted ||
             to == BranchState::kBranchCommitted;  // one-phase commit of the only branch
    case BranchState::kPrepared:
      return to == BranchState::kBranchCommitted || to == BranchState::kBranchAborted;
    case BranchState::kReadOnly:
    case BranchState::kBranchCommitted:
    case BranchState::kBranchAborted:
    case BranchState::kPending:
    case BranchState::kStepRunning:
    case BranchState::kDone:
    case BranchState::kFailed:
    case BranchState::kStepCompensating:
    case BranchState::kStepCompensated:
    case BranchState::kSkipped: return false;
  }
  return false;
}

constexpr std::array<BranchState, 3> kBranchCommitPath = {
    BranchState::kRegistered, BranchState::kPrepared, BranchState::kBranchCommitted};
constexpr std::array<BranchState, 3> kBranchAbortPath = {
    BranchState::kRegistered, BranchState::kPrepared, BranchState::kBranchAborted};
constexpr std::array<BranchState, 2> kBranchReadOnlyPath = {BranchState::kRegistered,
                                                            BranchState::kReadOnly};

}  // namespace

Result<TransitionAction> DecideTxnTransition(TxnState from, TxnState to, bool one_phase) {
  if (!IsTwoPhaseState(from) || !IsTwoPhaseState(to)) {
    return Status::IllegalTransition(std::string("not a two-phase transition: ") +
                                     TxnStateName(from) + " -> " + TxnStateName(to));
  }
  if (from == to || PastOn(kCommitPath, from, to) || PastOn(kAbortPath, from, to)) {
    return TransitionAction::kAlreadyDone;
  }
  if (IsLegalTxnEdge(from, to, one_phase)) return TransitionAction::kApply;
  return Status::IllegalTransition(std::string("illegal transition ") + TxnStateName(from) +
                                   " -> " + TxnStateName(to));
}

Result<TransitionAction> DecideBranchTransition(BranchState from, BranchState to) {
  if (!IsTwoPhaseBranchState(from) || !IsTwoPhaseBranchState(to)) {
    return Status::IllegalTransition(std::string("not a two-phase branch transition: ") +
                                     BranchStateName(from) + " -> " + BranchStateName(to));
  }
  if (from == to || PastOn(kBranchCommitPath, from, to) || PastOn(kBranchAbortPath, from, to) ||
      PastOn(kBranchReadOnlyPath, from, to)) {
    return TransitionAction::kAlreadyDone;
  }
  // A READ_ONLY branch has nothing to commit or abort: phase 2 of it is a no-op.
  if (from == BranchState::kReadOnly &&
      (to == BranchState::kBranchCommitted || to == BranchState::kBranchAborted)) {
    return TransitionAction::kAlreadyDone;
  }
  if (IsLegalBranchEdge(from, to)) return TransitionAction::kApply;
  return Status::IllegalTransition(std::string("illegal branch transition ") +
                                   BranchStateName(from) + " -> " + BranchStateName(to));
}

Decision DecideFromVotes(const std::vector<std::optional<BranchVote>>& votes) {
  for (const auto& vote : votes) {
    if (!vote.has_value()) return Decision::kAbort;
    switch (*vote) {
      case BranchVote::kPrepared:
      case BranchVote::kReadOnly: break;
      case BranchVote::kAbort: return Decision::kAbort;
    }
  }
  return Decision::kCommit;
}

BranchState BranchStateAfterVote(BranchVote vote) {
  switch (vote) {
    case BranchVote::kPrepared: return BranchState::kPrepared;
    case BranchVote::kReadOnly: return BranchState::kReadOnly;
    case BranchVote::kAbort: return BranchState::kBranchAborted;
  }
  return BranchState::kBranchAborted;
}

bool NeedsPhaseTwo(BranchState state, Decision decision) {
  auto action = DecideBranchTransition(state, BranchFinalState(decision));
  // An illegal edge (a committed branch under an ABORT decision) can only come
  // from a corrupted record; sending the message cannot fix it, so no.
  return action.ok() && *action == TransitionAction::kApply;
}

TxnState DecisionState(Decision decision) {
  switch (decision) {
    case Decision::kCommit: return TxnState::kCommitting;
    case Decision::kAbort: return TxnState::kAborting;
  }
  return TxnState::kAborting;
}

TxnState FinalState(Decision decision) {
  switch (decision) {
    case Decision::kCommit: return TxnState::kCommitted;
    case Decision::kAbort: return TxnState::kAborted;
  }
  return TxnState::kAborted;
}

BranchState BranchFinalState(Decision decision) {
  switch (decision) {
    case Decision::kCommit: return BranchState::kBranchCommitted;
    case Decision::kAbort: return BranchState::kBranchAborted;
  }
  return BranchState::kBranchAborted;
}

std::optional<Decision> DecisionOf(TxnState state) {
  switch (state) {
    case TxnState::kCommitting:
    case TxnState::kCommitted: return Decision::kCommit;
    case TxnState::kAborting:
    case TxnState::kAborted: return Decision::kAbort;
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: return std::nullopt;
  }
  return std::nullopt;
}

Outcome OutcomeOfState(std::optional<TxnState> state) {
  if (!state.has_value()) return Outcome::kAbort;  // presumed abort
  switch (*state) {
    case TxnState::kActive:
    case TxnState::kPreparing: return Outcome::kPending;
    case TxnState::kCommitting:
    case TxnState::kCommitted: return Outcome::kCommit;
    case TxnState::kAborting:
    case TxnState::kAborted: return Outcome::kAbort;
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked:
      return Outcome::kAbort;  // not a 2PC transaction: nothing of it to commit
  }
  return Outcome::kAbort;
}

}  // namespace txc
