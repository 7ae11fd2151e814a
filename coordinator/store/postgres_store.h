// PostgresStore: the TxnStore shared by coordinator replicas, on PostgreSQL
// through libpqxx 6.4.
//
// A bounded pool of connections (each used by one thread at a time, its
// statements prepared on first use). A connection that reports
// pqxx::broken_connection is dropped and the next call makes a new one, so a
// restarted or failed-over server (multi-host connection string with
// target_session_attrs=read-write) is picked up without a restart. A read is
// retried once on a fresh connection; a write that broke before its commit
// was sent is retried once too (nothing of it was applied); a commit whose
// outcome is unknown (pqxx::in_doubt_error) is kIndeterminate.
//
// Deadlines: every call has one (call_timeout_ms). A watchdog thread cancels
// the running query of a call past it (PQcancel) and the connection is then
// discarded. A write cancelled while its commit waited for a synchronous
// standby is committed locally but maybe not replicated: kIndeterminate
// (re-read), never "not committed". Every session also runs with
// statement_timeout, lock_timeout and idle_in_transaction_session_timeout
// (session_timeout_ms), so a session whose process is paused inside a
// transaction (SIGSTOP, VM freeze) loses its row locks after that long and
// another replica can claim its rows once its lease expired.
// HealthCheck() reports a failing or stuck store: the latest failed call when
// no write succeeded since, or a call past its deadline.
//
// ApplyGroup writes the whole group with a few multi-row statements when its
// batches touch distinct transactions. Otherwise it splits the group into runs
// of consecutive batches that do, each written together under a savepoint, so
// the outcome is that of applying the batches one after another. A run with a
// refused batch is redone batch by batch, a savepoint each, so a refused
// batch never affects the others.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/store_util.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct PostgresStoreOptions {
  // Connections opened at most; all are kept open between calls. A call that
  // finds them all busy waits for one (up to acquire_timeout_ms, then
  // kUnavailable) instead of opening and closing a connection of its own.
  size_t max_connections = 32;
  int64_t acquire_timeout_ms = 10000;
  // Largest number of rows of one kind in one multi-row statement.
  size_t max_rows_per_statement = 256;
  // Client-side deadline of each call (including its wait for a connection
  // and its commit); past it the query is cancelled. 0: none.
  int64_t call_timeout_ms = 5000;
  // statement_timeout, lock_timeout and idle_in_transaction_session_timeout of
  // every session (0: the server's settings). Keep it below the lease TTL.
  int64_t session_timeout_ms = 5000;
};

class PostgresStore final : public TxnStore {
 public:
  // Connects once to check the connection string (kUnavailable when the
  // server cannot be reached). Does not migrate.
  static Result<std::unique_ptr<PostgresStore>> Open(const std::string& connection_string,
                                                     PostgresStoreOptions options = {});
  ~PostgresStore() override;

  const char* Kind() const override { return "postgresql"; }
  Status Migrate() override;

  Status Apply(const WriteBatch& batch) override;
  std::vector<Status> ApplyGroup(const std::vector<const WriteBatch*>& batches) override;
  // Locks the node's lease row (FOR SHARE) first in the group's transaction:
  // a lease re-acquire (epoch + 1) waits for the group, and a group whose
  // epoch is gone is refused.
  std::vector<Status> ApplyGroupFenced(const std::vector<const WriteBatch*>& batches,
                                       const std::string& node_id, int64_t epoch) override;

  Result<TxnRecord> GetTxn(const std::string& gtid) override;
  Result<TxnRecord> FindByIdempotencyKey(const std::string& key) override;
  Result<std::vector<BranchRecord>> GetBranches(const std::string& gtid) override;
  Result<std::vector<TxnRecord>> ListDue(const std::vector<TxnState>& states,
                                         const std::string& owner, int64_t epoch, int64_t now_ms,
                                         int limit) override;
  Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor, int limit) override;
  Result<std::vector<AuditRecord>> GetAudit(const std::string& gtid) override;
  Result<int64_t> CountInStates(const std::vector<TxnState>& states) override;
  Result<std::vector<StateSummary>> SummarizeStates(const std::vector<TxnState>& states) override;
  Result<int> DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) override;

  using TxnStore::AcquireLease;
  Result<Lease> AcquireLease(const std::string& node_id, const std::string& endpoint,
                             int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) override;
  Status RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                    int64_t now_ms) override;
  Result<std::vector<Lease>> ListLeases() override;
  Result<int> ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                           int limit) override;

  StoreStats Stats() const override;
  Status HealthCheck() const override;

  // Group-path counters for tests and benchmarks: groups written with the
  // multi-row statements vs. with a savepoint per batch.
  int64_t FastGroupsForTests() const { return fast_groups_.load(); }
  int64_t SavepointGroupsForTests() const { return savepoint_groups_.load(); }

  // One pooled connection (public for the .cc's helpers).
  struct Conn;

 private:
  PostgresStore(std::string connection_string, PostgresStoreOptions options);
  // ApplyGroup, fenced by (fence_node, fence_epoch) unless fence_node is null.
  std::vector<Status> ApplyGroupIn(const std::vector<const WriteBatch*>& batches,
                                   const std::string* fence_node, int64_t fence_epoch);

  Result<std::unique_ptr<Conn>> Acquire();
  void Release(std::unique_ptr<Conn> conn);
  // Forgets a connection that broke (and every idle one: they are likely
  // broken too after a server restart or failover).
  void Drop(std::unique_ptr<Conn> conn);
  // Closes a connection whose state is unknown (e.g. after a cancel), alone.
  void Discard(std::unique_ptr<Conn> conn);
  enum class CallKind { kRead, kWrite };
  // Runs fn(conn) -> Result/Status with library exceptions mapped to a Status,
  // under the call deadline. `retry_broken`: one retry on a fresh connection
  // after broken_connection. A kWrite cancelled at its deadline that still
  // reports success is kIndeterminate (its commit may not be replicated).
  template <typename Fn>
  auto Run(const char* what, CallKind kind, bool retry_broken, Fn&& fn)
      -> decltype(fn(std::declval<Conn&>()));
  // The watchdog: cancels the query of every busy connection past its deadline.
  void WatchdogLoop();
  void StartCall(Conn* conn);
  // Returns whether the call was cancelled.
  bool EndCall(Conn* conn);
  void RecordOutcome(const Status& s);

  const std::string connection_string_;
  const PostgresStoreOptions options_;

  std::mutex pool_mu_;               // guards idle_ and open_
  std::condition_variable pool_cv_;  // a connection was released or dropped
  std::vector<std::unique_ptr<Conn>> idle_;
  size_t open_ = 0;  // connections that exist (idle or in use)

  mutable std::mutex calls_mu_;       // guards busy_, stop_; never held with pool_mu_
  std::condition_variable calls_cv_;  // stop_ was set
  std::set<Conn*> busy_;              // connections inside a call with a deadline
  bool stop_ = false;
  std::thread watchdog_;  // runs WatchdogLoop when call_timeout_ms > 0

  mutable std::mutex health_mu_;  // guards the three below
  Status last_failure_;           // of the latest failed call
  int64_t last_failure_mono_ms_ = 0;
  int64_t last_success_mono_ms_ = 0;

  store_internal::StoreCounters counters_;
  std::atomic<int64_t> fast_groups_{0};
  std::atomic<int64_t> savepoint_groups_{0};
};

}  // namespace txc
