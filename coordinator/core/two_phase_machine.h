// The 2PC step function: (run, event) -> {the new run, the writes to log, the
// effects to run}, in the manner of etcd/raft's Ready. It alone decides every
// edge of a 2PC transaction and of its branches; the driver
// (coordinator/driver/two_phase_driver.h) only executes what it returns:
//
//   1. step = StepTwoPhase(run, event, timing)        (pure: no I/O, no clock, no locks)
//   2. adopt step.run in memory
//   3. log step.writes (fenced by the driver with its owner and epoch)
//   4. once they are durable, run step.effects (send, arm a timer, finish)
//
// Already there or past is a no-op (`noop`: nothing written, nothing to run);
// an edge the protocol forbids is kIllegalTransition. The edges themselves are
// the rules of coordinator/core/two_phase.h (DecideTxnTransition,
// DecideFromVotes, NeedsPhaseTwo, ...), which this function applies; it adds
// what a drive needs on top: which branch is still owed a vote or an
// acknowledgement, the per-drive retry budget, and when a phase is complete.
//
// Events and what they do (state -> state, writes / effects):
//   kCommit       ACTIVE -> PREPARING (flags COMMIT_REQUESTED, ONE_PHASE for one
//                 branch; conditional on the branch count the run knows) /
//                 send every prepare (or commitOnePhase) and arm the prepare
//                 window. Past the deadline it is kDeadline. PREPARING or
//                 later on the commit path, or aborted by the votes: no-op.
//                 Aborted by rollback or the deadline: kIllegalTransition.
//   kRollback     ACTIVE / PREPARING -> ABORTING / send aborts. One-phase
//                 PREPARING: the participant decides, so it is kRecover.
//                 Aborting or aborted: no-op. Commit decided: kIllegalTransition.
//   kRollbackForOwner  as kRollback, for a transaction another driver (this
//                 process or a live replica) collects the votes of: ABORTING
//                 with next_attempt_ms = now, no effects (the owner's own
//                 decision write loses and follows the abort).
//   kDeadline     ACTIVE past its deadline -> ABORTING / send aborts; before
//                 it: next look at the deadline / left to the sweeper.
//                 Other states: kRecover.
//   kRecover      continue from the logged state: ACTIVE as kDeadline;
//                 PREPARING one-phase -> resend commitOnePhase; PREPARING ->
//                 ABORTING (presumed abort) / send aborts; COMMITTING /
//                 ABORTING -> phase 2 to the branches that need it.
//   kVote         PREPARING: records the branch's vote (nullopt: the call
//                 failed); once every vote is in -> the decision (COMMITTING or
//                 ABORTING, with each voter's branch state) / phase 2.
//                 Any other state: no-op (a late vote).
//   kPrepareWindowEnded  PREPARING with votes missing: they count as ABORT
//                 -> ABORTING. Otherwise no-op.
//   kOnePhaseAnswer  PREPARING one-phase: COMMIT/ABORT -> COMMITTED/ABORTED
//                 (with the branch) / finished. PENDING or error: resend after
//                 a backoff within the attempt budget, then left to the sweeper.
//   kPhaseTwoAnswer  COMMITTING/ABORTING: OK marks the branch acknowledged;
//                 an error resends after a backoff within the budget, then the
//                 branch is given up for this drive. Once every branch is
//                 acknowledged -> COMMITTED/ABORTED / finished; once every
//                 branch is acknowledged or given up -> attempts+1, the next
//                 redrive time / left to the sweeper.
//   kRetryDue     the backoff of a resend passed: send again (if still owed).
//   kCheck        evaluate whether the current phase is complete (what an
//                 kContinue effect asks for after its writes are durable).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "coordinator/core/records.h"
#include "coordinator/core/two_phase.h"

namespace txc {

// 2PC's own states (the stored TxnState values of 2PC, nothing of the saga's).
enum class TwoPhaseState { kActive, kPreparing, kCommitting, kCommitted, kAborting, kAborted };

// nullopt for a state that is not 2PC's.
std::optional<TwoPhaseState> TwoPhaseStateOf(TxnState state);
TxnState ToTxnState(TwoPhaseState state);

struct TwoPhaseTiming {
  int64_t prepare_window_ms = 7000;  // how long votes are awaited after PREPARING is durable
  int64_t drive_lease_ms = 10000;    // the sweeper leaves a driven transaction alone this long
  int phase_two_attempts = 4;        // sends per branch per drive (phase 2 and commitOnePhase)
  BackoffPolicy phase_two_backoff{20, 500, 2.0};
  BackoffPolicy redrive_backoff{200, 30000, 2.0};
};

// What the current drive knows about one branch (not stored).
struct BranchProgress {
  bool vote_in = false;            // phase 1: answered, or the call failed
  std::optional<BranchVote> vote;  // nullopt with vote_in: no vote (counts as ABORT)
  bool owed = false;               // phase 2: a message is owed in this drive
  bool acked = false;              // phase 2: acknowledged
  bool given_up = false;           // phase 2: out of attempts in this drive
  int sends = 0;                   // phase-2 / commitOnePhase sends in this drive
  std::string last_error;
};

// The machine's state: the transaction as logged, its branches, and this drive's progress.
struct TwoPhaseRun {
  TxnRecord txn;
  std::vector<BranchRecord> branches;
  std::vector<BranchProgress> progress;  // parallel to branches (resized by the step)
};

enum class TwoPhaseEventKind {
  kCommit,
  kRollback,
  kRollbackForOwner,
  kDeadline,
  kRecover,
  kVote,
  kPrepareWindowEnded,
  kOnePhaseAnswer,
  kPhaseTwoAnswer,
  kRetryDue,
  kCheck,
};

struct TwoPhaseEvent {
  TwoPhaseEventKind kind = TwoPhaseEventKind::kCheck;
  int64_t now_ms = 0;              // unix ms
  double jitter = 1.0;             // a uniform draw in [0, 1] for a backoff's jitter
  size_t branch = 0;               // kVote, kPhaseTwoAnswer, kRetryDue
  std::optional<BranchVote> vote;  // kVote: nullopt = no vote (error, timeout)
  std::optional<Outcome> outcome;  // kOnePhaseAnswer: nullopt = the call failed
  Status error;                    // kPhaseTwoAnswer (OK: acknowledged); why a vote is missing
};

enum class TwoPhaseEffectKind {
  kSendPrepare,         // branch
  kSendCommitOnePhase,  // branch (the only one)
  kSendCommit,          // branch
  kSendAbort,           // branch
  kRetryAfter,          // branch, delay_ms: then feed kRetryDue
  kPrepareWindow,       // delay_ms: then feed kPrepareWindowEnded
  kContinue,            // feed kCheck (a phase with nothing to send is complete)
  kFinished,            // the final state is durable: the drive is over
  kLeftToSweeper,       // the drive is over unfinished: the sweeper redrives it
};

struct TwoPhaseEffect {
  TwoPhaseEffectKind kind = TwoPhaseEffectKind::kContinue;
  size_t branch = 0;
  int64_t delay_ms = 0;
};

struct TwoPhaseStep {
  bool noop = false;  // already there or past: nothing to write or run
  TwoPhaseRun run;    // the run after the event
  WriteBatch writes;  // one batch, unfenced (expected_owner/epoch empty)
  std::vector<TwoPhaseEffect> effects;
};

// Errors: kIllegalTransition (a forbidden edge, a saga's record, an event
// that does not fit the run, e.g. a branch index out of range).
Result<TwoPhaseStep> StepTwoPhase(const TwoPhaseRun& run, const TwoPhaseEvent& event,
                                  const TwoPhaseTiming& timing);

}  // namespace txc
