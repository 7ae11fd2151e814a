// Ownership of a transaction between replicas (ARCHITECTURE invariants 4 and
// 6): whether a transaction's owner still holds a live lease, and the one
// fenced write by which another replica takes the transaction over.
//
// Any replica answers a decided transaction from the store. An undecided one
// owned elsewhere is taken over with TakeOverUpdate: the write applies only
// while the record is still in the state, and under the (owner, epoch), that
// the caller just read, so two replicas taking over at once (or the owner
// moving on meanwhile) cannot both win; the loser gets kConflict and re-reads.
//
// Thread-safety: free functions; the store is thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/txn_store.h"

namespace txc {

// Whether `txn` is owned by `node` under its current epoch.
bool OwnedBy(const TxnRecord& txn, const NodeInfo& node);

// Whether `owner` holds a live lease under `epoch`: its lease row has that
// epoch and expires after now_ms. Read from the store's lease table (not a
// cache: taking over from an owner wrongly thought dead costs that owner its
// in-flight work). Errors: the store's (kUnavailable, ...).
Result<bool> OwnerLeaseLive(TxnStore* store, const std::string& owner, int64_t epoch,
                            int64_t now_ms);

// The conditional update that makes `node` the owner of `txn`: expected state
// txn.state and (txn.owner, txn.epoch); sets (owner, epoch) := node's.
TxnUpdate TakeOverUpdate(const TxnRecord& txn, const NodeInfo& node);

}  // namespace txc
