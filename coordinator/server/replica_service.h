// ReplicaService: the TxnService the Thrift handler of a coordinator process
// talks to for the whole life of the process. It forwards every call to the
// CoordinatorService of the current *incarnation* (one lease epoch: its group
// commit, drivers and sweeper), which CoordinatorServer swaps when the lease
// is lost and acquired again. A call holds the incarnation it started on
// (shared_ptr) until it returns, so an incarnation is torn down only after
// its last call ended; calls made while there is none (re-registering)
// answer kUnavailable, which clients retry.
//
// Thread-safety: every method may be called concurrently with Set().
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "coordinator/service/coordinator_service.h"

namespace txc {

class ReplicaService : public TxnService {
 public:
  // node_id and store_kind are what Health() reports while no incarnation serves.
  ReplicaService(std::string node_id, std::string store_kind)
      : node_id_(std::move(node_id)), store_kind_(std::move(store_kind)) {}

  // The incarnation's service (may be empty: nothing serves).
  void Set(std::shared_ptr<CoordinatorService> current) {
    std::atomic_store(&current_, std::move(current));
  }
  std::shared_ptr<CoordinatorService> Get() const { return std::atomic_load(&current_); }

  Result<TxnRecord> Begin(const BeginOptions& options) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Begin(options);
  }
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override {
    auto s = Get();
    if (!s) return NotServing();
    return s->Enlist(gtid, branch);
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
  HealthInfo Health() override {
    auto s = Get();
    if (s) return s->Health();
    HealthInfo info;
    info.node_id = node_id_;
    info.store_kind = store_kind_;
    info.serving = false;
    return info;
  }
  std::vector<std::string> CoordinatorEndpoints() override {
    auto s = Get();
    if (!s) return {};
    return s->CoordinatorEndpoints();
  }
  std::string EndpointOfNode(const std::string& node_id) override {
    auto s = Get();
    if (!s) return "";
    return s->EndpointOfNode(node_id);
  }

 private:
  Status NotServing() const {
    return Status::Unavailable("coordinator " + node_id_ +
                               " is re-acquiring its lease and serves nothing yet; retry");
  }

  const std::string node_id_;
  const std::string store_kind_;
  std::shared_ptr<CoordinatorService> current_;  // atomic_load / atomic_store only
};

}  // namespace txc
