// Sweeper: the recovery loop every replica runs. Each pass (every
// interval_ms, with jitter):
//
//   1. TxnStore::ClaimOrphans: take over unfinished transactions whose
//      owner's lease expired, or that this node owned under an older epoch
//      (this process restarted): they become (this node, this epoch) with
//      next_attempt_ms = now.
//   2. TxnStore::ListDue: this node's unfinished transactions whose
//      next_attempt_ms has come, and hand each to its driver:
//      2PC -> TwoPhaseOps::Resume, Saga -> SagaOps::Resume (when set).
//      The drivers decide: ACTIVE past its deadline -> abort; PREPARING with
//      no driver in this process -> abort (presumed abort) unless one-phase
//      (re-send commitOnePhase); COMMITTING / ABORTING -> redrive phase 2.
//
//   3. Retention, at most every retention_sweep_interval_ms (first pass
//      included): TxnStore::DeleteFinishedBefore(now - finished_retention_ms)
//      in batches of retention_limit (at most kMaxRetentionBatches per pass)
//      removes finished transactions (COMMITTED / ABORTED / SUCCEEDED /
//      COMPENSATED, never PARKED) with their branches. A final state is only
//      written after every branch acknowledged, so no participant asks about
//      a deleted transaction again. finished_retention_ms = 0 disables it. A
//      retention error is logged and does not fail the pass.
//
// Resume must not block (drivers hand the work to their own pools) and is a
// no-op for a transaction the driver is already driving, so a pass never
// waits on a participant.
//
// Thread-safety: Start/Stop from the owning thread; SweepOnce and SetSagaOps
// from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "common/status.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct SweeperOptions {
  int64_t interval_ms = 200;  // between passes (jittered by up to +25 %)
  int claim_limit = 200;      // orphans claimed per pass
  int list_limit = 500;       // due transactions dispatched per pass
  // Finished transactions older than this (by updated_ms) are deleted; 0: kept forever.
  int64_t finished_retention_ms = 24 * 3600 * 1000LL;
  int64_t retention_sweep_interval_ms = 60 * 1000;  // between retention runs
  int retention_limit = 1000;                       // transactions deleted per store transaction
};

struct SweepStats {
  int64_t passes = 0;
  int64_t claimed = 0;     // orphans taken over
  int64_t dispatched = 0;  // Resume calls
  int64_t errors = 0;      // passes that hit a store error
  int64_t deleted = 0;     // finished transactions removed by retention
  int64_t retention_errors = 0;
};

class Sweeper {
 public:
  // `store` and `two_phase` must outlive the sweeper; `saga` may be null.
  Sweeper(TxnStore* store, NodeInfo node, TwoPhaseOps* two_phase, SagaOps* saga,
          SweeperOptions options);
  ~Sweeper();  // Stop()s

  void SetSagaOps(SagaOps* saga) { saga_.store(saga, std::memory_order_release); }

  // Starts the background thread ("sweeper"). Idempotent.
  void Start();
  // Stops it and waits for the current pass to end. Idempotent.
  void Stop();

  // One pass on the caller's thread. Errors: the store's (kUnavailable, ...).
  Status SweepOnce();

  SweepStats Stats();

 private:
  void Loop();
  // Step 3 when due (see the top of the file).
  void MaybeDeleteFinished();

  static constexpr int kMaxRetentionBatches = 10;

  TxnStore* const store_;
  const NodeInfo node_;
  TwoPhaseOps* const two_phase_;
  std::atomic<SagaOps*> saga_;
  const SweeperOptions options_;

  std::mutex mu_;  // guards stopping_, stats_
  std::condition_variable cv_;
  bool stopping_ = false;
  SweepStats stats_;
  int64_t last_retention_mono_ms_ = -1;  // MonotonicMs() of the last retention run; -1: never
  std::thread thread_;                   // owned by Start/Stop's thread
};

}  // namespace txc
