// ReplicaService: the TxnService the Thrift handler of a coordinator process
// talks to for the whole life of the process. It forwards every call to the
// CoordinatorService of the current *incarnation* (one lease epoch: its group
// commit, drivers and sweeper), which CoordinatorServer swaps when the lease
// is lost and acquired again. A call holds the incarnation it started on
// (shared_ptr) until it returns, so an incarnation is torn down only after
// its last call ended. A call made while there is none (the process is still
// acquiring its first lease right after binding its port, or re-acquiring it
// after a loss) waits up to `wait_ms` for one, then answers kUnavailable,
// which clients retry; health never waits.
//
// Thread-safety: every method may be called concurrently with Set().
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/service/coordinator_service.h"

namespace txc {

class ReplicaService : public TxnService {
 public:
  // node_id and store_kind are what Health() reports while no incarnation serves.
  ReplicaService(std::string node_id, std::string store_kind, int64_t wait_ms = 3000)
      : node_id_(std::move(node_id)), store_kind_(std::move(store_kind)), wait_ms_(wait_ms) {}

  // The incarnation's service (may be empty: nothing serves). `why_not` says
  // why there is none, for the kUnavailable answers.
  void Set(std::shared_ptr<CoordinatorService> current, std::string why_not = "") {
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = std::move(current);
      why_not_ = std::move(why_not);
    }
    cv_.notify_all();
  }
  // Calls waiting for an incarnation answer kUnavailable now (shutdown).
  void Close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      why_not_ = "shutting down";
    }
    cv_.notify_all();
  }
  // The current incarnation's service, waiting up to the constructor's wait_ms
  // for one; nullptr when there is none.
  std::shared_ptr<CoordinatorService> Get() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms_),
                 [this] { return current_ != nullptr || closed_; });
    return current_;
  }
  std::shared_ptr<CoordinatorService> Now() const {
    std::lock_guard<std::mutex> lock(mu_);
    return current_;
  }

  Result<TxnRecord> Begin(const BeginOptions& options) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Begin(options);
  }
  // The asynchronous paths never wait for an incarnation (they run on the
  // event loop): none right now, and the caller falls back to Begin/Commit.
  // The incarnation's teardown answers what it still holds (its group commit
  // drains before its service goes), so `done` needs no reference to it.
  bool BeginAsync(const BeginOptions& options,
                  std::function<void(Result<TxnRecord>)> done) override {
    auto s = Now();
    return s != nullptr && s->BeginAsync(options, std::move(done));
  }
  bool CommitAsync(const std::string& gtid, std::function<void(Result<TxnRecord>)> done) override {
    auto s = Now();
    return s != nullptr && s->CommitAsync(gtid, std::move(done));
  }
  std::string NewGtid() const override {
    auto s = Now();
    return s == nullptr ? "" : s->NewGtid();
  }
  bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done) override {
    auto s = Now();
    return s != nullptr && s->SubmitSagaAsync(spec, std::move(done));
  }
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Enlist(gtid, branch);
  }
  bool EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                   std::function<void(Status)> done) override {
    auto s = Now();
    return s != nullptr && s->EnlistAsync(gtid, branch, std::move(done));
  }
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                           int64_t wait_timeout_ms) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Commit(gtid, wait, wait_timeout_ms);
  }
  Result<TxnRecord> Rollback(const std::string& gtid) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Rollback(gtid);
  }
  Result<TxnView> GetStatus(const std::string& gtid) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->GetStatus(gtid);
  }
  Result<TxnRecord> SubmitSaga(const SagaSpec& spec) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->SubmitSaga(spec);
  }
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->QueryOutcome(gtid, branch_id);
  }
  Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor, int limit) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->ListTxns(filter, cursor, limit);
  }
  Result<TxnView> RetryNow(const std::string& gtid, const AdminContext& ctx) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->RetryNow(gtid, ctx);
  }
  Result<TxnView> CancelSaga(const std::string& gtid, const AdminContext& ctx) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->CancelSaga(gtid, ctx);
  }
  Result<TxnView> Resolve(const std::string& gtid, const std::string& branch_id,
                          BranchState resolved, const AdminContext& ctx) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Resolve(gtid, branch_id, resolved, ctx);
  }
  Result<RebindResult> Rebind(const std::string& gtid, const std::string& from_endpoint,
                              const std::string& to_endpoint, const AdminContext& ctx) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Rebind(gtid, from_endpoint, to_endpoint, ctx);
  }
  HealthInfo Health() override {
    auto s = Now();
    if (s) return s->Health();
    HealthInfo info;
    info.node_id = node_id_;
    info.store_kind = store_kind_;
    info.serving = false;
    return info;
  }
  std::vector<std::string> CoordinatorEndpoints() override {
    auto s = Now();
    if (!s) return {};
    return s->CoordinatorEndpoints();
  }
  std::string EndpointOfNode(const std::string& node_id) override {
    auto s = Now();
    if (!s) return "";
    return s->EndpointOfNode(node_id);
  }

 private:
  Status NotServing() {
    std::lock_guard<std::mutex> lock(mu_);
    return Status::Unavailable("coordinator " + node_id_ + " serves nothing at the moment (" +
                               (why_not_.empty() ? std::string("starting") : why_not_) +
                               "); retry");
  }

  const std::string node_id_;
  const std::string store_kind_;
  const int64_t wait_ms_;
  mutable std::mutex mu_;       // guards the three members below
  std::condition_variable cv_;  // notified by Set() and Close()
  std::shared_ptr<CoordinatorService> current_;
  std::string why_not_;  // why current_ is empty
  bool closed_ = false;
};

}  // namespace txc
