// Helpers shared by the store backends (private to coordinator/store).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/states.h"
#include "coordinator/store/txn_store.h"

namespace txc {
namespace store_internal {

// The counters behind TxnStore::Stats(), shared by both backends.
struct StoreCounters {
  std::atomic<int64_t> commits{0};  // store transactions committed
  std::atomic<int64_t> batches{0};  // WriteBatches applied (committed or refused)
  StoreStats Snapshot() const {
    StoreStats s;
    s.commits = commits.load();
    s.batches = batches.load();
    return s;
  }
};

// The column lists of the txns / branches tables, in the order
// the backends' ReadTxn / ReadBranch read them.
constexpr char kTxnColumns[] =
    "gtid, kind, state, owner, epoch, created_ms, updated_ms, deadline_ms, next_attempt_ms, "
    "attempts, idempotency_key, payload, flags";
constexpr char kBranchColumns[] =
    "gtid, branch_id, ordinal, endpoint, resource, action, compensation, depends_on, payload, "
    "state, attempts, max_attempts, initial_backoff_ms, max_backoff_ms, next_attempt_ms, "
    "last_error, started_ms, finished_ms";
constexpr char kAuditColumns[] =
    "id, gtid, action, who, at_ms, reason, previous_state, new_state, target";

// True for the statuses that refuse one batch of a group (kConflict,
// kNotFound, kAlreadyExists, kInvalidArgument) rather than fail the group.
bool IsRefusal(const Status& s);

// Every TxnState value, those IsFinal() is false for, and those it is true for.
const std::vector<TxnState>& AllTxnStates();
const std::vector<TxnState>& UnfinishedTxnStates();
const std::vector<TxnState>& FinalTxnStates();

// Bit (1 << value) per state; 0 for an empty list (the SQL reads 0 as "any").
int64_t StateMask(const std::vector<TxnState>& states);
int64_t StateMask(const std::vector<BranchState>& states);

// "1,2,5": the numbers, for an IN (...) list of integer literals.
std::string StateList(const std::vector<TxnState>& states);

// BranchRecord::depends_on as stored: each id as "<length>:<bytes>", concatenated.
std::string EncodeStringList(const std::vector<std::string>& items);
// kInternal on a malformed value.
Result<std::vector<std::string>> DecodeStringList(const std::string& encoded);

// Whether a TEXT column can hold `s` on both backends: valid UTF-8, no NUL
// (PostgreSQL refuses the first and silently truncates at the second).
bool IsStorableText(const std::string& s);

// kInvalidArgument (naming the field) for what the backends cannot store the
// same way: empty ids, text that IsStorableText() refuses. Binary fields
// (payloads, last_error) may hold any bytes.
Status CheckBatch(const WriteBatch& batch);

// The store-maintained branch times (BranchRecord::started_ms, finished_ms)
// for a branch entering `state` at now_ms: started is now_ms unless the state
// is PENDING (a step not started yet), finished is now_ms for a resting state
// and 0 otherwise.
int64_t BranchStartedMs(BranchState state, int64_t now_ms);
int64_t BranchFinishedMs(BranchState state, int64_t now_ms);

// ListTxns cursors: opaque to callers ("c1" + hex of "<created_ms>:<gtid>").
std::string EncodeListCursor(int64_t created_ms, const std::string& gtid);
// kInvalidArgument for anything EncodeListCursor did not make.
Status DecodeListCursor(const std::string& cursor, int64_t* created_ms, std::string* gtid);
// kInvalidArgument unless 1 <= limit <= kMaxListLimit.
constexpr int kMaxListLimit = 1000;
Status CheckListLimit(int limit);

// AcquireLease's kAlreadyExists for a lease another process still renews.
Status LiveLeaseRefusal(const Lease& live, int64_t now_ms);

}  // namespace store_internal
}  // namespace txc
