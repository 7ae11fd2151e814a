// FaultyStore: a TxnStore decorator for tests that injects store faults per
// operation, deterministically:
//
//   FaultyStore store(real.get());
//   store.Inject(StoreOp::kApplyGroup, StoreFault::Fail(Status::Unavailable("down")));
//   store.Inject(StoreOp::kApplyGroup, StoreFault::IndeterminateApplied(), /*times=*/2);
//   store.Inject(StoreOp::kGetTxn, StoreFault::Delay(200));
//   store.Hold(StoreOp::kApplyGroup);   // the next ApplyGroup blocks (after being counted)
//   ... store.Calls(StoreOp::kApplyGroup) > 0 ... store.Open(StoreOp::kApplyGroup);
//
// Faults queue per operation and are consumed one call at a time (`times`
// calls each; -1: forever). Without a fault an operation goes straight to the
// wrapped store. For a write:
//   Fail(s)                 nothing applied, the call answers s;
//   IndeterminateApplied    applied, the call answers kIndeterminate (the commit
//                           reply was lost);
//   IndeterminateNotApplied nothing applied, the call answers kIndeterminate;
//   Delay(ms)               applied after ms.
// For ApplyGroup the fault applies to the whole group (every status).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/store/txn_store.h"

namespace txc {

enum class StoreOp {
  kApply,
  kApplyGroup,
  kGetTxn,
  kFindByIdempotencyKey,
  kGetBranches,
  kListDue,
  kCountInStates,
  kSummarizeStates,
  kDeleteFinishedBefore,
  kAcquireLease,
  kRenewLease,
  kListLeases,
  kClaimOrphans,
};

struct StoreFault {
  enum class Kind { kFail, kIndeterminateApplied, kIndeterminateNotApplied, kDelay };
  Kind kind = Kind::kFail;
  Status status;         // kFail: the answer
  int64_t delay_ms = 0;  // kDelay

  static StoreFault Fail(Status s) { return {Kind::kFail, std::move(s), 0}; }
  static StoreFault IndeterminateApplied() { return {Kind::kIndeterminateApplied, {}, 0}; }
  static StoreFault IndeterminateNotApplied() { return {Kind::kIndeterminateNotApplied, {}, 0}; }
  static StoreFault Delay(int64_t ms) { return {Kind::kDelay, {}, ms}; }
};

class FaultyStore : public TxnStore {
 public:
  explicit FaultyStore(TxnStore* inner) : inner_(inner) {}

  // Queues `fault` for the next `times` calls of op (-1: every call from then on).
  void Inject(StoreOp op, StoreFault fault, int times = 1);
  void ClearFaults();
  // Calls of op so far (counted before any fault or hold applies).
  int Calls(StoreOp op) const;
  // While held, calls of op block (after being counted) until Open(op).
  void Hold(StoreOp op);
  void Open(StoreOp op);

  const char* Kind() const override { return inner_->Kind(); }
  Status Migrate() override { return inner_->Migrate(); }
  Status Apply(const WriteBatch& batch) override;
  std::vector<Status> ApplyGroup(const std::vector<const WriteBatch*>& batches) override;
  Result<TxnRecord> GetTxn(const std::string& gtid) override;
  Result<TxnRecord> FindByIdempotencyKey(const std::string& key) override;
  Result<std::vector<BranchRecord>> GetBranches(const std::string& gtid) override;
  Result<std::vector<TxnRecord>> ListDue(const std::vector<TxnState>& states,
                                         const std::string& owner, int64_t epoch, int64_t now_ms,
                                         int limit) override;
  Result<int64_t> CountInStates(const std::vector<TxnState>& states) override;
  Result<std::vector<StateSummary>> SummarizeStates(const std::vector<TxnState>& states) override;
  Result<int> DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) override;
  // Admin reads pass straight through (no faults).
  Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor, int limit) override {
    return inner_->ListTxns(filter, cursor, limit);
  }
  Result<std::vector<AuditRecord>> GetAudit(const std::string& gtid) override {
    return inner_->GetAudit(gtid);
  }
  using TxnStore::AcquireLease;
  Result<Lease> AcquireLease(const std::string& node_id, const std::string& endpoint,
                             int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) override;
  Status RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                    int64_t now_ms) override;
  Result<std::vector<Lease>> ListLeases() override;
  Result<int> ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                           int limit) override;
  StoreStats Stats() const override { return inner_->Stats(); }
  Status HealthCheck() const override { return inner_->HealthCheck(); }

 private:
  struct Queued {
    StoreFault fault;
    int times;  // -1: forever
  };
  // Counts the call, waits while held, and takes the fault due for it (if any).
  bool Enter(StoreOp op, StoreFault* fault);
  // Runs `call` on the inner store under the fault rules; `unknown` builds
  // the kIndeterminate answer of type R.
  template <typename R, typename F>
  R Run(StoreOp op, F call);

  TxnStore* const inner_;
  mutable std::mutex mu_;  // guards the maps below
  std::condition_variable held_cv_;
  std::map<StoreOp, std::deque<Queued>> faults_;
  std::map<StoreOp, int> calls_;
  std::map<StoreOp, bool> held_;
};

}  // namespace txc
