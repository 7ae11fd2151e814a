#include "coordinator/service/coordinator_service.h"

#include <glog/logging.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>

#include "common/backoff.h"
#include "common/ids.h"
#include "common/thrift_util.h"
#include "coordinator/core/saga.h"
#include "coordinator/core/validation.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "coordinator/store/store_util.h"

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
  RefreshReplicas();
  leases_thread_ = std::thread([this] { ReplicaCacheLoop(); });
  pthread_setname_np(leases_thread_.native_handle(), "replica-cache");
}

CoordinatorService::~CoordinatorService() {
  {
    std::lock_guard<std::mutex> lock(leases_mu_);
    leases_stop_ = true;
  }
  leases_cv_.notify_all();
  leases_thread_.join();
}

void CoordinatorService::ReplicaCacheLoop() {
  const auto interval = std::chrono::milliseconds(std::max<int64_t>(1, options_.replica_cache_ms));
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(leases_mu_);
      if (leases_cv_.wait_for(lock, interval, [this] { return leases_stop_; })) return;
    }
    RefreshReplicas();
  }
}

std::string CoordinatorService::NewGtid() const { return NewId(gtid_prefix_); }

Status CoordinatorService::CheckServing() const {
  if (serving_.load(std::memory_order_acquire)) return Status::Ok();
  return Status::Unavailable(kNotServing);
}

Status CoordinatorService::ValidateBegin(const BeginOptions& options) const {
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
  return Status::Ok();
}

WriteBatch CoordinatorService::PlanBegin(const BeginOptions& options) const {
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
  batch.insert_txns.push_back(std::move(txn));
  int32_t ordinal = 0;
  for (const BranchRecord& in : options.branches) {
    BranchRecord branch = in;
    branch.gtid = batch.insert_txns.front().gtid;
    branch.ordinal = ordinal++;
    branch.state = BranchState::kRegistered;
    branch.attempts = 0;
    branch.next_attempt_ms = 0;
    branch.last_error.clear();
    batch.insert_branches.push_back(std::move(branch));
  }
  return batch;
}

Result<TxnRecord> CoordinatorService::Begun(TxnRecord txn, std::vector<BranchRecord> branches,
                                            const Status& written, const BeginOptions& options) {
  if (written.ok()) {
    VLOG(1) << txn.gtid << " -> ACTIVE (begin, " << branches.size() << " branches, deadline "
            << txn.deadline_ms << ")";
    std::shared_lock<std::shared_mutex> lock(begun_mu_);
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
      return SameBegin(std::move(winner).value(), options);
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

Result<TxnRecord> CoordinatorService::Begin(const BeginOptions& options) {
  TXC_RETURN_IF_ERROR(ValidateBegin(options));
  // A retried begin: answer with the transaction the key already names.
  if (!options.idempotency_key.empty()) {
    Result<TxnRecord> existing = store_->FindByIdempotencyKey(options.idempotency_key);
    if (existing.ok()) return SameBegin(std::move(existing).value(), options);
    if (existing.status().code() != StatusCode::kNotFound) return existing.status();
  }
  WriteBatch batch = PlanBegin(options);
  TxnRecord txn = batch.insert_txns.front();
  std::vector<BranchRecord> branches = batch.insert_branches;
  Status written = log_->Write(std::move(batch));
  return Begun(std::move(txn), std::move(branches), written, options);
}

bool CoordinatorService::BeginAsync(const BeginOptions& options,
                                    std::function<void(Result<TxnRecord>)> done) {
  // A key is looked up in the store first: that read is Begin's.
  if (!options.idempotency_key.empty()) return false;
  Status valid = ValidateBegin(options);
  if (!valid.ok()) {
    done(valid);
    return true;
  }
  WriteBatch batch = PlanBegin(options);
  TxnRecord txn = batch.insert_txns.front();
  std::vector<BranchRecord> branches = batch.insert_branches;
  log_->WriteAsync(std::move(batch), [this, txn = std::move(txn), branches = std::move(branches),
                                      done = std::move(done)](const Status& written) {
    static const BeginOptions kWithoutKey;  // the only part of the options Begun reads
    done(Begun(txn, branches, written, kWithoutKey));
  });
  return true;
}

Result<TxnRecord> CoordinatorService::SameBegin(TxnRecord existing, const BeginOptions& options) {
  auto refuse = [&](const std::string& what) {
    return Status::InvalidArgument("idempotency_key: '" + options.idempotency_key +
                                   "' already names transaction " + existing.gtid + ", " + what +
                                   "; a different begin needs a new key");
  };
  if (existing.kind != TxnKind::kTwoPhase) return refuse("which is not a 2PC transaction");
  if (existing.deadline_ms - existing.created_ms != options.timeout_ms) {
    return refuse("begun with timeout_ms " +
                  std::to_string(existing.deadline_ms - existing.created_ms) + ", not " +
                  std::to_string(options.timeout_ms));
  }
  if (options.branches.empty()) return existing;
  TXC_ASSIGN_OR_RETURN(std::vector<BranchRecord> stored, store_->GetBranches(existing.gtid));
  for (const BranchRecord& want : options.branches) {
    auto it = std::find_if(stored.begin(), stored.end(),
                           [&](const BranchRecord& b) { return b.branch_id == want.branch_id; });
    if (it == stored.end()) return refuse("which has no branch '" + want.branch_id + "'");
    if (it->endpoint != want.endpoint || it->resource != want.resource ||
        it->payload != want.payload) {
      return refuse("whose branch '" + want.branch_id + "' has other content");
    }
  }
  return existing;
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

bool CoordinatorService::EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                                     std::function<void(Status)> done) {
  if (!CheckServing().ok()) return false;  // Enlist() gives the answer
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  return ops != nullptr && ops->EnlistAsync(gtid, branch, std::move(done));
}

bool CoordinatorService::CommitAsync(const std::string& gtid,
                                     std::function<void(Result<TxnRecord>)> done) {
  if (!CheckServing().ok()) return false;  // Commit() gives the answer
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  return ops != nullptr && ops->CommitAsync(gtid, std::move(done));
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
  TXC_ASSIGN_OR_RETURN(view.audit, store_->GetAudit(gtid));
  return view;
}

// --- operator actions ---------------------------------------------------------

namespace {

// How often an admin action re-reads and re-plans when the transaction moved
// between its read and its write (the driver wrote in between).
constexpr int kAdminAttempts = 8;

const char* AdminResultLabel(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kIllegalTransition: return "illegal_transition";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    default: return "unavailable";
  }
}

Status ValidateAdmin(const AdminContext& ctx) {
  if (ctx.reason.size() > kMaxAdminReasonBytes) {
    return Status::InvalidArgument("reason: longer than " + std::to_string(kMaxAdminReasonBytes) +
                                   " bytes");
  }
  return Status::Ok();
}

}  // namespace

Result<TxnView> CoordinatorService::RunAdmin(const char* action, const std::string& gtid,
                                             const AdminContext& ctx, const AdminPlanFn& plan,
                                             bool* changed) {
  if (changed != nullptr) *changed = false;
  auto answer = [&](Result<TxnView> r, bool wrote) -> Result<TxnView> {
    CoordinatorMetrics::Get().RecordOperatorAction(
        action, r.ok() && !wrote ? "noop" : AdminResultLabel(r.status()));
    return r;
  };
  Status valid = ValidateId("gtid", gtid);
  if (valid.ok()) valid = ValidateAdmin(ctx);
  if (valid.ok()) valid = CheckServing();
  if (!valid.ok()) return answer(valid, false);
  const BackoffPolicy backoff{5, 200, 2.0};
  Status last = Status::Unavailable("not attempted");
  for (int attempt = 0; attempt < kAdminAttempts; ++attempt) {
    Result<TxnRecord> txn = store_->GetTxn(gtid);
    if (!txn.ok()) return answer(txn.status(), false);
    Result<std::vector<BranchRecord>> branches = store_->GetBranches(gtid);
    if (!branches.ok()) return answer(branches.status(), false);
    AdminActor actor{ctx.who, ctx.reason, NowUnixMs(), NewId("audit")};
    Result<WriteBatch> planned = plan(*txn, *branches, actor);
    if (!planned.ok()) {
      VLOG(1) << gtid << ": operator " << action << " by " << ctx.who
              << " refused: " << planned.status();
      return answer(planned.status(), false);
    }
    if (planned->empty()) {
      VLOG(1) << gtid << ": operator " << action << " by " << ctx.who << ": already so";
      return answer(GetStatus(gtid), false);
    }
    const AuditRecord audit =
        planned->insert_audits.empty() ? AuditRecord{} : planned->insert_audits.front();
    last = log_->Write(std::move(planned).value());
    if (last.ok()) {
      LOG(INFO) << gtid << ": operator " << action << " by " << ctx.who << ": "
                << audit.previous_state << " -> " << audit.new_state
                << (audit.target.empty() ? "" : " (" + audit.target + ")") << ", reason '"
                << ctx.reason << "'";
      if (changed != nullptr) *changed = true;
      Result<TxnRecord> now = store_->GetTxn(gtid);
      if (now.ok()) {
        if (now->kind == TxnKind::kSaga) {
          if (SagaOps* ops = saga_.load(std::memory_order_acquire)) ops->AdminChanged(*now);
        } else if (TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire)) {
          ops->AdminChanged(*now);
        }
      }
      return answer(GetStatus(gtid), true);
    }
    if (last.code() != StatusCode::kConflict) break;
    VLOG(1) << gtid << ": operator " << action << ": the transaction moved meanwhile, again";
    // A short pause with jitter before re-reading (bounded: kAdminAttempts).
    std::this_thread::sleep_for(std::chrono::milliseconds(BackoffDelayMs(backoff, attempt + 1)));
  }
  LOG(WARNING) << gtid << ": operator " << action << " not written: " << last;
  if (last.code() == StatusCode::kNotFound) return answer(last, false);
  return answer(Status::Unavailable(std::string(action) + ": " + last.ToString()), false);
}

Result<TxnPage> CoordinatorService::ListTxns(const TxnFilter& filter, const std::string& cursor,
                                             int limit) {
  if (filter.kind.has_value() && *filter.kind != TxnKind::kTwoPhase &&
      *filter.kind != TxnKind::kSaga) {
    return Status::InvalidArgument("kind: unknown value");
  }
  for (TxnState state : filter.states) {
    if (!IsStateOf(TxnKind::kTwoPhase, state) && !IsStateOf(TxnKind::kSaga, state)) {
      return Status::InvalidArgument("states: unknown value " +
                                     std::to_string(static_cast<int>(state)));
    }
  }
  if (!filter.gtid_prefix.empty())
    TXC_RETURN_IF_ERROR(ValidateId("gtid_prefix", filter.gtid_prefix));
  if (!filter.owner.empty()) TXC_RETURN_IF_ERROR(ValidateId("owner", filter.owner));
  if (!filter.endpoint.empty()) TXC_RETURN_IF_ERROR(ValidateId("endpoint", filter.endpoint));
  if (cursor.size() > 1024) return Status::InvalidArgument("cursor: too long");
  return store_->ListTxns(filter, cursor, limit);
}

Result<TxnView> CoordinatorService::RetryNow(const std::string& gtid, const AdminContext& ctx) {
  return RunAdmin("retry", gtid, ctx, PlanRetryNow);
}

Result<TxnView> CoordinatorService::CancelSaga(const std::string& gtid, const AdminContext& ctx) {
  return RunAdmin("cancel", gtid, ctx, PlanCancelSaga);
}

Result<TxnView> CoordinatorService::Resolve(const std::string& gtid, const std::string& branch_id,
                                            BranchState resolved, const AdminContext& ctx) {
  Status valid = ValidateId("branch_id", branch_id);
  if (!valid.ok()) {
    CoordinatorMetrics::Get().RecordOperatorAction("resolve", AdminResultLabel(valid));
    return valid;
  }
  return RunAdmin("resolve", gtid, ctx,
                  [&](const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                      const AdminActor& actor) {
                    return PlanResolve(txn, branches, branch_id, resolved, actor);
                  });
}

Result<RebindResult> CoordinatorService::Rebind(const std::string& gtid,
                                                const std::string& from_endpoint,
                                                const std::string& to_endpoint,
                                                const AdminContext& ctx) {
  for (const auto& [field, value] : {std::make_pair("from_endpoint", &from_endpoint),
                                     std::make_pair("to_endpoint", &to_endpoint)}) {
    Result<HostPort> hp = ParseEndpoint(*value);
    if (!hp.ok()) {
      CoordinatorMetrics::Get().RecordOperatorAction("rebind", "invalid_argument");
      return Status::InvalidArgument(std::string(field) + ": " + hp.status().message());
    }
  }
  // The branches the last plan moved (RunAdmin plans again when the
  // transaction moved meanwhile; the written plan is the last one).
  int32_t planned_moves = 0;
  auto plan = [&](const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                  const AdminActor& actor) {
    Result<WriteBatch> batch = PlanRebind(txn, branches, from_endpoint, to_endpoint, actor);
    planned_moves = batch.ok() ? static_cast<int32_t>(batch->branch_updates.size()) : 0;
    return batch;
  };
  auto count_moved = [&](const TxnView&, RebindResult* out) {
    ++out->transactions;
    out->branches += planned_moves;
  };
  RebindResult result;
  if (!gtid.empty()) {
    bool changed = false;
    Result<TxnView> view = RunAdmin("rebind", gtid, ctx, plan, &changed);
    if (!view.ok()) return view.status();
    if (changed) count_moved(*view, &result);
    return result;
  }
  // Every unfinished transaction with a branch at from_endpoint, page by page.
  TxnFilter filter;
  filter.states = store_internal::UnfinishedTxnStates();
  filter.endpoint = from_endpoint;
  std::string cursor;
  do {
    Result<TxnPage> page = ListTxns(filter, cursor, 200);
    if (!page.ok()) return page.status();
    for (const TxnListRow& row : page->rows) {
      bool changed = false;
      Result<TxnView> view = RunAdmin("rebind", row.txn.gtid, ctx, plan, &changed);
      if (!view.ok()) {
        // Finished meanwhile: nothing to move. Anything else stops the sweep.
        if (view.status().code() == StatusCode::kIllegalTransition ||
            view.status().code() == StatusCode::kNotFound) {
          continue;
        }
        return view.status();
      }
      if (changed) count_moved(*view, &result);
    }
    cursor = page->next_cursor;
  } while (!cursor.empty());
  return result;
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

bool CoordinatorService::SubmitSagaAsync(const SagaSpec& spec,
                                         std::function<void(Result<TxnRecord>)> done) {
  Status valid =
      ValidateSagaSubmission(spec.gtid, spec.timeout_ms, spec.wait_timeout_ms, spec.steps);
  if (valid.ok()) valid = CheckServing();
  if (!valid.ok()) {
    done(valid);
    return true;
  }
  SagaOps* ops = saga_.load(std::memory_order_acquire);
  return ops != nullptr && ops->SubmitSagaAsync(spec, std::move(done));
}

Result<Outcome> CoordinatorService::QueryOutcome(const std::string& gtid,
                                                 const std::string& branch_id) {
  TXC_RETURN_IF_ERROR(CheckServing());
  TwoPhaseOps* ops = two_phase_.load(std::memory_order_acquire);
  if (ops != nullptr) return ops->QueryOutcome(gtid, branch_id);
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  return Status::Unavailable(std::string("queryOutcome: ") + kNotImplemented);
}

void CoordinatorService::RefreshReplicas() {
  // The store call runs outside the lock; concurrent refreshes are harmless.
  Result<std::vector<Lease>> leases = store_->ListLeases();
  if (!leases.ok()) {
    LOG(WARNING) << "cannot list replica leases: " << leases.status();
    return;
  }
  std::lock_guard<std::mutex> lock(leases_mu_);
  leases_ = std::move(leases).value();
}

std::vector<std::string> CoordinatorService::CoordinatorEndpoints() {
  std::vector<std::string> endpoints;
  bool self_listed = false;
  const int64_t now = NowUnixMs();
  {
    std::lock_guard<std::mutex> lock(leases_mu_);
    for (const Lease& lease : leases_) {
      if (lease.endpoint.empty() || lease.expires_ms <= now) continue;
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
  const int64_t now = NowUnixMs();
  std::lock_guard<std::mutex> lock(leases_mu_);
  for (const Lease& lease : leases_) {
    if (lease.node_id == node_id && lease.expires_ms > now) return lease.endpoint;
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
