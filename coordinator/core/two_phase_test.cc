#include "coordinator/core/two_phase.h"

#include <gtest/gtest.h>

#include <set>
#include <utility>
#include <vector>

namespace txc {
namespace {

const std::vector<TxnState> kTwoPhaseStates = {TxnState::kActive,     TxnState::kPreparing,
                                               TxnState::kCommitting, TxnState::kCommitted,
                                               TxnState::kAborting,   TxnState::kAborted};
const std::vector<TxnState> kSagaStates = {TxnState::kRunning, TxnState::kSucceeded,
                                           TxnState::kCompensating, TxnState::kCompensated,
                                           TxnState::kParked};
const std::vector<BranchState> kBranchStates = {
    BranchState::kRegistered, BranchState::kPrepared, BranchState::kReadOnly,
    BranchState::kBranchCommitted, BranchState::kBranchAborted};

using TxnEdge = std::pair<TxnState, TxnState>;

// The legal edges, written out independently of the implementation.
const std::set<TxnEdge> kLegalEdges = {
    {TxnState::kActive, TxnState::kPreparing},     {TxnState::kActive, TxnState::kAborting},
    {TxnState::kPreparing, TxnState::kCommitting}, {TxnState::kPreparing, TxnState::kAborting},
    {TxnState::kCommitting, TxnState::kCommitted}, {TxnState::kAborting, TxnState::kAborted},
};
const std::set<TxnEdge> kOnePhaseOnlyEdges = {
    {TxnState::kPreparing, TxnState::kCommitted},
    {TxnState::kPreparing, TxnState::kAborted},
};
// (from, to) where `from` is `to` or past it on the same path.
const std::set<TxnEdge> kAlreadyDone = {
    {TxnState::kPreparing, TxnState::kActive},     {TxnState::kCommitting, TxnState::kActive},
    {TxnState::kCommitting, TxnState::kPreparing}, {TxnState::kCommitted, TxnState::kActive},
    {TxnState::kCommitted, TxnState::kPreparing},  {TxnState::kCommitted, TxnState::kCommitting},
    {TxnState::kAborting, TxnState::kActive},      {TxnState::kAborting, TxnState::kPreparing},
    {TxnState::kAborted, TxnState::kActive},       {TxnState::kAborted, TxnState::kPreparing},
    {TxnState::kAborted, TxnState::kAborting},
};

TEST(TwoPhaseTransitionTest, EveryPairOfStates) {
  for (bool one_phase : {false, true}) {
    for (TxnState from : kTwoPhaseStates) {
      for (TxnState to : kTwoPhaseStates) {
        SCOPED_TRACE(std::string(TxnStateName(from)) + " -> " + TxnStateName(to) +
                     (one_phase ? " (one-phase)" : ""));
        auto action = DecideTxnTransition(from, to, one_phase);
        const TxnEdge edge{from, to};
        if (from == to || kAlreadyDone.count(edge)) {
          ASSERT_TRUE(action.ok()) << action.status();
          EXPECT_EQ(*action, TransitionAction::kAlreadyDone);
        } else if (kLegalEdges.count(edge) || (one_phase && kOnePhaseOnlyEdges.count(edge))) {
          ASSERT_TRUE(action.ok()) << action.status();
          EXPECT_EQ(*action, TransitionAction::kApply);
        } else {
          ASSERT_FALSE(action.ok());
          EXPECT_EQ(action.status().code(), StatusCode::kIllegalTransition);
        }
      }
    }
  }
}

TEST(TwoPhaseTransitionTest, NamedIllegalEdges) {
  for (auto [from, to] : std::vector<TxnEdge>{
           {TxnState::kCommitted, TxnState::kAborting},
           {TxnState::kCommitting, TxnState::kAborting},
           {TxnState::kAborted, TxnState::kCommitting},
           {TxnState::kAborting, TxnState::kCommitting},
           {TxnState::kAborting, TxnState::kCommitted},
           {TxnState::kActive, TxnState::kCommitting},
           {TxnState::kActive, TxnState::kCommitted},
           {TxnState::kActive, TxnState::kAborted},
           {TxnState::kPreparing, TxnState::kCommitted},
       }) {
    auto action = DecideTxnTransition(from, to, /*one_phase=*/false);
    EXPECT_EQ(action.status().code(), StatusCode::kIllegalTransition)
        << TxnStateName(from) << " -> " << TxnStateName(to);
  }
}

TEST(TwoPhaseTransitionTest, SagaStatesAreNeverTwoPhaseEdges) {
  for (TxnState saga : kSagaStates) {
    for (TxnState two_pc : kTwoPhaseStates) {
      EXPECT_EQ(DecideTxnTransition(saga, two_pc, false).status().code(),
                StatusCode::kIllegalTransition);
      EXPECT_EQ(DecideTxnTransition(two_pc, saga, false).status().code(),
                StatusCode::kIllegalTransition);
    }
  }
}

// Retrying any step after it took effect is harmless: the second application
// of every legal edge is a no-op, and so is any earlier step of the same path.
TEST(TwoPhaseTransitionTest, RetryingAnyStepIsHarmless) {
  const std::vector<std::vector<TxnState>> paths = {
      {TxnState::kActive, TxnState::kPreparing, TxnState::kCommitting, TxnState::kCommitted},
      {TxnState::kActive, TxnState::kPreparing, TxnState::kAborting, TxnState::kAborted},
      {TxnState::kActive, TxnState::kAborting, TxnState::kAborted},
  };
  for (const auto& path : paths) {
    TxnState current = path.front();
    for (size_t i = 1; i < path.size(); ++i) {
      auto first = DecideTxnTransition(current, path[i], false);
      ASSERT_TRUE(first.ok()) << first.status();
      ASSERT_EQ(*first, TransitionAction::kApply);
      current = path[i];
      for (size_t j = 0; j <= i; ++j) {
        auto again = DecideTxnTransition(current, path[j], false);
        ASSERT_TRUE(again.ok()) << again.status();
        EXPECT_EQ(*again, TransitionAction::kAlreadyDone)
            << TxnStateName(current) << " retry " << TxnStateName(path[j]);
      }
    }
  }
}

TEST(TwoPhaseBranchTransitionTest, EveryPairOfStates) {
  using BranchEdge = std::pair<BranchState, BranchState>;
  const std::set<BranchEdge> legal = {
      {BranchState::kRegistered, BranchState::kPrepared},
      {BranchState::kRegistered, BranchState::kReadOnly},
      {BranchState::kRegistered, BranchState::kBranchAborted},
      {BranchState::kRegistered, BranchState::kBranchCommitted},
      {BranchState::kPrepared, BranchState::kBranchCommitted},
      {BranchState::kPrepared, BranchState::kBranchAborted},
  };
  const std::set<BranchEdge> done = {
      {BranchState::kPrepared, BranchState::kRegistered},
      {BranchState::kReadOnly, BranchState::kRegistered},
      {BranchState::kReadOnly, BranchState::kBranchCommitted},
      {BranchState::kReadOnly, BranchState::kBranchAborted},
      {BranchState::kBranchCommitted, BranchState::kRegistered},
      {BranchState::kBranchCommitted, BranchState::kPrepared},
      {BranchState::kBranchAborted, BranchState::kRegistered},
      {BranchState::kBranchAborted, BranchState::kPrepared},
  };
  for (BranchState from : kBranchStates) {
    for (BranchState to : kBranchStates) {
      SCOPED_TRACE(std::string(BranchStateName(from)) + " -> " + BranchStateName(to));
      auto action = DecideBranchTransition(from, to);
      if (from == to || done.count({from, to})) {
        ASSERT_TRUE(action.ok()) << action.status();
        EXPECT_EQ(*action, TransitionAction::kAlreadyDone);
      } else if (legal.count({from, to})) {
        ASSERT_TRUE(action.ok()) << action.status();
        EXPECT_EQ(*action, TransitionAction::kApply);
      } else {
        EXPECT_EQ(action.status().code(), StatusCode::kIllegalTransition);
      }
    }
  }
  EXPECT_EQ(DecideBranchTransition(BranchState::kDone, BranchState::kPrepared).status().code(),
            StatusCode::kIllegalTransition);
}

TEST(TwoPhaseDecisionTest, AllYesCommits) {
  using V = std::optional<BranchVote>;
  EXPECT_EQ(DecideFromVotes({}), Decision::kCommit);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kPrepared)}), Decision::kCommit);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kPrepared), V(BranchVote::kReadOnly)}),
            Decision::kCommit);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kReadOnly), V(BranchVote::kReadOnly)}),
            Decision::kCommit);
}

TEST(TwoPhaseDecisionTest, AnyNoErrorOrTimeoutAborts) {
  using V = std::optional<BranchVote>;
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kPrepared), V(BranchVote::kAbort)}), Decision::kAbort);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kAbort), V(BranchVote::kPrepared)}), Decision::kAbort);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kPrepared), std::nullopt}), Decision::kAbort);
  EXPECT_EQ(DecideFromVotes({std::nullopt}), Decision::kAbort);
  EXPECT_EQ(DecideFromVotes({V(BranchVote::kReadOnly), V(BranchVote::kReadOnly), std::nullopt}),
            Decision::kAbort);
}

TEST(TwoPhaseDecisionTest, PhaseTwoSkipsReadOnlyAndFinishedBranches) {
  EXPECT_TRUE(NeedsPhaseTwo(BranchState::kPrepared, Decision::kCommit));
  EXPECT_TRUE(NeedsPhaseTwo(BranchState::kPrepared, Decision::kAbort));
  EXPECT_TRUE(NeedsPhaseTwo(BranchState::kRegistered, Decision::kAbort));
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kReadOnly, Decision::kCommit));
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kReadOnly, Decision::kAbort));
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kBranchCommitted, Decision::kCommit));
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kBranchAborted, Decision::kAbort));
  // Impossible under a correct log; never "fixed" by a message.
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kBranchCommitted, Decision::kAbort));
  EXPECT_FALSE(NeedsPhaseTwo(BranchState::kBranchAborted, Decision::kCommit));

  EXPECT_EQ(BranchStateAfterVote(BranchVote::kPrepared), BranchState::kPrepared);
  EXPECT_EQ(BranchStateAfterVote(BranchVote::kReadOnly), BranchState::kReadOnly);
  EXPECT_EQ(BranchStateAfterVote(BranchVote::kAbort), BranchState::kBranchAborted);
}

TEST(TwoPhaseDecisionTest, DecisionAndFinalStates) {
  EXPECT_EQ(DecisionState(Decision::kCommit), TxnState::kCommitting);
  EXPECT_EQ(DecisionState(Decision::kAbort), TxnState::kAborting);
  EXPECT_EQ(FinalState(Decision::kCommit), TxnState::kCommitted);
  EXPECT_EQ(FinalState(Decision::kAbort), TxnState::kAborted);
  EXPECT_EQ(BranchFinalState(Decision::kCommit), BranchState::kBranchCommitted);
  EXPECT_EQ(BranchFinalState(Decision::kAbort), BranchState::kBranchAborted);
  EXPECT_EQ(DecisionOf(TxnState::kCommitting), Decision::kCommit);
  EXPECT_EQ(DecisionOf(TxnState::kCommitted), Decision::kCommit);
  EXPECT_EQ(DecisionOf(TxnState::kAborting), Decision::kAbort);
  EXPECT_EQ(DecisionOf(TxnState::kAborted), Decision::kAbort);
  EXPECT_FALSE(DecisionOf(TxnState::kActive).has_value());
  EXPECT_FALSE(DecisionOf(TxnState::kPreparing).has_value());
}

TEST(OutcomeTest, OutcomeForEveryState) {
  EXPECT_EQ(OutcomeOfState(TxnState::kActive), Outcome::kPending);
  EXPECT_EQ(OutcomeOfState(TxnState::kPreparing), Outcome::kPending);
  EXPECT_EQ(OutcomeOfState(TxnState::kCommitting), Outcome::kCommit);
  EXPECT_EQ(OutcomeOfState(TxnState::kCommitted), Outcome::kCommit);
  EXPECT_EQ(OutcomeOfState(TxnState::kAborting), Outcome::kAbort);
  EXPECT_EQ(OutcomeOfState(TxnState::kAborted), Outcome::kAbort);
  EXPECT_EQ(OutcomeOfState(std::nullopt), Outcome::kAbort);  // presumed abort
  for (TxnState saga : kSagaStates) EXPECT_EQ(OutcomeOfState(saga), Outcome::kAbort);
}

}  // namespace
}  // namespace txc
