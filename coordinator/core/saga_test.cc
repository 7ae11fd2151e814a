#include "coordinator/core/saga.h"

#include <gtest/gtest.h>

#include <map>

#include "coordinator/core/validation.h"

namespace txc {
namespace {

using BS = BranchState;
using TS = TxnState;

BranchRecord Step(const std::string& id, std::vector<std::string> deps, BS state = BS::kPending,
                  int attempts = 0) {
  BranchRecord s;
  s.gtid = "g1";
  s.branch_id = id;
  s.endpoint = "127.0.0.1:9000";
  s.action = "do_" + id;
  s.compensation = "undo_" + id;
  s.depends_on = std::move(deps);
  s.state = state;
  s.attempts = attempts;
  s.max_attempts = 3;
  s.initial_backoff_ms = 10;
  s.max_backoff_ms = 100;
  return s;
}

// a <- b <- c <- d (the default chain of four steps).
std::vector<BranchRecord> Chain(std::vector<BS> states) {
  std::vector<BranchRecord> steps;
  std::string prev;
  const char* ids[] = {"a", "b", "c", "d"};
  for (size_t i = 0; i < states.size(); ++i) {
    steps.push_back(Step(ids[i],
                         prev.empty() ? std::vector<std::string>{} : std::vector<std::string>{prev},
                         states[i], states[i] == BS::kPending ? 0 : 1));
    prev = ids[i];
  }
  return steps;
}

SagaPlan MustPlan(TS state, const std::vector<BranchRecord>& steps,
                  const std::set<std::string>& in_flight = {}, int64_t now = 0,
                  int64_t deadline = 0) {
  auto plan = PlanSaga(state, steps, in_flight, now, deadline, SagaPlanOptions{});
  EXPECT_TRUE(plan.ok()) << plan.status();
  return plan.ok() ? *plan : SagaPlan{};
}

using Ids = std::vector<std::string>;

TEST(SagaTransitionTest, EveryLegalEdgeApplies) {
  const std::vector<std::pair<TS, TS>> legal = {
      {TS::kRunning, TS::kSucceeded},        {TS::kRunning, TS::kCompensating},
      {TS::kCompensating, TS::kCompensated}, {TS::kCompensating, TS::kParked},
      {TS::kParked, TS::kCompensating},      {TS::kParked, TS::kCompensated}};
  for (auto [from, to] : legal) {
    auto t = SagaTransition(from, to);
    ASSERT_TRUE(t.ok()) << TxnStateName(from) << "->" << TxnStateName(to);
    EXPECT_EQ(*t, Transition::kApply);
  }
}

TEST(SagaTransitionTest, AlreadyThereOrPastIsNoOp) {
  const std::vector<std::pair<TS, TS>> noop = {{TS::kRunning, TS::kRunning},
                                               {TS::kSucceeded, TS::kSucceeded},
                                               {TS::kSucceeded, TS::kRunning},
                                               {TS::kCompensating, TS::kRunning},
                                               {TS::kCompensated, TS::kCompensating},
                                               {TS::kCompensated, TS::kRunning},
                                               {TS::kCompensated, TS::kParked},
                                               {TS::kParked, TS::kRunning},
                                               {TS::kParked, TS::kParked}};
  for (auto [from, to] : noop) {
    auto t = SagaTransition(from, to);
    ASSERT_TRUE(t.ok()) << TxnStateName(from) << "->" << TxnStateName(to);
    EXPECT_EQ(*t, Transition::kNoOp) << TxnStateName(from) << "->" << TxnStateName(to);
  }
}

TEST(SagaTransitionTest, IllegalEdgesAreTypedErrors) {
  const std::vector<std::pair<TS, TS>> illegal = {
      {TS::kSucceeded, TS::kCompensating}, {TS::kSucceeded, TS::kCompensated},
      {TS::kSucceeded, TS::kParked},       {TS::kCompensating, TS::kSucceeded},
      {TS::kCompensated, TS::kSucceeded},  {TS::kParked, TS::kSucceeded},
      {TS::kRunning, TS::kCompensated},    {TS::kRunning, TS::kParked},
      {TS::kActive, TS::kRunning},         {TS::kRunning, TS::kCommitted}};
  for (auto [from, to] : illegal) {
    auto t = SagaTransition(from, to);
    ASSERT_FALSE(t.ok()) << TxnStateName(from) << "->" << TxnStateName(to);
    EXPECT_EQ(t.status().code(), StatusCode::kIllegalTransition);
  }
}

TEST(StepTransitionTest, EveryLegalEdgeApplies) {
  const std::vector<std::pair<BS, BS>> legal = {{BS::kPending, BS::kStepRunning},
                                                {BS::kPending, BS::kSkipped},
                                                {BS::kStepRunning, BS::kDone},
                                                {BS::kStepRunning, BS::kFailed},
                                                {BS::kStepRunning, BS::kStepCompensating},
                                                {BS::kDone, BS::kStepCompensating},
                                                {BS::kFailed, BS::kStepCompensating},
                                                {BS::kStepCompensating, BS::kStepCompensated}};
  for (auto [from, to] : legal) {
    auto t = StepTransition(from, to);
    ASSERT_TRUE(t.ok()) << BranchStateName(from) << "->" << BranchStateName(to);
    EXPECT_EQ(*t, Transition::kApply);
  }
}

TEST(StepTransitionTest, AlreadyThereOrPastIsNoOp) {
  const std::vector<std::pair<BS, BS>> noop = {{BS::kStepRunning, BS::kStepRunning},
                                               {BS::kDone, BS::kStepRunning},
                                               {BS::kDone, BS::kPending},
                                               {BS::kStepCompensated, BS::kDone},
                                               {BS::kStepCompensated, BS::kFailed},
                                               {BS::kStepCompensated, BS::kStepCompensating},
                                               {BS::kSkipped, BS::kPending},
                                               {BS::kStepCompensating, BS::kStepRunning}};
  for (auto [from, to] : noop) {
    auto t = StepTransition(from, to);
    ASSERT_TRUE(t.ok()) << BranchStateName(from) << "->" << BranchStateName(to);
    EXPECT_EQ(*t, Transition::kNoOp) << BranchStateName(from) << "->" << BranchStateName(to);
  }
}

TEST(StepTransitionTest, IllegalEdgesAreTypedErrors) {
  const std::vector<std::pair<BS, BS>> illegal = {{BS::kSkipped, BS::kStepRunning},
                                                  {BS::kSkipped, BS::kStepCompensating},
                                                  {BS::kFailed, BS::kDone},
                                                  {BS::kDone, BS::kFailed},
                                                  {BS::kPending, BS::kDone},
                                                  {BS::kPending, BS::kStepCompensating},
                                                  {BS::kDone, BS::kSkipped},
                                                  {BS::kStepCompensated, BS::kSkipped},
                                                  {BS::kRegistered, BS::kStepRunning},
                                                  {BS::kStepRunning, BS::kBranchCommitted}};
  for (auto [from, to] : illegal) {
    auto t = StepTransition(from, to);
    ASSERT_FALSE(t.ok()) << BranchStateName(from) << "->" << BranchStateName(to);
    EXPECT_EQ(t.status().code(), StatusCode::kIllegalTransition);
  }
}

TEST(SagaDependsOnTest, WireSemantics) {
  EXPECT_EQ(ResolveWireDependsOn({}, false, ""), Ids{});
  EXPECT_EQ(ResolveWireDependsOn({}, false, "a"), Ids{"a"});
  EXPECT_EQ(ResolveWireDependsOn({}, true, "a"), Ids{});
  EXPECT_EQ(ResolveWireDependsOn({"x", "y"}, false, "a"), (Ids{"x", "y"}));
  EXPECT_EQ(ResolveWireDependsOn({"x"}, true, "a"), Ids{"x"});
}

TEST(SagaValidationTest, AcceptsAGoodDefinition) {
  auto steps = Chain({BS::kPending, BS::kPending, BS::kPending});
  EXPECT_TRUE(ValidateSagaDefinition(steps).ok());
}

TEST(SagaValidationTest, RejectsBadDefinitions) {
  auto expect_bad = [](std::vector<BranchRecord> steps, const std::string& field) {
    Status s = ValidateSagaDefinition(steps);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  };
  expect_bad({}, "steps");
  auto base = Chain({BS::kPending, BS::kPending});
  {
    auto s = base;
    s[1].branch_id = "a";
    expect_bad(s, "duplicate");
  }
  {
    auto s = base;
    s[0].branch_id = "";
    expect_bad(s, "steps[0].step_id");
  }
  {
    auto s = base;
    s[1].endpoint = "nohost";
    expect_bad(s, "steps[1].endpoint");
  }
  {
    auto s = base;
    s[0].action = "";
    expect_bad(s, "steps[0].action");
  }
  {
    auto s = base;
    s[0].compensation = "bad\nname";
    expect_bad(s, "steps[0].compensation");
  }
  {
    auto s = base;
    s[0].payload.assign(kMaxPayloadBytes + 1, 'x');
    expect_bad(s, "steps[0].payload");
  }
  {
    auto s = base;
    s[1].depends_on = {"zz"};
    expect_bad(s, "steps[1].depends_on");
  }
  {
    auto s = base;  // forward reference: a cycle would need one
    s[0].depends_on = {"b"};
    expect_bad(s, "steps[0].depends_on");
  }
  {
    auto s = base;
    s[1].depends_on = {"b"};  // self
    expect_bad(s, "steps[1].depends_on");
  }
  {
    auto s = base;
    s[1].depends_on = {"a", "a"};
    expect_bad(s, "twice");
  }
  {
    auto s = base;
    s[0].max_attempts = 0;
    expect_bad(s, "max_attempts");
  }
  {
    auto s = base;
    s[0].initial_backoff_ms = 0;
    expect_bad(s, "initial_backoff_ms");
  }
  {
    auto s = base;
    s[0].max_backoff_ms = 5;  // below initial
    expect_bad(s, "max_backoff_ms");
  }
}

TEST(SagaFingerprintTest, SameDefinitionSameFingerprint) {
  auto a = Chain({BS::kPending, BS::kPending});
  auto b = Chain({BS::kPending, BS::kPending});
  b[0].state = BS::kDone;  // runtime fields are not part of the definition
  b[0].attempts = 4;
  EXPECT_EQ(SagaFingerprint(a), SagaFingerprint(b));
  EXPECT_EQ(SagaFingerprint(a).rfind("saga1:", 0), 0u);
  auto c = a;
  c[1].payload = "other";
  EXPECT_NE(SagaFingerprint(a), SagaFingerprint(c));
  auto d = a;
  d[1].depends_on = {};
  EXPECT_NE(SagaFingerprint(a), SagaFingerprint(d));
  auto e = a;  // field boundaries matter
  e[0].action = "do_a" + e[0].compensation.substr(0, 1);
  e[0].compensation = e[0].compensation.substr(1);
  EXPECT_NE(SagaFingerprint(a), SagaFingerprint(e));
}

TEST(SagaPlanTest, ChainRunsInOrderAndSucceeds) {
  auto p = MustPlan(TS::kRunning, Chain({BS::kPending, BS::kPending, BS::kPending, BS::kPending}));
  EXPECT_EQ(p.next_state, TS::kRunning);
  EXPECT_EQ(p.start, Ids{"a"});
  EXPECT_FALSE(p.finished);

  p = MustPlan(TS::kRunning, Chain({BS::kStepRunning, BS::kPending, BS::kPending, BS::kPending}),
               {"a"});
  EXPECT_TRUE(p.start.empty());
  EXPECT_TRUE(p.resend.empty());
  EXPECT_TRUE(p.waiting);

  p = MustPlan(TS::kRunning, Chain({BS::kDone, BS::kDone, BS::kPending, BS::kPending}));
  EXPECT_EQ(p.start, Ids{"c"});

  p = MustPlan(TS::kRunning, Chain({BS::kDone, BS::kDone, BS::kDone, BS::kDone}));
  EXPECT_EQ(p.next_state, TS::kSucceeded);
  EXPECT_TRUE(p.finished);
}

TEST(SagaPlanTest, RunningStepAfterCrashIsResent) {
  auto p = MustPlan(TS::kRunning, Chain({BS::kDone, BS::kStepRunning, BS::kPending}));
  EXPECT_EQ(p.resend, Ids{"b"});
  EXPECT_TRUE(p.start.empty());
  EXPECT_FALSE(p.waiting);
}

TEST(SagaPlanTest, ExhaustedAttemptsFailTheStepAndCompensate) {
  auto steps = Chain({BS::kDone, BS::kStepRunning, BS::kPending});
  steps[1].attempts = steps[1].max_attempts;
  auto p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.fail, Ids{"b"});
  EXPECT_EQ(p.next_state, TS::kCompensating);
  EXPECT_EQ(p.skip, Ids{"c"});
  EXPECT_EQ(p.compensate, Ids{"b"});  // "a" waits for its dependent "b"
  // In flight, it is not failed yet: its last attempt is still out.
  p = MustPlan(TS::kRunning, steps, {"b"});
  EXPECT_TRUE(p.fail.empty());
  EXPECT_TRUE(p.waiting);
}

TEST(SagaPlanTest, DiamondDagStartsIndependentStepsTogether) {
  // a -> {b, c} -> d
  std::vector<BranchRecord> steps = {Step("a", {}), Step("b", {"a"}), Step("c", {"a"}),
                                     Step("d", {"b", "c"})};
  auto p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.start, Ids{"a"});
  steps[0].state = BS::kDone;
  p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.start, (Ids{"b", "c"}));
  steps[1].state = BS::kDone;
  steps[2].state = BS::kStepRunning;
  p = MustPlan(TS::kRunning, steps, {"c"});
  EXPECT_TRUE(p.start.empty());  // d needs c too
  EXPECT_TRUE(p.waiting);
  steps[2].state = BS::kDone;
  p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.start, Ids{"d"});
}

TEST(SagaPlanTest, ConcurrentStepsHaveNoDependency) {
  // Wire: a; b concurrent; c (after b).
  std::vector<BranchRecord> steps = {Step("a", ResolveWireDependsOn({}, false, "")),
                                     Step("b", ResolveWireDependsOn({}, true, "a")),
                                     Step("c", ResolveWireDependsOn({}, false, "b"))};
  auto p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.start, (Ids{"a", "b"}));
  steps[1].state = BS::kDone;
  steps[0].state = BS::kStepRunning;
  p = MustPlan(TS::kRunning, steps, {"a"});
  EXPECT_EQ(p.start, Ids{"c"});
}

TEST(SagaPlanTest, FailureCompensatesInReverseOrder) {
  auto steps = Chain({BS::kDone, BS::kDone, BS::kFailed, BS::kPending});
  auto p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.next_state, TS::kCompensating);
  EXPECT_EQ(p.skip, Ids{"d"});
  EXPECT_EQ(p.compensate, Ids{"c"});  // the failed step first (null compensation if it rolled back)

  // Walk the compensation to the end, one step at a time.
  steps[3].state = BS::kSkipped;
  std::vector<std::string> order;
  TS state = TS::kCompensating;
  for (int round = 0; round < 10; ++round) {
    p = MustPlan(state, steps);
    if (p.finished) break;
    ASSERT_EQ(p.compensate.size(), 1u);
    order.push_back(p.compensate[0]);
    for (auto& s : steps) {
      if (s.branch_id == p.compensate[0]) s.state = BS::kStepCompensated;
    }
  }
  EXPECT_EQ(order, (Ids{"c", "b", "a"}));
  EXPECT_EQ(p.next_state, TS::kCompensated);
  EXPECT_TRUE(p.finished);
}

TEST(SagaPlanTest, DagCompensationWaitsForDependents) {
  // a -> {b, c} -> d; d failed.
  std::vector<BranchRecord> steps = {Step("a", {}, BS::kDone), Step("b", {"a"}, BS::kDone),
                                     Step("c", {"a"}, BS::kDone),
                                     Step("d", {"b", "c"}, BS::kFailed)};
  auto p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, Ids{"d"});
  steps[3].state = BS::kStepCompensated;
  p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, (Ids{"c", "b"}));  // independent: together, reverse order
  steps[2].state = BS::kStepCompensated;
  p = MustPlan(TS::kCompensating, steps, {"b"});
  EXPECT_TRUE(p.compensate.empty());
  EXPECT_TRUE(p.waiting);
  steps[1].state = BS::kStepCompensated;
  p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, Ids{"a"});
}

TEST(SagaPlanTest, InFlightSiblingBlocksOnlyItsDependencies) {
  // a, b concurrent; b failed while a is still in flight.
  std::vector<BranchRecord> steps = {Step("a", {}, BS::kStepRunning, 1),
                                     Step("b", {}, BS::kFailed, 1), Step("c", {"a", "b"})};
  auto p = MustPlan(TS::kRunning, steps, {"a"});
  EXPECT_EQ(p.next_state, TS::kCompensating);
  EXPECT_EQ(p.skip, Ids{"c"});
  EXPECT_EQ(p.compensate, Ids{"b"});
  // Its action came back DONE: now it is compensated too.
  steps[0].state = BS::kDone;
  steps[1].state = BS::kStepCompensated;
  steps[2].state = BS::kSkipped;
  p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, Ids{"a"});
}

TEST(SagaPlanTest, RunningAtCrashIsCompensated) {
  auto steps = Chain({BS::kDone, BS::kStepRunning, BS::kSkipped});
  auto p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, Ids{"b"});
  steps[1].state = BS::kStepCompensating;  // compensation outcome unknown at a crash
  p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.compensate, Ids{"b"});
}

TEST(SagaPlanTest, NothingAttemptedCompensatesAtOnce) {
  auto steps = Chain({BS::kFailed, BS::kPending});
  auto p = MustPlan(TS::kRunning, steps);
  EXPECT_EQ(p.compensate, Ids{"a"});
  steps = Chain({BS::kSkipped, BS::kSkipped});
  p = MustPlan(TS::kCompensating, steps);
  EXPECT_EQ(p.next_state, TS::kCompensated);
  EXPECT_TRUE(p.finished);
}

TEST(SagaPlanTest, DeadlineStartsCompensation) {
  auto steps = Chain({BS::kDone, BS::kPending});
  auto p = MustPlan(TS::kRunning, steps, {}, /*now=*/2000, /*deadline=*/1000);
  EXPECT_EQ(p.next_state, TS::kCompensating);
  EXPECT_EQ(p.skip, Ids{"b"});
  EXPECT_EQ(p.compensate, Ids{"a"});
  p = MustPlan(TS::kRunning, steps, {}, /*now=*/500, /*deadline=*/1000);
  EXPECT_EQ(p.start, Ids{"b"});
}

TEST(SagaPlanTest, PendingStepsThatMayHaveRunAreCompensatedNotSkipped) {
  // A resumed run: the log shows c and d pending, but the crashed run may
  // have sent them (its forward progress was logged lazily).
  auto steps = Chain({BS::kDone, BS::kFailed, BS::kPending, BS::kPending});
  SagaPlanOptions options;
  options.pending_may_have_run = true;
  auto p = PlanSaga(TS::kRunning, steps, {}, 0, 0, options);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->next_state, TS::kCompensating);
  EXPECT_TRUE(p->skip.empty());
  EXPECT_EQ(p->unknown, (Ids{"c", "d"}));
  EXPECT_EQ(p->compensate, Ids{"d"});  // the last first; c waits for d
  // Without the flag the same log is skipped past, as a live run knows it may be.
  p = PlanSaga(TS::kRunning, steps, {}, 0, 0, SagaPlanOptions{});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->skip, (Ids{"c", "d"}));
  EXPECT_TRUE(p->unknown.empty());
  EXPECT_EQ(p->compensate, Ids{"b"});
}

TEST(SagaPlanTest, CompensationPastItsLimitParks) {
  auto steps = Chain({BS::kDone, BS::kStepCompensating, BS::kSkipped});
  SagaPlanOptions options;
  options.park_after_attempts = 4;
  steps[1].attempts = 3;
  auto p = PlanSaga(TS::kCompensating, steps, {}, 0, 0, options);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->next_state, TS::kCompensating);
  EXPECT_EQ(p->compensate, Ids{"b"});
  steps[1].attempts = 4;
  p = PlanSaga(TS::kCompensating, steps, {}, 0, 0, options);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->next_state, TS::kParked);
  EXPECT_FALSE(p->finished);
  // Parked: still retried (by the sweeper), never dropped.
  p = PlanSaga(TS::kParked, steps, {}, 0, 0, options);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->next_state, TS::kParked);
  EXPECT_EQ(p->compensate, Ids{"b"});
  // Once it went through, a parked saga ends compensated.
  steps[1].state = BS::kStepCompensated;
  steps[0].state = BS::kStepCompensated;
  p = PlanSaga(TS::kParked, steps, {}, 0, 0, options);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->next_state, TS::kCompensated);
  EXPECT_TRUE(p->finished);
}

TEST(SagaPlanTest, FinalStatesHaveNothingToDo) {
  for (TS s : {TS::kSucceeded, TS::kCompensated}) {
    auto p = MustPlan(s, Chain({BS::kDone}));
    EXPECT_TRUE(p.finished);
    EXPECT_TRUE(p.start.empty());
    EXPECT_TRUE(p.compensate.empty());
  }
}

TEST(SagaPlanTest, ImpossibleStatesAreRejected) {
  auto bad = PlanSaga(TS::kRunning, Chain({BS::kStepCompensating}), {}, 0, 0, SagaPlanOptions{});
  EXPECT_EQ(bad.status().code(), StatusCode::kIllegalTransition);
  bad = PlanSaga(TS::kActive, Chain({BS::kPending}), {}, 0, 0, SagaPlanOptions{});
  EXPECT_EQ(bad.status().code(), StatusCode::kIllegalTransition);
  bad = PlanSaga(TS::kRunning, {Step("a", {}, BS::kPrepared)}, {}, 0, 0, SagaPlanOptions{});
  EXPECT_EQ(bad.status().code(), StatusCode::kIllegalTransition);
}

}  // namespace
}  // namespace txc
