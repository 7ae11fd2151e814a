// TxnStore: the durable decision log. One interface, two backends (SQLite for
// one node, PostgreSQL for replicas), one conformance suite run on both
// (store/txn_store_conformance_test.cc).
//
// The store never decides: it applies writes whose conditions the caller states
// (expected state, owner, epoch) and reports kConflict when a condition does not
// hold, changing nothing. Every write is fenced by (owner, epoch) of the
// transaction so that a replica that lost its lease cannot overwrite the new
// owner's decisions.
//
// Thread-safety: every method may be called from any thread. Backends serialise
// internally (a connection per thread or a mutex); the GroupCommitter above
// turns many concurrent writes into one store transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/records.h"
#include "coordinator/core/states.h"

namespace txc {

// A replica's lease: it drives transactions while the lease is live.
struct Lease {
  std::string node_id;
  std::string endpoint;  // "host:port" clients can reach it at
  int64_t epoch = 0;     // bumped each time the node (re)acquires its lease
  int64_t expires_ms = 0;
};

// Whether TxnStore::AcquireLease may take a lease another process still renews.
enum class LeaseTakeover {
  kIfExpired,  // refuse a live lease (kAlreadyExists): starting a second copy must not
               // take the lease from a healthy process
  kAlways,     // take it anyway: the operator replaces the node on purpose
};

// How many transactions are in one state, and the oldest of them.
struct StateSummary {
  TxnState state = TxnState::kActive;
  int64_t count = 0;
  int64_t oldest_created_ms = 0;  // min(created_ms) of those transactions
};

// Which transactions ListTxns returns. Every condition set must hold; unset
// (empty / 0 / nullopt) conditions match everything.
struct TxnFilter {
  std::optional<TxnKind> kind;
  // One of these states. Listing unfinished or PARKED work names those states:
  // the query then reads only their rows through the indexes on state (never
  // the finished history). Empty: any state, finished ones included.
  std::vector<TxnState> states;
  std::string owner;
  int64_t created_after_ms = 0;   // created_ms > this
  int64_t created_before_ms = 0;  // created_ms < this
  int64_t updated_after_ms = 0;   // updated_ms > this
  int64_t updated_before_ms = 0;  // updated_ms < this
  std::string gtid_prefix;
  std::string endpoint;  // has a branch / step at this endpoint
};

// One row of ListTxns.
struct TxnListRow {
  TxnRecord txn;
  std::string last_error;  // of its last branch (by ordinal) that has one; "" if none
};

// One page of ListTxns: oldest first (created_ms, then gtid).
struct TxnPage {
  std::vector<TxnListRow> rows;
  std::string next_cursor;  // pass to the next call; empty: no more rows
};

// Counters for benchmarks and the group-commit test.
struct StoreStats {
  int64_t commits = 0;  // store transactions committed by Apply/ApplyGroup
  int64_t batches = 0;  // WriteBatches applied (committed or refused)
};

class TxnStore {
 public:
  virtual ~TxnStore() = default;

  // "sqlite" or "postgresql".
  virtual const char* Kind() const = 0;

  // Applies the migrations under migrations/coordinator/ not yet applied (each
  // once, even with several processes starting at once) and checks the
  // checksums of those already applied: a changed one is kInternal with a
  // message naming the file.
  virtual Status Migrate() = 0;

  // --- writes -------------------------------------------------------------
  // One batch in its own store transaction. Errors: kConflict, kNotFound,
  // kAlreadyExists (nothing applied), kUnavailable, kIndeterminate (re-read).
  virtual Status Apply(const WriteBatch& batch) = 0;

  // Many batches in ONE store transaction (one fsync); each batch is atomic on
  // its own (a savepoint each): a refused batch does not affect the others.
  // Returns one Status per batch. If the commit itself fails every status is
  // that failure.
  virtual std::vector<Status> ApplyGroup(const std::vector<const WriteBatch*>& batches) = 0;

  // ApplyGroup by the holder of lease (node_id, epoch): a store shared by
  // replicas applies the group only while that is still the node's lease
  // epoch, and keeps the lease from moving on until the group's transaction
  // ends (otherwise every status is kUnavailable "fenced" and nothing is
  // written). This closes the window between the writer's own "is my lease
  // still live" check and its store transaction (a process paused in
  // between). A single-process store has no one to fence: the default is
  // ApplyGroup.
  virtual std::vector<Status> ApplyGroupFenced(const std::vector<const WriteBatch*>& batches,
                                               const std::string& node_id, int64_t epoch) {
    (void)node_id;
    (void)epoch;
    return ApplyGroup(batches);
  }

  // --- reads ----------------------------------------------------------------
  virtual Result<TxnRecord> GetTxn(const std::string& gtid) = 0;
  virtual Result<TxnRecord> FindByIdempotencyKey(const std::string& key) = 0;
  // Branches in ordinal order; empty for an unknown gtid.
  virtual Result<std::vector<BranchRecord>> GetBranches(const std::string& gtid) = 0;
  // Transactions in one of `states` owned by (owner, epoch) with
  // next_attempt_ms <= now_ms, oldest first, at most `limit`. Uses the
  // (state, next_attempt_at) index.
  virtual Result<std::vector<TxnRecord>> ListDue(const std::vector<TxnState>& states,
                                                 const std::string& owner, int64_t epoch,
                                                 int64_t now_ms, int limit) = 0;
  // Count of transactions per state, for health and tests.
  virtual Result<int64_t> CountInStates(const std::vector<TxnState>& states) = 0;
  // For each of `states` that has transactions: their count and the oldest
  // created_ms (states without any are left out), in state order. One query
  // over the (state, next_attempt_at) index; for metrics, so callers cache it.
  virtual Result<std::vector<StateSummary>> SummarizeStates(
      const std::vector<TxnState>& states) = 0;

  // Transactions matching `filter`, oldest first (created_ms, gtid), at most
  // `limit` (1..1000) after `cursor` (empty: from the start; else a
  // next_cursor this method returned). Keyset paging: rows that appear or
  // change while paging never make a page repeat or skip a row that still
  // matches. kInvalidArgument for a malformed cursor or limit.
  virtual Result<TxnPage> ListTxns(const TxnFilter& filter, const std::string& cursor,
                                   int limit) = 0;
  // The audit records of `gtid` (WriteBatch::insert_audits), oldest first;
  // empty for an unknown gtid.
  virtual Result<std::vector<AuditRecord>> GetAudit(const std::string& gtid) = 0;

  // --- retention ------------------------------------------------------------
  // Deletes up to `limit` transactions in a final state (IsFinal: kCommitted,
  // kAborted, kSucceeded, kCompensated; never kParked or anything unfinished)
  // whose updated_ms < cutoff_updated_ms, oldest first, together with their
  // branches, in one store transaction. Returns how many transactions it
  // deleted (0 when limit <= 0). Safe because a final state is written only
  // after every branch acknowledged phase 2 / its compensation (ARCHITECTURE
  // invariant 3): no participant can still ask about a deleted transaction.
  virtual Result<int> DeleteFinishedBefore(int64_t cutoff_updated_ms, int limit) = 0;

  // --- replicas -------------------------------------------------------------
  // Creates or takes over node_id's lease with epoch = previous epoch + 1.
  // With LeaseTakeover::kIfExpired a lease that is still live (expires_ms >
  // now_ms: another process of this node id renews it) is left alone and the
  // answer is kAlreadyExists naming its endpoint, epoch and expiry.
  virtual Result<Lease> AcquireLease(const std::string& node_id, const std::string& endpoint,
                                     int64_t ttl_ms, int64_t now_ms, LeaseTakeover takeover) = 0;
  // The same with LeaseTakeover::kAlways (tests, deliberate replacement).
  Result<Lease> AcquireLease(const std::string& node_id, const std::string& endpoint,
                             int64_t ttl_ms, int64_t now_ms) {
    return AcquireLease(node_id, endpoint, ttl_ms, now_ms, LeaseTakeover::kAlways);
  }
  // Extends the lease if its epoch is still `epoch`; kConflict when another
  // process took it (this process must stop driving transactions).
  virtual Status RenewLease(const std::string& node_id, int64_t epoch, int64_t ttl_ms,
                            int64_t now_ms) = 0;
  virtual Result<std::vector<Lease>> ListLeases() = 0;
  // Takes over up to `limit` unfinished transactions whose owner's lease
  // expired before now_ms, or that node_id owns under an older epoch: sets
  // (owner, epoch) := (node_id, epoch) and next_attempt_ms := now_ms. Uses
  // FOR UPDATE SKIP LOCKED on PostgreSQL. Returns how many were claimed.
  virtual Result<int> ClaimOrphans(const std::string& node_id, int64_t epoch, int64_t now_ms,
                                   int limit) = 0;

  virtual StoreStats Stats() const = 0;

  // Whether the store answers in time: OK, or kUnavailable naming the last
  // failure when the most recent store call failed or one is stuck past its
  // deadline (e.g. a commit waiting for a dead synchronous standby). Cheap (no
  // I/O): it reports what the calls saw; the lease renewal is the heartbeat.
  virtual Status HealthCheck() const { return Status::Ok(); }
};

// How OpenStore() sets up a store beyond its location.
struct StoreOpenOptions {
  // The coordinator's lease TTL. PostgreSQL: store calls and sessions get
  // deadlines derived from it (call_timeout_ms below) so that a stuck or paused
  // session never outlives a lease. 0: the PostgresStoreOptions defaults.
  int64_t lease_ttl_ms = 0;
  // PostgreSQL: deadline of each store call (client side: the query is
  // cancelled) and statement_timeout, lock_timeout and
  // idle_in_transaction_session_timeout of its sessions. 0: lease_ttl_ms / 2.
  int64_t call_timeout_ms = 0;
};

// Opens a store from a location, as ParseStoreLocation (store_location.h)
// reads it: "postgresql://..." / "postgres://..." or a libpq key=value string
// ("host=... dbname=...") selects PostgreSQL; "sqlite://PATH" or anything else
// is a SQLite file path. Does not migrate.
Result<std::unique_ptr<TxnStore>> OpenStore(const std::string& location,
                                            const StoreOpenOptions& options = {});

}  // namespace txc
