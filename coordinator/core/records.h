// The records the protocol cores reason about and the store keeps: one global
// transaction (TxnRecord) and one 2PC branch or Saga step (BranchRecord).
// Plain data, no I/O. They live in core/ so that core/ depends on nothing
// above it; coordinator/store/txn_store.h stores them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "coordinator/core/states.h"

namespace txc {

// One global transaction (2PC or Saga).
struct TxnRecord {
  std::string gtid;
  TxnKind kind = TxnKind::kTwoPhase;
  TxnState state = TxnState::kActive;
  std::string owner;            // node id of the replica driving it
  int64_t epoch = 0;            // the owner's lease epoch when it took the transaction
  int64_t created_ms = 0;       // unix ms
  int64_t updated_ms = 0;       // unix ms, set by the store on every write
  int64_t deadline_ms = 0;      // unix ms; still ACTIVE past it: presumed abort
  int64_t next_attempt_ms = 0;  // unix ms; the sweeper looks at it again from then on
  int32_t attempts = 0;         // phase-2 / compensation rounds so far
  std::string idempotency_key;  // empty: none. Unique when set.
  std::string payload;          // kind-specific bytes (saga: definition fingerprint)
  int32_t flags = 0;            // kind-specific bits (kFlag* below)
};

// TxnRecord::flags bits.
constexpr int32_t kFlagOnePhase = 1;        // 2PC decided by its only branch (commitOnePhase)
constexpr int32_t kFlagWaitCompletion = 2;  // a client waits for phase 2, not only the decision
// 2PC: the client asked to commit. An ABORTING/ABORTED transaction with this
// bit was aborted by its votes, so commit again answers ABORT; without it the
// abort came from rollback or the deadline, and commit is an illegal transition.
constexpr int32_t kFlagCommitRequested = 4;
// Saga: its forward progress may be logged after its effects
// (SagaMachineOptions::progress_log_ms), so a step its log shows PENDING may
// have been sent. Set in the definition's write; never changes.
constexpr int32_t kFlagLazyProgress = 8;

// One 2PC branch or one Saga step.
struct BranchRecord {
  std::string gtid;
  std::string branch_id;
  int32_t ordinal = 0;                  // enlist / definition order, 0-based
  std::string endpoint;                 // "host:port" of the participant
  std::string resource;                 // 2PC resource name
  std::string action;                   // Saga action name
  std::string compensation;             // Saga compensation name
  std::vector<std::string> depends_on;  // Saga: step ids that must be kDone first
  std::string payload;                  // opaque bytes for the participant
  BranchState state = BranchState::kRegistered;
  int32_t attempts = 0;
  int32_t max_attempts = 0;  // Saga action retry limit
  int32_t initial_backoff_ms = 0;
  int32_t max_backoff_ms = 0;
  int64_t next_attempt_ms = 0;
  std::string last_error;
  // Set by the store when the state moves (callers leave them 0):
  // started_ms: when the branch was enlisted (2PC) or its step left PENDING
  // (Saga); finished_ms: when it last reached a resting state (READ_ONLY,
  // BRANCH_COMMITTED, BRANCH_ABORTED, DONE, FAILED, STEP_COMPENSATED, SKIPPED),
  // 0 while it is not in one. unix ms.
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
};

// One operator action (admin API), stored with the writes it made.
struct AuditRecord {
  std::string id;              // unique, chosen by the writer
  std::string gtid;            // the transaction acted on
  std::string action;          // "retry", "cancel", "resolve", "rebind"
  std::string who;             // the caller (the connection's peer address)
  int64_t at_ms = 0;           // unix ms
  std::string reason;          // the operator's words (any bytes)
  std::string previous_state;  // e.g. "PARKED" or "step s2 STEP_COMPENSATING"
  std::string new_state;       // e.g. "COMPENSATING" or "step s2 STEP_COMPENSATED"
  std::string target;          // branch id, or "A -> B" for a rebind; may be empty
};

// The writes a step function decides and the driver logs (GroupCommitter ->
// TxnStore::Apply). The driver adds the fence (expected_owner, expected_epoch).

// A conditional update of a transaction row. Applied only if the row exists,
// its state is one of expected_states (any when empty) and its (owner, epoch)
// equal (expected_owner, expected_epoch); otherwise kConflict (kNotFound when
// the row is missing) and nothing in the batch is applied. An update that sets
// nothing is a pure precondition check.
struct TxnUpdate {
  std::string gtid;
  std::vector<TxnState> expected_states;
  std::string expected_owner;
  int64_t expected_epoch = 0;
  std::optional<TxnState> state;
  std::optional<std::string> owner;
  std::optional<int64_t> epoch;
  std::optional<int64_t> next_attempt_ms;
  std::optional<int32_t> attempts;
  std::optional<int64_t> deadline_ms;
  std::optional<int32_t> flags;
  // Applies only if the transaction has exactly this many branches (a commit
  // that knows its branches from memory: no enlist it has not seen landed).
  std::optional<int32_t> expected_branch_count;
};

// A conditional update of a branch row, fenced by its transaction's (owner, epoch).
struct BranchUpdate {
  std::string gtid;
  std::string branch_id;
  std::vector<BranchState> expected_states;  // any when empty
  std::string expected_owner;
  int64_t expected_epoch = 0;
  std::optional<BranchState> state;
  std::optional<int32_t> attempts;
  std::optional<int64_t> next_attempt_ms;
  std::optional<std::string> last_error;
  std::optional<std::string> endpoint;  // an operator's rebind
};

// Writes applied atomically: all or none.
struct WriteBatch {
  std::vector<TxnRecord> insert_txns;         // kAlreadyExists if the gtid or key exists
  std::vector<BranchRecord> insert_branches;  // kAlreadyExists if (gtid, branch_id) exists
  std::vector<TxnUpdate> txn_updates;
  std::vector<BranchUpdate> branch_updates;
  std::vector<std::string> delete_txns;    // removes the txn and its branches; absent: OK
  std::vector<AuditRecord> insert_audits;  // kAlreadyExists if the id exists

  bool empty() const {
    return insert_txns.empty() && insert_branches.empty() && txn_updates.empty() &&
           branch_updates.empty() && delete_txns.empty() && insert_audits.empty();
  }
  size_t size() const {
    return insert_txns.size() + insert_branches.size() + txn_updates.size() +
           branch_updates.size() + delete_txns.size() + insert_audits.size();
  }
};

}  // namespace txc
