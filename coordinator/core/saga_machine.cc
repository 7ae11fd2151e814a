#include "coordinator/core/saga_machine.h"

#include <set>
#include <utility>

namespace txc {
namespace {

constexpr size_t kMaxErrorBytes = 1000;

std::string Truncate(std::string s) {
  if (s.size() > kMaxErrorBytes) s.resize(kMaxErrorBytes);
  return s;
}

BranchRecord* FindStep(SagaRun* run, const std::string& id) {
  for (BranchRecord& s : run->steps) {
    if (s.branch_id == id) return &s;
  }
  return nullptr;
}

const BranchRecord* FindStep(const SagaRun& run, const std::string& id) {
  for (const BranchRecord& s : run.steps) {
    if (s.branch_id == id) return &s;
  }
  return nullptr;
}

bool Exists(const SagaRun& run) { return !run.txn.gtid.empty(); }

bool SagaFinal(const SagaRun& run) { return IsFinal(run.txn.state); }

// The run's state; StepSaga refused a run whose state is not a saga's.
SagaState StateOf(const SagaRun& run) {
  Result<SagaState> s = ToSagaState(run.txn.state);
  return s.ok() ? *s : SagaState::kRunning;
}

// The no-op answer: nothing to log, nothing to do.
SagaStepResult NoOp(const SagaRun& run) {
  SagaStepResult r;
  r.next = run;
  r.state = StateOf(run);
  return r;
}

Status NoSaga(const char* event) {
  return Status::IllegalTransition(std::string(event) + " before the saga was submitted");
}

Status UnknownStep(const SagaRun& run, const std::string& step) {
  return Status::InvalidArgument("saga " + run.txn.gtid + " has no step '" + step + "'");
}

// True if `event` answers the call (or timer) outstanding for `step`.
bool Outstanding(const SagaRun& run, const std::string& step, SagaCall::Kind kind,
                 int32_t attempt) {
  auto it = run.in_flight.find(step);
  return it != run.in_flight.end() && it->second.kind == kind && it->second.attempt == attempt;
}

// Runs the planner over `next` as if the saga were in `plan_state`, applies
// what it decides to `next` (states, attempts, in_flight) and appends the
// effects. Every rule is the planner's; this only carries its lists out.
Status PlanInto(SagaRun* next, TxnState plan_state, const SagaInputs& in,
                const SagaMachineOptions& options, SagaStepResult* r) {
  std::set<std::string> flying;
  for (const auto& [id, call] : next->in_flight) flying.insert(id);
  SagaPlanOptions plan_options;
  plan_options.park_after_attempts = options.park_after_attempts;
  plan_options.pending_may_have_run = next->pending_may_have_run;
  Result<SagaPlan> planned =
      PlanSaga(plan_state, next->steps, flying, in.now_ms, next->txn.deadline_ms, plan_options);
  if (!planned.ok()) return planned.status();
  const SagaPlan& plan = *planned;
  const TxnState before = next->txn.state;
  if (plan.next_state != before) {
    Result<Transition> t = SagaTransition(before, plan.next_state);
    if (!t.ok()) return t.status();
    if (*t == Transition::kApply) next->txn.state = plan.next_state;
  }
  auto step = [&](const std::string& id) -> BranchRecord& { return *FindStep(next, id); };
  auto move_step = [&](BranchRecord& s, BranchState target) -> Status {
    Result<Transition> t = StepTransition(s.state, target);
    if (!t.ok()) return t.status();
    if (*t == Transition::kApply) s.state = target;
    return Status::Ok();
  };
  for (const std::string& id : plan.fail) {
    BranchRecord& s = step(id);
    TXC_RETURN_IF_ERROR(move_step(s, BranchState::kFailed));
    s.last_error = Truncate("attempts exhausted (" + std::to_string(s.attempts) + "/" +
                            std::to_string(s.max_attempts) + ")" +
                            (s.last_error.empty() ? "" : ": " + s.last_error));
  }
  for (const std::string& id : plan.skip) {
    TXC_RETURN_IF_ERROR(move_step(step(id), BranchState::kSkipped));
  }
  for (const std::string& id : plan.unknown) {
    BranchRecord& s = step(id);
    TXC_RETURN_IF_ERROR(move_step(s, BranchState::kStepRunning));
    s.last_error = kMayHaveRunNote;
  }
  for (const std::string& id : plan.start) {
    BranchRecord& s = step(id);
    TXC_RETURN_IF_ERROR(move_step(s, BranchState::kStepRunning));
    s.attempts = 1;
  }
  for (const std::string& id : plan.resend) step(id).attempts += 1;
  std::vector<std::string> actions = plan.start;
  actions.insert(actions.end(), plan.resend.begin(), plan.resend.end());
  for (const std::string& id : actions) {
    const int32_t attempt = step(id).attempts;
    next->in_flight[id] = SagaCall{SagaCall::Kind::kAction, attempt};
    r->effects.push_back(SagaEffect{SagaEffect::Kind::kCallAction, id, attempt, 0, {}});
  }
  const bool parked = next->txn.state == TxnState::kParked;
  // Parking hands the saga to the sweeper: what is in flight finishes, nothing new starts.
  if (parked && before != TxnState::kParked) next->parked_round_failed = true;
  if (!(parked && next->parked_round_failed)) {
    for (const std::string& id : plan.compensate) {
      BranchRecord& s = step(id);
      if (s.state != BranchState::kStepCompensating) {
        TXC_RETURN_IF_ERROR(move_step(s, BranchState::kStepCompensating));
        s.attempts = 1;
      } else {
        s.attempts += 1;
      }
      next->in_flight[id] = SagaCall{SagaCall::Kind::kCompensation, s.attempts};
      r->effects.push_back(SagaEffect{SagaEffect::Kind::kCallCompensation, id, s.attempts, 0, {}});
    }
  }
  const SagaState state = StateOf(*next);
  if (plan.finished) {
    r->effects.push_back(SagaEffect{SagaEffect::Kind::kFinished, "", 0, 0, state});
  } else if (parked && next->parked_round_failed && next->in_flight.empty()) {
    next->txn.attempts += 1;  // parked rounds, for operators
    r->effects.push_back(SagaEffect{SagaEffect::Kind::kFinished, "", 0, 0, state});
  } else if (next->in_flight.empty()) {
    return Status::Internal("saga " + next->txn.gtid + " cannot progress in " +
                            TxnStateName(next->txn.state) +
                            ": nothing in flight and nothing to send");
  }
  return Status::Ok();
}

// What the store holds of `run`.
SagaLogView LoggedOf(const SagaRun& run) {
  if (run.logged) return *run.logged;
  SagaLogView v;
  v.state = run.txn.state;
  v.attempts = run.txn.attempts;
  v.next_attempt_ms = run.txn.next_attempt_ms;
  v.steps.reserve(run.steps.size());
  for (const BranchRecord& s : run.steps) {
    v.steps.push_back(SagaLogView::Step{s.state, s.attempts, s.last_error, s.next_attempt_ms});
  }
  return v;
}

// The conditional writes that take the store from `before` to `next`.
void Diff(const SagaLogView& before, SagaRun* next, const SagaInputs& in,
          const SagaMachineOptions& options, WriteBatch* batch) {
  for (size_t i = 0; i < next->steps.size(); ++i) {
    const SagaLogView::Step& was = before.steps[i];
    const BranchRecord& now = next->steps[i];
    if (was.state == now.state && was.attempts == now.attempts &&
        was.last_error == now.last_error && was.next_attempt_ms == now.next_attempt_ms) {
      continue;
    }
    BranchUpdate u;
    u.gtid = next->txn.gtid;
    u.branch_id = now.branch_id;
    u.expected_states = {was.state};
    if (now.state != was.state) u.state = now.state;
    if (now.attempts != was.attempts) u.attempts = now.attempts;
    if (now.last_error != was.last_error) u.last_error = now.last_error;
    if (now.next_attempt_ms != was.next_attempt_ms) u.next_attempt_ms = now.next_attempt_ms;
    batch->branch_updates.push_back(std::move(u));
  }
  const bool state_change = next->txn.state != before.state;
  const bool attempts_change = next->txn.attempts != before.attempts;
  if (batch->branch_updates.empty() && !state_change && !attempts_change) return;
  TxnUpdate u;
  u.gtid = next->txn.gtid;
  u.expected_states = {before.state};
  if (state_change) u.state = next->txn.state;
  if (attempts_change) u.attempts = next->txn.attempts;
  // The sweeper's next look: soon enough to notice a run that died, late
  // enough not to race a live one; a PARKED saga is retried slowly. Moved
  // with every change of state, otherwise only once less than half its lead
  // is left: a step of a live run then rewrites no index entry (the
  // (state, next_attempt_ms) index is the one an update would move), and the
  // look stays between half and all of the lead ahead.
  const int64_t lead =
      next->txn.state == TxnState::kParked ? options.parked_retry_ms : options.in_flight_recheck_ms;
  if (state_change || before.next_attempt_ms - in.now_ms < lead / 2) {
    next->txn.next_attempt_ms = in.now_ms + lead;
    u.next_attempt_ms = next->txn.next_attempt_ms;
  }
  batch->txn_updates.push_back(std::move(u));
}

// Plans from `next` (already changed by the event) and fills `r` with the
// writes from `before`.
Result<SagaStepResult> Advance(const SagaRun& before, SagaRun next, TxnState plan_state,
                               const SagaInputs& in, const SagaMachineOptions& options) {
  SagaStepResult r;
  TXC_RETURN_IF_ERROR(PlanInto(&next, plan_state, in, options, &r));
  Diff(LoggedOf(before), &next, in, options, &r.writes);
  r.state = StateOf(next);
  r.next = std::move(next);
  return r;
}

class Stepper {
 public:
  template <typename E>
  static const char* Name(const E& e) {
    return SagaEventName(SagaEvent(e));
  }

  Stepper(const SagaRun& run, const SagaInputs& in, const SagaMachineOptions& options)
      : run_(run), in_(in), options_(options) {}

  Result<SagaStepResult> operator()(const SagaSubmitted& e) const {
    const std::string fingerprint = SagaFingerprint(e.steps);
    if (Exists(run_)) {
      if (run_.txn.gtid == e.txn.gtid && run_.txn.payload == fingerprint) return NoOp(run_);
      return Status::AlreadyExists("gtid " + e.txn.gtid +
                                   " already names a different transaction definition");
    }
    SagaRun next;
    next.txn = e.txn;
    next.txn.kind = TxnKind::kSaga;
    next.txn.state = TxnState::kRunning;
    next.txn.attempts = 0;
    next.txn.payload = fingerprint;
    if (options_.progress_log_ms > 0) next.txn.flags |= kFlagLazyProgress;
    next.txn.next_attempt_ms = in_.now_ms + options_.in_flight_recheck_ms;
    for (size_t i = 0; i < e.steps.size(); ++i) {
      BranchRecord s = e.steps[i];
      s.gtid = next.txn.gtid;
      s.ordinal = static_cast<int32_t>(i);
      s.resource.clear();
      s.state = BranchState::kPending;
      s.attempts = 0;
      s.next_attempt_ms = 0;
      s.last_error.clear();
      next.steps.push_back(std::move(s));
    }
    SagaStepResult r;
    // The steps that can start at once are logged RUNNING with the
    // definition: durable before their actions are sent, one write fewer.
    TXC_RETURN_IF_ERROR(PlanInto(&next, TxnState::kRunning, in_, options_, &r));
    r.writes.insert_txns.push_back(next.txn);
    r.writes.insert_branches = next.steps;
    r.state = StateOf(next);
    r.next = std::move(next);
    return r;
  }

  Result<SagaStepResult> operator()(const SagaActionAnswered& e) const {
    return ActionResult(e.step, e.attempt, e.answer.outcome, e.answer.message);
  }

  Result<SagaStepResult> operator()(const SagaActionCallFailed& e) const {
    return ActionResult(e.step, e.attempt, StepOutcome::kRetryLater, e.error.ToString());
  }

  Result<SagaStepResult> operator()(const SagaCompensationAnswered& e) const {
    if (!Exists(run_)) return NoSaga(Name(e));
    const BranchRecord* s = FindStep(run_, e.step);
    if (s == nullptr) return UnknownStep(run_, e.step);
    // A compensation answer for a step whose compensation was never logged is illegal.
    Result<Transition> t = StepTransition(s->state, BranchState::kStepCompensated);
    if (!t.ok()) return t.status();
    if (*t == Transition::kNoOp || SagaFinal(run_) ||
        !Outstanding(run_, e.step, SagaCall::Kind::kCompensation, e.attempt)) {
      return NoOp(run_);
    }
    SagaRun next = run_;
    next.in_flight.erase(e.step);
    BranchRecord& step = *FindStep(&next, e.step);
    if (e.ok) {
      step.state = BranchState::kStepCompensated;
    } else {
      step.last_error = Truncate("compensation not done: " + e.message);
      if (next.txn.state == TxnState::kParked) {
        next.parked_round_failed = true;
      } else if (step.attempts < options_.park_after_attempts) {
        return RetryLater(std::move(next), &step, options_.compensation_backoff);
      }
      // else: the planner parks the saga.
    }
    const TxnState plan_state = next.txn.state;
    return Advance(run_, std::move(next), plan_state, in_, options_);
  }

  Result<SagaStepResult> operator()(const SagaRetryDue& e) const {
    if (!Exists(run_)) return NoSaga(Name(e));
    if (FindStep(run_, e.step) == nullptr) return UnknownStep(run_, e.step);
    if (SagaFinal(run_) || !Outstanding(run_, e.step, SagaCall::Kind::kRetryTimer, e.attempt)) {
      return NoOp(run_);
    }
    SagaRun next = run_;
    next.in_flight.erase(e.step);
    const TxnState plan_state = next.txn.state;
    return Advance(run_, std::move(next), plan_state, in_, options_);
  }

  Result<SagaStepResult> operator()(const SagaResumed& e) const {
    if (!Exists(run_)) return NoSaga(Name(e));
    if (SagaFinal(run_)) {
      SagaStepResult r = NoOp(run_);
      r.effects.push_back(SagaEffect{SagaEffect::Kind::kFinished, "", 0, 0, r.state});
      return r;
    }
    SagaRun next = run_;
    next.in_flight.clear();
    next.parked_round_failed = false;
    next.pending_may_have_run = (next.txn.flags & kFlagLazyProgress) != 0;
    const TxnState plan_state = next.txn.state;
    return Advance(run_, std::move(next), plan_state, in_, options_);
  }

  Result<SagaStepResult> operator()(const SagaLogDue& e) const {
    if (!Exists(run_)) return NoSaga(Name(e));
    if (!run_.logged) return NoOp(run_);
    SagaStepResult r;
    r.next = run_;
    r.next.logged.reset();
    Diff(*run_.logged, &r.next, in_, options_, &r.writes);
    r.state = StateOf(r.next);
    return r;
  }

  Result<SagaStepResult> operator()(const SagaCancelRequested& e) const {
    if (!Exists(run_)) return NoSaga(Name(e));
    // PARKED is compensating already (its edge back to COMPENSATING is the
    // sweeper's, not a cancel's).
    if (run_.txn.state == TxnState::kParked) return NoOp(run_);
    Result<Transition> t = SagaTransition(run_.txn.state, TxnState::kCompensating);
    if (!t.ok()) return t.status();
    if (*t == Transition::kNoOp) return NoOp(run_);
    SagaRun next = run_;
    next.txn.state = TxnState::kCompensating;
    return Advance(run_, std::move(next), TxnState::kCompensating, in_, options_);
  }

 private:
  Result<SagaStepResult> ActionResult(const std::string& step_id, int32_t attempt,
                                      StepOutcome outcome, const std::string& message) const {
    if (!Exists(run_)) return NoSaga("an action answer");
    const BranchRecord* s = FindStep(run_, step_id);
    if (s == nullptr) return UnknownStep(run_, step_id);
    // An answer for an action that was never sent is illegal; one for a step
    // already past RUNNING is a late duplicate.
    const BranchState target = outcome == StepOutcome::kSuccess   ? BranchState::kDone
                               : outcome == StepOutcome::kFailure ? BranchState::kFailed
                                                                  : BranchState::kStepRunning;
    if (s->state == BranchState::kPending || s->state == BranchState::kSkipped) {
      return Status::IllegalTransition("saga " + run_.txn.gtid + " step " + step_id +
                                       ": an action answer while " + BranchStateName(s->state));
    }
    if (SagaFinal(run_) || s->state != BranchState::kStepRunning ||
        !Outstanding(run_, step_id, SagaCall::Kind::kAction, attempt)) {
      return NoOp(run_);
    }
    Result<Transition> t = StepTransition(s->state, target);
    if (!t.ok()) return t.status();
    SagaRun next = run_;
    next.in_flight.erase(step_id);
    BranchRecord& step = *FindStep(&next, step_id);
    switch (outcome) {
      case StepOutcome::kSuccess: step.state = BranchState::kDone; break;
      case StepOutcome::kFailure:
        step.state = BranchState::kFailed;
        step.last_error = Truncate("action refused: " + message);
        break;
      case StepOutcome::kRetryLater:
        step.last_error = Truncate("retry later: " + message);
        // Within the policy and still running: a timer, then the same action
        // again. Otherwise the planner fails the step (attempts exhausted) or,
        // compensating, compensates it (outcome unknown).
        if (next.txn.state == TxnState::kRunning && step.attempts < step.max_attempts) {
          return RetryLater(std::move(next), &step,
                            BackoffPolicy{step.initial_backoff_ms, step.max_backoff_ms, 2.0});
        }
        break;
    }
    const TxnState plan_state = next.txn.state;
    return Advance(run_, std::move(next), plan_state, in_, options_);
  }

  // Arms the retry timer of `step` (in `next`): logs its error and when it
  // is due, then RetryAfter. The step stays in flight until RetryDue.
  Result<SagaStepResult> RetryLater(SagaRun next, BranchRecord* step,
                                    const BackoffPolicy& policy) const {
    const int64_t delay = BackoffDelayMs(policy, step->attempts, in_.jitter);
    step->next_attempt_ms = in_.now_ms + delay;
    SagaStepResult r;
    r.effects.push_back(
        SagaEffect{SagaEffect::Kind::kRetryAfter, step->branch_id, step->attempts, delay, {}});
    next.in_flight[step->branch_id] = SagaCall{SagaCall::Kind::kRetryTimer, step->attempts};
    Diff(LoggedOf(run_), &next, in_, options_, &r.writes);
    r.state = StateOf(next);
    r.next = std::move(next);
    return r;
  }

  const SagaRun& run_;
  const SagaInputs& in_;
  const SagaMachineOptions& options_;
};

}  // namespace

TxnState ToTxnState(SagaState state) {
  switch (state) {
    case SagaState::kRunning: return TxnState::kRunning;
    case SagaState::kSucceeded: return TxnState::kSucceeded;
    case SagaState::kCompensating: return TxnState::kCompensating;
    case SagaState::kCompensated: return TxnState::kCompensated;
    case SagaState::kParked: return TxnState::kParked;
  }
  return TxnState::kRunning;
}

Result<SagaState> ToSagaState(TxnState state) {
  switch (state) {
    case TxnState::kRunning: return SagaState::kRunning;
    case TxnState::kSucceeded: return SagaState::kSucceeded;
    case TxnState::kCompensating: return SagaState::kCompensating;
    case TxnState::kCompensated: return SagaState::kCompensated;
    case TxnState::kParked: return SagaState::kParked;
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kCommitted:
    case TxnState::kAborting:
    case TxnState::kAborted: break;
  }
  return Status::IllegalTransition(std::string("not a saga state: ") + TxnStateName(state));
}

BranchState ToBranchState(SagaStepState state) {
  switch (state) {
    case SagaStepState::kPending: return BranchState::kPending;
    case SagaStepState::kRunning: return BranchState::kStepRunning;
    case SagaStepState::kDone: return BranchState::kDone;
    case SagaStepState::kFailed: return BranchState::kFailed;
    case SagaStepState::kCompensating: return BranchState::kStepCompensating;
    case SagaStepState::kCompensated: return BranchState::kStepCompensated;
    case SagaStepState::kSkipped: return BranchState::kSkipped;
  }
  return BranchState::kPending;
}

Result<SagaStepState> ToSagaStepState(BranchState state) {
  switch (state) {
    case BranchState::kPending: return SagaStepState::kPending;
    case BranchState::kStepRunning: return SagaStepState::kRunning;
    case BranchState::kDone: return SagaStepState::kDone;
    case BranchState::kFailed: return SagaStepState::kFailed;
    case BranchState::kStepCompensating: return SagaStepState::kCompensating;
    case BranchState::kStepCompensated: return SagaStepState::kCompensated;
    case BranchState::kSkipped: return SagaStepState::kSkipped;
    case BranchState::kRegistered:
    case BranchState::kPrepared:
    case BranchState::kReadOnly:
    case BranchState::kBranchCommitted:
    case BranchState::kBranchAborted: break;
  }
  return Status::IllegalTransition(std::string("not a saga step state: ") + BranchStateName(state));
}

const char* SagaStateName(SagaState state) { return TxnStateName(ToTxnState(state)); }

const char* SagaStepStateName(SagaStepState state) { return BranchStateName(ToBranchState(state)); }

const char* SagaEventName(const SagaEvent& event) {
  static const char* const kNames[] = {
      "Submitted", "ActionAnswered", "ActionCallFailed", "CompensationAnswered",
      "RetryDue",  "Resumed",        "CancelRequested",  "LogDue"};
  static_assert(std::variant_size_v<SagaEvent> == sizeof(kNames) / sizeof(kNames[0]));
  return kNames[event.index()];
}

Result<SagaStepResult> StepSaga(const SagaRun& run, const SagaEvent& event,
                                const SagaInputs& inputs, const SagaMachineOptions& options) {
  if (Exists(run) && !ToSagaState(run.txn.state).ok()) {
    return ToSagaState(run.txn.state).status();
  }
  Result<SagaStepResult> r = std::visit(Stepper(run, inputs, options), event);
  if (!r.ok() || r->writes.empty()) return r;
  // Forward progress of a running saga may wait to be logged; anything else
  // (the definition, a change of the saga's state, LogDue) is logged now,
  // with the progress that waited.
  const bool forward =
      (run.txn.flags & kFlagLazyProgress) != 0 && !std::holds_alternative<SagaSubmitted>(event) &&
      !std::holds_alternative<SagaLogDue>(event) && run.txn.state == TxnState::kRunning &&
      r->next.txn.state == TxnState::kRunning;
  if (options.progress_log_ms <= 0 || !forward || !inputs.may_defer) {
    r->next.logged.reset();
    return r;
  }
  r->writes = WriteBatch{};
  r->next.logged = LoggedOf(run);
  if (!run.logged) {
    r->effects.push_back(
        SagaEffect{SagaEffect::Kind::kLogAfter, "", 0, options.progress_log_ms, {}});
  }
  return r;
}

void FenceWrites(WriteBatch* batch, const std::string& owner, int64_t epoch) {
  for (TxnUpdate& u : batch->txn_updates) {
    u.expected_owner = owner;
    u.expected_epoch = epoch;
  }
  for (BranchUpdate& u : batch->branch_updates) {
    u.expected_owner = owner;
    u.expected_epoch = epoch;
  }
}

}  // namespace txc
