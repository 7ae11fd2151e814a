#include "coordinator/driver/saga_driver.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <thread>

#include "common/crash_point.h"
#include "common/ids.h"
#include "coordinator/core/validation.h"
#include "coordinator/driver/ownership.h"
#include "coordinator/metrics/coordinator_metrics.h"

namespace txc {

// One saga driven by this process.
struct SagaDriver::Run {
  std::mutex mu;               // guards everything below
  std::condition_variable cv;  // signalled when the run is released
  // As logged (the last adopted result's `next`), plus what is in flight.
  SagaRun saga;
  std::deque<SagaEvent> events;  // fed, not stepped yet
  // A thread owns the stepping of this run: it steps the queued events, or
  // one step's writes are on their way to the store. Others only queue.
  bool stepping = false;
  bool gone = false;  // released: later events are dropped
  // Run once (outside mu) when the run is released: SubmitSagaAsync's answers.
  std::vector<std::function<void()>> watchers;
};

// The GroupCommitter calls back on its group-done thread, possibly after this
// driver is gone (it drains its queue when destroyed): the callback reaches
// the driver only through here, and the destructor cuts the link first.
struct SagaDriver::Relay {
  std::mutex mu;                 // guards the two fields below
  std::condition_variable idle;  // notified when `running` drops to 0
  SagaDriver* driver = nullptr;  // null once the driver is being destroyed
  int running = 0;               // callbacks inside the driver now
  // Runs fn(driver) unless the driver is going; the destructor waits for it.
  // Not under the lock: a callback may cause another one on its own thread
  // (a write refused at once answers inline).
  template <typename Fn>
  bool Run(Fn&& fn) {
    SagaDriver* d;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (driver == nullptr) return false;
      d = driver;
      ++running;
    }
    fn(d);
    {
      std::lock_guard<std::mutex> lock(mu);
      if (--running == 0) idle.notify_all();
    }
    return true;
  }
};

namespace {

// What a batch logs, for the crash points named after the model's steps.
struct WriteMarks {
  bool step_started = false;          // a step PENDING -> RUNNING
  bool action_logged = false;         // a step RUNNING -> DONE / FAILED
  bool compensation_started = false;  // a step -> COMPENSATING
  bool compensation_logged = false;   // a step -> COMPENSATED
  bool final_state = false;           // the saga -> SUCCEEDED / COMPENSATED
};

WriteMarks MarksOf(const WriteBatch& batch) {
  WriteMarks m;
  auto mark = [&m](BranchState s) {
    switch (s) {
      case BranchState::kStepRunning: m.step_started = true; break;
      case BranchState::kDone:
      case BranchState::kFailed: m.action_logged = true; break;
      case BranchState::kStepCompensating: m.compensation_started = true; break;
      case BranchState::kStepCompensated: m.compensation_logged = true; break;
      default: break;
    }
  };
  for (const BranchRecord& b : batch.insert_branches) mark(b.state);
  for (const BranchUpdate& u : batch.branch_updates) {
    if (u.state) mark(*u.state);
  }
  for (const TxnUpdate& u : batch.txn_updates) {
    if (u.state && IsFinal(*u.state)) m.final_state = true;
  }
  return m;
}

// Crash points once a batch is durable, before any of its effects.
void CrashPointsAfterLogged(const WriteMarks& m) {
  if (m.step_started) TXC_CRASH_POINT("saga.after_step_started");
  if (m.action_logged) TXC_CRASH_POINT("saga.after_action_logged");
  if (m.compensation_started) TXC_CRASH_POINT("saga.after_compensation_started");
  if (m.compensation_logged && !m.final_state) TXC_CRASH_POINT("saga.mid_compensation");
}

// VLOG of every edge between two adopted states of a run.
void LogEdges(const SagaRun& from, const SagaRun& to) {
  if (!VLOG_IS_ON(1)) return;
  for (size_t i = 0; i < to.steps.size() && i < from.steps.size(); ++i) {
    if (from.steps[i].state != to.steps[i].state) {
      VLOG(1) << "saga " << to.txn.gtid << " step " << to.steps[i].branch_id << ": "
              << BranchStateName(from.steps[i].state) << " -> "
              << BranchStateName(to.steps[i].state) << " (attempts " << to.steps[i].attempts << ")";
    }
  }
  if (from.txn.state != to.txn.state) {
    VLOG(1) << "saga " << to.txn.gtid << ": " << TxnStateName(from.txn.state) << " -> "
            << TxnStateName(to.txn.state);
  }
}

}  // namespace

SagaDriver::SagaDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                       SagaDriverOptions options)
    : store_(store),
      log_(log),
      node_(std::move(node)),
      options_(std::move(options)),
      pool_("saga-driver", std::max(1, options_.driver_threads),
            TaskPool::Options{TaskPool::AtShutdown::kDropQueued, ""}) {
  machine_options_.park_after_attempts = options_.park_after_attempts;
  machine_options_.compensation_backoff = options_.compensation_backoff;
  machine_options_.parked_retry_ms = options_.parked_retry_ms;
  machine_options_.in_flight_recheck_ms = options_.in_flight_recheck_ms;
  machine_options_.progress_log_ms = options_.progress_log_ms;
  if (!options_.coordinators) {
    const std::string self = node_.endpoint;
    options_.coordinators = [self] { return std::vector<std::string>{self}; };
  }
  if (!options_.new_gtid) {
    const std::string prefix = IdPrefix(node_.node_id) + "-saga";
    options_.new_gtid = [prefix] { return NewId(prefix); };
  }
  participants_ = options_.participants;
  if (participants_ == nullptr) {
    AsyncParticipantClientOptions client;
    client.io_threads = std::max(1, options_.io_threads);
    client.connect_timeout_ms = options_.connect_timeout_ms;
    client.max_calls_per_endpoint = std::max(1, options_.max_calls_per_endpoint);
    client.tls = options_.participant_tls;
    participants_ = std::make_shared<AsyncParticipantClient>(client);
  }
  relay_ = std::make_shared<Relay>();
  relay_->driver = this;
}

SagaDriver::~SagaDriver() {
  stopping_.store(true);
  {
    std::unique_lock<std::mutex> lock(relay_->mu);
    relay_->driver = nullptr;
    relay_->idle.wait(lock, [this] { return relay_->running == 0; });
  }
  // No participant answer or timer reaches this driver any more (the client
  // may be shared and outlive it: late completions are dropped); then the
  // pool (a running continuation may still send through participants_).
  gate_.Close();
  pool_.Shutdown();
  participants_.reset();
}

SagaDriver::Stats SagaDriver::GetStats() const {
  Stats s;
  s.batches_written = batches_written_.load();
  s.sagas_submitted = sagas_submitted_.load();
  s.sagas_finished = sagas_finished_.load();
  return s;
}

size_t SagaDriver::ActiveForTests() {
  std::lock_guard<std::mutex> lock(runs_mu_);
  return runs_.size();
}

std::vector<std::string> SagaDriver::Coordinators() { return options_.coordinators(); }

SagaSubmitted SagaDriver::SubmissionOf(const SagaSpec& spec, int64_t now) {
  SagaSubmitted submitted;
  TxnRecord& txn = submitted.txn;
  txn.gtid = spec.gtid.empty() ? options_.new_gtid() : spec.gtid;
  txn.owner = node_.node_id;
  txn.epoch = node_.epoch;
  txn.created_ms = now;
  txn.updated_ms = now;
  txn.deadline_ms = now + spec.timeout_ms;
  txn.flags = spec.wait_for_completion ? kFlagWaitCompletion : 0;
  submitted.steps = spec.steps;
  return submitted;
}

Result<TxnRecord> SagaDriver::SubmitSaga(const SagaSpec& spec) {
  // `spec` was validated by CoordinatorService::SubmitSaga (ValidateSagaSubmission).
  const int64_t now = NowUnixMs();
  const SagaSubmitted submitted = SubmissionOf(spec, now);
  const std::string gtid = submitted.txn.gtid;
  const SagaInputs inputs{now, RandomUnit()};
  Result<SagaStepResult> stepped = StepSaga(SagaRun{}, submitted, inputs, machine_options_);
  if (!stepped.ok()) return stepped.status();
  const WriteMarks marks = MarksOf(stepped->writes);
  // The client waits for this write on its own RPC thread: it is answered
  // only once the saga is durable.
  BeginSubmission(gtid);
  Status logged = log_->Write(std::move(stepped->writes));
  batches_written_.fetch_add(1);
  if (!logged.ok()) EndSubmission(gtid, nullptr);
  if (logged.code() == StatusCode::kAlreadyExists) {
    Result<TxnRecord> existing = store_->GetTxn(gtid);
    if (!existing.ok()) return existing.status();
    if (existing->kind != TxnKind::kSaga) {
      return Status::AlreadyExists("gtid " + gtid + " already names a 2PC transaction");
    }
    // Resubmission: the same definition is the same saga (the step function's rule).
    SagaRun stored;
    stored.txn = *existing;
    Result<SagaStepResult> again = StepSaga(stored, submitted, inputs, machine_options_);
    if (!again.ok()) return again.status();
    VLOG(1) << "saga " << gtid << ": resubmitted, same definition";
    // Not driven here (e.g. the first submit's answer was lost in a store
    // error, or this process restarted, or it was submitted at a replica that
    // died since): take it up now rather than when the sweeper finds it due.
    // A no-op if it is driven here or by another live replica.
    if (!IsFinal(existing->state)) {
      if (!OwnedBy(*existing, node_)) TakeOverIfOwnerDead(*existing);
      ResumeNow(gtid, /*cancel=*/false);
    }
    if (spec.wait_for_completion) {
      std::shared_ptr<Run> running;
      {
        std::lock_guard<std::mutex> lock(runs_mu_);
        auto it = runs_.find(gtid);
        if (it != runs_.end()) running = it->second;
      }
      if (running) return WaitFor(running, spec.wait_timeout_ms);
      // Driven by another replica: its progress is in the store.
      return WaitInStore(std::move(existing).value(), MonotonicMs() + spec.wait_timeout_ms);
    }
    return existing;
  }
  if (!logged.ok()) {
    LOG(ERROR) << "saga " << gtid << ": could not log the definition: " << logged;
    return logged;
  }
  sagas_submitted_.fetch_add(1);
  VLOG(1) << "saga " << gtid << ": -> RUNNING (" << spec.steps.size() << " steps logged)";
  auto run = std::make_shared<Run>();
  run->stepping = true;  // this thread: adopt the result, run its effects, then step what queued
  const TxnRecord as_logged = stepped->next.txn;
  bool cancel = false;
  if (!EndSubmission(gtid, run, &cancel)) {
    // Cannot happen while the submission is registered (nothing loads a saga
    // being submitted); should a run be there all the same, it drives the
    // saga: running our first wave as well would send its actions twice.
    LOG(ERROR) << "saga " << gtid << ": logged, and already driven here; not run twice";
    std::shared_ptr<Run> driven_already;
    {
      std::lock_guard<std::mutex> lock(runs_mu_);
      auto it = runs_.find(gtid);
      if (it != runs_.end()) driven_already = it->second;
    }
    if (spec.wait_for_completion && driven_already != nullptr) {
      return WaitFor(driven_already, spec.wait_timeout_ms);
    }
    return as_logged;
  }
  CrashPointsAfterLogged(marks);
  if (Adopt(run, std::move(stepped).value())) Pump(run);
  if (cancel) Feed(run, SagaCancelRequested{});
  if (spec.wait_for_completion) return WaitFor(run, spec.wait_timeout_ms);
  return as_logged;
}

bool SagaDriver::SubmitSagaAsync(const SagaSpec& spec,
                                 std::function<void(Result<TxnRecord>)> done) {
  // `spec` was validated by CoordinatorService::SubmitSagaAsync.
  const int64_t now = NowUnixMs();
  const SagaSubmitted submitted = SubmissionOf(spec, now);
  Result<SagaStepResult> stepped =
      StepSaga(SagaRun{}, submitted, SagaInputs{now, RandomUnit()}, machine_options_);
  if (!stepped.ok()) {
    done(stepped.status());
    return true;
  }
  const WriteMarks marks = MarksOf(stepped->writes);
  WriteBatch batch = std::move(stepped->writes);
  auto result = std::make_shared<SagaStepResult>(std::move(stepped).value());
  batches_written_.fetch_add(1);
  std::shared_ptr<Relay> relay = relay_;
  const bool wait = spec.wait_for_completion;
  BeginSubmission(result->next.txn.gtid);
  log_->WriteAsync(std::move(batch), [relay, result, wait, marks,
                                      done = std::move(done)](const Status& logged) mutable {
    // On the committer's thread: adopting the first wave only queues its
    // calls and writes, and a hop to the pool here would cost the
    // submission as much as the event loop saved it.
    const bool ran = relay->Run([&](SagaDriver* driver) {
      if (logged.ok()) CrashPointsAfterLogged(marks);
      driver->Submitted(result, logged, wait, std::move(done));
    });
    if (!ran) {
      done(Status::Unavailable("saga " + result->next.txn.gtid +
                               ": the coordinator is stopping; resubmit it"));
    }
  });
  return true;
}

void SagaDriver::Submitted(const std::shared_ptr<SagaStepResult>& result, const Status& logged,
                           bool wait, std::function<void(Result<TxnRecord>)> done) {
  const std::string gtid = result->next.txn.gtid;
  if (!logged.ok()) EndSubmission(gtid, nullptr);
  if (logged.code() == StatusCode::kAlreadyExists) {
    return done(Status::Conflict("saga " + gtid + ": already logged; resubmission rules apply"));
  }
  if (!logged.ok()) {
    LOG(ERROR) << "saga " << gtid << ": could not log the definition: " << logged;
    return done(logged);
  }
  sagas_submitted_.fetch_add(1);
  VLOG(1) << "saga " << gtid << ": -> RUNNING (" << result->next.steps.size() << " steps logged)";
  auto run = std::make_shared<Run>();
  run->stepping = true;  // this thread: adopt the result, run its effects, then step what queued
  if (wait) {
    run->watchers.push_back([r = run.get(), gtid, done] {
      // Raw: watchers run inside Release, whose caller holds the run.
      TxnRecord txn;
      {
        std::lock_guard<std::mutex> lock(r->mu);
        txn = r->saga.txn;
      }
      if (IsFinal(txn.state) || txn.state == TxnState::kParked) return done(std::move(txn));
      done(Status::Conflict("saga " + gtid + ": let go here before it ended"));
    });
  }
  bool cancel = false;
  if (!EndSubmission(gtid, run, &cancel)) {
    // Cannot happen while the submission is registered (see SubmitSaga).
    LOG(ERROR) << "saga " << gtid << ": logged, and already driven here; not run twice";
    return done(Status::Conflict("saga " + gtid + ": already driven here"));
  }
  const TxnRecord as_logged = result->next.txn;
  if (Adopt(run, std::move(*result))) Pump(run);
  if (cancel) Feed(run, SagaCancelRequested{});
  if (!wait) done(as_logged);
}

Result<TxnRecord> SagaDriver::WaitFor(const std::shared_ptr<Run>& run, int64_t wait_timeout_ms) {
  const int64_t deadline = MonotonicMs() + wait_timeout_ms;
  TxnRecord txn;
  {
    std::unique_lock<std::mutex> lock(run->mu);
    run->cv.wait_for(lock, std::chrono::milliseconds(wait_timeout_ms),
                     [&] { return run->gone || stop_waiting_.load(); });
    txn = run->saga.txn;
    if (!run->gone || IsFinal(txn.state) || txn.state == TxnState::kParked) return txn;
  }
  // Let go without finishing (a write was refused: another replica took it
  // over, or the store failed): its progress is in the store.
  return WaitInStore(std::move(txn), deadline);
}

Result<TxnRecord> SagaDriver::WaitInStore(TxnRecord txn, int64_t deadline_ms) {
  const BackoffPolicy poll{10, 500, 2.0};
  for (int attempt = 1; !IsFinal(txn.state) && txn.state != TxnState::kParked; ++attempt) {
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0 || stop_waiting_.load()) break;
    {
      // A bounded condition wait: StopWaiting() ends it at once.
      std::unique_lock<std::mutex> lock(wait_mu_);
      wait_cv_.wait_for(lock,
                        std::chrono::milliseconds(std::min(left, BackoffDelayMs(poll, attempt))),
                        [&] { return stop_waiting_.load(); });
    }
    if (stop_waiting_.load()) break;
    Result<TxnRecord> now = store_->GetTxn(txn.gtid);
    if (!now.ok()) {
      LOG(WARNING) << "saga " << txn.gtid
                   << ": waiting for it, the store read failed: " << now.status();
      break;
    }
    txn = std::move(now).value();
  }
  return txn;
}

void SagaDriver::TakeOverIfOwnerDead(const TxnRecord& txn) {
  Result<bool> live = OwnerLeaseLive(store_, txn.owner, txn.epoch, NowUnixMs());
  if (!live.ok() || *live) return;  // its owner drives it (or it cannot be told)
  WriteBatch batch;
  batch.txn_updates.push_back(TakeOverUpdate(txn, node_));
  Status s = log_->Write(std::move(batch));
  batches_written_.fetch_add(1);
  if (s.ok()) {
    LOG(INFO) << "saga " << txn.gtid << ": taken over in " << TxnStateName(txn.state) << " from "
              << txn.owner << " (epoch " << txn.epoch << ")";
  } else if (s.code() != StatusCode::kConflict) {
    LOG(ERROR) << "saga " << txn.gtid << ": taking it over failed: " << s;
  }
}

void SagaDriver::StopWaiting() {
  stop_waiting_.store(true);
  { std::lock_guard<std::mutex> lock(wait_mu_); }
  wait_cv_.notify_all();
  std::vector<std::shared_ptr<Run>> runs;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    for (auto& [gtid, run] : runs_) runs.push_back(run);
  }
  for (auto& run : runs) {
    // Taking the lock orders this after a waiter's predicate check.
    { std::lock_guard<std::mutex> lock(run->mu); }
    run->cv.notify_all();
  }
}

bool SagaDriver::LogAllProgress(int64_t timeout_ms) {
  log_all_.store(true);
  const int64_t deadline = MonotonicMs() + timeout_ms;
  auto waiting = [this] {
    std::vector<std::shared_ptr<Run>> runs;
    {
      std::lock_guard<std::mutex> lock(runs_mu_);
      for (auto& [gtid, run] : runs_) runs.push_back(run);
    }
    std::vector<std::shared_ptr<Run>> unlogged;
    for (auto& run : runs) {
      std::lock_guard<std::mutex> lock(run->mu);
      if (!run->gone && run->saga.logged.has_value()) unlogged.push_back(run);
    }
    return unlogged;
  };
  for (const auto& run : waiting()) Feed(run, SagaLogDue{});
  for (;;) {
    const size_t left = waiting().size();
    if (left == 0) return true;
    if (MonotonicMs() >= deadline) {
      LOG(WARNING) << left << " sagas' progress not logged at shutdown: redone after the restart";
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void SagaDriver::BeginSubmission(const std::string& gtid) {
  std::lock_guard<std::mutex> lock(runs_mu_);
  ++submitting_[gtid];
}

bool SagaDriver::EndSubmission(const std::string& gtid, const std::shared_ptr<Run>& run,
                               bool* cancel) {
  std::lock_guard<std::mutex> lock(runs_mu_);
  auto it = submitting_.find(gtid);
  if (it != submitting_.end() && --it->second <= 0) submitting_.erase(it);
  if (run == nullptr) return true;
  if (!runs_.emplace(gtid, run).second) return false;
  const bool cancelled = cancel_after_submit_.erase(gtid) > 0;
  if (cancel != nullptr) *cancel = cancelled;
  return true;
}

void SagaDriver::Resume(const TxnRecord& txn) {
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    // Driven here already, or its submitter will drive it once logged.
    if (runs_.count(txn.gtid) || submitting_.count(txn.gtid)) return;
  }
  const std::string gtid = txn.gtid;
  pool_.Submit([this, gtid] { ResumeNow(gtid, /*cancel=*/false); });
}

void SagaDriver::AdminChanged(const TxnRecord& txn) {
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(txn.gtid);
    if (it != runs_.end()) run = it->second;
  }
  if (run != nullptr) Release(run, "changed by an operator");
  Resume(txn);
}

Status SagaDriver::Cancel(const std::string& gtid) {
  std::shared_ptr<Run> run;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(gtid);
    if (it != runs_.end()) run = it->second;
  }
  if (run) {
    Feed(run, SagaCancelRequested{});
    return Status::Ok();
  }
  Result<TxnRecord> txn = store_->GetTxn(gtid);
  if (!txn.ok()) return txn.status();
  if (txn->kind != TxnKind::kSaga) return Status::InvalidArgument(gtid + " is not a saga");
  if (IsFinal(txn->state)) {
    // The step function's rule: SUCCEEDED is illegal, COMPENSATED a no-op.
    SagaRun stored;
    stored.txn = *txn;
    Result<SagaStepResult> r =
        StepSaga(stored, SagaCancelRequested{}, SagaInputs{NowUnixMs(), 0.5}, machine_options_);
    return r.status();
  }
  if (!OwnedBy(*txn, node_)) {
    return Status::NotOwner("saga " + gtid + " is driven by " + txn->owner);
  }
  pool_.Submit([this, gtid] { ResumeNow(gtid, /*cancel=*/true); });
  return Status::Ok();
}

Result<std::shared_ptr<SagaDriver::Run>> SagaDriver::Load(const std::string& gtid) {
  Result<TxnRecord> txn = store_->GetTxn(gtid);
  if (!txn.ok()) return txn.status();
  if (txn->kind != TxnKind::kSaga) return Status::InvalidArgument(gtid + " is not a saga");
  if (IsFinal(txn->state)) return Status::IllegalTransition(gtid + " is finished");
  if (!OwnedBy(*txn, node_)) {
    return Status::NotOwner("owned by " + txn->owner + "/" + std::to_string(txn->epoch));
  }
  Result<std::vector<BranchRecord>> steps = store_->GetBranches(gtid);
  if (!steps.ok()) return steps.status();
  auto run = std::make_shared<Run>();
  run->saga.txn = std::move(txn).value();
  run->saga.steps = std::move(steps).value();
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (submitting_.count(gtid)) {
      return Status::AlreadyExists("being submitted here: its submitter drives it");
    }
    if (!runs_.emplace(gtid, run).second) return Status::AlreadyExists("driven here already");
  }
  return run;
}

void SagaDriver::ResumeNow(const std::string& gtid, bool cancel) {
  std::shared_ptr<Run> driven;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(gtid);
    if (it != runs_.end()) {
      driven = it->second;
    } else if (submitting_.count(gtid)) {
      // Its submitter (or the resume after a resubmission) takes it up.
      if (cancel) cancel_after_submit_.insert(gtid);
      return;
    }
  }
  if (driven != nullptr) {
    // Taken up here since the cancel was accepted: the cancel goes to that run.
    if (cancel) Feed(driven, SagaCancelRequested{});
    return;
  }
  Result<std::shared_ptr<Run>> run = Load(gtid);
  if (!run.ok() && cancel && run.status().code() == StatusCode::kAlreadyExists) {
    // Taken up here, or being submitted, since the check above: the cancel
    // goes to that run.
    std::shared_ptr<Run> other;
    {
      std::lock_guard<std::mutex> lock(runs_mu_);
      auto it = runs_.find(gtid);
      if (it != runs_.end()) {
        other = it->second;
      } else if (submitting_.count(gtid)) {
        cancel_after_submit_.insert(gtid);
      }
    }
    if (other != nullptr) Feed(other, SagaCancelRequested{});
    return;
  }
  if (!run.ok()) {
    if (run.status().code() == StatusCode::kNotOwner ||
        run.status().code() == StatusCode::kIllegalTransition ||
        run.status().code() == StatusCode::kAlreadyExists) {
      VLOG(1) << "saga " << gtid << ": not resumed: " << run.status();
    } else {
      LOG(ERROR) << "saga " << gtid << ": resume cannot load it: " << run.status();
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (cancel_after_submit_.erase(gtid) > 0) cancel = true;
  }
  VLOG(1) << "saga " << gtid << ": resumed in " << TxnStateName((*run)->saga.txn.state);
  {
    std::lock_guard<std::mutex> lock((*run)->mu);
    (*run)->events.push_back(SagaResumed{});
    if (cancel) (*run)->events.push_back(SagaCancelRequested{});
    (*run)->stepping = true;
  }
  Pump(*run);
}

void SagaDriver::Release(const std::shared_ptr<Run>& run, const char* why) {
  std::string gtid;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    gtid = run->saga.txn.gtid;
  }
  // Out of the registry first: whoever is woken below may Resume it at once.
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(gtid);
    if (it != runs_.end() && it->second == run) runs_.erase(it);
  }
  std::vector<std::function<void()>> watchers;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    run->gone = true;
    run->events.clear();
    watchers.swap(run->watchers);
  }
  run->cv.notify_all();
  for (auto& watcher : watchers) watcher();
  VLOG(1) << "saga " << gtid << ": released (" << why << ")";
}

void SagaDriver::Feed(const std::shared_ptr<Run>& run, SagaEvent event) {
  if (stopping_.load()) return;  // recovery finds the saga again
  {
    std::lock_guard<std::mutex> lock(run->mu);
    if (run->gone) return;
    run->events.push_back(std::move(event));
    if (run->stepping) return;  // its owner steps it
    run->stepping = true;
  }
  Pump(run);
}

void SagaDriver::Pump(const std::shared_ptr<Run>& run) {
  for (;;) {
    std::string gtid;
    const char* event_name = "";
    Result<SagaStepResult> stepped = Status::Internal("not stepped");
    {
      std::lock_guard<std::mutex> lock(run->mu);
      if (run->gone || run->events.empty()) {
        run->stepping = false;
        return;
      }
      SagaEvent event = std::move(run->events.front());
      run->events.pop_front();
      gtid = run->saga.txn.gtid;
      event_name = SagaEventName(event);
      stepped = StepSaga(run->saga, event, SagaInputs{NowUnixMs(), RandomUnit(), MayDefer()},
                         machine_options_);
    }
    if (!stepped.ok()) {
      if (stepped.status().code() == StatusCode::kInternal) {
        LOG(ERROR) << "saga " << gtid << ": " << stepped.status() << "; left for the sweeper";
        Release(run, "cannot go on here");
        return;
      }
      LOG(ERROR) << "saga " << gtid << ": " << event_name << " refused: " << stepped.status();
      continue;
    }
    if (stepped->writes.empty()) {
      if (!Adopt(run, std::move(stepped).value())) return;
      continue;
    }
    FenceWrites(&stepped->writes, node_.node_id, node_.epoch);
    WriteBatch batch = std::move(stepped->writes);
    const WriteMarks marks = MarksOf(batch);
    if (marks.final_state) TXC_CRASH_POINT("saga.before_final_state");
    auto result = std::make_shared<SagaStepResult>(std::move(stepped).value());
    batches_written_.fetch_add(1);
    std::shared_ptr<Relay> relay = relay_;
    // Logged() goes on once the writes are durable; this thread is free now.
    log_->WriteLater(std::move(batch), [relay, run, result, marks](const Status& s) {
      // On the committer's thread: the next step only queues its calls and
      // writes. Shutting down: dropped, recovery finds the saga.
      relay->Run([&](SagaDriver* driver) {
        if (s.ok()) CrashPointsAfterLogged(marks);
        driver->Logged(run, result, s);
      });
    });
    return;
  }
}

void SagaDriver::Logged(const std::shared_ptr<Run>& run,
                        const std::shared_ptr<SagaStepResult>& result, const Status& logged) {
  if (!logged.ok()) {
    LOG(ERROR) << "saga " << result->next.txn.gtid
               << ": logging its progress failed, the sweeper resumes it: " << logged;
    Release(run, "write failed");
    return;
  }
  if (Adopt(run, std::move(*result))) Pump(run);
}

bool SagaDriver::Adopt(const std::shared_ptr<Run>& run, SagaStepResult result) {
  std::vector<std::pair<SagaEffect, ParticipantCall>> calls;
  bool finished = false;
  bool unlogged = false;  // the run's forward progress is not all logged
  SagaState final_state = result.state;
  std::string gtid;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    if (run->gone) return false;
    gtid = run->saga.txn.gtid;
    LogEdges(run->saga, result.next);
    run->saga = std::move(result.next);
    unlogged = run->saga.logged.has_value();
    const TxnRecord& txn = run->saga.txn;
    for (const SagaEffect& e : result.effects) {
      if (e.kind == SagaEffect::Kind::kFinished) {
        finished = true;
        final_state = e.state;
        continue;
      }
      ParticipantCall call;
      if (e.kind != SagaEffect::Kind::kRetryAfter) {
        for (const BranchRecord& s : run->saga.steps) {
          if (s.branch_id != e.step) continue;
          call.endpoint = s.endpoint;
          call.branch_id = s.branch_id;
          call.name = e.kind == SagaEffect::Kind::kCallAction ? s.action : s.compensation;
          call.payload = s.payload;
        }
        call.gtid = txn.gtid;
        call.attempt = e.attempt;
        call.deadline_ms = txn.deadline_ms;
        call.timeout_ms = options_.call_timeout_ms;
      }
      calls.emplace_back(e, std::move(call));
    }
  }
  // The window lazy progress leaves: an action about to be sent with nothing
  // logged before it. A replica paused here past its lease sends it after
  // another replica took the saga over (tests/chaos: PausedOwnerSendsLate).
  if (unlogged && std::any_of(calls.begin(), calls.end(), [](const auto& c) {
        return c.first.kind == SagaEffect::Kind::kCallAction;
      })) {
    TXC_PAUSE_POINT("saga.before_unlogged_send");
  }
  // Outside the lock: the calls may answer (and Feed) at once.
  std::vector<std::string> coordinators;
  for (auto& [effect, call] : calls) {
    const std::string step = effect.step;
    const int32_t attempt = effect.attempt;
    switch (effect.kind) {
      case SagaEffect::Kind::kCallAction:
        if (coordinators.empty()) coordinators = Coordinators();
        call.coordinators = coordinators;
        participants_->Action(
            std::move(call), gate_.Wrap([this, run, step, attempt](Result<StepAnswer> answer) {
              if (answer.ok()) {
                Feed(run, SagaActionAnswered{step, attempt, std::move(answer).value()});
              } else {
                Feed(run, SagaActionCallFailed{step, attempt, answer.status()});
              }
            }));
        break;
      case SagaEffect::Kind::kCallCompensation:
        if (coordinators.empty()) coordinators = Coordinators();
        call.coordinators = coordinators;
        participants_->Compensate(std::move(call), gate_.Wrap([this, run, gtid, step,
                                                               attempt](Result<StepAnswer> answer) {
          SagaCompensationAnswered event{step, attempt, false, ""};
          if (!answer.ok()) {
            event.message = answer.status().ToString();
          } else if (answer->outcome == StepOutcome::kSuccess) {
            event.ok = true;
          } else {
            event.message =
                (answer->outcome == StepOutcome::kFailure ? "refused: " : "retry later: ") +
                answer->message;
          }
          if (!event.ok) {
            LOG(ERROR) << "saga " << gtid << " step " << step
                       << ": compensation not done: " << event.message << " (attempt " << attempt
                       << ")";
          }
          Feed(run, std::move(event));
        }));
        break;
      case SagaEffect::Kind::kRetryAfter:
        VLOG(1) << "saga " << gtid << " step " << step << ": attempt " << attempt
                << " not done, retry in " << effect.delay_ms << " ms";
        participants_->After(effect.delay_ms, gate_.Wrap([this, run, step, attempt] {
          Feed(run, SagaRetryDue{step, attempt});
        }));
        break;
      case SagaEffect::Kind::kLogAfter: {
        // Most runs end (and log everything) long before this fires: the
        // timer must not keep them alive until then.
        std::weak_ptr<Run> weak = run;
        participants_->After(effect.delay_ms, gate_.Wrap([this, weak] {
          if (std::shared_ptr<Run> alive = weak.lock()) Feed(alive, SagaLogDue{});
        }));
        break;
      }
      case SagaEffect::Kind::kFinished: break;
    }
  }
  if (unlogged) TXC_CRASH_POINT("saga.after_unlogged_send");
  if (finished) {
    if (final_state != SagaState::kParked) sagas_finished_.fetch_add(1);
    Release(run, final_state == SagaState::kParked ? "parked, the sweeper retries it"
                                                   : SagaStateName(final_state));
    return false;
  }
  return true;
}

}  // namespace txc
