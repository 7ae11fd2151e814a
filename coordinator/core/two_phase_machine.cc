#include "coordinator/core/two_phase_machine.h"

#include <string>
#include <utility>

namespace txc {
namespace {

using Kind = TwoPhaseEventKind;
using Effect = TwoPhaseEffectKind;

TxnUpdate UpdateOf(const TxnRecord& txn, std::vector<TxnState> expected) {
  TxnUpdate u;
  u.gtid = txn.gtid;
  u.expected_states = std::move(expected);
  return u;
}

BranchUpdate BranchUpdateOf(const BranchRecord& branch) {
  BranchUpdate u;
  u.gtid = branch.gtid;
  u.branch_id = branch.branch_id;
  return u;
}

bool OnePhase(const TwoPhaseRun& run) {
  return (run.txn.flags & kFlagOnePhase) != 0 && run.branches.size() == 1;
}

void AddEffect(TwoPhaseStep* step, Effect kind, size_t branch = 0, int64_t delay_ms = 0) {
  step->effects.push_back(TwoPhaseEffect{kind, branch, delay_ms});
}

// Writes `to` (from the state the run holds) and adopts it.
void MoveTxn(TwoPhaseStep* step, TxnState to, std::optional<int64_t> next_attempt_ms) {
  TxnUpdate u = UpdateOf(step->run.txn, {step->run.txn.state});
  u.state = to;
  u.next_attempt_ms = next_attempt_ms;
  step->writes.txn_updates.push_back(std::move(u));
  step->run.txn.state = to;
  if (next_attempt_ms.has_value()) step->run.txn.next_attempt_ms = *next_attempt_ms;
}

// Phase 2 of the run's decision starts (the decision is among this step's
// writes or already durable): every branch that needs a message is owed one.
void StartPhaseTwo(TwoPhaseStep* step) {
  TwoPhaseRun& run = step->run;
  const Decision decision = *DecisionOf(run.txn.state);
  bool any = false;
  for (size_t i = 0; i < run.branches.size(); ++i) {
    BranchProgress& p = run.progress[i];
    p.owed = NeedsPhaseTwo(run.branches[i].state, decision);
    p.acked = false;
    p.given_up = false;
    p.sends = 0;
    if (!p.owed) continue;
    any = true;
    ++p.sends;
    AddEffect(step, decision == Decision::kCommit ? Effect::kSendCommit : Effect::kSendAbort, i);
  }
  if (!any) AddEffect(step, Effect::kContinue);
}

// ACTIVE or PREPARING -> ABORTING and the aborts.
void Abort(TwoPhaseStep* step, int64_t now_ms, const TwoPhaseTiming& timing) {
  MoveTxn(step, TxnState::kAborting, now_ms + timing.drive_lease_ms);
  StartPhaseTwo(step);
}

// The decision once every vote is in (or the window ended: missing ones are ABORT).
void Decide(TwoPhaseStep* step, int64_t now_ms, const TwoPhaseTiming& timing) {
  TwoPhaseRun& run = step->run;
  std::vector<std::optional<BranchVote>> votes;
  votes.reserve(run.branches.size());
  for (const BranchProgress& p : run.progress) votes.push_back(p.vote_in ? p.vote : std::nullopt);
  const Decision decision = DecideFromVotes(votes);
  // Each voter's branch state rides with the decision, in the same batch.
  for (size_t i = 0; i < run.branches.size(); ++i) {
    if (!votes[i].has_value()) continue;
    BranchRecord& b = run.branches[i];
    const BranchState after = BranchStateAfterVote(*votes[i]);
    Result<TransitionAction> action = DecideBranchTransition(b.state, after);
    if (!action.ok() || *action != TransitionAction::kApply) continue;
    BranchUpdate bu = BranchUpdateOf(b);
    bu.expected_states = {b.state};
    bu.state = after;
    step->writes.branch_updates.push_back(std::move(bu));
    b.state = after;
  }
  MoveTxn(step, DecisionState(decision), now_ms + timing.drive_lease_ms);
  StartPhaseTwo(step);
}

bool AllVotesIn(const TwoPhaseRun& run) {
  for (const BranchProgress& p : run.progress) {
    if (!p.vote_in) return false;
  }
  return true;
}

// Phase 2: once no branch is owed anything more in this drive, the round ends:
// the final state if every branch acknowledged, else the next redrive time.
// Branch results ride in the same batch.
void MaybeEndRound(TwoPhaseStep* step, int64_t now_ms, double jitter,
                   const TwoPhaseTiming& timing) {
  TwoPhaseRun& run = step->run;
  bool all_acked = true;
  bool round_open = false;
  for (const BranchProgress& p : run.progress) round_open = round_open || p.owed;
  if (!round_open) return;  // no round of this drive to end
  for (const BranchProgress& p : run.progress) {
    if (p.owed && !p.acked && !p.given_up) return;  // still waiting
    if (p.owed && !p.acked) all_acked = false;
  }
  const Decision decision = *DecisionOf(run.txn.state);
  const TxnState decided = run.txn.state;
  for (size_t i = 0; i < run.branches.size(); ++i) {
    BranchProgress& p = run.progress[i];
    if (!p.owed) continue;
    BranchRecord& b = run.branches[i];
    BranchUpdate bu = BranchUpdateOf(b);
    bu.attempts = b.attempts + p.sends;
    if (p.acked) {
      bu.state = BranchFinalState(decision);
      b.state = *bu.state;
    } else {
      bu.last_error = p.last_error;
      b.last_error = p.last_error;
    }
    b.attempts = *bu.attempts;
    step->writes.branch_updates.push_back(std::move(bu));
    p.owed = false;
  }
  if (all_acked) {
    MoveTxn(step, FinalState(decision), std::nullopt);
    AddEffect(step, Effect::kFinished);
    return;
  }
  const int32_t attempts = run.txn.attempts + 1;
  TxnUpdate u = UpdateOf(run.txn, {decided});
  u.attempts = attempts;
  u.next_attempt_ms = now_ms + BackoffDelayMs(timing.redrive_backoff, attempts, jitter);
  run.txn.attempts = attempts;
  run.txn.next_attempt_ms = *u.next_attempt_ms;
  step->writes.txn_updates.push_back(std::move(u));
  AddEffect(step, Effect::kLeftToSweeper);
}

Status NotTwoPhase(const TxnRecord& txn) {
  return Status::IllegalTransition("transaction " + txn.gtid + " is not a 2PC transaction");
}

Status Illegal(const TxnRecord& txn, const std::string& what) {
  return Status::IllegalTransition(what + " of " + txn.gtid + ": transaction is " +
                                   TxnStateName(txn.state));
}

// What the sweeper does with an unfinished record, and what a commit or
// rollback does with one it took over.
Result<TwoPhaseStep> Recover(TwoPhaseStep step, const TwoPhaseEvent& e,
                             const TwoPhaseTiming& timing) {
  TwoPhaseRun& run = step.run;
  switch (*TwoPhaseStateOf(run.txn.state)) {
    case TwoPhaseState::kActive:
      if (e.now_ms >= run.txn.deadline_ms) {
        Abort(&step, e.now_ms, timing);
      } else {
        // Not due yet: look again at the deadline.
        TxnUpdate u = UpdateOf(run.txn, {TxnState::kActive});
        u.next_attempt_ms = run.txn.deadline_ms;
        run.txn.next_attempt_ms = run.txn.deadline_ms;
        step.writes.txn_updates.push_back(std::move(u));
        AddEffect(&step, Effect::kLeftToSweeper);
      }
      return step;
    case TwoPhaseState::kPreparing:
      if (OnePhase(run)) {
        // The participant decides: ask it (again); idempotent on the SDK.
        run.progress[0].sends = 1;
        AddEffect(&step, Effect::kSendCommitOnePhase, 0);
        return step;
      }
      Abort(&step, e.now_ms, timing);  // no decision logged and nobody collects votes
      return step;
    case TwoPhaseState::kCommitting:
    case TwoPhaseState::kAborting: StartPhaseTwo(&step); return step;
    case TwoPhaseState::kCommitted:
    case TwoPhaseState::kAborted: step.noop = true; return step;
  }
  return step;
}

}  // namespace

std::optional<TwoPhaseState> TwoPhaseStateOf(TxnState state) {
  switch (state) {
    case TxnState::kActive: return TwoPhaseState::kActive;
    case TxnState::kPreparing: return TwoPhaseState::kPreparing;
    case TxnState::kCommitting: return TwoPhaseState::kCommitting;
    case TxnState::kCommitted: return TwoPhaseState::kCommitted;
    case TxnState::kAborting: return TwoPhaseState::kAborting;
    case TxnState::kAborted: return TwoPhaseState::kAborted;
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: break;
  }
  return std::nullopt;
}

TxnState ToTxnState(TwoPhaseState state) {
  switch (state) {
    case TwoPhaseState::kActive: return TxnState::kActive;
    case TwoPhaseState::kPreparing: return TxnState::kPreparing;
    case TwoPhaseState::kCommitting: return TxnState::kCommitting;
    case TwoPhaseState::kCommitted: return TxnState::kCommitted;
    case TwoPhaseState::kAborting: return TxnState::kAborting;
    case TwoPhaseState::kAborted: return TxnState::kAborted;
  }
  return TxnState::kAborted;
}

Result<TwoPhaseStep> StepTwoPhase(const TwoPhaseRun& run_in, const TwoPhaseEvent& e,
                                  const TwoPhaseTiming& timing) {
  if (run_in.txn.kind != TxnKind::kTwoPhase) return NotTwoPhase(run_in.txn);
  const std::optional<TwoPhaseState> state = TwoPhaseStateOf(run_in.txn.state);
  if (!state.has_value()) return NotTwoPhase(run_in.txn);
  for (const BranchRecord& b : run_in.branches) {
    if (!IsStateOf(TxnKind::kTwoPhase, b.state)) {
      return Status::IllegalTransition("branch " + b.branch_id + " of " + run_in.txn.gtid +
                                       " is in a saga state");
    }
  }
  const bool names_branch =
      e.kind == Kind::kVote || e.kind == Kind::kPhaseTwoAnswer || e.kind == Kind::kRetryDue;
  if (names_branch && e.branch >= run_in.branches.size()) {
    return Status::IllegalTransition("branch index " + std::to_string(e.branch) + " of " +
                                     run_in.txn.gtid + " out of range");
  }

  TwoPhaseStep step;
  step.run = run_in;
  TwoPhaseRun& run = step.run;
  run.progress.resize(run.branches.size());
  const auto noop = [&step]() -> Result<TwoPhaseStep> {
    step.noop = true;
    step.writes = WriteBatch{};
    step.effects.clear();
    return std::move(step);
  };

  switch (e.kind) {
    case Kind::kCommit:
      switch (*state) {
        case TwoPhaseState::kActive: {
          if (e.now_ms >= run.txn.deadline_ms) {
            Abort(&step, e.now_ms, timing);  // the answer is kIllegalTransition: no commit asked
            return step;
          }
          int32_t flags = run.txn.flags | kFlagCommitRequested;
          if (run.branches.size() == 1) flags |= kFlagOnePhase;
          TxnUpdate u = UpdateOf(run.txn, {TxnState::kActive});
          u.state = TxnState::kPreparing;
          u.flags = flags;
          // The sweeper leaves it alone while the votes can still arrive.
          u.next_attempt_ms = e.now_ms + timing.prepare_window_ms + timing.drive_lease_ms;
          // No enlist this run does not know of may have landed.
          u.expected_branch_count = static_cast<int32_t>(run.branches.size());
          run.txn.state = TxnState::kPreparing;
          run.txn.flags = flags;
          run.txn.next_attempt_ms = *u.next_attempt_ms;
          step.writes.txn_updates.push_back(std::move(u));
          if (OnePhase(run)) {
            run.progress[0].sends = 1;
            AddEffect(&step, Effect::kSendCommitOnePhase, 0);
            return step;
          }
          for (size_t i = 0; i < run.branches.size(); ++i)
            AddEffect(&step, Effect::kSendPrepare, i);
          if (run.branches.empty()) {
            AddEffect(&step, Effect::kContinue);  // no vote to wait for
          } else {
            AddEffect(&step, Effect::kPrepareWindow, 0, timing.prepare_window_ms);
          }
          return step;
        }
        case TwoPhaseState::kPreparing:
        case TwoPhaseState::kCommitting:
        case TwoPhaseState::kCommitted: return noop();
        case TwoPhaseState::kAborting:
        case TwoPhaseState::kAborted:
          if (run.txn.flags & kFlagCommitRequested) return noop();  // the votes decided ABORT
          return Status::IllegalTransition("commit of " + run.txn.gtid + ": already " +
                                           TxnStateName(run.txn.state) +
                                           " by rollback or deadline");
      }
      break;

    case Kind::kRollback:
    case Kind::kRollbackForOwner:
      switch (*state) {
        case TwoPhaseState::kActive:
        case TwoPhaseState::kPreparing:
          if (*state == TwoPhaseState::kPreparing && OnePhase(run)) {
            if (e.kind == Kind::kRollbackForOwner)
              return noop();  // its driver asks the participant
            return Recover(std::move(step), e, timing);
          }
          if (e.kind == Kind::kRollbackForOwner) {
            // The owner's sweeper sends the aborts if nobody else does.
            MoveTxn(&step, TxnState::kAborting, e.now_ms);
            return step;
          }
          Abort(&step, e.now_ms, timing);
          return step;
        case TwoPhaseState::kAborting:
        case TwoPhaseState::kAborted: return noop();
        case TwoPhaseState::kCommitting:
        case TwoPhaseState::kCommitted:
          return Status::IllegalTransition("rollback of " + run.txn.gtid +
                                           ": COMMIT already decided");
      }
      break;

    case Kind::kDeadline:
    case Kind::kRecover: return Recover(std::move(step), e, timing);

    case Kind::kVote: {
      if (*state != TwoPhaseState::kPreparing || OnePhase(run)) return noop();  // a late vote
      BranchProgress& p = run.progress[e.branch];
      if (p.vote_in) return noop();  // a duplicate
      p.vote_in = true;
      p.vote = e.vote;
      if (!e.vote.has_value()) p.last_error = e.error.ToString();
      if (!AllVotesIn(run)) return step;  // in memory only
      Decide(&step, e.now_ms, timing);
      return step;
    }

    case Kind::kPrepareWindowEnded:
      if (*state != TwoPhaseState::kPreparing || OnePhase(run)) return noop();
      for (BranchProgress& p : run.progress) {
        if (p.vote_in) continue;
        p.vote_in = true;
        p.vote = std::nullopt;
        p.last_error = "no vote within the prepare window";
      }
      Decide(&step, e.now_ms, timing);
      return step;

    case Kind::kOnePhaseAnswer: {
      if (*state != TwoPhaseState::kPreparing || !OnePhase(run)) return noop();
      BranchProgress& p = run.progress[0];
      if (e.outcome.has_value() && *e.outcome != Outcome::kPending) {
        const Decision decision =
            *e.outcome == Outcome::kCommit ? Decision::kCommit : Decision::kAbort;
        BranchRecord& b = run.branches[0];
        BranchUpdate bu = BranchUpdateOf(b);
        bu.state = BranchFinalState(decision);
        b.state = *bu.state;
        step.writes.branch_updates.push_back(std::move(bu));
        MoveTxn(&step, FinalState(decision), std::nullopt);
        AddEffect(&step, Effect::kFinished);
        return step;
      }
      p.last_error = e.outcome.has_value() ? "participant has no outcome yet" : e.error.ToString();
      if (p.sends < timing.phase_two_attempts) {
        AddEffect(&step, Effect::kRetryAfter, 0,
                  BackoffDelayMs(timing.phase_two_backoff, p.sends, e.jitter));
        return step;
      }
      // Unknown outcome: the sweeper asks again (commitOnePhase is idempotent).
      const int32_t attempts = run.txn.attempts + 1;
      TxnUpdate u = UpdateOf(run.txn, {TxnState::kPreparing});
      u.attempts = attempts;
      u.next_attempt_ms = e.now_ms + BackoffDelayMs(timing.redrive_backoff, attempts, e.jitter);
      run.txn.attempts = attempts;
      run.txn.next_attempt_ms = *u.next_attempt_ms;
      step.writes.txn_updates.push_back(std::move(u));
      AddEffect(&step, Effect::kLeftToSweeper);
      return step;
    }

    case Kind::kPhaseTwoAnswer: {
      if (*state != TwoPhaseState::kCommitting && *state != TwoPhaseState::kAborting) {
        return noop();
      }
      BranchProgress& p = run.progress[e.branch];
      if (!p.owed || p.acked || p.given_up) return noop();
      if (e.error.ok()) {
        p.acked = true;
      } else {
        p.last_error = e.error.ToString();
        if (p.sends < timing.phase_two_attempts) {
          AddEffect(&step, Effect::kRetryAfter, e.branch,
                    BackoffDelayMs(timing.phase_two_backoff, p.sends, e.jitter));
          return step;
        }
        p.given_up = true;
      }
      MaybeEndRound(&step, e.now_ms, e.jitter, timing);
      return step;
    }

    case Kind::kRetryDue:
      if (*state == TwoPhaseState::kPreparing && OnePhase(run) && e.branch == 0) {
        ++run.progress[0].sends;
        AddEffect(&step, Effect::kSendCommitOnePhase, 0);
        return step;
      }
      if (*state == TwoPhaseState::kCommitting || *state == TwoPhaseState::kAborting) {
        BranchProgress& p = run.progress[e.branch];
        if (!p.owed || p.acked || p.given_up) return noop();
        ++p.sends;
        AddEffect(&step,
                  *state == TwoPhaseState::kCommitting ? Effect::kSendCommit : Effect::kSendAbort,
                  e.branch);
        return step;
      }
      return noop();

    case Kind::kCheck:
      if (*state == TwoPhaseState::kPreparing && !OnePhase(run)) {
        if (!AllVotesIn(run)) return noop();
        Decide(&step, e.now_ms, timing);
        return step;
      }
      if (*state == TwoPhaseState::kCommitting || *state == TwoPhaseState::kAborting) {
        const Decision decision = *DecisionOf(run.txn.state);
        bool any_needed = false;
        for (const BranchRecord& b : run.branches) {
          any_needed = any_needed || NeedsPhaseTwo(b.state, decision);
        }
        if (!any_needed) {
          // No branch needs phase 2 (every one read-only or already final): done.
          MoveTxn(&step, FinalState(decision), std::nullopt);
          AddEffect(&step, Effect::kFinished);
          return step;
        }
        MaybeEndRound(&step, e.now_ms, e.jitter, timing);
        if (step.writes.empty()) return noop();
        return step;
      }
      return noop();
  }
  return Illegal(run_in.txn, "event");
}

}  // namespace txc
