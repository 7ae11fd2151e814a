// The coordinator's Prometheus series, in one place: their names, help texts
// and labels (docs/operations.md lists them for operators), registered once
// in the process-wide registry and reached through CoordinatorMetrics::Get().
//
// Naming follows https://prometheus.io/docs/practices/naming/: prefix txc_,
// base units (seconds), counters end in _total. Label values are lower case.
//
// Instrumentation points (kept narrow on purpose):
//   GroupCommitter       begun / finished transactions (from the committed
//                        batches: exact, whatever driver wrote them), store
//                        transactions, batches per store transaction, latency
//   ParticipantClient    2PC participant calls (method, endpoint, result, latency)
//   SagaDriver           Saga participant calls: one RecordParticipantCall per call
//   Sweeper              passes, claims, redrives, retention deletions
//   CoordinatorServer    lease epoch, renewals, losses; the store-derived
//                        gauges (StoreGaugeRefresher below)
//
// Thread-safety: every member may be used from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "coordinator/core/states.h"

namespace txc {

class TxnStore;
struct WriteBatch;

class CoordinatorMetrics {
 public:
  // The process-wide instance (registered in DefaultMetricsRegistry()).
  static CoordinatorMetrics& Get();
  explicit CoordinatorMetrics(MetricsRegistry* registry);

  MetricsRegistry* registry() const { return registry_; }

  // --- transactions (GroupCommitter) ----------------------------------------
  // Counts what a committed batch did: inserted transactions (begun, by kind)
  // and updates to a final state (finished, by kind and outcome).
  void RecordCommittedBatch(const WriteBatch& batch);

  // --- participant calls ----------------------------------------------------
  // method: prepare, commit_one_phase, commit, abort, action, compensate.
  // result: from the call's status (ok, unavailable, timeout, ...).
  void RecordParticipantCall(const char* method, const std::string& endpoint, const Status& result,
                             double seconds);

  // --- operator actions (admin API, CoordinatorService) -----------------------
  // action: retry, cancel, resolve, rebind. result: ok (changed something),
  // noop (already so), or the error code (illegal_transition, not_found, ...).
  void RecordOperatorAction(const char* action, const char* result);

  // --- refused calls (CoordinatorHandler) -------------------------------------
  // reason: permission_denied (the caller's roles), endpoint_not_allowed (the
  // participant allow-list).
  void RecordRefusedCall(const char* method, const char* reason);

  // --- group commit -----------------------------------------------------------
  void RecordStoreTransaction(size_t batches, double seconds, bool ok);
  Counter* group_commit_overloaded;

  // --- lease (CoordinatorServer) ----------------------------------------------
  Gauge* lease_epoch;
  Gauge* lease_held;  // 1 while this replica serves under a live lease
  Counter* lease_renewals;
  Counter* lease_renewal_failures;
  Counter* lease_losses;
  Counter* lease_acquisitions;

  // --- sweeper ----------------------------------------------------------------
  Counter* sweeper_passes;
  Counter* sweeper_pass_failures;
  Counter* sweeper_claims;
  Counter* sweeper_redrives;
  Counter* retention_deleted;

  // --- from the store (StoreGaugeRefresher) -----------------------------------
  GaugeFamily* unfinished;  // {kind, state}
  Gauge* parked;
  Gauge* oldest_unfinished_age;    // seconds
  Gauge* store_summary_ok;         // 1 when the last refresh succeeded
  Gauge* store_summary_timestamp;  // unix seconds of the last successful refresh

 private:
  MetricsRegistry* const registry_;
  CounterFamily* begun_;
  CounterFamily* finished_;
  CounterFamily* participant_calls_;
  CounterFamily* operator_actions_;
  CounterFamily* refused_calls_;
  HistogramFamily* participant_latency_;
  CounterFamily* store_transactions_;
  HistogramFamily* batches_per_store_transaction_;
  HistogramFamily* store_transaction_latency_;
};

// Times one participant call and records it when Done() is called:
//   ParticipantCallTimer timer("prepare", endpoint);
//   return timer.Done(CallTheParticipant());
class ParticipantCallTimer {
 public:
  ParticipantCallTimer(const char* method, const std::string& endpoint);
  // Records the call with `result` (once) and returns it.
  Status Done(Status result);

 private:
  const char* const method_;
  const std::string& endpoint_;  // outlives the timer
  const int64_t start_ns_;
};

// Logs a participant connection error without flooding the log: a
// participant that is down fails every call to it (each prepare, each phase-2
// retry of every transaction), so per endpoint the first failure is logged
// (WARNING), then at most one line every kParticipantErrorLogIntervalMs
// carrying the count of the others. Used by ParticipantClient and
// AsyncParticipantClient; the caller still gets every error.
constexpr int64_t kParticipantErrorLogIntervalMs = 5000;
void LogParticipantConnectionError(const std::string& endpoint, const Status& error);

// The registry /metrics renders.
MetricsRegistry& DefaultMetricsRegistry();

// Lower-case label values.
const char* KindLabel(TxnKind kind);
const char* StateLabel(TxnState state);
// "ok" or the status code in lower case ("unavailable", "timeout", ...).
std::string ResultLabel(const Status& s);

}  // namespace txc
