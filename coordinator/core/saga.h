// The Saga protocol core: transitions, definition validation and the planner
// that says what to do next. Pure functions, no I/O: the driver
// (coordinator/driver/saga_driver) logs what the planner decides, then acts.
//
// Saga (transaction) states:
//
//   kRunning ──────────────► kSucceeded            every step kDone
//      │
//      └──► kCompensating ──► kCompensated         every attempted step compensated
//                 │   ▲  ───────────┐
//                 ▼   │             │
//               kParked ────────────┘  (compensation past its retry limit; still retried)
//
// Step states:
//
//   kPending ──► kStepRunning ──► kDone ───► kStepCompensating ──► kStepCompensated
//      │              │   └─────► kFailed ──────▲     ▲
//      │              └─────────────────────────────────┘  (running at a crash: outcome unknown)
//      └──► kSkipped   (never started: the saga began compensating first)
//
// A step is "attempted" once it left kPending: its action may have run, so it
// is compensated when the saga compensates (a compensation without its action
// is a recorded no-op at the participant, see the SDK barrier). A run's
// forward progress is logged lazily (SagaMachineOptions::progress_log_ms), so
// after a restart or a takeover a step logged kPending may have been sent
// too: a resumed run that compensates logs such steps kStepRunning ("outcome
// unknown") with the switch, and compensates them (SagaPlanOptions::
// pending_may_have_run).
//
// Dependencies: BranchRecord::depends_on lists the step ids that must be kDone
// before a step starts; empty means no dependency at all. The wire form is
// different ("absent: the previous step"): ResolveWireDependsOn converts.
// Every dependency points to an earlier step (lower ordinal), so the graph
// has no cycles and definition order is a topological order.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/records.h"
#include "coordinator/core/states.h"

namespace txc {

// Limits of a step's retry policy.
constexpr int32_t kMaxSagaAttempts = 1000;
constexpr int32_t kMaxSagaBackoffMs = 3600 * 1000;  // an hour

// Defaults of idl RetryPolicy, used when a wire step carries none.
constexpr int32_t kDefaultSagaMaxAttempts = 5;
constexpr int32_t kDefaultSagaInitialBackoffMs = 100;
constexpr int32_t kDefaultSagaMaxBackoffMs = 10000;

// What applying a transition means.
enum class Transition {
  kApply,  // a legal edge: write it
  kNoOp,   // already there or past it: nothing to write (retries are harmless)
};

// Saga state edge current -> target. kIllegalTransition for an illegal edge
// (e.g. SUCCEEDED -> COMPENSATING) or a non-saga state.
Result<Transition> SagaTransition(TxnState current, TxnState target);

// Step state edge current -> target. kIllegalTransition for an illegal edge
// (e.g. SKIPPED -> RUNNING, FAILED -> DONE) or a non-step state.
Result<Transition> StepTransition(BranchState current, BranchState target);

// Wire semantics -> stored semantics of depends_on: explicit dependencies are
// kept; none given and not concurrent -> the previous step (none for the
// first); none given and concurrent -> none.
std::vector<std::string> ResolveWireDependsOn(const std::vector<std::string>& explicit_depends_on,
                                              bool concurrent, const std::string& previous_step_id);

// Validates a definition: 1..kMaxBranches steps, ids valid and unique,
// endpoint "host:port", action and compensation names present and printable,
// payload <= kMaxPayloadBytes, dependencies exist, are unique and point to an
// earlier step, retry policy within limits. kInvalidArgument naming the field.
Status ValidateSagaDefinition(const std::vector<BranchRecord>& steps);

// Validates a whole submission: gtid (when not empty), timeout_ms,
// wait_timeout_ms and the definition (ValidateSagaDefinition). The one check
// of a saga submission: CoordinatorService::SubmitSaga calls it before anything
// is dispatched or written; nothing else re-checks (docs/saga.md says why each rule is what it is).
Status ValidateSagaSubmission(const std::string& gtid, int64_t timeout_ms, int64_t wait_timeout_ms,
                              const std::vector<BranchRecord>& steps);

// What a kPending step becomes when its saga switches to compensating:
// kSkipped (its action was never sent), or kStepRunning ("outcome unknown",
// then compensated like any attempted step) when its action may have been
// sent: the saga's forward progress is logged lazily (kFlagLazyProgress) and
// the decision is taken from the log, which a run may have been ahead of (a
// resumed run: SagaPlanOptions::pending_may_have_run; an operator's cancel).
BranchState SettledPendingStep(bool may_have_run);
// The last_error of a step settled kStepRunning so.
extern const char* const kMayHaveRunNote;

// Fingerprint of a definition (steps in order with every field the client
// chose), stored in TxnRecord::payload: same gtid + same fingerprint is the
// same saga. Printable, starts with "saga1:".
std::string SagaFingerprint(const std::vector<BranchRecord>& steps);

struct SagaPlanOptions {
  // A compensation delivered this many times without success parks the saga.
  int32_t park_after_attempts = 10;
  // The steps come from the log, written by a run whose forward progress was
  // logged lazily: a kPending step's action may have been sent. When the saga
  // compensates, such a step is compensated, not skipped.
  bool pending_may_have_run = false;
};

// What to do next. Lists hold step ids in definition order, except
// `compensate`, which is in reverse definition order.
struct SagaPlan {
  // The saga state to log (== the current state when nothing changes).
  TxnState next_state = TxnState::kRunning;
  // kPending steps whose dependencies are all kDone: log kStepRunning, then
  // send the action.
  std::vector<std::string> start;
  // kStepRunning steps not in flight with attempts left: the action's outcome
  // is unknown (a crash, or a retry is due): send it again.
  std::vector<std::string> resend;
  // kStepRunning steps not in flight whose attempts are used up: log kFailed.
  std::vector<std::string> fail;
  // kPending steps that will never run: log kSkipped (with the switch to compensating).
  std::vector<std::string> skip;
  // kPending steps that will not run now but may have run before
  // (pending_may_have_run): log kStepRunning, outcome unknown (with the
  // switch to compensating); they are compensated like any attempted step.
  std::vector<std::string> unknown;
  // Attempted steps not in flight whose dependents are all compensated (or
  // never ran): log kStepCompensating (if not already) and send the compensation.
  std::vector<std::string> compensate;
  // Nothing to do until an in-flight call returns.
  bool waiting = false;
  // next_state is final (kSucceeded / kCompensated).
  bool finished = false;
};

// Decides the next step of a saga in state `state` with `steps` (definition
// order), `in_flight` being the step ids whose call is outstanding right now
// (their state is not acted on). `now_ms` past `deadline_ms` (> 0) while
// kRunning starts compensation, as a failed step does.
//
//   kRunning:      a step kFailed (or attempts exhausted, or the deadline passed)
//                  -> kCompensating (pending steps skipped, compensation planned);
//                  every step kDone -> kSucceeded; else start ready steps.
//   kCompensating: compensate in reverse dependency order; all attempted steps
//                  compensated -> kCompensated; a compensation delivered
//                  park_after_attempts times -> kParked.
//   kParked:       as kCompensating without re-parking; done -> kCompensated.
//   final states:  finished, nothing to do.
// kIllegalTransition for a non-saga state or a step state that cannot occur
// in it (e.g. kStepCompensating while kRunning).
Result<SagaPlan> PlanSaga(TxnState state, const std::vector<BranchRecord>& steps,
                          const std::set<std::string>& in_flight, int64_t now_ms,
                          int64_t deadline_ms, const SagaPlanOptions& options);

}  // namespace txc
