#include "coordinator/rpc/convert.h"

#include <gtest/gtest.h>

namespace txc {
namespace {

wire::SagaStep Step(const std::string& id) {
  wire::SagaStep s;
  s.__set_step_id(id);
  s.__set_endpoint("127.0.0.1:9000");
  s.__set_action("do_" + id);
  s.__set_compensation("undo_" + id);
  s.__set_payload(std::string("\0p", 2) + id);
  return s;
}

TEST(ConvertTest, EnumsHaveTheWireValues) {
  EXPECT_EQ(ToWire(TxnState::kCommitting), wire::TxnState::COMMITTING);
  EXPECT_EQ(ToWire(TxnState::kParked), wire::TxnState::PARKED);
  EXPECT_EQ(ToWire(BranchState::kSkipped), wire::BranchState::SKIPPED);
  EXPECT_EQ(ToWire(BranchState::kBranchAborted), wire::BranchState::BRANCH_ABORTED);
  EXPECT_EQ(ToWire(TxnKind::kSaga), wire::TxnKind::SAGA);
  EXPECT_EQ(ToWire(Outcome::kPending), wire::Outcome::OUTCOME_PENDING);
  EXPECT_EQ(ToWire(CommitWait::kCompletion), wire::CommitWait::WAIT_COMPLETION);
  // Every declared wire value converts back to the same number.
  for (const auto& [value, name] : wire::_TxnState_VALUES_TO_NAMES) {
    auto s = TxnStateFromWire(value);
    ASSERT_TRUE(s.ok()) << name;
    EXPECT_EQ(static_cast<int>(*s), value);
  }
  for (const auto& [value, name] : wire::_BranchState_VALUES_TO_NAMES) {
    auto s = BranchStateFromWire(value);
    ASSERT_TRUE(s.ok()) << name;
    EXPECT_EQ(static_cast<int>(*s), value);
  }
}

TEST(ConvertTest, UnknownWireEnumValuesAreInvalidArgument) {
  EXPECT_EQ(TxnStateFromWire(7).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(BranchStateFromWire(0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(TxnKindFromWire(3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(OutcomeFromWire(99).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CommitWaitFromWire(-1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*CommitWaitFromWire(2), CommitWait::kCompletion);
}

// The commit answer reports core's map (OutcomeOfState), state by state.
TEST(ConvertTest, CommitResponseCarriesCoreOutcome) {
  for (TxnState state :
       {TxnState::kActive, TxnState::kPreparing, TxnState::kCommitting, TxnState::kCommitted,
        TxnState::kAborting, TxnState::kAborted, TxnState::kRunning, TxnState::kSucceeded,
        TxnState::kCompensating, TxnState::kCompensated, TxnState::kParked}) {
    TxnRecord txn;
    txn.gtid = "g";
    txn.state = state;
    wire::CommitResponse r = CommitResponseToWire(txn);
    EXPECT_EQ(r.outcome, ToWire(OutcomeOfState(state))) << TxnStateName(state);
    EXPECT_EQ(r.state, ToWire(state));
  }
}

TEST(ConvertTest, BeginRequestRoundTrip) {
  wire::BeginRequest req;
  req.__set_timeout_ms(1234);
  req.__set_idempotency_key("key-1");
  wire::BranchSpec b;
  b.__set_branch_id("b1");
  b.__set_endpoint("h:1");
  b.__set_resource("accounts");
  b.__set_payload(std::string("\x00\xff", 2));
  req.__set_branches({b});
  auto options = BeginOptionsFromWire(req);
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->timeout_ms, 1234);
  EXPECT_EQ(options->idempotency_key, "key-1");
  ASSERT_EQ(options->branches.size(), 1u);
  EXPECT_EQ(options->branches[0].branch_id, "b1");
  EXPECT_EQ(options->branches[0].payload, std::string("\x00\xff", 2));
  EXPECT_EQ(options->branches[0].state, BranchState::kRegistered);
  EXPECT_EQ(BeginRequestToWire(*options), req);

  wire::BeginRequest plain;  // no key, no branches: defaults
  auto defaults = BeginOptionsFromWire(plain);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->timeout_ms, 60000);
  EXPECT_TRUE(defaults->idempotency_key.empty());
  EXPECT_TRUE(defaults->branches.empty());
}

TEST(ConvertTest, SagaDependenciesBecomeExplicit) {
  std::vector<wire::SagaStep> steps = {Step("a"), Step("b"), Step("c"), Step("d")};
  steps[2].__set_concurrent(true);        // c: no dependency
  steps[3].__set_depends_on({"a", "c"});  // d: explicit
  wire::RetryPolicy policy;
  policy.__set_max_attempts(9);
  policy.__set_initial_backoff_ms(7);
  policy.__set_max_backoff_ms(70);
  steps[1].__set_retry_policy(policy);

  auto records = SagaStepsFromWire(steps, "g1");
  ASSERT_EQ(records.size(), 4u);
  EXPECT_TRUE(records[0].depends_on.empty());
  EXPECT_EQ(records[1].depends_on, std::vector<std::string>{"a"});
  EXPECT_TRUE(records[2].depends_on.empty());
  EXPECT_EQ(records[3].depends_on, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(records[0].max_attempts, 5);  // IDL default
  EXPECT_EQ(records[0].initial_backoff_ms, 100);
  EXPECT_EQ(records[0].max_backoff_ms, 10000);
  EXPECT_EQ(records[1].max_attempts, 9);
  EXPECT_EQ(records[1].initial_backoff_ms, 7);
  EXPECT_EQ(records[1].max_backoff_ms, 70);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(records[i].gtid, "g1");
    EXPECT_EQ(records[i].ordinal, i);
    EXPECT_EQ(records[i].state, BranchState::kPending);
  }
  EXPECT_EQ(records[1].action, "do_b");
  EXPECT_EQ(records[1].compensation, "undo_b");
  EXPECT_EQ(records[1].payload, std::string("\0pb", 3));

  // Back to the wire and in again: the same dependencies.
  std::vector<wire::SagaStep> again;
  for (const auto& r : records) again.push_back(SagaStepToWire(r));
  EXPECT_TRUE(again[2].__isset.concurrent && again[2].concurrent);
  EXPECT_FALSE(again[0].__isset.concurrent);
  auto round = SagaStepsFromWire(again, "g1");
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(round[i].depends_on, records[i].depends_on) << i;
    EXPECT_EQ(round[i].max_attempts, records[i].max_attempts) << i;
  }
}

TEST(ConvertTest, SubmitSagaRequestRoundTrip) {
  wire::SubmitSagaRequest req;
  req.__set_gtid("order-42");
  req.__set_steps({Step("reserve"), Step("charge")});
  req.__set_wait_for_completion(true);
  req.__set_wait_timeout_ms(5000);
  req.__set_timeout_ms(90000);
  auto spec = SagaSpecFromWire(req);
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->gtid, "order-42");
  EXPECT_EQ(spec->steps.size(), 2u);
  EXPECT_EQ(spec->steps[0].gtid, "order-42");
  EXPECT_TRUE(spec->wait_for_completion);
  EXPECT_EQ(spec->wait_timeout_ms, 5000);
  EXPECT_EQ(spec->timeout_ms, 90000);
  auto back = SagaSpecToWire(*spec);
  EXPECT_EQ(back.gtid, "order-42");
  EXPECT_EQ(back.steps.size(), 2u);
  EXPECT_EQ(back.steps[1].depends_on, std::vector<std::string>{"reserve"});
  EXPECT_EQ(back.timeout_ms, 90000);
}

TEST(ConvertTest, StatusRoundTrip) {
  TxnView view;
  view.txn.gtid = "g2";
  view.txn.kind = TxnKind::kSaga;
  view.txn.state = TxnState::kCompensating;
  view.txn.created_ms = 11;
  view.txn.deadline_ms = 22;
  view.txn.owner = "node-a";
  view.txn.epoch = 3;
  view.txn.attempts = 4;
  BranchRecord s;
  s.gtid = "g2";
  s.branch_id = "s1";
  s.endpoint = "h:2";
  s.action = "act";
  s.compensation = "comp";
  s.depends_on = {"s0"};
  s.state = BranchState::kStepCompensating;
  s.attempts = 2;
  s.last_error = "boom";
  s.next_attempt_ms = 99;
  view.branches = {s};

  wire::TxnStatus w = TxnStatusToWire(view);
  EXPECT_EQ(w.state, wire::TxnState::COMPENSATING);
  EXPECT_EQ(w.kind, wire::TxnKind::SAGA);
  ASSERT_EQ(w.branches.size(), 1u);
  EXPECT_EQ(w.branches[0].state, wire::BranchState::STEP_COMPENSATING);
  EXPECT_EQ(w.branches[0].last_error, "boom");

  auto back = TxnViewFromWire(w);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->txn.gtid, "g2");
  EXPECT_EQ(back->txn.state, TxnState::kCompensating);
  EXPECT_EQ(back->txn.owner, "node-a");
  EXPECT_EQ(back->txn.epoch, 3);
  EXPECT_EQ(back->txn.attempts, 4);
  ASSERT_EQ(back->branches.size(), 1u);
  EXPECT_EQ(back->branches[0].depends_on, s.depends_on);
  EXPECT_EQ(back->branches[0].state, s.state);
  EXPECT_EQ(back->branches[0].next_attempt_ms, 99);

  w.branches[0].state = static_cast<wire::BranchState::type>(77);
  EXPECT_EQ(TxnViewFromWire(w).status().code(), StatusCode::kInvalidArgument);
}

TEST(ConvertTest, ParticipantRequestsCarryTheContext) {
  TxnRecord txn;
  txn.gtid = "g3";
  txn.deadline_ms = 555;
  BranchRecord b;
  b.branch_id = "b9";
  b.resource = "r";
  b.payload = "pay";
  b.action = "act";
  auto br = MakeBranchRequest(txn, b, {"c1:1", "c2:2"});
  EXPECT_EQ(br.gtid, "g3");
  EXPECT_EQ(br.branch_id, "b9");
  EXPECT_EQ(br.payload, "pay");
  EXPECT_EQ(br.context.coordinators, (std::vector<std::string>{"c1:1", "c2:2"}));
  EXPECT_EQ(br.context.deadline_unix_ms, 555);
  EXPECT_TRUE(br.context.__isset.branch_id);
  EXPECT_EQ(br.context.branch_id, "b9");
  auto sr = MakeStepRequest(txn, b, b.action, 3, {"c1:1"});
  EXPECT_EQ(sr.name, "act");
  EXPECT_EQ(sr.attempt, 3);
  EXPECT_EQ(sr.step_id, "b9");
  EXPECT_FALSE(MakeTxnContext(txn, {}).__isset.branch_id);
}

TEST(ConvertTest, CommitResponseOutcome) {
  TxnRecord txn;
  txn.gtid = "g4";
  txn.state = TxnState::kAborting;
  auto r = CommitResponseToWire(txn);
  EXPECT_EQ(r.outcome, wire::Outcome::OUTCOME_ABORT);
  txn.state = TxnState::kCommitted;
  EXPECT_EQ(CommitResponseToWire(txn).outcome, wire::Outcome::OUTCOME_COMMIT);
}

TEST(ConvertTest, ErrorsBecomeTypedExceptions) {
  EXPECT_NO_THROW(ThrowIfError(Status::Ok(), "g"));
  try {
    ThrowIfError(Status::InvalidArgument("timeout_ms must be between 1 and 2"), "g");
    FAIL();
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "timeout_ms");
  }
  try {
    ThrowIfError(Status::InvalidArgument("branch.endpoint: bad"), "g");
    FAIL();
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branch.endpoint");
  }
  EXPECT_THROW(ThrowIfError(Status::NotFound("x"), "g"), wire::NotFound);
  try {
    ThrowIfError(Status::IllegalTransition("commit after rollback"), "g", TxnState::kAborted);
    FAIL();
  } catch (const wire::IllegalTransition& e) {
    EXPECT_EQ(e.gtid, "g");
    EXPECT_EQ(e.current_state, wire::TxnState::ABORTED);
  }
  EXPECT_THROW(ThrowIfError(Status::AlreadyExists("x"), "g"), wire::IllegalTransition);
  try {
    ThrowIfError(Status::NotOwner("elsewhere"), "g", TxnState::kActive, "h:7");
    FAIL();
  } catch (const wire::NotOwner& e) {
    EXPECT_EQ(e.owner_endpoint, "h:7");
  }
  EXPECT_THROW(ThrowIfError(Status::Indeterminate("x"), "g"), wire::Unavailable);
  EXPECT_THROW(ThrowIfError(Status::Timeout("x"), "g"), wire::Unavailable);
  EXPECT_THROW(ThrowIfError(Status::Internal("x"), "g"), wire::Unavailable);
  EXPECT_THROW(ThrowIfError(Status::Conflict("x"), "g"), wire::Unavailable);
  EXPECT_EQ(FieldOfMessage("no field here!"), "no");
  EXPECT_EQ(FieldOfMessage(""), "");
  EXPECT_EQ(FieldOfMessage("!!"), "");
}

}  // namespace
}  // namespace txc
