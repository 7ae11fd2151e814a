// SagaDriver: runs sagas. Implements SagaOps (coordinator/service/txn_service.h).
//
// Data flow, per saga: the core planner (coordinator/core/saga.h) decides,
// the decision is logged through the GroupCommitter, and only then are
// participants called (wire Participant action / compensate over pooled
// connections). Every step outcome is logged before the next step or
// compensation starts; the outcome of one step and the start of the next
// ride in one WriteBatch.
//
//   SubmitSaga: validate -> log txn RUNNING + steps PENDING, those that can
//               start at once already RUNNING (one batch) ->
//               answer at once, or wait for SUCCEEDED / COMPENSATED (or the wait
//               timeout) -> steps run on the "saga-worker" pool.
//   Actions:    SUCCESS -> DONE; FAILURE -> FAILED -> compensation;
//               RETRY_LATER / transport error -> retried with backoff + jitter
//               within the step's retry policy, then FAILED.
//   Compensations: retried with capped backoff; a step delivered
//               park_after_attempts times parks the saga (PARKED), after which the
//               sweeper Resume()s it every parked_retry_ms, forever.
//   Resume:     reloads a saga from the store and drives it (a crash left it
//               RUNNING / COMPENSATING, or it is PARKED); a no-op for a saga this
//               process is already driving.
//
// Every write is fenced by the saga's (owner, epoch). A refused or failed
// write abandons the in-memory run: the store stays the truth and the sweeper
// resumes the saga when its next_attempt_ms is due. While a saga is driven
// here its next_attempt_ms is kept in_flight_recheck_ms ahead.
//
// Crash points: "saga.after_action_logged" (an action outcome is durable, the
// next step not started), "saga.mid_compensation" (a compensation is logged,
// others remain).
//
// Thread-safety: every public method may be called from any thread. No lock
// is held across a store call or an RPC. Lock order: runs_mu_, then Run::mu
// (never the other way; mostly never nested).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "coordinator/core/saga.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct SagaDriverOptions {
  int worker_threads = 32;           // "saga-worker": participant calls and logging
  int connect_timeout_ms = 1000;     // to a participant
  int call_timeout_ms = 5000;        // one action / compensate call
  int32_t park_after_attempts = 10;  // compensation deliveries before PARKED
  BackoffPolicy compensation_backoff{100, 5000, 2.0};
  int64_t parked_retry_ms = 30000;       // how often the sweeper retries a PARKED saga
  int64_t in_flight_recheck_ms = 10000;  // next_attempt_ms lead while driven here
  // Every replica's endpoint, for TxnContext.coordinators; default {node.endpoint}.
  std::function<std::vector<std::string>()> coordinators;
  // Picks the gtid of a saga submitted without one; default "<node>-saga-<32 hex>".
  std::function<std::string()> new_gtid;
};

class SagaDriver : public SagaOps {
 public:
  SagaDriver(TxnStore* store, GroupCommitter* log, NodeInfo node, SagaDriverOptions options);
  // Stops the pools; sagas still running stay in the store for the sweeper.
  ~SagaDriver() override;

  // Errors: kInvalidArgument (bad definition, nothing stored); kAlreadyExists
  // (the gtid names a different definition or a 2PC transaction); kUnavailable /
  // kTimeout / kIndeterminate (not known whether it was logged: resubmit with
  // the same gtid). Returns the saga as logged, or as it ended / stood when
  // the wait ran out.
  Result<TxnRecord> SubmitSaga(const SagaSpec& spec) override;

  // Non-blocking: the work goes to the pool.
  void Resume(const TxnRecord& txn) override;

  // Makes every SubmitSaga waiting for completion answer now with the current
  // state, and later ones not wait (shutdown: the rpc server can then stop
  // without waiting out wait_timeout_ms). Sagas keep running.
  void StopWaiting();

  struct Stats {
    int64_t batches_written = 0;  // WriteBatches this driver logged
    int64_t sagas_submitted = 0;
    int64_t sagas_finished = 0;
  };
  Stats GetStats() const;
  // Sagas driven in memory right now.
  size_t ActiveForTests();

 private:
  struct Run;
  class Workers;

  // Plans, logs, then dispatches, until nothing changes; one thread per run at a time.
  void Advance(const std::shared_ptr<Run>& run);
  void CallAction(const std::shared_ptr<Run>& run, const std::string& step_id);
  void CallCompensation(const std::shared_ptr<Run>& run, const std::string& step_id);
  // Copies the run's transaction and step `step_id` under run.mu; false when the run is gone.
  static bool SnapshotStep(Run& run, const std::string& step_id, TxnRecord* txn,
                           BranchRecord* step);
  // After `delay_ms`, step `step_id` stops being busy and the run advances.
  void RetryStepAfter(const std::shared_ptr<Run>& run, const std::string& step_id,
                      int64_t delay_ms);
  // Forgets the run (finished, parked with nothing in flight, or a write failed).
  void Release(const std::shared_ptr<Run>& run, const char* why);
  void ResumeNow(const std::string& gtid);
  // Waits for the run to end (at most wait_timeout_ms); if it was let go
  // unfinished, goes on waiting on the store.
  Result<TxnRecord> WaitFor(const std::shared_ptr<Run>& run, int64_t wait_timeout_ms);
  // Polls the store (backoff with jitter) until the saga is final or PARKED,
  // deadline_ms (monotonic) passes or StopWaiting(); returns the last record read.
  Result<TxnRecord> WaitInStore(TxnRecord txn, int64_t deadline_ms);
  // A saga owned by a replica whose lease lapsed (or an older epoch of this
  // node): one fenced write makes it this node's, so ResumeNow drives it.
  void TakeOverIfOwnerDead(const TxnRecord& txn);
  std::vector<std::string> Coordinators();

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  SagaDriverOptions options_;
  SagaPlanOptions plan_options_;

  std::unique_ptr<Workers> workers_;  // the pool and the retry timer

  std::mutex runs_mu_;                                // guards runs_
  std::map<std::string, std::shared_ptr<Run>> runs_;  // sagas driven here, by gtid

  std::atomic<bool> stop_waiting_{false};
  std::atomic<int64_t> batches_written_{0};
  std::atomic<int64_t> sagas_submitted_{0};
  std::atomic<int64_t> sagas_finished_{0};
};

}  // namespace txc
