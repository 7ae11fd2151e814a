// GroupCommitter: one writer thread per process that drains concurrent
// WriteBatches into one store transaction (TxnStore::ApplyGroup), so N
// concurrent decisions cost one fsync instead of N. Each caller is answered
// only after the store transaction holding its batch committed.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct GroupCommitOptions {
  int max_batches_per_group = 512;   // batches drained into one store transaction
  int64_t write_timeout_ms = 30000;  // Write() gives up waiting after this (kTimeout:
                                     // the outcome is then unknown, re-read)
  // Asked by the writer thread right before each store transaction; false:
  // the whole group is refused with kUnavailable and nothing is written. The
  // coordinator answers "is my lease certainly still mine" here, so a replica
  // that was paused past its lease writes nothing once it runs again. Empty:
  // always allowed.
  std::function<bool()> may_write;
};

class GroupCommitter {
 public:
  GroupCommitter(TxnStore* store, GroupCommitOptions options);
  // Drains what is queued, then stops the writer.
  ~GroupCommitter();

  // Durable write: returns once the store transaction holding `batch` has
  // committed (OK) or the batch was refused (kConflict, kNotFound,
  // kAlreadyExists: nothing applied). kUnavailable / kIndeterminate / kTimeout:
  // the outcome is unknown; re-read before acting.
  Status Write(WriteBatch batch);

  // The same, without blocking: the future is fulfilled when Write() would return.
  std::future<Status> WriteAsync(WriteBatch batch);

  // A write whose loss is harmless (e.g. the final COMMITTED state after every
  // ack): it rides in the next group and nobody waits for it.
  void WriteLater(WriteBatch batch);
  // The same, and `on_done` is called with what Write() would return once the
  // batch's store transaction committed or failed (also kUnavailable when the
  // committer is stopping or fenced). It runs on the writer thread (or on the
  // thread of WriteLater / Fence when refused there): it must be short and
  // must not call Write().
  void WriteLater(WriteBatch batch, std::function<void(const Status&)> on_done);

  struct Stats {
    int64_t groups = 0;   // store transactions issued
    int64_t batches = 0;  // batches written
  };
  Stats GetStats() const;

  // From now on every queued and every new write is refused with `reason`
  // (kUnavailable) without touching the store; a group already inside the
  // store call finishes. Used when the lease is lost. Idempotent.
  void Fence(const Status& reason);

 private:
  struct Pending {
    WriteBatch batch;
    std::promise<Status> done;
    std::function<void(const Status&)> on_done;  // when set, called instead of `done`
    void Finish(Status s);
  };
  void Enqueue(std::unique_ptr<Pending> pending);
  void WriterLoop();

  TxnStore* const store_;
  const GroupCommitOptions options_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable work_cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stopping_ = false;
  Status fenced_;  // not OK once Fence() was called
  Stats stats_;

  std::thread writer_;  // started last in the constructor
};

}  // namespace txc
