// CoordinatorService: the TxnService every coordinator replica serves.
//
// It implements begin, status, health and the replica list itself (they only
// need the store), and forwards the protocol operations to the 2PC and Saga
// drivers, which are plugged in after construction:
//
//   CoordinatorService service(store, log, node);
//   service.SetTwoPhaseOps(two_phase_driver);   // enlist, commit, rollback, queryOutcome
//   service.SetSagaOps(saga_driver);            // submitSaga
//
// While a driver is not set its operations answer kUnavailable ("not
// implemented in this build"), after input validation and, for enlist, commit
// and rollback, a lookup that answers kNotFound for an unknown gtid.
//
// Begin is durable before it answers: the transaction row and the branches it
// carries are one WriteBatch written through the GroupCommitter. A begin with
// an idempotency key that already names a transaction returns that
// transaction, also when two begins with the same key race (the store's unique
// key decides, the loser re-reads) — if it was begun with the same timeout and
// carries the same branches; a key reused for a different begin is
// kInvalidArgument ("idempotency_key: ...") and changes nothing.
//
// Thread-safety: every method may be called concurrently. SetTwoPhaseOps /
// SetSagaOps may be called at any time; the ops objects must outlive this one.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/core/admin.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct CoordinatorServiceOptions {
  // How often the list of replicas (the lease table) is read again, by a
  // thread of the service's own ("replica-cache"): callers of
  // CoordinatorEndpoints / EndpointOfNode / Health only read the cache, so a
  // slow or hung store never holds the thread that asks (an event loop).
  int64_t replica_cache_ms = 1000;
};

class CoordinatorService : public TxnService {
 public:
  // Reads the lease table once before it returns, then every
  // options.replica_cache_ms on its own thread.
  CoordinatorService(TxnStore* store, GroupCommitter* log, NodeInfo node,
                     CoordinatorServiceOptions options = {});
  ~CoordinatorService() override;
  CoordinatorService(const CoordinatorService&) = delete;
  CoordinatorService& operator=(const CoordinatorService&) = delete;

  // Reads the lease table into the replica cache now (the cache thread does
  // this every replica_cache_ms). A failed read keeps the cache as it was.
  void RefreshReplicas();

  // Once SetTwoPhaseOps returns, no call into the previous ops is running
  // from an asynchronous begin's answer (which holds no reference to it).
  void SetTwoPhaseOps(TwoPhaseOps* ops) {
    std::unique_lock<std::shared_mutex> lock(begun_mu_);
    two_phase_.store(ops, std::memory_order_release);
  }
  void SetSagaOps(SagaOps* ops) { saga_.store(ops, std::memory_order_release); }
  // Whether this replica accepts work. When false (shutting down, lease lost)
  // every operation but GetStatus/Health/CoordinatorEndpoints answers
  // kUnavailable, so nothing new is written; Health() reports it.
  void SetServing(bool serving) { serving_.store(serving, std::memory_order_release); }

  const NodeInfo& node() const { return node_; }

  // Errors: kInvalidArgument (nothing written), kUnavailable / kTimeout /
  // kIndeterminate (outcome unknown: retry with the same idempotency key).
  Result<TxnRecord> Begin(const BeginOptions& options) override;
  // Without an idempotency key: validated, then written through
  // GroupCommitter::WriteAsync and answered by the group-done thread.
  bool BeginAsync(const BeginOptions& options,
                  std::function<void(Result<TxnRecord>)> done) override;
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override;
  bool EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                   std::function<void(Status)> done) override;
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                           int64_t wait_timeout_ms) override;
  bool CommitAsync(const std::string& gtid, std::function<void(Result<TxnRecord>)> done) override;
  Result<TxnRecord> Rollback(const std::string& gtid) override;
  // kNotFound for an unknown gtid, kInvalidArgument for a malformed one.
  Result<TxnView> GetStatus(const std::string& gtid) override;
  Result<TxnRecord> SubmitSaga(const SagaSpec& spec) override;
  bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done) override;
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) override;
  HealthInfo Health() override;
  // This replica first when its own lease is not (yet) in the cache, then
  // every replica whose cached lease has not expired by now. No store call.
  std::vector<std::string> CoordinatorEndpoints() override;

  // Operator actions (core/admin.h decides; written through the group commit,
  // re-planned on kConflict; then the driver is told: AdminChanged).
  Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor, int limit) override;
  Result<TxnView> RetryNow(const std::string& gtid, const AdminContext& ctx) override;
  Result<TxnView> CancelSaga(const std::string& gtid, const AdminContext& ctx) override;
  Result<TxnView> Resolve(const std::string& gtid, const std::string& branch_id,
                          BranchState resolved, const AdminContext& ctx) override;
  Result<RebindResult> Rebind(const std::string& gtid, const std::string& from_endpoint,
                              const std::string& to_endpoint, const AdminContext& ctx) override;
  // From the replica cache (no store call); "" when not live.
  std::string EndpointOfNode(const std::string& node_id) override;

  // A new globally unique transaction id: "<node tag>-<32 hex digits>" where
  // the hex digits are 128 random bits. Thread-safe.
  std::string NewGtid() const override;

 private:
  Status CheckServing() const;
  // Begin's checks of its input (nothing read or written).
  Status ValidateBegin(const BeginOptions& options) const;
  // The begin's write: the ACTIVE record (a new gtid) and its branches.
  WriteBatch PlanBegin(const BeginOptions& options) const;
  // The answer to a begin once its write returned `written`.
  Result<TxnRecord> Begun(TxnRecord txn, std::vector<BranchRecord> branches, const Status& written,
                          const BeginOptions& options);
  // `existing` (named by options.idempotency_key), if it answers a begin of
  // `options`; else kInvalidArgument naming the difference.
  Result<TxnRecord> SameBegin(TxnRecord existing, const BeginOptions& options);
  // Reads the transaction, asks `plan` for the writes, logs them (re-reading
  // and planning again when the transaction moved meanwhile: kConflict), then
  // tells its driver. *changed: whether anything was written.
  using AdminPlanFn = std::function<Result<WriteBatch>(
      const TxnRecord&, const std::vector<BranchRecord>&, const AdminActor&)>;
  Result<TxnView> RunAdmin(const char* action, const std::string& gtid, const AdminContext& ctx,
                           const AdminPlanFn& plan, bool* changed = nullptr);
  // Validates the gtid and answers kNotFound when no such transaction exists.
  Status CheckExists(const std::string& gtid);
  // The cache thread: RefreshReplicas every replica_cache_ms until stopped.
  void ReplicaCacheLoop();

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  const CoordinatorServiceOptions options_;
  const std::string gtid_prefix_;  // node id reduced to safe characters, short

  std::atomic<TwoPhaseOps*> two_phase_{nullptr};
  std::shared_mutex begun_mu_;  // held shared while Begun() tells two_phase_ (see SetTwoPhaseOps)
  std::atomic<SagaOps*> saga_{nullptr};
  std::atomic<bool> serving_{true};

  std::mutex leases_mu_;               // guards the members below
  std::vector<Lease> leases_;          // the lease table at the last successful refresh
  bool leases_stop_ = false;           // the destructor runs: the cache thread ends
  std::condition_variable leases_cv_;  // leases_stop_ was set
  std::thread leases_thread_;          // runs ReplicaCacheLoop; started last
};

}  // namespace txc
