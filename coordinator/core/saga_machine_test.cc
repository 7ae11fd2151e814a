#include "coordinator/core/saga_machine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace txc {
namespace {

using BS = BranchState;
using TS = TxnState;
using Kind = SagaEffect::Kind;

constexpr int64_t kNow = 1'000'000;

}  // namespace

// Readable effects in failure messages.
void PrintTo(const SagaEffect& e, std::ostream* os) {
  static const char* const kKinds[] = {"CallAction", "CallCompensation", "RetryAfter", "Finished",
                                       "LogAfter"};
  *os << kKinds[static_cast<int>(e.kind)] << "{" << e.step << ", attempt " << e.attempt;
  if (e.kind == SagaEffect::Kind::kRetryAfter || e.kind == SagaEffect::Kind::kLogAfter) {
    *os << ", " << e.delay_ms << " ms";
  }
  if (e.kind == SagaEffect::Kind::kFinished) *os << ", " << SagaStateName(e.state);
  *os << "}";
}

namespace {

BranchRecord Def(const std::string& id, std::vector<std::string> deps, int32_t max_attempts = 3) {
  BranchRecord s;
  s.branch_id = id;
  s.endpoint = "127.0.0.1:9000";
  s.action = "do_" + id;
  s.compensation = "undo_" + id;
  s.depends_on = std::move(deps);
  s.max_attempts = max_attempts;
  s.initial_backoff_ms = 100;
  s.max_backoff_ms = 1000;
  return s;
}

std::vector<BranchRecord> Chain3() { return {Def("a", {}), Def("b", {"a"}), Def("c", {"b"})}; }

SagaSubmitted Submission(std::vector<BranchRecord> steps, int64_t deadline_ms = kNow + 600000) {
  SagaSubmitted e;
  e.txn.gtid = "g1";
  e.txn.owner = "node-1";
  e.txn.epoch = 1;
  e.txn.created_ms = kNow;
  e.txn.deadline_ms = deadline_ms;
  e.steps = std::move(steps);
  return e;
}

SagaMachineOptions Options() {
  SagaMachineOptions o;
  o.park_after_attempts = 3;
  o.compensation_backoff = BackoffPolicy{10, 40, 2.0};
  o.parked_retry_ms = 30000;
  o.in_flight_recheck_ms = 10000;
  return o;
}

// Plays the driver: steps events, adopts each result as if its writes were durable.
class Sim {
 public:
  explicit Sim(SagaMachineOptions options = Options()) : options_(options) {}

  SagaStepResult Feed(const SagaEvent& event, double jitter = 0.5) {
    Result<SagaStepResult> r = StepSaga(run_, event, SagaInputs{now_, jitter}, options_);
    EXPECT_TRUE(r.ok()) << SagaEventName(event) << ": " << r.status();
    if (!r.ok()) return SagaStepResult{};
    CheckWritesAreConditional(*r);
    run_ = r->next;
    for (const SagaEffect& e : r->effects) effects_.push_back(e);
    return *r;
  }
  Status Refused(const SagaEvent& event) {
    Result<SagaStepResult> r = StepSaga(run_, event, SagaInputs{now_, 0.5}, options_);
    EXPECT_FALSE(r.ok()) << SagaEventName(event) << " was accepted";
    return r.status();
  }

  const BranchRecord& step(const std::string& id) const {
    for (const BranchRecord& s : run_.steps) {
      if (s.branch_id == id) return s;
    }
    static BranchRecord none;
    ADD_FAILURE() << "no step " << id;
    return none;
  }
  // The steps whose compensation was sent, in order.
  std::vector<std::string> Sent(Kind kind) const {
    std::vector<std::string> out;
    for (const SagaEffect& e : effects_) {
      if (e.kind == kind) out.push_back(e.step);
    }
    return out;
  }

  // Every update is conditional on the state the store holds (the run's, or
  // what `logged` says while progress waits to be logged): the store refuses
  // it if anything moved meanwhile.
  void CheckWritesAreConditional(const SagaStepResult& r) const {
    for (const BranchUpdate& u : r.writes.branch_updates) {
      std::optional<BS> before;
      for (size_t i = 0; i < run_.steps.size(); ++i) {
        if (run_.steps[i].branch_id != u.branch_id) continue;
        before = run_.logged ? run_.logged->steps[i].state : run_.steps[i].state;
      }
      ASSERT_TRUE(before.has_value()) << u.branch_id;
      EXPECT_EQ(u.expected_states, std::vector<BS>{*before}) << u.branch_id;
      EXPECT_EQ(u.gtid, run_.txn.gtid);
    }
    const TS logged_state = run_.logged ? run_.logged->state : run_.txn.state;
    for (const TxnUpdate& u : r.writes.txn_updates) {
      EXPECT_EQ(u.expected_states, std::vector<TS>{logged_state});
      // The sweeper's next look moves with every change of state, else only
      // once less than half its lead is left.
      const int64_t lead = u.state.value_or(run_.txn.state) == TS::kParked
                               ? options_.parked_retry_ms
                               : options_.in_flight_recheck_ms;
      EXPECT_EQ(u.next_attempt_ms.has_value(),
                u.state.has_value() || run_.txn.next_attempt_ms - now_ < lead / 2)
          << u.gtid;
    }
  }

  SagaRun run_;
  int64_t now_ = kNow;
  SagaMachineOptions options_;
  std::vector<SagaEffect> effects_;
};

SagaEffect Call(const std::string& step, int32_t attempt) {
  return SagaEffect{Kind::kCallAction, step, attempt, 0, SagaState::kRunning};
}
SagaEffect Undo(const std::string& step, int32_t attempt) {
  return SagaEffect{Kind::kCallCompensation, step, attempt, 0, SagaState::kRunning};
}
SagaEffect Finished(SagaState s) { return SagaEffect{Kind::kFinished, "", 0, 0, s}; }

SagaActionAnswered Answer(const std::string& step, int32_t attempt, StepOutcome outcome) {
  return SagaActionAnswered{step, attempt, StepAnswer{outcome, "msg"}};
}
SagaCompensationAnswered Compensated(const std::string& step, int32_t attempt, bool ok = true) {
  return SagaCompensationAnswered{step, attempt, ok, ok ? "" : "hook failed"};
}

// Answers the compensations of `steps` (first attempts) in turn, checking that
// each answer sends the next one; returns the last answer's result.
SagaStepResult CompensateInTurn(Sim& sim, const std::vector<std::string>& steps) {
  SagaStepResult r;
  for (size_t i = 0; i < steps.size(); ++i) {
    r = sim.Feed(Compensated(steps[i], 1));
    if (i + 1 < steps.size()) {
      EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo(steps[i + 1], 1)}) << steps[i];
    }
  }
  return r;
}

std::optional<BS> WrittenState(const SagaStepResult& r, const std::string& step) {
  for (const BranchUpdate& u : r.writes.branch_updates) {
    if (u.branch_id == step) return u.state;
  }
  return std::nullopt;
}
std::optional<TS> WrittenSagaState(const SagaStepResult& r) {
  for (const TxnUpdate& u : r.writes.txn_updates) return u.state;
  return std::nullopt;
}

// ---- conversions ----

TEST(SagaMachineTest, StatesConvertToAndFromTheStoredValues) {
  for (SagaState s : {SagaState::kRunning, SagaState::kSucceeded, SagaState::kCompensating,
                      SagaState::kCompensated, SagaState::kParked}) {
    Result<SagaState> back = ToSagaState(ToTxnState(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
    EXPECT_TRUE(IsStateOf(TxnKind::kSaga, ToTxnState(s))) << SagaStateName(s);
  }
  for (SagaStepState s : {SagaStepState::kPending, SagaStepState::kRunning, SagaStepState::kDone,
                          SagaStepState::kFailed, SagaStepState::kCompensating,
                          SagaStepState::kCompensated, SagaStepState::kSkipped}) {
    Result<SagaStepState> back = ToSagaStepState(ToBranchState(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
    EXPECT_TRUE(IsStateOf(TxnKind::kSaga, ToBranchState(s))) << SagaStepStateName(s);
  }
  // The stored values never change.
  EXPECT_EQ(static_cast<int>(ToTxnState(SagaState::kParked)), 14);
  EXPECT_EQ(static_cast<int>(ToBranchState(SagaStepState::kSkipped)), 16);
  EXPECT_EQ(ToSagaState(TS::kCommitted).status().code(), StatusCode::kIllegalTransition);
  EXPECT_EQ(ToSagaStepState(BS::kPrepared).status().code(), StatusCode::kIllegalTransition);
}

// ---- submission ----

TEST(SagaMachineTest, SubmittedLogsTheDefinitionWithTheFirstWaveRunning) {
  Sim sim;
  SagaStepResult r = sim.Feed(Submission({Def("a", {}), Def("b", {}), Def("c", {"a", "b"})}));
  ASSERT_EQ(r.writes.insert_txns.size(), 1u);
  const TxnRecord& txn = r.writes.insert_txns[0];
  EXPECT_EQ(txn.state, TS::kRunning);
  EXPECT_EQ(txn.kind, TxnKind::kSaga);
  EXPECT_EQ(txn.payload, SagaFingerprint({Def("a", {}), Def("b", {}), Def("c", {"a", "b"})}));
  EXPECT_EQ(txn.next_attempt_ms, kNow + 10000);
  ASSERT_EQ(r.writes.insert_branches.size(), 3u);
  EXPECT_EQ(r.writes.insert_branches[0].state, BS::kStepRunning);
  EXPECT_EQ(r.writes.insert_branches[0].attempts, 1);
  EXPECT_EQ(r.writes.insert_branches[1].state, BS::kStepRunning);
  EXPECT_EQ(r.writes.insert_branches[2].state, BS::kPending);
  EXPECT_EQ(r.writes.insert_branches[2].ordinal, 2);
  EXPECT_EQ(r.writes.insert_branches[2].gtid, "g1");
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{Call("a", 1), Call("b", 1)}));
  EXPECT_EQ(r.state, SagaState::kRunning);
  EXPECT_TRUE(r.writes.txn_updates.empty());
}

TEST(SagaMachineTest, SubmittedAgainIsANoOpOrAlreadyExists) {
  Sim sim;
  sim.Feed(Submission(Chain3()));
  SagaStepResult again = sim.Feed(Submission(Chain3()));
  EXPECT_TRUE(again.writes.empty());
  EXPECT_TRUE(again.effects.empty());
  std::vector<BranchRecord> other = Chain3();
  other[1].payload = "different";
  EXPECT_EQ(sim.Refused(Submission(other)).code(), StatusCode::kAlreadyExists);
}

// ---- every state x every event ----

enum class Expect { kApply, kNoOp, kIllegal };

// A run in `state` over a -> b -> c, with b the step events name:
//   RUNNING       a DONE, b RUNNING (action attempt 1 in flight), c PENDING
//   SUCCEEDED     all DONE
//   COMPENSATING  a DONE, b COMPENSATING (compensation attempt 1 in flight), c SKIPPED
//   COMPENSATED   a, b COMPENSATED, c SKIPPED
//   PARKED        a DONE, b COMPENSATING attempts 3 (nothing in flight), c SKIPPED
SagaRun RunIn(SagaState state) {
  SagaRun run;
  run.txn.gtid = "g1";
  run.txn.kind = TxnKind::kSaga;
  run.txn.state = ToTxnState(state);
  run.txn.deadline_ms = kNow + 600000;
  run.txn.payload = SagaFingerprint(Chain3());
  run.steps = Chain3();
  for (size_t i = 0; i < run.steps.size(); ++i) {
    run.steps[i].gtid = "g1";
    run.steps[i].ordinal = static_cast<int32_t>(i);
  }
  auto set = [&](std::vector<BS> states, std::vector<int32_t> attempts) {
    for (size_t i = 0; i < 3; ++i) {
      run.steps[i].state = states[i];
      run.steps[i].attempts = attempts[i];
    }
  };
  switch (state) {
    case SagaState::kRunning:
      set({BS::kDone, BS::kStepRunning, BS::kPending}, {1, 1, 0});
      run.in_flight["b"] = SagaCall{SagaCall::Kind::kAction, 1};
      break;
    case SagaState::kSucceeded: set({BS::kDone, BS::kDone, BS::kDone}, {1, 1, 1}); break;
    case SagaState::kCompensating:
      set({BS::kDone, BS::kStepCompensating, BS::kSkipped}, {1, 1, 0});
      run.in_flight["b"] = SagaCall{SagaCall::Kind::kCompensation, 1};
      break;
    case SagaState::kCompensated:
      set({BS::kStepCompensated, BS::kStepCompensated, BS::kSkipped}, {1, 1, 0});
      break;
    case SagaState::kParked:
      set({BS::kDone, BS::kStepCompensating, BS::kSkipped}, {1, 3, 0});
      break;
  }
  return run;
}

struct EventCase {
  const char* name;
  SagaEvent event;
  // Per state: kRunning, kSucceeded, kCompensating, kCompensated, kParked.
  std::vector<Expect> expect;
};

TEST(SagaMachineTest, EveryStateTimesEveryEvent) {
  const Expect A = Expect::kApply, N = Expect::kNoOp, I = Expect::kIllegal;
  const std::vector<SagaState> states = {SagaState::kRunning, SagaState::kSucceeded,
                                         SagaState::kCompensating, SagaState::kCompensated,
                                         SagaState::kParked};
  const std::vector<EventCase> cases = {
      {"Submitted (same definition)", Submission(Chain3()), {N, N, N, N, N}},
      {"ActionAnswered SUCCESS", Answer("b", 1, StepOutcome::kSuccess), {A, N, N, N, N}},
      {"ActionAnswered FAILURE", Answer("b", 1, StepOutcome::kFailure), {A, N, N, N, N}},
      {"ActionAnswered RETRY_LATER", Answer("b", 1, StepOutcome::kRetryLater), {A, N, N, N, N}},
      {"ActionCallFailed", SagaActionCallFailed{"b", 1, Status::Timeout("t")}, {A, N, N, N, N}},
      // A compensation answer for a step whose compensation was never logged is illegal.
      {"CompensationAnswered ok", Compensated("b", 1, true), {I, I, A, N, N}},
      {"CompensationAnswered failed", Compensated("b", 1, false), {I, I, A, N, N}},
      // No timer is armed in these runs: a RetryDue is stale.
      {"RetryDue", SagaRetryDue{"b", 1}, {N, N, N, N, N}},
      {"Resumed", SagaResumed{}, {A, N, A, N, A}},
      {"CancelRequested", SagaCancelRequested{}, {A, I, N, N, N}},
      // These runs have no progress waiting to be logged.
      {"LogDue", SagaLogDue{}, {N, N, N, N, N}},
  };
  ASSERT_EQ(std::variant_size_v<SagaEvent>, 8u);  // a new event needs its row here
  for (const EventCase& c : cases) {
    for (size_t i = 0; i < states.size(); ++i) {
      SCOPED_TRACE(std::string(c.name) + " in " + SagaStateName(states[i]));
      const SagaRun run = RunIn(states[i]);
      Result<SagaStepResult> r = StepSaga(run, c.event, SagaInputs{kNow, 0.5}, Options());
      switch (c.expect[i]) {
        case Expect::kIllegal:
          ASSERT_FALSE(r.ok());
          EXPECT_EQ(r.status().code(), StatusCode::kIllegalTransition) << r.status();
          break;
        case Expect::kNoOp:
          ASSERT_TRUE(r.ok()) << r.status();
          EXPECT_TRUE(r->writes.empty());
          for (const SagaEffect& e : r->effects) EXPECT_EQ(e.kind, Kind::kFinished);
          EXPECT_EQ(r->next.txn.state, run.txn.state);
          for (size_t k = 0; k < run.steps.size(); ++k) {
            EXPECT_EQ(r->next.steps[k].state, run.steps[k].state);
            EXPECT_EQ(r->next.steps[k].attempts, run.steps[k].attempts);
          }
          EXPECT_EQ(r->next.in_flight.size(), run.in_flight.size());
          break;
        case Expect::kApply:
          ASSERT_TRUE(r.ok()) << r.status();
          EXPECT_FALSE(r->writes.empty());
          break;
      }
    }
  }
}

TEST(SagaMachineTest, EveryEventBeforeSubmittedIsIllegalAndUnknownStepsAreInvalid) {
  const std::vector<SagaEvent> events = {Answer("b", 1, StepOutcome::kSuccess),
                                         SagaActionCallFailed{"b", 1, Status::Timeout("t")},
                                         Compensated("b", 1),
                                         SagaRetryDue{"b", 1},
                                         SagaResumed{},
                                         SagaCancelRequested{},
                                         SagaLogDue{}};
  for (const SagaEvent& e : events) {
    Result<SagaStepResult> r = StepSaga(SagaRun{}, e, SagaInputs{kNow, 0.5}, Options());
    ASSERT_FALSE(r.ok()) << SagaEventName(e);
    EXPECT_EQ(r.status().code(), StatusCode::kIllegalTransition) << SagaEventName(e);
  }
  const SagaRun run = RunIn(SagaState::kRunning);
  for (const SagaEvent& e : std::vector<SagaEvent>{Answer("zz", 1, StepOutcome::kSuccess),
                                                   Compensated("zz", 1), SagaRetryDue{"zz", 1}}) {
    Result<SagaStepResult> r = StepSaga(run, e, SagaInputs{kNow, 0.5}, Options());
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << SagaEventName(e);
  }
  // An answer for a step whose action was never sent (PENDING, SKIPPED).
  Result<SagaStepResult> r =
      StepSaga(run, Answer("c", 1, StepOutcome::kSuccess), SagaInputs{kNow, 0.5}, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIllegalTransition);
  // A stored state of the other protocol.
  SagaRun twopc = run;
  twopc.txn.state = TS::kPreparing;
  r = StepSaga(twopc, SagaResumed{}, SagaInputs{kNow, 0.5}, Options());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIllegalTransition);
}

TEST(SagaMachineTest, FinalStatesResumeToFinishedWithoutWrites) {
  for (SagaState s : {SagaState::kSucceeded, SagaState::kCompensated}) {
    Result<SagaStepResult> r = StepSaga(RunIn(s), SagaResumed{}, SagaInputs{kNow, 0.5}, Options());
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->writes.empty());
    EXPECT_EQ(r->effects, std::vector<SagaEffect>{Finished(s)});
  }
}

// ---- order ----

TEST(SagaMachineTest, ActionsRunInDependencyOrderAndTheOutcomeRidesWithTheNextStart) {
  Sim sim;
  sim.Feed(Submission({Def("a", {}), Def("b", {}), Def("c", {"a", "b"}), Def("d", {"c"})}));
  EXPECT_EQ(sim.Sent(Kind::kCallAction), (std::vector<std::string>{"a", "b"}));
  SagaStepResult r = sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "a"), BS::kDone);
  EXPECT_TRUE(r.effects.empty());  // c waits for b too
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "b"), BS::kDone);
  EXPECT_EQ(WrittenState(r, "c"), BS::kStepRunning);  // one batch: b's outcome and c's start
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("c", 1)});
  sim.Feed(Answer("c", 1, StepOutcome::kSuccess));
  r = sim.Feed(Answer("d", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "d"), BS::kDone);
  EXPECT_EQ(WrittenSagaState(r), TS::kSucceeded);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kSucceeded)});
  EXPECT_EQ(sim.Sent(Kind::kCallAction), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_TRUE(sim.Sent(Kind::kCallCompensation).empty());
}

TEST(SagaMachineTest, CompensationRunsInReverseOrderOfCompletion) {
  Sim sim;
  sim.Feed(Submission({Def("a", {}), Def("b", {"a"}), Def("c", {"b"}), Def("d", {"c"})}));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  SagaStepResult r = sim.Feed(Answer("c", 1, StepOutcome::kFailure));
  // c's refusal, the switch and d's skip in one batch; c (failed: a recorded
  // no-op at the participant) is compensated first.
  EXPECT_EQ(WrittenState(r, "c"), BS::kStepCompensating);
  EXPECT_EQ(WrittenState(r, "d"), BS::kSkipped);
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("c", 1)});
  EXPECT_NE(sim.step("c").last_error.find("action refused"), std::string::npos);
  r = CompensateInTurn(sim, {"c", "b", "a"});
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensated);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kCompensated)});
  EXPECT_EQ(sim.Sent(Kind::kCallCompensation), (std::vector<std::string>{"c", "b", "a"}));
  EXPECT_EQ(sim.step("d").state, BS::kSkipped);
  EXPECT_EQ(sim.Sent(Kind::kCallAction), (std::vector<std::string>{"a", "b", "c"}));
}

TEST(SagaMachineTest, ConcurrentStepsAreCompensatedOnlyAfterEveryDependent) {
  Sim sim;
  sim.Feed(Submission({Def("a", {}), Def("b", {}), Def("c", {"a", "b"})}));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  SagaStepResult r = sim.Feed(Answer("c", 1, StepOutcome::kFailure));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("c", 1)});
  r = sim.Feed(Compensated("c", 1));
  // Both a and b now, in reverse definition order.
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{Undo("b", 1), Undo("a", 1)}));
}

TEST(SagaMachineTest, AFailureWhileAnotherActionIsInFlightCompensatesItOnceAnswered) {
  Sim sim;
  sim.Feed(Submission({Def("a", {}), Def("b", {})}));
  SagaStepResult r = sim.Feed(Answer("a", 1, StepOutcome::kFailure));
  // b is in flight: its outcome is unknown, nothing for it yet; a is compensated.
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("a", 1)});
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepCompensating);  // DONE then compensating, one write
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("b", 1)});
  sim.Feed(Compensated("a", 1));
  r = sim.Feed(Compensated("b", 1));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kCompensated)});
}

// ---- retries ----

TEST(SagaMachineTest, RetryLaterArmsATimerWithJitteredBackoffWithinThePolicy) {
  Sim sim;
  sim.Feed(Submission({Def("a", {}, /*max_attempts=*/3)}));
  SagaStepResult r = sim.Feed(Answer("a", 1, StepOutcome::kRetryLater), /*jitter=*/0.0);
  // initial 100 ms: jitter 0 is the low end of [base/2, base].
  EXPECT_EQ(
      r.effects,
      (std::vector<SagaEffect>{SagaEffect{Kind::kRetryAfter, "a", 1, 50, SagaState::kRunning}}));
  EXPECT_EQ(sim.step("a").state, BS::kStepRunning);
  EXPECT_EQ(sim.step("a").next_attempt_ms, kNow + 50);
  EXPECT_NE(sim.step("a").last_error.find("retry later"), std::string::npos);
  ASSERT_EQ(r.writes.branch_updates.size(), 1u);  // the error is visible to operators
  // While the timer is armed a late answer or another RetryDue is stale.
  EXPECT_TRUE(sim.Feed(Answer("a", 1, StepOutcome::kSuccess)).writes.empty());
  EXPECT_TRUE(sim.Feed(SagaRetryDue{"a", 0}).writes.empty());
  r = sim.Feed(SagaRetryDue{"a", 1});
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("a", 2)});
  EXPECT_EQ(sim.step("a").attempts, 2);
  // Second retry: base 200 ms, jitter 1 is the high end.
  r = sim.Feed(SagaActionCallFailed{"a", 2, Status::Unavailable("down")}, /*jitter=*/1.0);
  EXPECT_EQ(
      r.effects,
      (std::vector<SagaEffect>{SagaEffect{Kind::kRetryAfter, "a", 2, 200, SagaState::kRunning}}));
  sim.Feed(SagaRetryDue{"a", 2});
  // The third attempt is the last: its RETRY_LATER fails the step and compensates.
  r = sim.Feed(Answer("a", 3, StepOutcome::kRetryLater));
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(WrittenState(r, "a"), BS::kStepCompensating);
  EXPECT_NE(sim.step("a").last_error.find("attempts exhausted (3/3)"), std::string::npos)
      << sim.step("a").last_error;
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("a", 1)});
  EXPECT_EQ(sim.Sent(Kind::kCallAction), (std::vector<std::string>{"a", "a", "a"}));
}

TEST(SagaMachineTest, TheSameInputsGiveTheSameDecision) {
  SagaRun run = RunIn(SagaState::kRunning);
  auto a =
      StepSaga(run, Answer("b", 1, StepOutcome::kRetryLater), SagaInputs{kNow, 0.3}, Options());
  auto b =
      StepSaga(run, Answer("b", 1, StepOutcome::kRetryLater), SagaInputs{kNow, 0.3}, Options());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->effects, b->effects);
  auto c =
      StepSaga(run, Answer("b", 1, StepOutcome::kRetryLater), SagaInputs{kNow, 0.9}, Options());
  ASSERT_TRUE(c.ok());
  EXPECT_NE(a->effects, c->effects);  // jitter moves the delay
}

TEST(SagaMachineTest, ResumedResendsWhatMayBeUnansweredAndIgnoresEarlierAttempts) {
  Sim sim;
  sim.run_ = RunIn(SagaState::kRunning);
  sim.run_.in_flight.clear();  // a new process: nothing in flight
  SagaStepResult r = sim.Feed(SagaResumed{});
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("b", 2)});
  ASSERT_EQ(r.writes.branch_updates.size(), 1u);
  EXPECT_EQ(r.writes.branch_updates[0].attempts, 2);  // logged before it is sent
  EXPECT_TRUE(sim.Feed(Answer("b", 1, StepOutcome::kFailure)).writes.empty());  // stale
  r = sim.Feed(Answer("b", 2, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "b"), BS::kDone);
}

TEST(SagaMachineTest, ResumedInCompensatingCompensatesAStepLeftRunning) {
  Sim sim;
  sim.run_ = RunIn(SagaState::kRunning);
  sim.run_.in_flight.clear();
  sim.run_.txn.state = TS::kCompensating;
  sim.run_.steps[2].state = BS::kSkipped;
  SagaStepResult r = sim.Feed(SagaResumed{});
  // b's action may have run: its compensation (a null one if not) goes first.
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepCompensating);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("b", 1)});
}

TEST(SagaMachineTest, AStepMovesTheSweepersNextLookOnlyOnceHalfItsLeadIsLeft) {
  Sim sim;
  sim.Feed(Submission(Chain3()));
  ASSERT_EQ(sim.run_.txn.next_attempt_ms, kNow + 10000);
  // a done, b started: the saga's own row is written (fenced), its next look kept.
  sim.now_ = kNow + 4999;
  SagaStepResult r = sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  ASSERT_EQ(r.writes.txn_updates.size(), 1u);
  EXPECT_FALSE(r.writes.txn_updates[0].next_attempt_ms.has_value());
  EXPECT_EQ(sim.run_.txn.next_attempt_ms, kNow + 10000);
  // Less than half the lead left: moved a whole lead ahead again.
  sim.now_ = kNow + 5001;
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  ASSERT_EQ(r.writes.txn_updates.size(), 1u);
  EXPECT_EQ(r.writes.txn_updates[0].next_attempt_ms, kNow + 5001 + 10000);
  EXPECT_EQ(sim.run_.txn.next_attempt_ms, kNow + 15001);
  // The final state moves it whatever is left.
  r = sim.Feed(Answer("c", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenSagaState(r), TS::kSucceeded);
  EXPECT_EQ(r.writes.txn_updates[0].next_attempt_ms, kNow + 15001);
}

TEST(SagaMachineTest, APassedDeadlineCompensatesAtTheNextEvent) {
  Sim sim;
  sim.Feed(Submission(Chain3(), /*deadline_ms=*/kNow + 1000));
  sim.now_ = kNow + 2000;
  SagaStepResult r = sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(WrittenState(r, "b"), BS::kSkipped);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("a", 1)});
}

// ---- cancel ----

TEST(SagaMachineTest, CancelSkipsPendingStepsAndCompensatesInFlightOnesOnceAnswered) {
  Sim sim;
  sim.Feed(Submission(Chain3()));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));  // b now in flight
  SagaStepResult r = sim.Feed(SagaCancelRequested{});
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(WrittenState(r, "c"), BS::kSkipped);
  EXPECT_TRUE(r.effects.empty());  // a waits for b, b's action is in flight
  EXPECT_TRUE(sim.Feed(SagaCancelRequested{}).writes.empty());  // already compensating
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("b", 1)});
  r = CompensateInTurn(sim, {"b", "a"});
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kCompensated)});
}

// ---- parking ----

TEST(SagaMachineTest, ACompensationPastItsLimitParksAndEachResumeIsOneRound) {
  Sim sim;  // park_after_attempts 3, compensation backoff 10..40 ms
  sim.Feed(Submission({Def("a", {}), Def("b", {"a"})}));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  sim.Feed(Answer("b", 1, StepOutcome::kFailure));
  SagaStepResult r = sim.Feed(Compensated("b", 1, false), /*jitter=*/0.0);
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{SagaEffect{Kind::kRetryAfter, "b", 1, 5, {}}}));
  sim.Feed(SagaRetryDue{"b", 1});
  sim.Feed(Compensated("b", 2, false));
  sim.Feed(SagaRetryDue{"b", 2});
  r = sim.Feed(Compensated("b", 3, false));
  EXPECT_EQ(WrittenSagaState(r), TS::kParked);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kParked)});
  ASSERT_EQ(r.writes.txn_updates.size(), 1u);
  EXPECT_EQ(r.writes.txn_updates[0].attempts, 1);  // parked rounds, for operators
  EXPECT_EQ(r.writes.txn_updates[0].next_attempt_ms, kNow + 30000);
  EXPECT_EQ(sim.step("a").state, BS::kDone);  // waits for b

  // A resume (the sweeper, or an operator's retry) delivers once, no timer.
  r = sim.Feed(SagaResumed{});
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("b", 4)});
  r = sim.Feed(Compensated("b", 4, false));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kParked)});
  EXPECT_EQ(r.writes.txn_updates[0].attempts, 2);
  EXPECT_EQ(sim.run_.txn.state, TS::kParked);

  // The participant is back: the next round finishes the compensation.
  sim.Feed(SagaResumed{});
  r = sim.Feed(Compensated("b", 5, true));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("a", 1)});
  r = sim.Feed(Compensated("a", 1, true));
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensated);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kCompensated)});
}

TEST(SagaMachineTest, FenceWritesSetsTheOwnerAndEpochOnEveryUpdate) {
  SagaRun run = RunIn(SagaState::kRunning);
  auto r = StepSaga(run, Answer("b", 1, StepOutcome::kSuccess), SagaInputs{kNow, 0.5}, Options());
  ASSERT_TRUE(r.ok());
  ASSERT_FALSE(r->writes.branch_updates.empty());
  FenceWrites(&r->writes, "node-7", 42);
  for (const auto& u : r->writes.branch_updates) {
    EXPECT_EQ(u.expected_owner, "node-7");
    EXPECT_EQ(u.expected_epoch, 42);
  }
  for (const auto& u : r->writes.txn_updates) {
    EXPECT_EQ(u.expected_owner, "node-7");
    EXPECT_EQ(u.expected_epoch, 42);
  }
}

// ---- forward progress logged lazily (progress_log_ms) ----

SagaMachineOptions LazyOptions() {
  SagaMachineOptions o = Options();
  o.progress_log_ms = 500;
  return o;
}

SagaEffect LogAfter(int64_t ms) { return SagaEffect{Kind::kLogAfter, "", 0, ms, {}}; }

TEST(SagaMachineTest, ForwardProgressIsAdoptedAtOnceAndLoggedWithTheFinalState) {
  Sim sim(LazyOptions());
  // The definition is logged before anything is sent, as always.
  SagaStepResult r = sim.Feed(Submission(Chain3()));
  ASSERT_EQ(r.writes.insert_txns.size(), 1u);
  EXPECT_EQ(r.writes.insert_txns[0].flags & kFlagLazyProgress, kFlagLazyProgress);
  EXPECT_FALSE(sim.run_.logged.has_value());
  // a done, b started: nothing to log first; a LogDue timer is armed once.
  r = sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  EXPECT_TRUE(r.writes.empty());
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{Call("b", 1), LogAfter(500)}));
  ASSERT_TRUE(sim.run_.logged.has_value());
  EXPECT_EQ(sim.run_.logged->steps[0].state, BS::kStepRunning);  // the store's a
  EXPECT_EQ(sim.run_.logged->steps[1].state, BS::kPending);
  EXPECT_EQ(sim.step("a").state, BS::kDone);  // the run's a
  EXPECT_EQ(sim.step("b").state, BS::kStepRunning);
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  EXPECT_TRUE(r.writes.empty());
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("c", 1)});  // the timer is armed already
  // SUCCEEDED is a change of the saga's state: logged first, with every step's
  // progress, conditional on what the store holds (checked by Sim).
  r = sim.Feed(Answer("c", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenSagaState(r), TS::kSucceeded);
  EXPECT_EQ(r.writes.branch_updates.size(), 3u);
  for (const char* id : {"a", "b", "c"}) EXPECT_EQ(WrittenState(r, id), BS::kDone) << id;
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Finished(SagaState::kSucceeded)});
  EXPECT_FALSE(sim.run_.logged.has_value());
  // The timer fires late: nothing left to log.
  r = sim.Feed(SagaLogDue{});
  EXPECT_TRUE(r.writes.empty());
  EXPECT_TRUE(r.effects.empty());
}

TEST(SagaMachineTest, LogDueWritesTheProgressThatWaited) {
  Sim sim(LazyOptions());
  sim.Feed(Submission(Chain3()));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  SagaStepResult r = sim.Feed(SagaLogDue{});
  EXPECT_TRUE(r.effects.empty());
  EXPECT_EQ(WrittenState(r, "a"), BS::kDone);
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepRunning);
  EXPECT_FALSE(WrittenState(r, "c").has_value());
  EXPECT_FALSE(sim.run_.logged.has_value());
  // The next progress arms a new timer.
  r = sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  EXPECT_TRUE(r.writes.empty());
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{Call("c", 1), LogAfter(500)}));
}

TEST(SagaMachineTest, ARefusalIsLoggedBeforeItsCompensationsWithTheProgressThatWaited) {
  Sim sim(LazyOptions());
  sim.Feed(Submission(Chain3()));
  sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  SagaStepResult r = sim.Feed(Answer("b", 1, StepOutcome::kFailure));
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  EXPECT_EQ(WrittenState(r, "a"), BS::kDone);
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepCompensating);
  EXPECT_EQ(WrittenState(r, "c"), BS::kSkipped);  // this run never sent c
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("b", 1)});
  EXPECT_FALSE(sim.run_.logged.has_value());
}

// The log of a run that crashed with progress not logged: a RUNNING, b and c
// PENDING, though b and c may have been sent.
SagaRun LoggedLazilyThenCrashed() {
  SagaRun stored = RunIn(SagaState::kRunning);
  stored.in_flight.clear();
  stored.txn.flags = kFlagLazyProgress;
  stored.steps[0].state = BS::kStepRunning;
  stored.steps[1].state = BS::kPending;
  stored.steps[1].attempts = 0;
  return stored;
}

TEST(SagaMachineTest, AResumedRunCompensatesStepsTheLogShowsPending) {
  SagaRun stored = LoggedLazilyThenCrashed();
  stored.txn.deadline_ms = kNow - 1;  // so the resumed run compensates
  Sim sim(LazyOptions());
  sim.run_ = stored;
  SagaStepResult r = sim.Feed(SagaResumed{});
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensating);
  // Not SKIPPED: logged RUNNING (outcome unknown) and compensated, last first.
  EXPECT_EQ(WrittenState(r, "c"), BS::kStepCompensating);
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepRunning);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Undo("c", 1)});
  r = CompensateInTurn(sim, {"c", "b", "a"});
  EXPECT_EQ(WrittenSagaState(r), TS::kCompensated);

  // A saga submitted without the flag was logged step by step: its log's
  // pending steps were never sent, and are skipped.
  stored.txn.flags = 0;
  Result<SagaStepResult> strict = StepSaga(stored, SagaResumed{}, SagaInputs{kNow, 0.5}, Options());
  ASSERT_TRUE(strict.ok()) << strict.status();
  EXPECT_EQ(WrittenState(*strict, "b"), BS::kSkipped);
  EXPECT_EQ(WrittenState(*strict, "c"), BS::kSkipped);

  // A run that never restarted knows what it sent: pending steps are skipped.
  Sim live(LazyOptions());
  live.Feed(Submission(Chain3()));
  r = live.Feed(SagaCancelRequested{});
  EXPECT_EQ(WrittenState(r, "b"), BS::kSkipped);
  EXPECT_EQ(WrittenState(r, "c"), BS::kSkipped);
}

TEST(SagaMachineTest, AResumedRunGoesForwardByRedoingTheStepsTheLogShowsPending) {
  Sim sim(LazyOptions());
  sim.run_ = LoggedLazilyThenCrashed();
  SagaStepResult r = sim.Feed(SagaResumed{});
  EXPECT_EQ(r.effects, (std::vector<SagaEffect>{Call("a", 2), LogAfter(500)}));
  r = sim.Feed(Answer("a", 2, StepOutcome::kSuccess));
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("b", 1)});
  sim.Feed(Answer("b", 1, StepOutcome::kSuccess));
  r = sim.Feed(Answer("c", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenSagaState(r), TS::kSucceeded);
}

TEST(SagaMachineTest, ProgressIsLoggedBeforeItsEffectsWhileTheLeaseIsNotKnownToBeLive) {
  SagaMachineOptions options = LazyOptions();
  SagaRun run;
  {
    Sim sim(options);
    sim.Feed(Submission(Chain3()));
    run = sim.run_;
  }
  SagaInputs late{kNow, 0.5, /*may_defer=*/false};
  Result<SagaStepResult> r = StepSaga(run, Answer("a", 1, StepOutcome::kSuccess), late, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(WrittenState(*r, "a"), BS::kDone);
  EXPECT_EQ(WrittenState(*r, "b"), BS::kStepRunning);
  EXPECT_EQ(r->effects, std::vector<SagaEffect>{Call("b", 1)});
  EXPECT_FALSE(r->next.logged.has_value());
}

TEST(SagaMachineTest, ProgressLogMsZeroLogsEveryStepBeforeItsEffects) {
  Sim sim(Options());
  SagaStepResult r = sim.Feed(Submission(Chain3()));
  ASSERT_EQ(r.writes.insert_txns.size(), 1u);
  EXPECT_EQ(r.writes.insert_txns[0].flags & kFlagLazyProgress, 0);
  r = sim.Feed(Answer("a", 1, StepOutcome::kSuccess));
  EXPECT_EQ(WrittenState(r, "a"), BS::kDone);
  EXPECT_EQ(WrittenState(r, "b"), BS::kStepRunning);
  EXPECT_EQ(r.effects, std::vector<SagaEffect>{Call("b", 1)});
  EXPECT_FALSE(sim.run_.logged.has_value());
}

}  // namespace
}  // namespace txc
