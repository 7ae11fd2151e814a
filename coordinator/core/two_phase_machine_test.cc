// The 2PC step function: each edge, the no-ops and the refusals, and a
// randomized run of whole transactions (votes, failures, timeouts and retries
// delivered in random order) checked for atomicity.
#include "coordinator/core/two_phase_machine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>

namespace txc {
namespace {

using Kind = TwoPhaseEventKind;
using Effect = TwoPhaseEffectKind;

constexpr int64_t kNow = 1'000'000;

TwoPhaseRun MakeRun(TxnState state, int branches, int32_t flags = 0) {
  TwoPhaseRun run;
  run.txn.gtid = "g";
  run.txn.kind = TxnKind::kTwoPhase;
  run.txn.state = state;
  run.txn.deadline_ms = kNow + 60'000;
  run.txn.flags = flags;
  for (int i = 0; i < branches; ++i) {
    BranchRecord b;
    b.gtid = "g";
    b.branch_id = "b" + std::to_string(i);
    b.ordinal = i;
    b.state = BranchState::kRegistered;
    run.branches.push_back(b);
  }
  return run;
}

TwoPhaseEvent Ev(Kind kind, size_t branch = 0) {
  TwoPhaseEvent e;
  e.kind = kind;
  e.now_ms = kNow;
  e.jitter = 0.5;
  e.branch = branch;
  return e;
}

TwoPhaseEvent Vote(size_t branch, std::optional<BranchVote> vote) {
  TwoPhaseEvent e = Ev(Kind::kVote, branch);
  e.vote = vote;
  if (!vote.has_value()) e.error = Status::Unavailable("connection refused");
  return e;
}

TwoPhaseEvent Ack(size_t branch, Status error = Status::Ok()) {
  TwoPhaseEvent e = Ev(Kind::kPhaseTwoAnswer, branch);
  e.error = std::move(error);
  return e;
}

int Count(const TwoPhaseStep& s, Effect kind) {
  return static_cast<int>(std::count_if(s.effects.begin(), s.effects.end(),
                                        [&](const TwoPhaseEffect& e) { return e.kind == kind; }));
}

TwoPhaseStep Must(const TwoPhaseRun& run, const TwoPhaseEvent& e, const TwoPhaseTiming& t = {}) {
  Result<TwoPhaseStep> s = StepTwoPhase(run, e, t);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(s).value() : TwoPhaseStep{};
}

TEST(TwoPhaseMachineTest, StatesMapBothWaysAndSagaStatesAreNotTwoPhase) {
  for (TwoPhaseState s :
       {TwoPhaseState::kActive, TwoPhaseState::kPreparing, TwoPhaseState::kCommitting,
        TwoPhaseState::kCommitted, TwoPhaseState::kAborting, TwoPhaseState::kAborted}) {
    EXPECT_EQ(TwoPhaseStateOf(ToTxnState(s)), s);
  }
  for (TxnState s : {TxnState::kRunning, TxnState::kSucceeded, TxnState::kCompensating,
                     TxnState::kCompensated, TxnState::kParked}) {
    EXPECT_FALSE(TwoPhaseStateOf(s).has_value());
    TwoPhaseRun run = MakeRun(TxnState::kActive, 1);
    run.txn.state = s;
    EXPECT_EQ(StepTwoPhase(run, Ev(Kind::kCommit), {}).status().code(),
              StatusCode::kIllegalTransition);
  }
  TwoPhaseRun saga = MakeRun(TxnState::kActive, 1);
  saga.txn.kind = TxnKind::kSaga;
  EXPECT_EQ(StepTwoPhase(saga, Ev(Kind::kRecover), {}).status().code(),
            StatusCode::kIllegalTransition);
  EXPECT_EQ(StepTwoPhase(MakeRun(TxnState::kPreparing, 2), Vote(2, BranchVote::kPrepared), {})
                .status()
                .code(),
            StatusCode::kIllegalTransition);  // no branch 2
}

TEST(TwoPhaseMachineTest, CommitOfTwoBranchesEndToEnd) {
  TwoPhaseTiming t;
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 2), Ev(Kind::kCommit), t);
  ASSERT_EQ(s.writes.txn_updates.size(), 1u);
  const TxnUpdate& prep = s.writes.txn_updates[0];
  EXPECT_EQ(prep.expected_states, std::vector<TxnState>{TxnState::kActive});
  EXPECT_EQ(prep.state, TxnState::kPreparing);
  EXPECT_EQ(prep.expected_branch_count, 2);
  EXPECT_EQ(*prep.flags & kFlagCommitRequested, kFlagCommitRequested);
  EXPECT_EQ(*prep.flags & kFlagOnePhase, 0);
  EXPECT_EQ(Count(s, Effect::kSendPrepare), 2);
  EXPECT_EQ(Count(s, Effect::kPrepareWindow), 1);
  EXPECT_TRUE(prep.expected_owner.empty());  // the driver fences

  // First vote: nothing written yet.
  s = Must(s.run, Vote(0, BranchVote::kPrepared), t);
  EXPECT_TRUE(s.writes.empty());
  EXPECT_TRUE(s.effects.empty());
  EXPECT_FALSE(s.noop);
  // A duplicate vote is a no-op.
  EXPECT_TRUE(Must(s.run, Vote(0, BranchVote::kPrepared), t).noop);
  // Last vote: the decision with both branch states, then phase 2.
  s = Must(s.run, Vote(1, BranchVote::kPrepared), t);
  ASSERT_EQ(s.writes.txn_updates.size(), 1u);
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kCommitting);
  EXPECT_EQ(s.writes.txn_updates[0].expected_states, std::vector<TxnState>{TxnState::kPreparing});
  EXPECT_EQ(s.writes.branch_updates.size(), 2u);
  EXPECT_EQ(Count(s, Effect::kSendCommit), 2);
  EXPECT_EQ(Count(s, Effect::kSendAbort), 0);
  // A late window end changes nothing.
  EXPECT_TRUE(Must(s.run, Ev(Kind::kPrepareWindowEnded), t).noop);

  s = Must(s.run, Ack(1), t);
  EXPECT_TRUE(s.writes.empty());
  s = Must(s.run, Ack(0), t);
  ASSERT_EQ(s.writes.txn_updates.size(), 1u);
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kCommitted);
  EXPECT_EQ(s.writes.branch_updates.size(), 2u);
  for (const BranchUpdate& b : s.writes.branch_updates) {
    EXPECT_EQ(b.state, BranchState::kBranchCommitted);
    EXPECT_EQ(b.attempts, 1);
  }
  EXPECT_EQ(Count(s, Effect::kFinished), 1);
  EXPECT_EQ(s.run.txn.state, TxnState::kCommitted);
  // Anything after the end is a no-op.
  EXPECT_TRUE(Must(s.run, Ack(0), t).noop);
  EXPECT_TRUE(Must(s.run, Ev(Kind::kCommit), t).noop);
  EXPECT_TRUE(Must(s.run, Ev(Kind::kRecover), t).noop);
}

TEST(TwoPhaseMachineTest, AMissingOrAbortVoteAbortsAndReadOnlyGetsNoPhaseTwo) {
  for (std::optional<BranchVote> bad :
       {std::optional<BranchVote>(BranchVote::kAbort), std::optional<BranchVote>()}) {
    TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 3), Ev(Kind::kCommit));
    s = Must(s.run, Vote(0, BranchVote::kReadOnly));
    s = Must(s.run, Vote(1, BranchVote::kPrepared));
    s = Must(s.run, Vote(2, bad));
    EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kAborting);
    // Read-only needs nothing; the ABORT voter rolled back; the prepared one gets an abort.
    EXPECT_EQ(Count(s, Effect::kSendAbort), bad.has_value() ? 1 : 2);
    EXPECT_EQ(s.run.branches[0].state, BranchState::kReadOnly);
  }
}

TEST(TwoPhaseMachineTest, PrepareWindowEndingCountsMissingVotesAsAbort) {
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 2), Ev(Kind::kCommit));
  s = Must(s.run, Vote(0, BranchVote::kPrepared));
  s = Must(s.run, Ev(Kind::kPrepareWindowEnded));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kAborting);
  EXPECT_EQ(Count(s, Effect::kSendAbort), 2);  // the silent one may have prepared
  // Its vote arriving now changes nothing.
  EXPECT_TRUE(Must(s.run, Vote(1, BranchVote::kPrepared)).noop);
}

TEST(TwoPhaseMachineTest, OnePhaseCommitAndItsRetries) {
  TwoPhaseTiming t;
  t.phase_two_attempts = 3;
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 1), Ev(Kind::kCommit), t);
  EXPECT_EQ(*s.writes.txn_updates[0].flags & kFlagOnePhase, kFlagOnePhase);
  EXPECT_EQ(Count(s, Effect::kSendCommitOnePhase), 1);
  EXPECT_EQ(Count(s, Effect::kPrepareWindow), 0);

  TwoPhaseEvent pending = Ev(Kind::kOnePhaseAnswer);
  pending.outcome = Outcome::kPending;
  TwoPhaseStep retry = Must(s.run, pending, t);
  ASSERT_EQ(Count(retry, Effect::kRetryAfter), 1);
  EXPECT_GT(retry.effects[0].delay_ms, 0);
  retry = Must(retry.run, Ev(Kind::kRetryDue), t);
  EXPECT_EQ(Count(retry, Effect::kSendCommitOnePhase), 1);
  retry = Must(retry.run, Ev(Kind::kOnePhaseAnswer), t);  // failed call
  retry = Must(retry.run, Ev(Kind::kRetryDue), t);
  retry = Must(retry.run, pending, t);  // third send unanswered: out of attempts
  EXPECT_EQ(Count(retry, Effect::kLeftToSweeper), 1);
  EXPECT_EQ(retry.writes.txn_updates[0].attempts, 1);
  EXPECT_EQ(retry.writes.txn_updates[0].expected_states,
            std::vector<TxnState>{TxnState::kPreparing});

  TwoPhaseEvent committed = Ev(Kind::kOnePhaseAnswer);
  committed.outcome = Outcome::kCommit;
  TwoPhaseStep done = Must(s.run, committed, t);
  EXPECT_EQ(done.writes.txn_updates[0].state, TxnState::kCommitted);
  EXPECT_EQ(done.writes.branch_updates[0].state, BranchState::kBranchCommitted);
  EXPECT_EQ(Count(done, Effect::kFinished), 1);

  // Rollback of a one-phase PREPARING asks the participant, never decides.
  TwoPhaseStep rb = Must(s.run, Ev(Kind::kRollback), t);
  EXPECT_TRUE(rb.writes.empty());
  EXPECT_EQ(Count(rb, Effect::kSendCommitOnePhase), 1);
  EXPECT_TRUE(Must(s.run, Ev(Kind::kRollbackForOwner), t).noop);
  // Recovery re-sends it, too.
  EXPECT_EQ(Count(Must(s.run, Ev(Kind::kRecover), t), Effect::kSendCommitOnePhase), 1);
}

TEST(TwoPhaseMachineTest, PhaseTwoRetriesThenLeavesTheRestToTheSweeper) {
  TwoPhaseTiming t;
  t.phase_two_attempts = 2;
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 2), Ev(Kind::kCommit), t);
  s = Must(s.run, Vote(0, BranchVote::kPrepared), t);
  s = Must(s.run, Vote(1, BranchVote::kPrepared), t);
  s = Must(s.run, Ack(0), t);
  s = Must(s.run, Ack(1, Status::Unavailable("down")), t);
  ASSERT_EQ(Count(s, Effect::kRetryAfter), 1);
  EXPECT_EQ(s.effects[0].branch, 1u);
  s = Must(s.run, Ev(Kind::kRetryDue, 1), t);
  EXPECT_EQ(Count(s, Effect::kSendCommit), 1);
  s = Must(s.run, Ack(1, Status::Unavailable("still down")), t);
  EXPECT_EQ(Count(s, Effect::kLeftToSweeper), 1);
  ASSERT_EQ(s.writes.txn_updates.size(), 1u);
  EXPECT_EQ(s.writes.txn_updates[0].state, std::nullopt);  // still COMMITTING
  EXPECT_EQ(s.writes.txn_updates[0].attempts, 1);
  EXPECT_GT(*s.writes.txn_updates[0].next_attempt_ms, kNow);
  ASSERT_EQ(s.writes.branch_updates.size(), 2u);
  EXPECT_EQ(s.run.branches[0].state, BranchState::kBranchCommitted);
  EXPECT_EQ(s.run.branches[1].state, BranchState::kPrepared);
  EXPECT_NE(s.run.branches[1].last_error.find("still down"), std::string::npos);
  // A stray check does not finish it.
  EXPECT_TRUE(Must(s.run, Ev(Kind::kCheck), t).noop);
  // The sweeper's redrive sends only to the branch that is still owed.
  TwoPhaseStep again = Must(s.run, Ev(Kind::kRecover), t);
  EXPECT_EQ(Count(again, Effect::kSendCommit), 1);
  again = Must(again.run, Ack(1), t);
  EXPECT_EQ(again.writes.txn_updates[0].state, TxnState::kCommitted);
}

TEST(TwoPhaseMachineTest, RollbackEdges) {
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 2), Ev(Kind::kRollback));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kAborting);
  EXPECT_EQ(s.writes.txn_updates[0].expected_states, std::vector<TxnState>{TxnState::kActive});
  EXPECT_EQ(Count(s, Effect::kSendAbort), 2);

  TwoPhaseStep owner = Must(MakeRun(TxnState::kPreparing, 2), Ev(Kind::kRollbackForOwner));
  EXPECT_EQ(owner.writes.txn_updates[0].state, TxnState::kAborting);
  EXPECT_EQ(owner.writes.txn_updates[0].next_attempt_ms, kNow);
  EXPECT_TRUE(owner.effects.empty());

  EXPECT_TRUE(Must(MakeRun(TxnState::kAborting, 2), Ev(Kind::kRollback)).noop);
  EXPECT_TRUE(Must(MakeRun(TxnState::kAborted, 2), Ev(Kind::kRollback)).noop);
  for (TxnState decided : {TxnState::kCommitting, TxnState::kCommitted}) {
    EXPECT_EQ(StepTwoPhase(MakeRun(decided, 2), Ev(Kind::kRollback), {}).status().code(),
              StatusCode::kIllegalTransition);
  }
}

TEST(TwoPhaseMachineTest, CommitAfterAbortOrDeadline) {
  // Aborted by rollback: commit is illegal. Aborted by its own votes: the answer stands.
  EXPECT_EQ(StepTwoPhase(MakeRun(TxnState::kAborted, 1), Ev(Kind::kCommit), {}).status().code(),
            StatusCode::kIllegalTransition);
  EXPECT_TRUE(Must(MakeRun(TxnState::kAborting, 1, kFlagCommitRequested), Ev(Kind::kCommit)).noop);
  EXPECT_TRUE(Must(MakeRun(TxnState::kCommitting, 1), Ev(Kind::kCommit)).noop);
  EXPECT_TRUE(Must(MakeRun(TxnState::kPreparing, 1), Ev(Kind::kCommit)).noop);

  TwoPhaseRun late = MakeRun(TxnState::kActive, 2);
  late.txn.deadline_ms = kNow;
  TwoPhaseStep s = Must(late, Ev(Kind::kCommit));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kAborting);
  EXPECT_EQ(s.run.txn.flags & kFlagCommitRequested, 0);  // so commit then answers illegal
  EXPECT_EQ(StepTwoPhase(s.run, Ev(Kind::kCommit), {}).status().code(),
            StatusCode::kIllegalTransition);
}

TEST(TwoPhaseMachineTest, RecoveryFromEachLoggedState) {
  // ACTIVE before its deadline: look again at the deadline.
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 1), Ev(Kind::kDeadline));
  EXPECT_EQ(s.writes.txn_updates[0].next_attempt_ms, kNow + 60'000);
  EXPECT_EQ(s.writes.txn_updates[0].state, std::nullopt);
  EXPECT_EQ(Count(s, Effect::kLeftToSweeper), 1);
  // PREPARING without a driver: presumed abort.
  s = Must(MakeRun(TxnState::kPreparing, 2), Ev(Kind::kRecover));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kAborting);
  EXPECT_EQ(Count(s, Effect::kSendAbort), 2);
  // COMMITTING with one branch done: phase 2 to the other alone.
  TwoPhaseRun c = MakeRun(TxnState::kCommitting, 2);
  c.branches[0].state = BranchState::kBranchCommitted;
  c.branches[1].state = BranchState::kPrepared;
  s = Must(c, Ev(Kind::kRecover));
  EXPECT_TRUE(s.writes.empty());
  EXPECT_EQ(Count(s, Effect::kSendCommit), 1);
  EXPECT_EQ(s.effects[0].branch, 1u);
  // Every branch final: the next check writes the final state.
  c.branches[1].state = BranchState::kBranchCommitted;
  s = Must(c, Ev(Kind::kRecover));
  EXPECT_EQ(Count(s, Effect::kContinue), 1);
  s = Must(s.run, Ev(Kind::kCheck));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kCommitted);
}

TEST(TwoPhaseMachineTest, ZeroBranchesCommitThroughChecks) {
  TwoPhaseStep s = Must(MakeRun(TxnState::kActive, 0), Ev(Kind::kCommit));
  EXPECT_EQ(s.writes.txn_updates[0].expected_branch_count, 0);
  EXPECT_EQ(Count(s, Effect::kContinue), 1);
  s = Must(s.run, Ev(Kind::kCheck));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kCommitting);
  EXPECT_EQ(Count(s, Effect::kContinue), 1);
  s = Must(s.run, Ev(Kind::kCheck));
  EXPECT_EQ(s.writes.txn_updates[0].state, TxnState::kCommitted);
}

// Every event in every state: an answer (a step, a no-op or kIllegalTransition),
// never a crash, and never a write that the edge rules forbid.
TEST(TwoPhaseMachineTest, EveryEventInEveryStateKeepsToTheEdgeRules) {
  const std::vector<TxnState> states = {TxnState::kActive,     TxnState::kPreparing,
                                        TxnState::kCommitting, TxnState::kCommitted,
                                        TxnState::kAborting,   TxnState::kAborted};
  const std::vector<Kind> kinds = {Kind::kCommit,
                                   Kind::kRollback,
                                   Kind::kRollbackForOwner,
                                   Kind::kDeadline,
                                   Kind::kRecover,
                                   Kind::kVote,
                                   Kind::kPrepareWindowEnded,
                                   Kind::kOnePhaseAnswer,
                                   Kind::kPhaseTwoAnswer,
                                   Kind::kRetryDue,
                                   Kind::kCheck};
  for (TxnState state : states) {
    for (int branches : {0, 1, 2}) {
      for (int32_t flags : {0, kFlagOnePhase | kFlagCommitRequested}) {
        for (Kind kind : kinds) {
          TwoPhaseRun run = MakeRun(state, branches, flags);
          TwoPhaseEvent e = Ev(kind);
          if (branches == 0 &&
              (kind == Kind::kVote || kind == Kind::kPhaseTwoAnswer || kind == Kind::kRetryDue)) {
            EXPECT_FALSE(StepTwoPhase(run, e, {}).ok());
            continue;
          }
          Result<TwoPhaseStep> s = StepTwoPhase(run, e, {});
          if (!s.ok()) {
            EXPECT_EQ(s.status().code(), StatusCode::kIllegalTransition);
            continue;
          }
          for (const TxnUpdate& u : s->writes.txn_updates) {
            EXPECT_EQ(u.expected_states, std::vector<TxnState>{state});
            if (!u.state.has_value()) continue;
            Result<TransitionAction> edge =
                DecideTxnTransition(state, *u.state, (flags & kFlagOnePhase) != 0);
            ASSERT_TRUE(edge.ok()) << TxnStateName(state) << " -> " << TxnStateName(*u.state);
            EXPECT_EQ(*edge, TransitionAction::kApply);
          }
          if (s->noop) {
            EXPECT_TRUE(s->writes.empty() && s->effects.empty());
          }
        }
      }
    }
  }
}

// A whole transaction driven like the driver does (adopt the run, "log" the
// writes, then run the effects), with participant answers, failures and timer
// firings delivered in random order. Atomicity: a transaction never sends both
// commit and abort, commits only if every branch voted yes, and ends final or
// left to the sweeper with every vote-less branch aborted.
TEST(TwoPhaseMachineTest, RandomizedDrivesAreAtomic) {
  for (uint32_t seed = 1; seed <= 3000; ++seed) {
    std::mt19937 rng(seed);
    const int n = static_cast<int>(rng() % 4);
    TwoPhaseTiming t;
    t.phase_two_attempts = 1 + static_cast<int>(rng() % 3);
    TwoPhaseRun run = MakeRun(TxnState::kActive, n);
    std::vector<BranchVote> votes;
    for (int i = 0; i < n; ++i) {
      const uint32_t r = rng() % 10;
      votes.push_back(r < 7   ? BranchVote::kPrepared
                      : r < 9 ? BranchVote::kReadOnly
                              : BranchVote::kAbort);
    }
    std::deque<TwoPhaseEvent> pending;
    pending.push_back(Ev(Kind::kCommit));
    bool sent_commit = false, sent_abort = false, over = false;
    int steps = 0;
    while (!pending.empty() && ++steps < 1000) {
      const size_t pick = rng() % pending.size();
      TwoPhaseEvent e = pending[pick];
      pending.erase(pending.begin() + static_cast<long>(pick));
      e.jitter = (rng() % 1000) / 1000.0;
      Result<TwoPhaseStep> s = StepTwoPhase(run, e, t);
      ASSERT_TRUE(s.ok()) << "seed " << seed << ": " << s.status();
      if (s->noop) continue;
      run = s->run;
      for (const TwoPhaseEffect& fx : s->effects) {
        const bool fail = rng() % 4 == 0;
        switch (fx.kind) {
          case Effect::kSendPrepare:
            pending.push_back(fail ? Vote(fx.branch, std::nullopt)
                                   : Vote(fx.branch, votes[fx.branch]));
            break;
          case Effect::kSendCommitOnePhase: {
            TwoPhaseEvent a = Ev(Kind::kOnePhaseAnswer);
            if (!fail)
              a.outcome = votes[0] == BranchVote::kAbort ? Outcome::kAbort : Outcome::kCommit;
            pending.push_back(a);
            break;
          }
          case Effect::kSendCommit:
          case Effect::kSendAbort:
            (fx.kind == Effect::kSendCommit ? sent_commit : sent_abort) = true;
            pending.push_back(Ack(fx.branch, fail ? Status::Unavailable("x") : Status::Ok()));
            break;
          case Effect::kRetryAfter: pending.push_back(Ev(Kind::kRetryDue, fx.branch)); break;
          case Effect::kPrepareWindow: pending.push_back(Ev(Kind::kPrepareWindowEnded)); break;
          case Effect::kContinue: pending.push_back(Ev(Kind::kCheck)); break;
          case Effect::kFinished:
          case Effect::kLeftToSweeper: over = true; break;
        }
      }
    }
    ASSERT_FALSE(sent_commit && sent_abort) << "seed " << seed;
    ASSERT_TRUE(over) << "seed " << seed << " never ended (" << TxnStateName(run.txn.state) << ")";
    if (DecisionOf(run.txn.state) == Decision::kCommit) {
      for (int i = 0; i < n; ++i) {
        ASSERT_NE(votes[static_cast<size_t>(i)], BranchVote::kAbort) << "seed " << seed;
      }
    }
  }
}

}  // namespace
}  // namespace txc
