// Transaction and branch states, as stored and as the protocol cores reason about them.
// Numeric values equal the wire enums in idl/common.thrift and are stored in the
// database: never renumber.
#pragma once

#include <cstdint>

namespace txc {

enum class TxnKind : int32_t {
  kTwoPhase = 1,
  kSaga = 2,
};

// 2PC:   kActive -> kPreparing -> kCommitting -> kCommitted
//           |           |
//           +-----------+------> kAborting  -> kAborted
// Saga:  kRunning -> kSucceeded
//           |
//           +-----> kCompensating -> kCompensated
//                        |    ^
//                        v    |
//                       kParked
enum class TxnState : int32_t {
  kActive = 1,         // 2PC: begun, branches may enlist
  kPreparing = 2,      // 2PC: prepare sent, no decision yet
  kCommitting = 3,     // 2PC: COMMIT decision logged, phase 2 running
  kCommitted = 4,      // 2PC: all branches acknowledged commit (final)
  kAborting = 5,       // 2PC: ABORT decision logged, phase 2 running
  kAborted = 6,        // 2PC: all branches acknowledged abort (final)
  kRunning = 10,       // Saga: actions running
  kSucceeded = 11,     // Saga: all actions done (final)
  kCompensating = 12,  // Saga: compensations running
  kCompensated = 13,   // Saga: all attempted actions compensated (final)
  kParked = 14,  // Saga: compensation past its retry limit; retried slowly, shown to operators
};

// 2PC branch:  kRegistered -> kPrepared -> kBranchCommitted
//                   |     \-> kReadOnly (no phase 2)
//                   +-----------+------> kBranchAborted
// Saga step:   kPending -> kStepRunning -> kDone -> kStepCompensating -> kStepCompensated
//                  |             \-> kFailed ------^
//                  +-> kSkipped (never started: the saga compensates first)
enum class BranchState : int32_t {
  kRegistered = 1,
  kPrepared = 2,
  kReadOnly = 3,
  kBranchCommitted = 4,
  kBranchAborted = 5,
  kPending = 10,
  kStepRunning = 11,
  kDone = 12,
  kFailed = 13,
  kStepCompensating = 14,
  kStepCompensated = 15,
  kSkipped = 16,
};

const char* TxnKindName(TxnKind kind);
const char* TxnStateName(TxnState state);
const char* BranchStateName(BranchState state);

// True for states nothing moves out of (kParked is not final: it is still retried).
bool IsFinal(TxnState state);

// True if `state` belongs to `kind`'s protocol (2PC: kActive..kAborted and
// kRegistered..kBranchAborted; Saga: kRunning..kParked and kPending..kSkipped).
// False for a value outside the enum.
bool IsStateOf(TxnKind kind, TxnState state);
bool IsStateOf(TxnKind kind, BranchState state);

}  // namespace txc
