// SqliteStore: the embedded single-node TxnStore on one SQLite file.
//
// WAL journal with synchronous=FULL: a commit is durable when it returns. One
// write connection (writes serialise on write_mu_, each in BEGIN IMMEDIATE);
// reads use a small pool of read-only connections, which in WAL mode never
// wait for the writer. WAL checkpoints run on a thread of their own (a
// PASSIVE checkpoint once the WAL holds checkpoint_pages pages), not inside a
// commit, so the writer's commits never wait for the database file's fsync.
// Several processes may open the same file (busy_timeout
// arbitrates), though one coordinator per file is the intended use.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/store_util.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct SqliteStoreOptions {
  int busy_timeout_ms = 10000;  // how long a statement waits for another process's lock
  size_t max_idle_readers = 8;  // read connections kept open
  // WAL size (pages) past which the checkpoint thread copies the WAL into the
  // database file (SQLite's own auto-checkpoint, inside a commit, is off).
  // Past 4x this, the writer finishes the copy itself so that the WAL restarts.
  int checkpoint_pages = 1000;
};

class SqliteStore final : public TxnStore {
 public:
  // Opens (creating if needed) the database file at `path` in WAL mode. Does
  // not migrate. kUnavailable when the file cannot be opened.
  static Result<std::unique_ptr<SqliteStore>> Open(const std::string& path,
                                                   SqliteStoreOptions options = {});
  ~SqliteStore() override;

  const char* Kind() const override { return "sqlite"; }
  Status Migrate() override;

  Status Apply(const WriteBatch& batch) override;
  std::vector<Status> ApplyGroup(const std::vector<const WriteBatch*>& batches) override;

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

  // A connection with its prepared statements (public for the .cc's helpers).
  class Conn;

 private:
  SqliteStore(std::string path, SqliteStoreOptions options);

  // Runs fn(reader) on a pooled read connection.
  template <typename Fn>
  auto WithReader(Fn&& fn) -> decltype(fn(std::declval<Conn&>()));
  // Applies one batch on the writer inside an open transaction. Refusals
  // (kConflict, kNotFound, kAlreadyExists, kInvalidArgument) leave the caller
  // to roll back; other errors mean the transaction must be abandoned.
  Status ApplyBatchLocked(const WriteBatch& batch, int64_t now_ms);
  std::vector<Status> ApplyGroupLocked(const std::vector<const WriteBatch*>& batches);
  // One store transaction over the batches not yet `refused`, each in a
  // savepoint or not. A refusal is recorded in `results` and `refused`; without
  // savepoints it rolls the transaction back and sets `redo` when other
  // batches are left to apply. A non-OK return is an error for every batch
  // not refused (nothing of this pass is applied, or, kIndeterminate, unknown).
  Status ApplyPassLocked(const std::vector<const WriteBatch*>& batches, bool savepoints,
                         std::vector<bool>* refused, std::vector<Status>* results, bool* redo);
  // The checkpoint thread's loop (on its own connection), woken by WalCommitted.
  void CheckpointLoop(std::unique_ptr<Conn> conn);
  // sqlite3_wal_hook of the writer: called after each commit with the WAL's size.
  static int WalCommitted(void* self, sqlite3* db, const char* name, int pages);

  const std::string path_;
  const SqliteStoreOptions options_;

  std::mutex write_mu_;           // serialises every write; guards writer_
  std::unique_ptr<Conn> writer_;  // guarded by write_mu_

  std::mutex readers_mu_;  // guards idle_readers_
  std::vector<std::unique_ptr<Conn>> idle_readers_;

  store_internal::StoreCounters counters_;

  std::mutex checkpoint_mu_;               // guards the two fields below
  std::condition_variable checkpoint_cv_;  // WAL past checkpoint_pages, or stopping
  bool checkpoint_due_ = false;
  bool checkpoint_stop_ = false;
  int wal_pages_signalled_ = 0;  // WAL size at the last pass asked for; writer thread only
  std::thread checkpointer_;     // runs CheckpointLoop; none for an in-memory database
};

}  // namespace txc
