#include "coordinator/driver/saga_driver.h"

#include <glog/logging.h>

#include <chrono>
#include <thread>

#include "common/crash_point.h"
#include "common/ids.h"
#include "common/task_pool.h"
#include "common/thrift_util.h"
#include "coordinator/core/validation.h"
#include "coordinator/driver/ownership.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "gen-cpp/Participant.h"

namespace txc {

// One saga driven by this process.
struct SagaDriver::Run {
  std::mutex mu;                        // guards everything below
  std::condition_variable cv;           // signalled when the run is finished or released
  TxnRecord txn;                        // as stored
  std::vector<BranchRecord> steps;      // in memory: may be ahead of the store
  std::vector<BranchRecord> stored;     // as stored
  std::map<std::string, size_t> index;  // step id -> position
  std::set<std::string> busy;           // steps with a call outstanding or a retry timer pending
  bool advancing = false;               // a thread is in Advance for this run
  bool again = false;                   // something changed while it was: plan again
  bool parked_round_failed = false;     // PARKED: a compensation failed this round
  bool gone = false;                    // released: late results are ignored
};

// The "saga-worker" pool, the "saga-timer" thread for retries, and the
// participant connections. At shutdown queued work and timers are dropped:
// recovery finds every unfinished saga again.
class SagaDriver::Workers {
 public:
  Workers(int threads, ConnectOptions connect)
      : clients(connect),
        pool_("saga-worker", threads,
              TaskPool::Options{TaskPool::AtShutdown::kDropQueued, "saga-timer"}) {}

  // Drops queued work and joins the threads (a running task finishes first;
  // what it posts is dropped). Idempotent; from the owner's thread only.
  void Shutdown() { pool_.Shutdown(); }
  void Post(std::function<void()> fn) { pool_.Submit(std::move(fn)); }
  void PostAfter(int64_t delay_ms, std::function<void()> fn) {
    pool_.SubmitAfter(delay_ms, std::move(fn));
  }

  ClientPool<wire::ParticipantClient> clients;

 private:
  TaskPool pool_;  // declared after clients: its threads stop before the connections go
};

namespace {

bool SameStored(const BranchRecord& a, const BranchRecord& b) {
  return a.state == b.state && a.attempts == b.attempts && a.last_error == b.last_error;
}

std::string Truncate(std::string s) {
  if (s.size() > 1000) s.resize(1000);
  return s;
}

}  // namespace

SagaDriver::SagaDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                       SagaDriverOptions options)
    : store_(store), log_(log), node_(std::move(node)), options_(std::move(options)) {
  plan_options_.park_after_attempts = options_.park_after_attempts;
  if (!options_.coordinators) {
    const std::string self = node_.endpoint;
    options_.coordinators = [self] { return std::vector<std::string>{self}; };
  }
  if (!options_.new_gtid) {
    const std::string prefix = IdPrefix(node_.node_id) + "-saga";
    options_.new_gtid = [prefix] { return NewId(prefix); };
  }
  ConnectOptions connect;
  connect.connect_timeout_ms = options_.connect_timeout_ms;
  connect.rpc_timeout_ms = options_.call_timeout_ms;
  workers_ = std::make_unique<Workers>(std::max(1, options_.worker_threads), connect);
}

SagaDriver::~SagaDriver() {
  // Join the threads while workers_ still points at them: a worker finishing
  // a call posts its follow-up through workers_ (unique_ptr::reset would
  // null it first).
  workers_->Shutdown();
  workers_.reset();
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

Result<TxnRecord> SagaDriver::SubmitSaga(const SagaSpec& spec) {
  // `spec` was validated by CoordinatorService::SubmitSaga (ValidateSagaSubmission).

  const int64_t now = NowUnixMs();
  TxnRecord txn;
  txn.gtid = spec.gtid.empty() ? options_.new_gtid() : spec.gtid;
  txn.kind = TxnKind::kSaga;
  txn.state = TxnState::kRunning;
  txn.owner = node_.node_id;
  txn.epoch = node_.epoch;
  txn.created_ms = now;
  txn.updated_ms = now;
  txn.deadline_ms = now + spec.timeout_ms;
  txn.next_attempt_ms = now + options_.in_flight_recheck_ms;
  txn.payload = SagaFingerprint(spec.steps);
  txn.flags = spec.wait_for_completion ? kFlagWaitCompletion : 0;

  auto run = std::make_shared<Run>();
  WriteBatch batch;
  batch.insert_txns.push_back(txn);
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    BranchRecord s = spec.steps[i];
    s.gtid = txn.gtid;
    s.ordinal = static_cast<int32_t>(i);
    s.resource.clear();
    s.state = BranchState::kPending;
    s.attempts = 0;
    s.next_attempt_ms = 0;
    s.last_error.clear();
    run->index[s.branch_id] = i;
    run->steps.push_back(s);
  }
  // The steps that can start at once are logged RUNNING in the same write as
  // the definition: durable before their actions are sent, one store
  // transaction fewer per saga.
  std::vector<std::string> first_wave;
  Result<SagaPlan> plan =
      PlanSaga(TxnState::kRunning, run->steps, {}, now, txn.deadline_ms, plan_options_);
  if (plan.ok()) first_wave = plan->start;
  for (const std::string& id : first_wave) {
    BranchRecord& s = run->steps[run->index.at(id)];
    s.state = BranchState::kStepRunning;
    s.attempts = 1;
  }
  batch.insert_branches = run->steps;
  Status logged = log_->Write(std::move(batch));
  batches_written_.fetch_add(1);
  if (logged.code() == StatusCode::kAlreadyExists) {
    // Resubmission: the same definition is the same saga.
    Result<TxnRecord> existing = store_->GetTxn(txn.gtid);
    if (!existing.ok()) return existing.status();
    if (existing->kind != TxnKind::kSaga || existing->payload != txn.payload) {
      return Status::AlreadyExists("gtid " + txn.gtid +
                                   " already names a different transaction definition");
    }
    VLOG(1) << "saga " << txn.gtid << ": resubmitted, same definition";
    // Not driven here (e.g. the first submit's answer was lost in a store
    // error, or this process restarted, or it was submitted at a replica that
    // died since): take it up now rather than when the sweeper finds it due.
    // A no-op if it is driven here or by another live replica.
    if (!IsFinal(existing->state)) {
      if (!OwnedBy(*existing, node_)) TakeOverIfOwnerDead(*existing);
      ResumeNow(txn.gtid);
    }
    if (spec.wait_for_completion) {
      std::shared_ptr<Run> running;
      {
        std::lock_guard<std::mutex> lock(runs_mu_);
        auto it = runs_.find(txn.gtid);
        if (it != runs_.end()) running = it->second;
      }
      if (running) return WaitFor(running, spec.wait_timeout_ms);
      // Driven by another replica: its progress is in the store.
      return WaitInStore(std::move(existing).value(), MonotonicMs() + spec.wait_timeout_ms);
    }
    return existing;
  }
  if (!logged.ok()) {
    LOG(ERROR) << "saga " << txn.gtid << ": could not log the definition: " << logged;
    return logged;
  }
  sagas_submitted_.fetch_add(1);
  VLOG(1) << "saga " << txn.gtid << ": -> RUNNING (" << spec.steps.size() << " steps logged)";
  run->txn = txn;
  run->stored = run->steps;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    runs_.emplace(txn.gtid, run);
  }
  {
    std::lock_guard<std::mutex> lock(run->mu);
    for (const std::string& id : first_wave) run->busy.insert(id);
  }
  for (const std::string& id : first_wave) {
    VLOG(1) << "saga " << txn.gtid << " step " << id << ": PENDING -> RUNNING (attempts 1)";
    workers_->Post([this, run, id] { CallAction(run, id); });
  }
  if (first_wave.empty()) workers_->Post([this, run] { Advance(run); });
  if (spec.wait_for_completion) return WaitFor(run, spec.wait_timeout_ms);
  return txn;
}

Result<TxnRecord> SagaDriver::WaitFor(const std::shared_ptr<Run>& run, int64_t wait_timeout_ms) {
  const int64_t deadline = MonotonicMs() + wait_timeout_ms;
  TxnRecord txn;
  {
    std::unique_lock<std::mutex> lock(run->mu);
    run->cv.wait_for(lock, std::chrono::milliseconds(wait_timeout_ms),
                     [&] { return run->gone || stop_waiting_.load(); });
    txn = run->txn;
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
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min(left, BackoffDelayMs(poll, attempt))));
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

void SagaDriver::Resume(const TxnRecord& txn) {
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (runs_.count(txn.gtid)) return;  // driven here already
  }
  const std::string gtid = txn.gtid;
  workers_->Post([this, gtid] { ResumeNow(gtid); });
}

void SagaDriver::ResumeNow(const std::string& gtid) {
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (runs_.count(gtid)) return;
  }
  Result<TxnRecord> txn = store_->GetTxn(gtid);
  if (!txn.ok()) {
    LOG(ERROR) << "saga " << gtid << ": resume cannot read it: " << txn.status();
    return;
  }
  if (txn->kind != TxnKind::kSaga || IsFinal(txn->state)) return;
  if (txn->owner != node_.node_id || txn->epoch != node_.epoch) {
    VLOG(1) << "saga " << gtid << ": not resumed, owned by " << txn->owner << "/" << txn->epoch;
    return;
  }
  Result<std::vector<BranchRecord>> steps = store_->GetBranches(gtid);
  if (!steps.ok()) {
    LOG(ERROR) << "saga " << gtid << ": resume cannot read its steps: " << steps.status();
    return;
  }
  auto run = std::make_shared<Run>();
  run->txn = *txn;
  run->steps = *steps;
  run->stored = *steps;
  for (size_t i = 0; i < run->steps.size(); ++i) run->index[run->steps[i].branch_id] = i;
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    if (!runs_.emplace(gtid, run).second) return;
  }
  VLOG(1) << "saga " << gtid << ": resumed in " << TxnStateName(run->txn.state);
  Advance(run);
}

void SagaDriver::Release(const std::shared_ptr<Run>& run, const char* why) {
  std::string gtid;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    gtid = run->txn.gtid;
  }
  // Out of the registry first: whoever is woken below may Resume it at once.
  {
    std::lock_guard<std::mutex> lock(runs_mu_);
    auto it = runs_.find(gtid);
    if (it != runs_.end() && it->second == run) runs_.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(run->mu);
    run->gone = true;
  }
  run->cv.notify_all();
  VLOG(1) << "saga " << gtid << ": released (" << why << ")";
}

void SagaDriver::Advance(const std::shared_ptr<Run>& run) {
  {
    std::lock_guard<std::mutex> lock(run->mu);
    if (run->gone) return;
    if (run->advancing) {
      run->again = true;
      return;
    }
    run->advancing = true;
  }
  for (;;) {
    WriteBatch batch;
    std::vector<std::pair<std::string, bool>> sends;  // (step, is_action)
    std::vector<size_t> written;                      // steps in the batch
    std::vector<BranchRecord> written_values;
    TxnState old_state = TxnState::kRunning;
    TxnState new_state = TxnState::kRunning;
    int64_t next_attempt_ms = 0;
    bool finished = false;
    bool release_after = false;
    std::string gtid;
    {
      std::lock_guard<std::mutex> lock(run->mu);
      run->again = false;
      gtid = run->txn.gtid;
      old_state = run->txn.state;
      const int64_t now = NowUnixMs();
      Result<SagaPlan> planned =
          PlanSaga(run->txn.state, run->steps, run->busy, now, run->txn.deadline_ms, plan_options_);
      if (!planned.ok()) {
        LOG(ERROR) << "saga " << gtid << ": cannot plan: " << planned.status();
        run->advancing = false;
        release_after = true;
      } else {
        const SagaPlan& plan = *planned;
        auto step = [&](const std::string& id) -> BranchRecord& {
          return run->steps[run->index.at(id)];
        };
        for (const std::string& id : plan.fail) {
          BranchRecord& s = step(id);
          s.state = BranchState::kFailed;
          s.last_error = Truncate("attempts exhausted (" + std::to_string(s.attempts) + "/" +
                                  std::to_string(s.max_attempts) + ")" +
                                  (s.last_error.empty() ? "" : ": " + s.last_error));
        }
        for (const std::string& id : plan.skip) step(id).state = BranchState::kSkipped;
        for (const std::string& id : plan.start) {
          BranchRecord& s = step(id);
          s.state = BranchState::kStepRunning;
          s.attempts = 1;
          sends.emplace_back(id, true);
        }
        for (const std::string& id : plan.resend) {
          step(id).attempts += 1;
          sends.emplace_back(id, true);
        }
        const bool parked = plan.next_state == TxnState::kParked;
        if (!(parked && run->parked_round_failed)) {
          for (const std::string& id : plan.compensate) {
            BranchRecord& s = step(id);
            if (s.state != BranchState::kStepCompensating) {
              s.state = BranchState::kStepCompensating;
              s.attempts = 1;
            } else {
              s.attempts += 1;
            }
            sends.emplace_back(id, false);
          }
        }
        // Parking hands the saga to the sweeper: what is in flight finishes, nothing new starts.
        if (parked && old_state != TxnState::kParked) run->parked_round_failed = true;
        for (const auto& [id, is_action] : sends) run->busy.insert(id);
        new_state = plan.next_state;
        finished = plan.finished;
        for (size_t i = 0; i < run->steps.size(); ++i) {
          const BranchRecord& mem = run->steps[i];
          const BranchRecord& st = run->stored[i];
          if (SameStored(mem, st)) continue;
          BranchUpdate u;
          u.gtid = gtid;
          u.branch_id = mem.branch_id;
          u.expected_states = {st.state};
          u.expected_owner = run->txn.owner;
          u.expected_epoch = run->txn.epoch;
          if (mem.state != st.state) u.state = mem.state;
          if (mem.attempts != st.attempts) u.attempts = mem.attempts;
          if (mem.last_error != st.last_error) u.last_error = mem.last_error;
          batch.branch_updates.push_back(std::move(u));
          written.push_back(i);
          written_values.push_back(mem);
        }
        if (parked && run->busy.empty()) release_after = true;
        const bool state_change = new_state != old_state;
        if (!batch.branch_updates.empty() || state_change || release_after) {
          TxnUpdate u;
          u.gtid = gtid;
          u.expected_states = {old_state};
          u.expected_owner = run->txn.owner;
          u.expected_epoch = run->txn.epoch;
          if (state_change) u.state = new_state;
          if (release_after && parked) u.attempts = run->txn.attempts + 1;  // parked rounds
          next_attempt_ms =
              now + (parked ? options_.parked_retry_ms : options_.in_flight_recheck_ms);
          u.next_attempt_ms = next_attempt_ms;
          batch.txn_updates.push_back(std::move(u));
        }
        if (!finished && !release_after && sends.empty() && run->busy.empty() && batch.empty()) {
          LOG(ERROR) << "saga " << gtid << ": nothing to do in " << TxnStateName(old_state)
                     << "; left for the sweeper";
          release_after = true;
        }
      }
    }

    if (!batch.empty()) {
      Status st = log_->Write(std::move(batch));
      batches_written_.fetch_add(1);
      if (!st.ok()) {
        LOG(ERROR) << "saga " << gtid
                   << ": logging its progress failed, the sweeper resumes it: " << st;
        Release(run, "write failed");
        return;
      }
      bool action_outcome = false;
      bool compensation_logged = false;
      {
        std::lock_guard<std::mutex> lock(run->mu);
        for (size_t k = 0; k < written.size(); ++k) {
          BranchRecord& st_rec = run->stored[written[k]];
          const BranchRecord& v = written_values[k];
          if (st_rec.state != v.state) {
            VLOG(1) << "saga " << gtid << " step " << v.branch_id << ": "
                    << BranchStateName(st_rec.state) << " -> " << BranchStateName(v.state)
                    << " (attempts " << v.attempts << ")";
            if (st_rec.state == BranchState::kStepRunning &&
                (v.state == BranchState::kDone || v.state == BranchState::kFailed)) {
              action_outcome = true;
            }
            if (v.state == BranchState::kStepCompensated) compensation_logged = true;
          }
          st_rec.state = v.state;
          st_rec.attempts = v.attempts;
          st_rec.last_error = v.last_error;
        }
        if (new_state != old_state) {
          VLOG(1) << "saga " << gtid << ": " << TxnStateName(old_state) << " -> "
                  << TxnStateName(new_state);
        }
        run->txn.state = new_state;
        if (next_attempt_ms != 0) run->txn.next_attempt_ms = next_attempt_ms;
      }
      if (action_outcome) TXC_CRASH_POINT("saga.after_action_logged");
      if (compensation_logged && new_state != TxnState::kCompensated) {
        TXC_CRASH_POINT("saga.mid_compensation");
      }
    }
    if (finished) {
      sagas_finished_.fetch_add(1);
      Release(run, TxnStateName(new_state));
      return;
    }
    if (release_after) {
      Release(run, new_state == TxnState::kParked ? "parked, the sweeper retries it"
                                                  : "cannot go on here");
      return;
    }
    for (const auto& [id, is_action] : sends) {
      const std::string step_id = id;
      if (is_action) {
        workers_->Post([this, run, step_id] { CallAction(run, step_id); });
      } else {
        workers_->Post([this, run, step_id] { CallCompensation(run, step_id); });
      }
    }
    std::lock_guard<std::mutex> lock(run->mu);
    if (!run->again || run->gone) {
      run->advancing = false;
      return;
    }
  }
}

namespace {

// One action or compensate call. Transport errors and unexpected exceptions
// are a Status; the participant's answer is in *result.
Status CallParticipant(ClientPool<wire::ParticipantClient>* clients, const TxnRecord& txn,
                       const BranchRecord& step, bool action,
                       const std::vector<std::string>& coordinators, wire::StepResult* result) {
  wire::StepRequest req;
  req.__set_gtid(txn.gtid);
  req.__set_step_id(step.branch_id);
  req.__set_name(action ? step.action : step.compensation);
  req.__set_payload(step.payload);
  req.__set_attempt(step.attempts);
  wire::TxnContext ctx;
  ctx.__set_gtid(txn.gtid);
  ctx.__set_coordinators(coordinators);
  ctx.__set_deadline_unix_ms(txn.deadline_ms);
  ctx.__set_branch_id(step.branch_id);
  req.__set_context(ctx);
  ParticipantCallTimer timer(action ? "action" : "compensate", step.endpoint);
  try {
    return timer.Done(clients->Call(step.endpoint, [&](wire::ParticipantClient& c) {
      if (action) {
        c.action(*result, req);
      } else {
        c.compensate(*result, req);
      }
    }));
  } catch (const std::exception& e) {
    return timer.Done(
        Status::Unavailable(std::string("participant ") + step.endpoint + ": " + e.what()));
  }
}

}  // namespace

bool SagaDriver::SnapshotStep(Run& run, const std::string& step_id, TxnRecord* txn,
                              BranchRecord* step) {
  std::lock_guard<std::mutex> lock(run.mu);
  if (run.gone) return false;
  *txn = run.txn;
  *step = run.steps[run.index.at(step_id)];
  return true;
}

void SagaDriver::RetryStepAfter(const std::shared_ptr<Run>& run, const std::string& step_id,
                                int64_t delay_ms) {
  workers_->PostAfter(delay_ms, [this, run, step_id] {
    {
      std::lock_guard<std::mutex> lock(run->mu);
      run->busy.erase(step_id);
    }
    Advance(run);
  });
}

void SagaDriver::CallAction(const std::shared_ptr<Run>& run, const std::string& step_id) {
  TxnRecord txn;
  BranchRecord step;
  if (!SnapshotStep(*run, step_id, &txn, &step)) return;
  wire::StepResult result;
  Status rpc =
      CallParticipant(&workers_->clients, txn, step, /*action=*/true, Coordinators(), &result);
  {
    std::lock_guard<std::mutex> lock(run->mu);
    if (run->gone) return;
    BranchRecord& s = run->steps[run->index.at(step_id)];
    BranchState target = BranchState::kStepRunning;
    if (rpc.ok() && result.outcome == wire::StepOutcome::SUCCESS) {
      target = BranchState::kDone;
    } else if (rpc.ok() && result.outcome == wire::StepOutcome::FAILURE) {
      target = BranchState::kFailed;
      s.last_error = Truncate("action refused: " + result.message);
    } else {
      s.last_error = Truncate(rpc.ok() ? "retry later: " + result.message : rpc.ToString());
      if (run->txn.state == TxnState::kRunning && s.state == BranchState::kStepRunning &&
          s.attempts < s.max_attempts) {
        const int64_t delay =
            BackoffDelayMs(BackoffPolicy{s.initial_backoff_ms, s.max_backoff_ms, 2.0}, s.attempts);
        VLOG(1) << "saga " << txn.gtid << " step " << step_id << ": action attempt " << s.attempts
                << " not done (" << s.last_error << "), retry in " << delay << " ms";
        RetryStepAfter(run, step_id, delay);
        return;  // stays busy until the retry is due
      }
    }
    if (target != BranchState::kStepRunning) {
      Result<Transition> t = StepTransition(s.state, target);
      if (!t.ok()) {
        LOG(ERROR) << "saga " << txn.gtid << " step " << step_id << ": " << t.status();
      } else if (*t == Transition::kApply) {
        s.state = target;
      }
    }
    run->busy.erase(step_id);
  }
  Advance(run);
}

void SagaDriver::CallCompensation(const std::shared_ptr<Run>& run, const std::string& step_id) {
  TxnRecord txn;
  BranchRecord step;
  if (!SnapshotStep(*run, step_id, &txn, &step)) return;
  wire::StepResult result;
  Status rpc =
      CallParticipant(&workers_->clients, txn, step, /*action=*/false, Coordinators(), &result);
  {
    std::lock_guard<std::mutex> lock(run->mu);
    if (run->gone) return;
    BranchRecord& s = run->steps[run->index.at(step_id)];
    if (rpc.ok() && result.outcome == wire::StepOutcome::SUCCESS) {
      Result<Transition> t = StepTransition(s.state, BranchState::kStepCompensated);
      if (!t.ok()) {
        LOG(ERROR) << "saga " << txn.gtid << " step " << step_id << ": " << t.status();
      } else if (*t == Transition::kApply) {
        s.state = BranchState::kStepCompensated;
      }
    } else {
      s.last_error = Truncate(
          "compensation not done: " +
          (rpc.ok() ? std::string(result.outcome == wire::StepOutcome::FAILURE ? "refused: "
                                                                               : "retry later: ") +
                          result.message
                    : rpc.ToString()));
      LOG(ERROR) << "saga " << txn.gtid << " step " << step_id << ": " << s.last_error
                 << " (attempt " << s.attempts << ")";
      if (run->txn.state == TxnState::kParked) {
        run->parked_round_failed = true;
      } else if (s.attempts < options_.park_after_attempts) {
        const int64_t delay = BackoffDelayMs(options_.compensation_backoff, s.attempts);
        RetryStepAfter(run, step_id, delay);
        return;  // stays busy until the retry is due
      }
    }
    run->busy.erase(step_id);
  }
  Advance(run);
}

}  // namespace txc
