#include "coordinator/core/admin.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "coordinator/core/saga.h"

namespace txc {
namespace {

TxnRecord RunningSaga(int32_t flags) {
  TxnRecord txn;
  txn.gtid = "g1";
  txn.kind = TxnKind::kSaga;
  txn.state = TxnState::kRunning;
  txn.owner = "node-1";
  txn.epoch = 3;
  txn.flags = flags;
  return txn;
}

std::vector<BranchRecord> Steps(std::vector<BranchState> states) {
  std::vector<BranchRecord> steps;
  for (size_t i = 0; i < states.size(); ++i) {
    BranchRecord s;
    s.gtid = "g1";
    s.branch_id = std::string(1, static_cast<char>('a' + i));
    s.ordinal = static_cast<int32_t>(i);
    s.state = states[i];
    steps.push_back(s);
  }
  return steps;
}

AdminActor Actor() { return AdminActor{"ops@example", "customer called", 1000, "audit-1"}; }

TEST(AdminTest, CancelSkipsTheStepsASagaLoggedStepByStepNeverStarted) {
  auto batch = PlanCancelSaga(
      RunningSaga(0), Steps({BranchState::kDone, BranchState::kStepRunning, BranchState::kPending}),
      Actor());
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->txn_updates.size(), 1u);
  EXPECT_EQ(batch->txn_updates[0].state, TxnState::kCompensating);
  EXPECT_EQ(batch->txn_updates[0].expected_epoch, 3);
  ASSERT_EQ(batch->branch_updates.size(), 1u);
  EXPECT_EQ(batch->branch_updates[0].branch_id, "c");
  EXPECT_EQ(batch->branch_updates[0].state, BranchState::kSkipped);
  EXPECT_EQ(batch->branch_updates[0].expected_states,
            std::vector<BranchState>{BranchState::kPending});
  EXPECT_EQ(batch->insert_audits.size(), 1u);
}

TEST(AdminTest, CancelCompensatesThePendingStepsOfASagaWhoseProgressIsLoggedLazily) {
  // The live run may be ahead of this log: b and c may have been sent.
  auto batch = PlanCancelSaga(
      RunningSaga(kFlagLazyProgress),
      Steps({BranchState::kStepRunning, BranchState::kPending, BranchState::kPending}), Actor());
  ASSERT_TRUE(batch.ok()) << batch.status();
  ASSERT_EQ(batch->branch_updates.size(), 2u);
  for (const BranchUpdate& u : batch->branch_updates) {
    EXPECT_EQ(u.state, BranchState::kStepRunning) << u.branch_id;
    EXPECT_EQ(u.last_error, std::string(kMayHaveRunNote)) << u.branch_id;
    EXPECT_EQ(u.expected_states, std::vector<BranchState>{BranchState::kPending});
  }
  // The planner then compensates them, the last first.
  std::vector<BranchRecord> after =
      Steps({BranchState::kStepRunning, BranchState::kStepRunning, BranchState::kStepRunning});
  for (size_t i = 1; i < after.size(); ++i) after[i].depends_on = {after[i - 1].branch_id};
  auto plan = PlanSaga(TxnState::kCompensating, after, {}, 1000, 0, SagaPlanOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->compensate, std::vector<std::string>{"c"});
}

TEST(AdminTest, CancelOfASucceededSagaIsIllegalAndOfACompensatedOneANoOp) {
  TxnRecord txn = RunningSaga(kFlagLazyProgress);
  txn.state = TxnState::kSucceeded;
  EXPECT_EQ(PlanCancelSaga(txn, Steps({BranchState::kDone}), Actor()).status().code(),
            StatusCode::kIllegalTransition);
  txn.state = TxnState::kCompensated;
  auto batch = PlanCancelSaga(txn, Steps({BranchState::kStepCompensated}), Actor());
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->empty());
}

}  // namespace
}  // namespace txc
