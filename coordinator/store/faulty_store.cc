#include "coordinator/store/faulty_store.h"

#include <chrono>
#include <thread>

namespace txc {
namespace {

Status Unknown(StoreOp op) {
  return Status::Indeterminate("injected: the outcome of store operation " +
                               std::to_string(static_cast<int>(op)) + " is unknown");
}

// The answer of a faulted call, for each result type.
template <typename R>
struct Answer {
  static R Of(const Status& s) { return s; }
};
template <>
struct Answer<std::vector<Status>> {
  static std::vector<Status> Of(const Status& s, size_t n) { return std::vector<Status>(n, s); }
};

}  // namespace

void FaultyStore::Inject(StoreOp op, StoreFault fault, int times) {
  std::lock_guard<std::mutex> lock(mu_);
  faults_[op].push_back(Queued{std::move(fault), times});
}

void FaultyStore::ClearFaults() {
  std::lock_guard<std::mutex> lock(mu_);
  faults_.clear();
}

int FaultyStore::Calls(StoreOp op) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

void FaultyStore::Hold(StoreOp op) {
  std::lock_guard<std::mutex> lock(mu_);
  held_[op] = true;
}

void FaultyStore::Open(StoreOp op) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    held_[op] = false;
  }
  held_cv_.notify_all();
}

bool FaultyStore::Enter(StoreOp op, StoreFault* fault) {
  std::unique_lock<std::mutex> lock(mu_);
  calls_[op] += 1;
  held_cv_.wait(lock, [&] { return !held_[op]; });
  auto& queue = faults_[op];
  if (queue.empty()) return false;
  *fault = queue.front().fault;
  if (queue.front().times > 0 && --queue.front().times == 0) queue.pop_front();
  return true;
}

template <typename R, typename F>
R FaultyStore::Run(StoreOp op, F call) {
  StoreFault fault;
  if (!Enter(op, &fault)) return call();
  switch (fault.kind) {
    case StoreFault::Kind::kFail: return Answer<R>::Of(fault.status);
    case StoreFault::Kind::kIndeterminateNotApplied: return Answer<R>::Of(Unknown(op));
    case StoreFault::Kind::kIndeterminateApplied: {
      R ignored = call();
      (void)ignored;
      return Answer<R>::Of(Unknown(op));
    }
    case StoreFault::Kind::kDelay:
      std::this_thread::sleep_for(std::chrono::milliseconds(fault.delay_ms));
      return call();
  }
  return call();
}

Status FaultyStore::Apply(const WriteBatch& batch) {
  return Run<Status>(StoreOp::kApply, [&] { return inner_->Apply(batch); });
}

std::vector<Status> FaultyStore::ApplyGroup(const std::vector<const WriteBatch*>& batches) {
  StoreFault fault;
  if (!Enter(StoreOp::kApplyGroup, &fault)) return inner_->ApplyGroup(batches);
  const size_t n = batches.size();
  switch (fault.kind) {
    case StoreFault::Kind::kFail: return Answer<std::vector<Status>>::Of(fault.status, n);
    case StoreFault::Kind::kIndeterminateNotApplied:
      return Answer<std::vector<Status>>::Of(Unknown(StoreOp::kApplyGroup), n);
    case StoreFault::Kind::kIndeterminateApplied:
      inner_->ApplyGroup(batches);
      return Answer<std::vector<Status>>::Of(Unknown(StoreOp::kApplyGroup), n);
    case StoreFault::Kind::kDelay:
      std::this_thread::sleep_for(std::chrono::milliseconds(fault.delay_ms));
      break;
  }
  return inner_->ApplyGroup(batches);
}

Result<TxnRecord> FaultyStore::GetTxn(const std::string& gtid) {
  return Run<Result<TxnRecord>>(StoreOp::kGetTxn, [&] { return inner_->GetTxn(gtid); });
}

Result<TxnRecord> FaultyStore::FindByIdempotencyKey(const std::string& key) {
  return Run<Result<TxnRecord>>(StoreOp::kFindByIdempotencyKey,
                                [&] { return inner_->FindByIdempotencyKey(key); });
}

Result<std::vector<BranchRecord>> FaultyStore::GetBranches(const std::string& gtid) {
  return Run<Result<std::vector<BranchRecord>>>(StoreOp::kGetBranches,
                                                [&] { return inner_->GetBranches(gtid); });
}

Result<std::vector<TxnRecord>> FaultyStore::ListDue(const std::vector<TxnState>& states,
                                                    const std::string& owner, int64_t epoch,
                                                    int64_t now_ms, int limit) {
  return Run<Result<std::vector<TxnRecord>>>(
      StoreOp::kListDue, [&] { return inner_->ListDue(states, owner, epoch, now_ms, limit); });
}

Result<int64_t> FaultyStore::CountInStates(const std::vector<TxnState>& states) {
  return Run<Result<int64_t>>(StoreOp::kCountInStates,
                              [&] { return inner_->CountInStates(states); });
}

Result<std::vector<StateSummary>> FaultyStore::SummarizeStates(
    const std::vector<TxnState>& states) {
  return Run<Result<std::vector<StateSummary>>>(StoreOp::kSummarizeStates,
                                                [&] { return inner_->SummarizeStates(states); });
}

Result<int> FaultyStore::DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) {
  return Run<Result<int>>(StoreOp::kDeleteFinishedBefore,
                          [&] { return inner_->DeleteFinishedBefore(cutoff_updated_ms, limit); });
}

Result<Lease> FaultyStore::AcquireLease(const std::string& node_id, const std::string& endpoint,
                                        int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) {
  return Run<Result<Lease>>(StoreOp::kAcquireLease, [&] {
    return inner_->AcquireLease(node_id, endpoint, ttl_ms, now_ms, takeover);
  });
}

Status FaultyStore::RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                               int64_t now_ms) {
  return Run<Status>(StoreOp::kRenewLease,
                     [&] { return inner_->RenewLease(node_id, epoch, ttl_ms, now_ms); });
}

Result<std::vector<Lease>> FaultyStore::ListLeases() {
  return Run<Result<std::vector<Lease>>>(StoreOp::kListLeases,
                                         [&] { return inner_->ListLeases(); });
}

Result<int> FaultyStore::ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                                      int limit) {
  return Run<Result<int>>(StoreOp::kClaimOrphans,
                          [&] { return inner_->ClaimOrphans(node_id, epoch, now_ms, limit); });
}

}  // namespace txc
