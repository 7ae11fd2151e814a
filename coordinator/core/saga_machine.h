// The Saga step function: (run, event) -> {new run, the writes to log, the
// effects to run}, in the manner of etcd/raft's Ready. It alone decides every
// edge of a saga; the driver (coordinator/driver/saga_driver) logs `writes`
// (group commit), and only once they are durable adopts `next` and runs
// `effects`. Pure: no I/O, no clock, no randomness (the time and the backoff
// jitter come in SagaInputs), so the unit tests, the model and production run
// the same decisions.
//
// The rules themselves are in coordinator/core/saga.h, each once: the edges
// (SagaTransition / StepTransition) and the planner (PlanSaga). StepSaga
// applies an event to one step, then lets the planner say what follows, and
// turns the difference into conditional writes and effects.
//
// Saga states (internal enum; stored as TxnState, values never change):
//
//   kRunning ──────────────► kSucceeded            every step done
//      │ (a step failed, attempts exhausted, deadline passed, CancelRequested)
//      └──► kCompensating ──► kCompensated         every attempted step compensated
//                 │                ▲
//                 ▼                │
//               kParked ───────────┘  (a compensation past park_after_attempts;
//                                      retried one round per Resumed, forever)
//
// Step states (internal enum; stored as BranchState):
//
//   kPending ──► kRunning ──► kDone ───► kCompensating ──► kCompensated
//      │            │   └───► kFailed ──────▲     ▲
//      │            └─────────────────────────────┘  (outcome unknown: compensate anyway)
//      └──► kSkipped   (never started: the saga began compensating first)
//
// Every event either
//   * applies a legal edge (writes + effects),
//   * is a no-op (empty writes and effects, `next` == the run) when the saga
//     or the step is already there or past it, or the event answers a call or
//     timer that is no longer outstanding (a stale attempt), or
//   * is refused with kIllegalTransition (an answer for a step whose call was
//     never sent, a cancel of a SUCCEEDED saga, any event before Submitted),
//     kInvalidArgument (an unknown step id) or kAlreadyExists (Submitted with
//     another definition under the same gtid).
//
// Thread-safety: free functions over values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "coordinator/core/records.h"
#include "coordinator/core/saga.h"
#include "coordinator/core/states.h"

namespace txc {

// A saga, as the step function reasons about it. Stored as TxnState kRunning..kParked.
enum class SagaState {
  kRunning,       // actions run in dependency order
  kSucceeded,     // every action done (final)
  kCompensating,  // compensations run in reverse order of completion
  kCompensated,   // every attempted action compensated (final)
  kParked,        // a compensation past its retry limit: retried slowly, shown to operators
};

// A saga step. Stored as BranchState kPending..kSkipped.
enum class SagaStepState {
  kPending,       // not started
  kRunning,       // action logged as started; sent (perhaps several times), outcome unknown
  kDone,          // action succeeded
  kFailed,        // action refused, or its attempts exhausted
  kCompensating,  // compensation logged as started; sent, outcome unknown
  kCompensated,   // compensation succeeded (a null compensation if the action never ran)
  kSkipped,       // never started: the saga compensates
};

TxnState ToTxnState(SagaState state);
// kIllegalTransition for a 2PC state or a value outside the enum.
Result<SagaState> ToSagaState(TxnState state);
BranchState ToBranchState(SagaStepState state);
Result<SagaStepState> ToSagaStepState(BranchState state);
const char* SagaStateName(SagaState state);
const char* SagaStepStateName(SagaStepState state);

// A participant's answer to an action or compensate call (wire StepResult).
enum class StepOutcome { kSuccess, kFailure, kRetryLater };
struct StepAnswer {
  StepOutcome outcome = StepOutcome::kFailure;
  std::string message;
};

// A call or timer outstanding for a step. Not logged: lost with the process,
// which is why Resumed re-sends what the log says may be unanswered.
struct SagaCall {
  enum class Kind { kAction, kCompensation, kRetryTimer };
  Kind kind = Kind::kAction;
  int32_t attempt = 0;  // the step's attempts when it was sent / armed
};

// What the store holds of a saga: the fields a write changes.
struct SagaLogView {
  struct Step {
    BranchState state = BranchState::kPending;
    int32_t attempts = 0;
    std::string last_error;
    int64_t next_attempt_ms = 0;
  };
  TxnState state = TxnState::kRunning;
  int32_t attempts = 0;
  int64_t next_attempt_ms = 0;
  std::vector<Step> steps;  // definition order
};

// One saga in memory. `txn` and `steps` are the run as adopted: what the
// store holds once the writes of every result adopted so far are durable,
// except for forward progress not logged yet (`logged`).
struct SagaRun {
  TxnRecord txn;                              // gtid empty: no saga yet (only Submitted is legal)
  std::vector<BranchRecord> steps;            // definition order
  std::map<std::string, SagaCall> in_flight;  // by step id
  // PARKED: a compensation failed this round; nothing new is sent, and once
  // nothing is in flight the round ends (attempts + 1, Finished{kParked}).
  bool parked_round_failed = false;
  // Set while forward progress is adopted but not logged (see
  // SagaMachineOptions::progress_log_ms): what the store holds, from which
  // the next write is computed. Empty: the store holds `txn` and `steps`.
  std::optional<SagaLogView> logged;
  // Set by Resumed for a saga with kFlagLazyProgress: the run came from the
  // log, written by a run whose forward progress may not all have been
  // logged, so a kPending step may have been sent
  // (SagaPlanOptions::pending_may_have_run). Kept for the run's life.
  bool pending_may_have_run = false;
};

// ---- events ----

// A new saga: `txn` carries gtid, owner, epoch, created_ms, deadline_ms and
// flags as the driver chose them; `steps` the validated definition
// (ValidateSagaSubmission ran at the service boundary; not checked again).
struct SagaSubmitted {
  TxnRecord txn;
  std::vector<BranchRecord> steps;
};
// The participant answered action attempt `attempt` of `step`.
struct SagaActionAnswered {
  std::string step;
  int32_t attempt = 0;
  StepAnswer answer;
};
// Action attempt `attempt` got no answer (transport error, timeout): outcome
// unknown, retried as RETRY_LATER is (the barrier makes a duplicate harmless).
struct SagaActionCallFailed {
  std::string step;
  int32_t attempt = 0;
  Status error;
};
// Compensation attempt `attempt` of `step` is done (ok) or not (refused,
// retry later, no answer: `message` says which).
struct SagaCompensationAnswered {
  std::string step;
  int32_t attempt = 0;
  bool ok = false;
  std::string message;
};
// The RetryAfter timer armed for attempt `attempt` of `step` fired.
struct SagaRetryDue {
  std::string step;
  int32_t attempt = 0;
};
// Re-plan from the logged state as if nothing were in flight: after a crash,
// a lease takeover, the sweeper's look at a due or PARKED saga, or an
// operator's "retry now". Answers and timers of earlier attempts are then
// stale and ignored.
struct SagaResumed {};
// An operator cancels: RUNNING -> COMPENSATING (pending steps skipped,
// attempted ones compensated in reverse order; actions in flight are
// compensated once answered). No-op when already compensating, parked or
// compensated; kIllegalTransition for a SUCCEEDED saga.
struct SagaCancelRequested {};
// The LogAfter timer fired: the forward progress not logged yet is written
// (no effects). A no-op when there is none (a later write logged it).
struct SagaLogDue {};

using SagaEvent =
    std::variant<SagaSubmitted, SagaActionAnswered, SagaActionCallFailed, SagaCompensationAnswered,
                 SagaRetryDue, SagaResumed, SagaCancelRequested, SagaLogDue>;
// "Submitted", "ActionAnswered", ... for logs.
const char* SagaEventName(const SagaEvent& event);

// ---- effects ----

// What the driver does once the result's writes are durable, in order.
struct SagaEffect {
  enum class Kind {
    kCallAction,        // send `step`'s action, attempt `attempt`; answer with ActionAnswered /
                        // ActionCallFailed
    kCallCompensation,  // send `step`'s compensation; answer with CompensationAnswered
    kRetryAfter,        // after delay_ms, feed RetryDue{step, attempt} (a timer, not a sleep)
    kFinished,          // `state` is final, or PARKED with nothing in flight: let the run go
    kLogAfter,          // after delay_ms, feed LogDue (progress is waiting to be logged)
  };
  Kind kind = Kind::kCallAction;
  std::string step;
  int32_t attempt = 0;
  int64_t delay_ms = 0;                   // kRetryAfter, kLogAfter
  SagaState state = SagaState::kRunning;  // kFinished

  bool operator==(const SagaEffect& o) const {
    return kind == o.kind && step == o.step && attempt == o.attempt && delay_ms == o.delay_ms &&
           state == o.state;
  }
};

struct SagaMachineOptions {
  int32_t park_after_attempts = 10;                    // compensation deliveries before PARKED
  BackoffPolicy compensation_backoff{100, 5000, 2.0};  // between compensation deliveries
  int64_t parked_retry_ms = 30000;                     // a PARKED saga's next_attempt_ms lead
  int64_t in_flight_recheck_ms = 10000;                // next_attempt_ms lead (see Diff in .cc)
  // Forward progress of a RUNNING saga (a step started or done, a retry
  // armed or sent) is not logged before its effects run: it is written with
  // the saga's next change of state (SUCCEEDED, COMPENSATING), or by LogDue at
  // most this long after it was adopted. The definition and every change of
  // the saga's state are still logged before their effects. What makes it
  // safe: a resumed run redoes the forward steps (the participants' barrier
  // answers a repeated action with its first outcome) and, if it compensates,
  // compensates every step the log shows pending (pending_may_have_run).
  // Decided per saga when it is submitted (kFlagLazyProgress in its
  // definition), so whoever resumes it knows. 0: every result of the sagas
  // submitted here is logged before its effects.
  int64_t progress_log_ms = 0;
};

// What the step function is told about the world.
struct SagaInputs {
  int64_t now_ms = 0;   // unix ms: deadlines, next_attempt_ms
  double jitter = 0.5;  // in [0, 1]: where a backoff delay falls in [base/2, base]
  // False: forward progress is logged before its effects like anything else.
  // The driver says so while this replica's lease is not known to be live
  // (renewals late, or the process was paused: the write's fence then stops
  // a replica whose saga was taken over before it sends another action), and
  // while it shuts down (nothing is left to redo after the restart).
  bool may_defer = true;
};

struct SagaStepResult {
  SagaRun next;                           // the run once `writes` are durable
  SagaState state = SagaState::kRunning;  // next.txn.state
  // Conditional on the logged states (expected_states: SagaRun::logged, or
  // the run's own); the driver fills the fence (expected_owner,
  // expected_epoch). Empty: nothing to log before the effects run (none, or
  // progress left to log later: next.logged is set).
  WriteBatch writes;
  std::vector<SagaEffect> effects;
};

// The step function. Errors (nothing to log or do): kIllegalTransition,
// kInvalidArgument, kAlreadyExists as in the header comment; kInternal when
// the logged state cannot progress (nothing in flight, nothing to send, not
// final: a corrupt record).
Result<SagaStepResult> StepSaga(const SagaRun& run, const SagaEvent& event,
                                const SagaInputs& inputs, const SagaMachineOptions& options);

// Sets (expected_owner, expected_epoch) on every update of `batch`.
void FenceWrites(WriteBatch* batch, const std::string& owner, int64_t epoch);

}  // namespace txc
