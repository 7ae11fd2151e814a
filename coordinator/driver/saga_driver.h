// SagaDriver: runs sagas. Implements SagaOps (coordinator/service/txn_service.h).
//
// It only executes. Every decision is the step function's (StepSaga,
// coordinator/core/saga_machine.h): each event (a submission, a participant's
// answer, a retry timer, a resume, a cancel) is fed to it under the run's
// lock; the writes it returns are logged through the GroupCommitter
// (WriteLater: no thread waits on the writer; the definition of a new saga
// is logged with Write on the caller's thread by SubmitSaga, or with
// WriteAsync by SubmitSagaAsync, since the client is answered only once it
// is durable); only once they are durable does the run adopt the new state
// and run the effects (participant calls, retry timers, letting the run go),
// on the group commit's answer thread ("group-done"). Forward progress of a
// running saga is the exception: the step function leaves it unlogged
// (progress_log_ms), so it is adopted at once on the thread that fed the
// answer, and logged with the saga's next change of state or by LogDue.
// Adopting a step only queues calls and writes, and a hop to a pool per step
// cost more CPU than the step itself (measured). One step's writes are in
// flight per run at a time: events arriving meanwhile queue and are stepped
// after, on the durable state.
//
//   SubmitSaga: log txn RUNNING + steps PENDING, the first wave RUNNING (one
//               batch) -> answer at once, or wait for SUCCEEDED / COMPENSATED /
//               PARKED (or the wait timeout).
//   Resume:     reloads a saga from the store and feeds Resumed (a crash left
//               it RUNNING / COMPENSATING, or it is PARKED: one round of
//               compensations); a no-op for a saga this process drives.
//   Cancel:     feeds CancelRequested (RUNNING -> COMPENSATING).
//
// Participant calls are event driven (AsyncParticipantClient: a callback per
// answer, no thread waits on a call); retries are its timers, never a sleep.
//
// Every write is fenced by this node's (owner, epoch). A refused or failed
// write lets the run go: the store stays the truth and the sweeper resumes
// the saga when its next_attempt_ms is due (kept between half and all of
// in_flight_recheck_ms ahead while driven here).
//
// Crash points, named after the model's steps (docs/model/saga.pml):
//   saga.after_step_started          a write logged a step RUNNING: the first wave (action
//                                    not sent), or progress that waited (already sent)
//   saga.after_unlogged_send         effects run (an action sent) while the run's forward
//                                    progress is not logged yet (progress_log_ms)
//   saga.after_action_logged         an action's DONE / FAILED is durable (with a change of
//                                    state, or progress that waited), nothing sent after it
//   saga.after_compensation_started  a step logged COMPENSATING, compensation not sent
//   saga.mid_compensation            a step logged COMPENSATED, the saga not final
//   saga.before_final_state          before the write that logs SUCCEEDED / COMPENSATED
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
#include "common/callback_gate.h"
#include "common/status.h"
#include "common/task_pool.h"
#include "coordinator/core/saga.h"
#include "coordinator/core/saga_machine.h"
#include "coordinator/driver/async_participant_client.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct SagaDriverOptions {
  int driver_threads = 2;  // "saga-driver": steps after a write is durable, resumes' store reads
  // The participant client, shared with the 2PC driver (one set of I/O
  // threads, one per-endpoint limit). Null: the driver makes its own from
  // io_threads, max_calls_per_endpoint and connect_timeout_ms.
  std::shared_ptr<AsyncParticipantClient> participants;
  int io_threads = 1;               // participant calls (event driven: no thread waits per call)
  int max_calls_per_endpoint = 32;  // outstanding calls to one participant; more wait in line
  int connect_timeout_ms = 1000;    // to a participant
  // TLS to participants when the driver makes its own client
  // (AsyncParticipantClientOptions::tls); off when not enabled().
  TlsOptions participant_tls{};
  int call_timeout_ms = 5000;        // one action / compensate call
  int32_t park_after_attempts = 10;  // compensation deliveries before PARKED
  BackoffPolicy compensation_backoff{100, 5000, 2.0};
  int64_t parked_retry_ms = 30000;       // how often the sweeper retries a PARKED saga
  int64_t in_flight_recheck_ms = 10000;  // next_attempt_ms lead while driven here
  // Forward progress (steps started and done) is logged with the saga's next
  // change of state, or at most this long after it happened
  // (SagaMachineOptions::progress_log_ms); 0: before its effects, step by step.
  int64_t progress_log_ms = 1000;
  // Every replica's endpoint, for TxnContext.coordinators; default {node.endpoint}.
  std::function<std::vector<std::string>()> coordinators;
  // Picks the gtid of a saga submitted without one; default "<node>-saga-<32 hex>".
  std::function<std::string()> new_gtid;
  // True while this replica's lease is certainly live (else SagaInputs::
  // may_defer is false); default: always. The server gives the lease's deadline.
  std::function<bool()> lease_live;
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
  // The first submission of a gtid without a waiting thread: the definition
  // is logged through GroupCommitter::WriteAsync, the saga is driven as
  // every logged step is, and `done` is run once it is durable (or, with
  // wait_for_completion, once the run here ended: SUCCEEDED, COMPENSATED or
  // PARKED). A gtid already logged, or a run let go before it ended, gives
  // `done` kConflict (SubmitSaga then answers by its resubmission rules).
  bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done) override;

  // Non-blocking: the work goes to the pool.
  void Resume(const TxnRecord& txn) override;
  // Admin API: drops the run driven here (if any; late results of its calls
  // are ignored, and duplicates are harmless: calls are idempotent) and
  // resumes the saga from the store.
  void AdminChanged(const TxnRecord& txn) override;

  // An operator's cancel: RUNNING -> COMPENSATING (pending steps skipped,
  // attempted ones compensated in reverse order). OK when the saga already
  // compensates or is compensated; kIllegalTransition when it SUCCEEDED;
  // kNotOwner when another replica drives it; kNotFound; the store's errors.
  // Returns once the cancel is fed to the run (the switch is logged behind it).
  Status Cancel(const std::string& gtid);

  // Makes every SubmitSaga waiting for completion answer now with the current
  // state, and later ones not wait (shutdown: the rpc server can then stop
  // without waiting out wait_timeout_ms). Sagas keep running.
  void StopWaiting();

  // Shutdown, before the lease is given back: from now on every step is
  // logged before its action, and the progress waiting to be logged is
  // written now. True once none waits any more; false after timeout_ms (what
  // still waits is redone after the restart, as after a crash).
  bool LogAllProgress(int64_t timeout_ms);

  // Re-reads the participant TLS files (AsyncParticipantClient::ReloadTls).
  Status ReloadTls() { return participants_->ReloadTls(); }

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
  struct Relay;

  // Queues `event` for the run and steps it unless another thread is stepping the run.
  void Feed(const std::shared_ptr<Run>& run, SagaEvent event);
  // Steps the queued events one at a time; returns when none is left or a
  // step's writes went to the log (Logged goes on from there). Called by the
  // thread that set Run::stepping.
  void Pump(const std::shared_ptr<Run>& run);
  // The writes of `result` are durable (or failed: `logged`).
  void Logged(const std::shared_ptr<Run>& run, const std::shared_ptr<SagaStepResult>& result,
              const Status& logged);
  // Makes `result` the run's state and runs its effects; false when the run is gone.
  bool Adopt(const std::shared_ptr<Run>& run, SagaStepResult result);
  // Forgets the run (finished, parked with nothing in flight, or a write failed).
  void Release(const std::shared_ptr<Run>& run, const char* why);
  void ResumeNow(const std::string& gtid, bool cancel);
  // Loads the saga (owned by this node, not final) into a new run, registered in runs_.
  Result<std::shared_ptr<Run>> Load(const std::string& gtid);
  // A definition write of `gtid` starts here / has ended. EndSubmission
  // registers `run` (when not null) in the same step; false: a run of that
  // gtid is registered already (it is not replaced).
  // *cancel: a cancel came while the submission was in flight; the caller
  // feeds it to the run it registered.
  void BeginSubmission(const std::string& gtid);
  bool EndSubmission(const std::string& gtid, const std::shared_ptr<Run>& run,
                     bool* cancel = nullptr);
  // Waits for the run to end (at most wait_timeout_ms); if it was let go
  // unfinished, goes on waiting on the store.
  Result<TxnRecord> WaitFor(const std::shared_ptr<Run>& run, int64_t wait_timeout_ms);
  // The submission event of `spec` at `now`: the saga's record (a new gtid
  // when the spec names none) and its steps.
  SagaSubmitted SubmissionOf(const SagaSpec& spec, int64_t now);
  // SubmitSagaAsync, once its definition's write returned `logged` (on group-done).
  void Submitted(const std::shared_ptr<SagaStepResult>& result, const Status& logged, bool wait,
                 std::function<void(Result<TxnRecord>)> done);
  // Re-reads the store (backoff with jitter, a condition wait between reads)
  // until the saga is final or PARKED, deadline_ms (monotonic) passes or
  // StopWaiting(); returns the last record read. On a client's RPC thread only.
  Result<TxnRecord> WaitInStore(TxnRecord txn, int64_t deadline_ms);
  // A saga owned by a replica whose lease lapsed (or an older epoch of this
  // node): one fenced write makes it this node's, so ResumeNow drives it.
  void TakeOverIfOwnerDead(const TxnRecord& txn);
  std::vector<std::string> Coordinators();
  // SagaInputs::may_defer: the lease is live and the driver is not shutting down.
  bool MayDefer() const {
    return !log_all_.load() && (!options_.lease_live || options_.lease_live());
  }

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  SagaDriverOptions options_;
  SagaMachineOptions machine_options_;

  // Set first by the destructor: participant callbacks and timers then feed nothing.
  std::atomic<bool> stopping_{false};
  // Lets the GroupCommitter's callbacks reach this driver only while it lives.
  std::shared_ptr<Relay> relay_;
  TaskPool pool_;  // "saga-driver"; drops queued work at shutdown (recovery re-finds it)
  std::shared_ptr<AsyncParticipantClient> participants_;  // options_.participants, or own
  CallbackGate gate_;  // closed first at destruction: late answers and timers are dropped

  std::mutex runs_mu_;                                // guards runs_ and submitting_
  std::map<std::string, std::shared_ptr<Run>> runs_;  // sagas driven here, by gtid
  // Gtids whose definition write is in flight here (the number of submitters
  // writing it). Nothing else takes such a saga up (Load refuses it): the
  // submitter whose write creates it registers its run once the write is
  // durable, and a concurrent resubmission must not have driven it, even to
  // the end, before then (its first wave would go out twice).
  std::map<std::string, int> submitting_;
  // Cancels accepted while their saga was being submitted: fed to the run
  // registered next for it (by its submitter or a resume).
  std::set<std::string> cancel_after_submit_;

  std::atomic<bool> stop_waiting_{false};
  std::atomic<bool> log_all_{false};  // LogAllProgress was called
  std::mutex wait_mu_;                // with wait_cv_: StopWaiting wakes WaitInStore
  std::condition_variable wait_cv_;
  std::atomic<int64_t> batches_written_{0};
  std::atomic<int64_t> sagas_submitted_{0};
  std::atomic<int64_t> sagas_finished_{0};
};

}  // namespace txc
