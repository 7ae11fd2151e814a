#include "coordinator/metrics/coordinator_metrics.h"

#include <glog/logging.h>

#include <cctype>

#include "common/backoff.h"
#include "common/log_rate_limiter.h"
#include "coordinator/store/txn_store.h"

namespace txc {

MetricsRegistry& DefaultMetricsRegistry() {
  static MetricsRegistry* registry = new MetricsRegistry();  // never destroyed: used at exit
  return *registry;
}

CoordinatorMetrics& CoordinatorMetrics::Get() {
  static CoordinatorMetrics* metrics = new CoordinatorMetrics(&DefaultMetricsRegistry());
  return *metrics;
}

const char* KindLabel(TxnKind kind) {
  switch (kind) {
    case TxnKind::kTwoPhase: return "two_phase";
    case TxnKind::kSaga: return "saga";
  }
  return "unknown";
}

const char* StateLabel(TxnState state) {
  switch (state) {
    case TxnState::kActive: return "active";
    case TxnState::kPreparing: return "preparing";
    case TxnState::kCommitting: return "committing";
    case TxnState::kCommitted: return "committed";
    case TxnState::kAborting: return "aborting";
    case TxnState::kAborted: return "aborted";
    case TxnState::kRunning: return "running";
    case TxnState::kSucceeded: return "succeeded";
    case TxnState::kCompensating: return "compensating";
    case TxnState::kCompensated: return "compensated";
    case TxnState::kParked: return "parked";
  }
  return "unknown";
}

std::string ResultLabel(const Status& s) {
  if (s.ok()) return "ok";
  std::string out = StatusCodeName(s.code());
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

TxnKind KindOfState(TxnState state) {
  return IsStateOf(TxnKind::kSaga, state) ? TxnKind::kSaga : TxnKind::kTwoPhase;
}

}  // namespace

CoordinatorMetrics::CoordinatorMetrics(MetricsRegistry* r) : registry_(r) {
  begun_ = r->AddCounter("txc_transactions_begun_total",
                         "Global transactions durably begun on this replica (2PC begin, Saga "
                         "submit), by kind.",
                         {"kind"});
  finished_ = r->AddCounter("txc_transactions_finished_total",
                            "Global transactions this replica wrote a final state for, by kind "
                            "and outcome (committed, aborted, succeeded, compensated).",
                            {"kind", "outcome"});
  participant_calls_ = r->AddCounter(
      "txc_participant_calls_total",
      "Calls from this replica to participants, by method, participant endpoint and result "
      "(ok or the error code).",
      {"method", "endpoint", "result"});
  operator_actions_ = r->AddCounter(
      "txc_operator_actions_total",
      "Operator actions (admin API: retry, cancel, resolve, rebind) answered by this replica, by "
      "action and result (ok: changed a transaction, noop: it was so already, else the error).",
      {"action", "result"});
  refused_calls_ = r->AddCounter(
      "txc_refused_calls_total",
      "Calls refused before they ran, by method and reason (permission_denied: the caller's "
      "roles under --auth_policy; endpoint_not_allowed: a participant endpoint outside "
      "--participant_allow).",
      {"method", "reason"});
  participant_latency_ = r->AddHistogram(
      "txc_participant_call_duration_seconds",
      "Duration of calls to participants (answered or not), by method and endpoint.",
      {"method", "endpoint"}, LatencyBucketsSeconds(), /*max_children=*/300);
  store_transactions_ = r->AddCounter(
      "txc_group_commit_store_transactions_total",
      "Store transactions issued by the group commit writer, by result (ok: the store call "
      "returned; error: it failed as a whole).",
      {"result"});
  batches_per_store_transaction_ =
      r->AddHistogram("txc_group_commit_batches_per_store_transaction",
                      "Write batches (one per durable decision) carried by one store transaction.",
                      {}, ExponentialBuckets(1, 2, 10));
  store_transaction_latency_ =
      r->AddHistogram("txc_group_commit_store_transaction_duration_seconds",
                      "Duration of one group commit store transaction (the fsync included).", {},
                      LatencyBucketsSeconds());
  group_commit_overloaded =
      r->AddCounter("txc_group_commit_overloaded_total",
                    "Writes refused at once because the group commit queue was full.")
          ->With({});

  lease_epoch =
      r->AddGauge("txc_lease_epoch", "Epoch of this replica's current lease (0: none held).")
          ->With({});
  lease_held =
      r->AddGauge("txc_lease_held", "1 while this replica holds a live lease and serves, else 0.")
          ->With({});
  lease_renewals =
      r->AddCounter("txc_lease_renewals_total", "Successful lease renewals.")->With({});
  lease_renewal_failures =
      r->AddCounter("txc_lease_renewal_failures_total",
                    "Lease renewals that failed (store unreachable or slow); the lease is lost "
                    "when none succeeds for a whole TTL.")
          ->With({});
  lease_losses = r->AddCounter("txc_lease_losses_total",
                               "Times this replica lost its lease and dropped its in-flight work.")
                     ->With({});
  lease_acquisitions =
      r->AddCounter("txc_lease_acquisitions_total",
                    "Times this replica acquired its lease (start and after each loss).")
          ->With({});

  sweeper_passes = r->AddCounter("txc_sweeper_passes_total", "Recovery sweeper passes.")->With({});
  sweeper_pass_failures = r->AddCounter("txc_sweeper_pass_failures_total",
                                        "Recovery sweeper passes that hit a store error.")
                              ->With({});
  sweeper_claims = r->AddCounter("txc_sweeper_claims_total",
                                 "Orphaned transactions (owner's lease expired) taken over by "
                                 "this replica's sweeper.")
                       ->With({});
  sweeper_redrives =
      r->AddCounter("txc_sweeper_redrives_total",
                    "Due transactions the sweeper handed to a driver again (timeouts, phase-2 "
                    "and compensation retries, parked sagas).")
          ->With({});
  retention_deleted = r->AddCounter("txc_retention_deleted_total",
                                    "Finished transactions deleted after finished_retention_ms.")
                          ->With({});

  unfinished = r->AddGauge("txc_transactions_unfinished",
                           "Unfinished transactions in the store (all replicas), by kind and "
                           "state; refreshed every metrics_store_refresh_ms.",
                           {"kind", "state"});
  parked = r->AddGauge("txc_transactions_parked",
                       "Sagas PARKED in the store (compensation past its retry limit; need "
                       "an operator or a participant that comes back).")
               ->With({});
  oldest_unfinished_age = r->AddGauge("txc_oldest_unfinished_transaction_age_seconds",
                                      "Age of the oldest unfinished transaction in the store "
                                      "(0 when there is none).")
                              ->With({});
  store_summary_ok = r->AddGauge("txc_unfinished_scan_up",
                                 "1 when the last read of the store-derived gauges succeeded.")
                         ->With({});
  store_summary_timestamp =
      r->AddGauge("txc_unfinished_scan_timestamp_seconds",
                  "Unix time of the last successful read of the store-derived gauges.")
          ->With({});
  // Every kind/state series exists from the start (0), so alerts and rates
  // see a value before the first event.
  for (TxnState s :
       {TxnState::kActive, TxnState::kPreparing, TxnState::kCommitting, TxnState::kAborting,
        TxnState::kRunning, TxnState::kCompensating, TxnState::kParked}) {
    unfinished->With({KindLabel(KindOfState(s)), StateLabel(s)});
  }
  for (TxnKind k : {TxnKind::kTwoPhase, TxnKind::kSaga}) begun_->With({KindLabel(k)});
  for (TxnState s :
       {TxnState::kCommitted, TxnState::kAborted, TxnState::kSucceeded, TxnState::kCompensated}) {
    finished_->With({KindLabel(KindOfState(s)), StateLabel(s)});
  }
  store_transactions_->With({"ok"});
  store_transactions_->With({"error"});
  batches_per_store_transaction_->With({});
  store_transaction_latency_->With({});
}

void CoordinatorMetrics::RecordCommittedBatch(const WriteBatch& batch) {
  for (const TxnRecord& t : batch.insert_txns) begun_->With({KindLabel(t.kind)})->Inc();
  for (const TxnUpdate& u : batch.txn_updates) {
    if (u.state && IsFinal(*u.state)) {
      finished_->With({KindLabel(KindOfState(*u.state)), StateLabel(*u.state)})->Inc();
    }
  }
}

void CoordinatorMetrics::RecordParticipantCall(const char* method, const std::string& endpoint,
                                               const Status& result, double seconds) {
  participant_calls_->With({method, endpoint, ResultLabel(result)})->Inc();
  participant_latency_->With({method, endpoint})->Observe(seconds);
}

void CoordinatorMetrics::RecordOperatorAction(const char* action, const char* result) {
  operator_actions_->With({action, result})->Inc();
}

void CoordinatorMetrics::RecordRefusedCall(const char* method, const char* reason) {
  refused_calls_->With({method, reason})->Inc();
}

namespace {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ParticipantCallTimer::ParticipantCallTimer(const char* method, const std::string& endpoint)
    : method_(method), endpoint_(endpoint), start_ns_(SteadyNowNs()) {}

Status ParticipantCallTimer::Done(Status result) {
  CoordinatorMetrics::Get().RecordParticipantCall(method_, endpoint_, result,
                                                  (SteadyNowNs() - start_ns_) / 1e9);
  return result;
}

void LogParticipantConnectionError(const std::string& endpoint, const Status& error) {
  static LogRateLimiter* limiter = new LogRateLimiter(kParticipantErrorLogIntervalMs);
  const LogRateLimiter::Decision d = limiter->Admit(endpoint, MonotonicMs());
  if (d.log) LOG(WARNING) << "participant " << endpoint << ": " << error << d.Suffix();
}

void CoordinatorMetrics::RecordStoreTransaction(size_t batches, double seconds, bool ok) {
  store_transactions_->With({ok ? "ok" : "error"})->Inc();
  batches_per_store_transaction_->With({})->Observe(static_cast<double>(batches));
  store_transaction_latency_->With({})->Observe(seconds);
}

}  // namespace txc
