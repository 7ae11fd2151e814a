// The rules of two-phase commit, as pure functions: no I/O, no clock, no
// locks. The driver (coordinator/driver/two_phase_driver.h) asks these before
// every store write and every participant call, so the protocol can be read
// and tested here alone.
//
// Transaction states (TxnState) and the legal edges:
//
//   ACTIVE ----(rollback, deadline)----------------------------+
//     |                                                         |
//   commit                                                      v
//     v                 any ABORT vote, error, timeout,
//   PREPARING -----------(rollback, crash: presumed abort)--> ABORTING
//     |     \                                                   |
//     |      \  one-phase: the only branch's answer             every branch
//     |       +-------------> COMMITTED or ABORTED              acked abort
//     | all PREPARED / READ_ONLY                                 v
//     v                                                        ABORTED
//   COMMITTING --(every branch acked commit)--> COMMITTED
//
//   ACTIVE -> PREPARING, ACTIVE -> ABORTING,
//   PREPARING -> COMMITTING, PREPARING -> ABORTING,
//   COMMITTING -> COMMITTED, ABORTING -> ABORTED,
//   one-phase only: PREPARING -> COMMITTED, PREPARING -> ABORTED.
//
// The decision is the write of COMMITTING (or ABORTING): the transaction is
// committed from the moment COMMITTING is durable, whatever crashes after.
//
// Branch states (BranchState):
//
//   REGISTERED --> PREPARED --> BRANCH_COMMITTED
//       |   |          |
//       |   |          +--------> BRANCH_ABORTED
//       |   +--------------------> BRANCH_ABORTED (voted ABORT, or aborted before prepare)
//       |   +--(one-phase)-------> BRANCH_COMMITTED
//       +------> READ_ONLY (final: no phase 2; commit/abort of it is a no-op)
//
// Every transition function answers:
//   kApply      the edge is legal: write the new state (conditional on the old);
//   kAlreadyDone the record is already in that state or past it on the same
//               path, so a retried step is harmless and changes nothing;
//   an error    kIllegalTransition for an edge the protocol forbids
//               (COMMITTED -> ABORTING, ABORTED -> COMMITTING, ...).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"
#include "coordinator/core/records.h"
#include "coordinator/core/states.h"

namespace txc {

enum class TransitionAction {
  kApply,        // legal edge: apply it
  kAlreadyDone,  // already there or past it: nothing to do
};

// Decides the transaction edge from -> to. `one_phase`: the transaction is
// decided by its only branch (allows PREPARING -> COMMITTED / ABORTED).
// Errors: kIllegalTransition (also for Saga states, which are not 2PC's).
Result<TransitionAction> DecideTxnTransition(TxnState from, TxnState to, bool one_phase);

// Decides the branch edge from -> to. Errors: kIllegalTransition.
Result<TransitionAction> DecideBranchTransition(BranchState from, BranchState to);

// A participant's answer to prepare as the core sees it.
enum class BranchVote {
  kPrepared,
  kReadOnly,
  kAbort,
};

enum class Decision {
  kCommit,
  kAbort,
};

// One entry per branch: the vote, or nullopt when the call failed or timed out.
// Every branch PREPARED or READ_ONLY (including no branch at all) -> kCommit;
// any ABORT, error or timeout -> kAbort.
Decision DecideFromVotes(const std::vector<std::optional<BranchVote>>& votes);

// The branch state a vote leaves the branch in (kAbort -> kBranchAborted: a
// participant that voted ABORT has rolled its work back).
BranchState BranchStateAfterVote(BranchVote vote);

// Whether a branch in `state` still needs a phase-2 message for `decision`.
// READ_ONLY never does; a branch already in the decision's final state does not.
bool NeedsPhaseTwo(BranchState state, Decision decision);

// The transaction state that records `decision` (COMMITTING / ABORTING) and
// the final state once every branch acknowledged (COMMITTED / ABORTED).
TxnState DecisionState(Decision decision);
TxnState FinalState(Decision decision);
BranchState BranchFinalState(Decision decision);

// The decision recorded by a state, if any (COMMITTING/COMMITTED -> kCommit,
// ABORTING/ABORTED -> kAbort, otherwise nullopt).
std::optional<Decision> DecisionOf(TxnState state);

// What a participant asking about a transaction is told (queryOutcome), and
// the outcome a commit/rollback answer reports. The one state -> outcome map.
enum class Outcome {
  kCommit,
  kAbort,
  kPending,  // still deciding: ask again later
};

// ACTIVE/PREPARING -> kPending, COMMITTING/COMMITTED -> kCommit,
// ABORTING/ABORTED -> kAbort, unknown (nullopt, e.g. never begun or already
// removed) -> kAbort: presumed abort. A Saga state -> kAbort: a COMMIT is told
// only on a logged 2PC commit decision, so a branch prepared under a saga's
// gtid (a client's mistake) is never committed on the saga's say-so.
Outcome OutcomeOfState(std::optional<TxnState> state);

}  // namespace txc
