#include "coordinator/service/coordinator_service.h"

#include <glog/logging.h>

#include <set>

#include "common/backoff.h"
#include "common/ids.h"
#include "coordinator/core/saga.h"
#include "coordinator/core/validation.h"

namespace txc {
namespace {

const char kNotImplemented[] = "not implemented in this build";
const char kNotServing[] = "this replica is not serving (shutting down or lease lost)";

}  // namespace

CoordinatorService::CoordinatorService(TxnStore* store, GroupCommitter* log, NodeInfo node,
                                       CoordinatorServiceOptions options)
    : store_(store),
      log_(log),
      node_(std::move(node)),
      options_(options),
      gtid_prefix_(IdPrefix(node_.node_id)) {
  CHECK(store_ != nullptr);
  CHECK(log_ != nullptr);
}

std::string CoordinatorService::NewGtid() const { return NewId(gtid_prefix_); }

Status CoordinatorService::CheckServing() const {
  if (serving_.load(std::memory_order_acquire)) return Status::Ok();
  return Status::Unavailable(kNotServing);
}

Result<TxnRecord> CoordinatorService::Begin(const BeginOptions& options) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TXC_RETURN_IF_ERROR(ValidateTimeoutMs("timeout_ms", options.timeout_ms));
  if (!options.idempotency_key.empty()) {
    TXC_RETURN_IF_ERROR(ValidateId("idempotency_key", options.idempotency_key));
  }
  if (options.branches.size() > static_cast<size_t>(kMaxBranches)) {
    return Status::InvalidArgument("branches: more than " + std::to_string(kMaxBranches));
  }
  std::set<std::string> branch_ids;
  for (const BranchRecord& branch : options.branches) {
    TXC_RETURN_IF_ERROR(ValidateBranch(branch));
    if (!branch_ids.insert(branch.branch_id).second) {
      return Status::InvalidArgument("branches: duplicate branch_id '" + branch.branch_id + "'");
    }
  }

  // A retried begin: answer with the transaction the key already names.
  if (!options.idempotency_key.empty()) {
    Result<TxnRecord> existing = store_->FindByIdempotencyKey(options.idempotency_key);
    if (existing.ok()) return existing;
    if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  }

  const int64_t now = NowUnixMs();
  TxnRecord txn;
  txn.gtid = NewGtid();
  txn.kind = TxnKind::kTwoPhase;
  txn.state = TxnState::kActive;
  txn.owner = node_.node_id;
  txn.epoch = node_.epoch;
  txn.created_ms = now;
  txn.updated_ms = now;
  txn.deadline_ms = now + options.timeout_ms;
  txn.next_attempt_ms = txn.deadline_ms;  // the sweeper aborts it if still undecided then
  txn.idempotency_key = options.idempotency_key;

  WriteBatch batch;
  batch.insert_txns.push_back(txn);
  int32_t ordinal = 0;
  for (const BranchRecord& in : options.branches) {
    BranchRecord branch = in;
    branch.gtid = txn.gtid;
    branch.ordinal = ordinal++;
    branch.state = BranchState::kRegistered;
    branch.attempts = 0;
    branch.next_attempt_ms = 0;
    branch.last_error.clear();
    batch.insert_branches.push_back(std::move(branch));
  }

  std::vector<BranchRecord> branches = batch.insert_branches;
  Status written = log_->Write(std::move(batch));
  if (written.ok()) {
    VLOG(1) << txn.gtid << " -> ACTIVE (begin, " << options.branches.size()
            << " branches, deadline " << txn.deadline_ms << ")";
    TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
    if (ops != nullptr) ops->Begun(txn, branches);
    return txn;
  }
  if (written.code() == StatusCode::kAlreadyExists && !options.idempotency_key.empty()) {
    // Lost a race against a begin with the same key: that one is the answer.
    Result<TxnRecord> winner = store_->FindByIdempotencyKey(options.idempotency_key);
    if (winner.ok()) {
      VLOG(1) << "begin with key '" << options.idempotency_key << "' lost a race to "
              << winner->gtid;
      return winner;
    }
    LOG(ERROR) << txn.gtid << ": begin refused (" << written << ") but no transaction has key '"
               << options.idempotency_key << "': " << winner.status();
    return Status::Unavailable("begin: " + written.message());
  }
  LOG(ERROR) << txn.gtid << ": begin not written: " << written;
  switch (written.code()) {
    case StatusCode::kTimeout:
    case StatusCode::kIndeterminate:
    case StatusCode::kUnavailable:
      return written;  // outcome unknown: the client retries (with its key)
    default: return Status::Unavailable("begin: " + written.ToString());
  }
}

Status CoordinatorService::CheckExists(const std::string& gtid) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  Result<TxnRecord> txn = store_->GetTxn(gtid);
  return txn.status();
}

Status CoordinatorService::Enlist(const std::string& gtid, const BranchRecord& branch) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->Enlist(gtid, branch);
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TXC_RETURN_IF_ERROR(ValidateBranch(branch));
  TXC_RETURN_IF_ERROR(CheckExists(gtid));
  return Status::Unavailable(std::string("enlist: ") + kNotImplemented);
}

Result<TxnRecord> CoordinatorService::Commit(const std::string& gtid, CommitWait wait,
                                             int64_t wait_timeout_ms) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->Commit(gtid, wait, wait_timeout_ms);
  TXC_RETURN_IF_ERROR(CheckExists(gtid));
  return Status::Unavailable(std::string("commit: ") + kNotImplemented);
}

Result<TxnRecord> CoordinatorService::Rollback(const std::string& gtid) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->Rollback(gtid);
  TXC_RETURN_IF_ERROR(CheckExists(gtid));
  return Status::Unavailable(std::string("rollback: ") + kNotImplemented);
}

Result<TxnView> CoordinatorService::GetStatus(const std::string& gtid) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TxnView view;
  TXC_ASSIGN_OR_RETURN(view.txn, store_->GetTxn(gtid));
  TXC_ASSIGN_OR_RETURN(view.branches, store_->GetBranches(gtid));
  return view;
}

Result<TxnRecord> CoordinatorService::SubmitSaga(const SagaSpec& spec) {
  // The one validation of a submission, whichever transport it came by.
  TXC_RETURN_IF_ERROR(
      ValidateSagaSubmission(spec.gtid, spec.timeout_ms, spec.wait_timeout_ms, spec.steps));
  TXC_RETURN_IF_ERROR(CheckServing());
  SagaOps* ops = saga_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->SubmitSaga(spec);
  return Status::Unavailable(std::string("submitSaga: ") + kNotImplemented);
}

Result<Outcome> CoordinatorService::QueryOutcome(const std::string& gtid,
                                                 const std::string& branch_id) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->QueryOutcome(gtid, branch_id);
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  return Status::Unavailable(std::string("queryOutcome: ") + kNotImplemented);
}

void CoordinatorService::RefreshLeases() {
  const int64_t now_mono = MonotonicMs();
  {
    std::lock_guard<std::mutex> lock(leases_mu_);
    if (leases_refreshed_ms_ >= 0 && now_mono - leases_refreshed_ms_ < options_.replica_cache_ms) {
      return;
    }
  }
  // The store call runs outside the lock; concurrent refreshes are harmless.
  Result<std::vector<Lease>> leases = store_->ListLeases();
  if (!leases.ok()) {
    LOG(WARNING) << "cannot list replica leases: " << leases.status();
    return;
  }
  const int64_t now = NowUnixMs();
  std::vector<Lease> live;
  for (const Lease& lease : *leases) {
    if (lease.expires_ms > now) live.push_back(lease);
  }
  std::lock_guard<std::mutex> lock(leases_mu_);
  live_leases_ = std::move(live);
  leases_refreshed_ms_ = now_mono;
}

std::vector<std::string> CoordinatorService::CoordinatorEndpoints() {
  RefreshLeases();
  std::vector<std::string> endpoints;
  bool self_listed = false;
  {
    std::lock_guard<std::mutex> lock(leases_mu_);
    for (const Lease& lease : live_leases_) {
      if (lease.endpoint.empty()) continue;
      if (lease.node_id == node_.node_id) self_listed = true;
      endpoints.push_back(lease.endpoint);
    }
  }
  // This replica serves, so it is live even when the lease list is stale.
  if (!self_listed && !node_.endpoint.empty()) endpoints.insert(endpoints.begin(), node_.endpoint);
  return endpoints;
}

std::string CoordinatorService::EndpointOfNode(const std::string& node_id) {
  if (node_id == node_.node_id) return node_.endpoint;
  RefreshLeases();
  std::lock_guard<std::mutex> lock(leases_mu_);
  for (const Lease& lease : live_leases_) {
    if (lease.node_id == node_id) return lease.endpoint;
  }
  return "";
}

HealthInfo CoordinatorService::Health() {
  HealthInfo info;
  info.node_id = node_.node_id;
  info.store_kind = store_->Kind();
  info.serving = serving_.load(std::memory_order_acquire);
  info.epoch = node_.epoch;
  info.replicas = CoordinatorEndpoints();
  Status store_health = store_->HealthCheck();
  info.store_healthy = store_health.ok();
  if (!store_health.ok()) info.store_error = store_health.message();
  return info;
}

}  // namespace txc
