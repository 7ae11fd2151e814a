// GroupCommitter: one writer thread per process that drains concurrent
// WriteBatches into one store transaction (TxnStore::ApplyGroup), so N
// concurrent decisions cost one fsync instead of N. Each caller is answered
// only after the store transaction holding its batch committed.
//
// In the manner of LevelDB's write queue, with bounds:
//  * a group holds at most max_batches_per_group batches and
//    max_group_bytes (estimated) bytes, but always at least one batch;
//  * the queue holds at most max_queued_batches / max_queued_bytes: past
//    that a write is refused at once with kUnavailable ("overloaded", retry
//    later) instead of the queue growing without bound;
//  * a Write() whose wait ran out while its batch was still queued takes it
//    back: it is never applied afterwards, and the caller is told so
//    (kUnavailable, nothing written). Only a batch already inside a store
//    transaction when the wait ran out is answered kTimeout (outcome unknown).
//
// The writer thread only writes: the answers of a committed group (waiters
// woken, WriteLater callbacks run, in queue order) are handed as a whole to a
// second thread, "group-done", so the next group's store transaction starts
// while the last one's callbacks run.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/status.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct GroupCommitOptions {
  int max_batches_per_group = 512;               // batches drained into one store transaction
  int64_t max_group_bytes = 4 << 20;             // estimated bytes per store transaction
  int max_queued_batches = 16384;                // queued (not yet in a group) before refusing
  int64_t max_queued_bytes = int64_t{64} << 20;  // estimated queued bytes before refusing
  int64_t write_timeout_ms = 30000;  // Write() gives up waiting after this (see the class comment)
  // Asked by the writer thread right before each store transaction; false:
  // the whole group is refused with kUnavailable and nothing is written. The
  // coordinator answers "is my lease certainly still mine" here, so a replica
  // that was paused past its lease writes nothing once it runs again. Empty:
  // always allowed.
  std::function<bool()> may_write;
  // The lease this committer writes under: when fence_node is set, every
  // group goes through TxnStore::ApplyGroupFenced(fence_node, fence_epoch),
  // so a group delayed past may_write (the process paused between the check
  // and the store call) cannot be written once the lease moved on.
  std::string fence_node;
  int64_t fence_epoch = 0;
  // Observers for metrics, called on the writer thread after each store
  // transaction (they must be cheap and must not block): every batch the
  // store applied, then the transaction itself (batches in it, seconds the
  // store call took, false if it failed or its outcome is unknown). Empty:
  // not observed. The coordinator points them at its metrics; the store
  // layer itself knows nothing of metrics.
  std::function<void(const WriteBatch&)> on_batch_applied;
  std::function<void(size_t batches, double seconds, bool ok)> on_store_transaction;
  // Called (on the writer's caller's thread) for each write refused as overloaded.
  std::function<void()> on_overloaded;
};

class GroupCommitter {
 public:
  GroupCommitter(TxnStore* store, GroupCommitOptions options);
  // Drains what is queued, then stops the writer.
  ~GroupCommitter();

  // Durable write: returns once the store transaction holding `batch` has
  // committed (OK) or the batch was refused (kConflict, kNotFound,
  // kAlreadyExists: nothing applied). kUnavailable: not applied and never will
  // be (overloaded, fenced, or taken back after write_timeout_ms in the queue).
  // kTimeout / kIndeterminate / kInternal: the outcome is unknown; re-read
  // before acting.
  Status Write(WriteBatch batch);

  // The same, without blocking and without a timeout: the future is fulfilled
  // when the batch was written or refused.
  std::future<Status> WriteAsync(WriteBatch batch);

  // A write whose loss is harmless (e.g. the final COMMITTED state after every
  // ack): it rides in the next group and nobody waits for it.
  void WriteLater(WriteBatch batch);
  // The same, and `on_done` is called with what Write() would return once the
  // batch's store transaction committed or failed (also kUnavailable when the
  // committer is stopping, fenced or overloaded). It runs on the group-done
  // thread, in queue order (or on the thread of WriteLater / Fence when
  // refused there): it must be short and must not call Write().
  void WriteLater(WriteBatch batch, std::function<void(const Status&)> on_done);

  // The durable write of Write(), answered through `on_done` instead of a
  // blocked caller (the coordinator's event-loop front end answers a
  // beginTxn this way). `on_done` is called exactly once, with what Write()
  // would return: on the group-done thread once the batch's store
  // transaction committed or failed, or on this thread when refused at once.
  // A batch still queued after write_timeout_ms is taken back (never applied)
  // and answered kUnavailable by the group-done thread, which looks for such
  // batches at least every kTakeBackScanMs; one already inside a store
  // transaction is answered when that store call returns (the store's own
  // timeouts bound it). `on_done` must be short and must not call Write().
  void WriteAsync(WriteBatch batch, std::function<void(const Status&)> on_done);

  // How often the group-done thread looks for WriteAsync batches to take back.
  static constexpr int64_t kTakeBackScanMs = 200;

  // From now on every queued and every new write is refused with `reason`
  // (kUnavailable) without touching the store; a group already inside the
  // store call finishes before Fence() returns (at most write_timeout_ms; its
  // callers are answered on the answer thread, possibly just after).
  // Used when the lease is lost. Idempotent.
  void Fence(const Status& reason);

  struct Stats {
    int64_t groups = 0;      // store transactions issued
    int64_t batches = 0;     // batches written
    int64_t overloaded = 0;  // writes refused because the queue was full
    int64_t taken_back = 0;  // writes whose caller gave up while they were queued
  };
  Stats GetStats() const;

  // The estimate of a batch's size the byte limits use.
  static int64_t EstimateBytes(const WriteBatch& batch);

 private:
  struct Pending {
    enum Phase : int { kQueued = 0, kTaken = 1, kAbandoned = 2 };
    WriteBatch batch;
    int64_t bytes = 0;
    std::promise<Status> done;
    std::function<void(const Status&)> on_done;  // when set, called instead of `done`
    // WriteAsync: MonotonicMs() after which a still queued batch is taken
    // back by the group-done thread; 0: never (Write() takes back itself).
    int64_t take_back_at_ms = 0;
    void Finish(Status s);
    // kQueued -> kTaken (the writer put it in a group) or kQueued ->
    // kAbandoned (its caller gave up first); exactly one of the two wins.
    std::atomic<int> phase{kQueued};
  };
  // Queues `pending`; nullptr (and *refused set, pending finished) when it
  // cannot be queued.
  std::shared_ptr<Pending> Enqueue(std::shared_ptr<Pending> pending, Status* refused);
  void WriterLoop();
  // Answers what the writer handed over, in order, until stopped and drained;
  // every kTakeBackScanMs also takes back expired WriteAsync batches.
  void AnswerLoop();
  // Takes the queued WriteAsync batches whose take_back_at_ms passed out of
  // the queue (they are never applied) and answers them kUnavailable.
  void TakeBackExpired(int64_t now_ms);

  using Answer = std::pair<std::shared_ptr<Pending>, Status>;

  TxnStore* const store_;
  const GroupCommitOptions options_;

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;  // signalled when in_store_call_ turns false
  bool in_store_call_ = false;       // the writer holds a group it has not answered yet
  std::deque<std::shared_ptr<Pending>> queue_;
  int64_t queued_bytes_ = 0;       // sum of bytes in queue_
  int queued_with_take_back_ = 0;  // WriteAsync batches in queue_ (skip the scan when 0)
  bool stopping_ = false;
  Status fenced_;  // not OK once Fence() was called
  Stats stats_;

  std::mutex answers_mu_;  // guards the three fields below (never taken with mu_ held)
  std::condition_variable answers_cv_;
  std::vector<Answer> answers_;  // answers of committed groups, oldest first
  bool answers_stop_ = false;    // the writer stopped: answer what is left, then end

  std::thread answerer_;  // runs AnswerLoop
  std::thread writer_;    // started last in the constructor
};

}  // namespace txc
