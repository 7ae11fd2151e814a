#include "coordinator/recovery/sweeper.h"

#include <glog/logging.h>
#include <pthread.h>

#include <random>
#include <vector>

#include "common/backoff.h"
#include "coordinator/metrics/coordinator_metrics.h"

namespace txc {
namespace {

// Every state a transaction is still moving out of.
const std::vector<TxnState> kUnfinished = {
    TxnState::kActive,  TxnState::kPreparing,    TxnState::kCommitting, TxnState::kAborting,
    TxnState::kRunning, TxnState::kCompensating, TxnState::kParked,
};

}  // namespace

Sweeper::Sweeper(TxnStore* store, NodeInfo node, TwoPhaseOps* two_phase, SagaOps* saga,
                 SweeperOptions options)
    : store_(store),
      node_(std::move(node)),
      two_phase_(two_phase),
      saga_(saga),
      options_(options) {}

Sweeper::~Sweeper() { Stop(); }

void Sweeper::Start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
  pthread_setname_np(thread_.native_handle(), "sweeper");
}

void Sweeper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SweepStats Sweeper::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Status Sweeper::SweepOnce() {
  const int64_t now = NowUnixMs();
  auto claimed = store_->ClaimOrphans(node_.node_id, node_.epoch, now, options_.claim_limit);
  if (!claimed.ok()) {
    CoordinatorMetrics::Get().sweeper_passes->Inc();
    CoordinatorMetrics::Get().sweeper_pass_failures->Inc();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.passes;
    ++stats_.errors;
    return claimed.status();
  }
  if (*claimed > 0) LOG(INFO) << "sweeper: claimed " << *claimed << " orphaned transactions";
  auto due = store_->ListDue(kUnfinished, node_.node_id, node_.epoch, now, options_.list_limit);
  if (!due.ok()) {
    CoordinatorMetrics::Get().sweeper_passes->Inc();
    CoordinatorMetrics::Get().sweeper_pass_failures->Inc();
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.passes;
    ++stats_.errors;
    return due.status();
  }
  int64_t dispatched = 0;
  SagaOps* saga = saga_.load(std::memory_order_acquire);
  for (const TxnRecord& txn : *due) {
    switch (txn.kind) {
      case TxnKind::kTwoPhase:
        if (two_phase_ != nullptr) {
          two_phase_->Resume(txn);
          ++dispatched;
        }
        break;
      case TxnKind::kSaga:
        if (saga != nullptr) {
          saga->Resume(txn);
          ++dispatched;
        }
        break;
    }
  }
  {
    CoordinatorMetrics& metrics = CoordinatorMetrics::Get();
    metrics.sweeper_passes->Inc();
    metrics.sweeper_claims->Inc(*claimed);
    metrics.sweeper_redrives->Inc(dispatched);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.passes;
    stats_.claimed += *claimed;
    stats_.dispatched += dispatched;
  }
  MaybeDeleteFinished();
  return Status::Ok();
}

void Sweeper::MaybeDeleteFinished() {
  if (options_.finished_retention_ms <= 0 || options_.retention_limit <= 0) return;
  const int64_t mono = MonotonicMs();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (last_retention_mono_ms_ >= 0 &&
        mono - last_retention_mono_ms_ < options_.retention_sweep_interval_ms) {
      return;
    }
    last_retention_mono_ms_ = mono;
  }
  const int64_t cutoff = NowUnixMs() - options_.finished_retention_ms;
  int64_t total = 0;
  for (int batch = 0; batch < kMaxRetentionBatches; ++batch) {
    auto deleted = store_->DeleteFinishedBefore(cutoff, options_.retention_limit);
    if (!deleted.ok()) {
      LOG(ERROR) << "sweeper: deleting finished transactions updated before " << cutoff
                 << " failed: " << deleted.status();
      CoordinatorMetrics::Get().retention_deleted->Inc(total);
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.retention_errors;
      stats_.deleted += total;
      return;
    }
    total += *deleted;
    if (*deleted < options_.retention_limit) break;
  }
  VLOG(1) << "sweeper: deleted " << total << " finished transactions updated before " << cutoff;
  CoordinatorMetrics::Get().retention_deleted->Inc(total);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.deleted += total;
}

void Sweeper::Loop() {
  std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> jitter(0, std::max<int64_t>(1, options_.interval_ms / 4));
  int failures = 0;
  for (;;) {
    Status s = SweepOnce();
    int64_t wait_ms = options_.interval_ms + jitter(rng);
    if (!s.ok()) {
      ++failures;
      // Back off while the store is down; log the first failure and every 50th.
      if (failures == 1 || failures % 50 == 0) LOG(WARNING) << "sweeper pass failed: " << s;
      wait_ms = std::max(wait_ms,
                         BackoffDelayMs(BackoffPolicy{options_.interval_ms, 5000, 2.0}, failures));
    } else {
      failures = 0;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_; })) {
      return;
    }
  }
}

}  // namespace txc
