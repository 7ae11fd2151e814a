#include "coordinator/driver/two_phase_driver.h"

#include <glog/logging.h>

#include <algorithm>
#include <random>
#include <thread>
#include <utility>

#include "common/crash_point.h"
#include "coordinator/core/validation.h"
#include "coordinator/driver/ownership.h"

namespace txc {
namespace {

// Rounds of "read, claim, act" a commit or rollback makes before giving up
// when the record keeps changing under it (each round is bounded by I/O
// timeouts; the limit only guards against a livelock).
constexpr int kMaxRounds = 8;

// How often a call waiting on another replica's transaction (or on a final
// state nobody in this process will announce) looks at the store again.
const BackoffPolicy kStorePoll{10, 500, 2.0};

bool SameBranchContent(const BranchRecord& a, const BranchRecord& b) {
  return a.endpoint == b.endpoint && a.resource == b.resource && a.payload == b.payload;
}

TwoPhaseTiming TimingOf(const TwoPhaseDriverOptions& o) {
  TwoPhaseTiming t;
  // A vote is awaited as long as the call can take, plus slack for the queue.
  t.prepare_window_ms = o.prepare_timeout_ms + o.connect_timeout_ms + 1000;
  t.drive_lease_ms = o.drive_lease_ms;
  t.phase_two_attempts = o.phase_two_attempts;
  t.phase_two_backoff = o.phase_two_backoff;
  t.redrive_backoff = o.redrive_backoff;
  return t;
}

TwoPhaseEvent EventOf(TwoPhaseEventKind kind, size_t branch = 0) {
  TwoPhaseEvent e;
  e.kind = kind;
  e.branch = branch;
  return e;
}

}  // namespace

TwoPhaseDriver::TwoPhaseDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                               TwoPhaseDriverOptions options)
    : store_(store),
      log_(log),
      node_(std::move(node)),
      options_(std::move(options)),
      timing_(TimingOf(options_)),
      driver_pool_("2pc-driver", std::max(1, options_.driver_threads)) {
  participants_ = options_.participants;
  if (participants_ == nullptr) {
    AsyncParticipantClientOptions client;
    client.io_threads = std::max(1, options_.io_threads);
    client.connect_timeout_ms = options_.connect_timeout_ms;
    client.max_calls_per_endpoint = std::max(1, options_.max_calls_per_endpoint);
    client.max_batch_calls = std::max(1, options_.max_batch_calls);
    client.batch_below_us = options_.batch_below_us;
    client.tls = options_.participant_tls;
    participants_ = std::make_shared<AsyncParticipantClient>(client);
  }
}

TwoPhaseDriver::~TwoPhaseDriver() {
  {
    std::unique_lock<std::mutex> lock(pending_mu_);
    stopping_.store(true);
    // Every step already being executed (a log callback, a participant answer)
    // finishes first; no new one starts.
    pending_cv_.wait(lock, [this] { return pending_writes_ == 0; });
  }
  // No participant answer or timer reaches this driver any more (the client
  // may be shared and outlive it: late completions are dropped).
  gate_.Close();
  driver_pool_.Shutdown();
  participants_.reset();
  std::vector<std::shared_ptr<Flight>> left;
  {
    std::lock_guard<std::mutex> lock(registry_.mu);
    for (auto& [gtid, flight] : registry_.flights) left.push_back(flight);
  }
  for (auto& flight : left) {
    Release(flight, std::nullopt, Status::Unavailable("the coordinator is stopping"));
  }
}

// ---- in-flight set -----------------------------------------------------------

std::shared_ptr<TwoPhaseDriver::Flight> TwoPhaseDriver::Claim(const std::string& gtid,
                                                              TxnState state) {
  std::lock_guard<std::mutex> lock(registry_.mu);
  auto [it, inserted] = registry_.flights.try_emplace(gtid, nullptr);
  if (!inserted) return nullptr;
  it->second = std::make_shared<Flight>(gtid);
  it->second->published = state;
  return it->second;
}

std::shared_ptr<TwoPhaseDriver::Flight> TwoPhaseDriver::FindFlight(const std::string& gtid) {
  std::lock_guard<std::mutex> lock(registry_.mu);
  auto it = registry_.flights.find(gtid);
  return it == registry_.flights.end() ? nullptr : it->second;
}

void TwoPhaseDriver::Release(const std::shared_ptr<Flight>& flight,
                             std::optional<TxnState> final_state, Status failure) {
  {
    std::lock_guard<std::mutex> lock(registry_.mu);
    auto it = registry_.flights.find(flight->gtid);
    if (it != registry_.flights.end() && it->second == flight) registry_.flights.erase(it);
    if (final_state.has_value()) {
      auto waiting = registry_.completions.find(flight->gtid);
      if (waiting != registry_.completions.end()) {
        Completion& c = *waiting->second;
        std::lock_guard<std::mutex> c_lock(c.mu);
        c.final_state = final_state;
        c.cv.notify_all();
      }
    }
  }
  std::vector<std::function<void()>> watchers;
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    if (flight->released) return;
    if (final_state.has_value()) flight->published = *final_state;
    flight->failure = std::move(failure);
    flight->released = true;
    watchers.swap(flight->watchers);
  }
  flight->cv.notify_all();  // the flight is held by our caller's shared_ptr
  for (auto& watcher : watchers) watcher();
}

void TwoPhaseDriver::WaitOnFlight(Flight& flight, bool completion, int64_t deadline_ms) {
  std::unique_lock<std::mutex> lock(flight.mu);
  for (;;) {
    if (flight.released) return;
    if (completion ? IsFinal(flight.published) : DecisionOf(flight.published).has_value()) return;
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) return;
    flight.cv.wait_for(lock, std::chrono::milliseconds(left));
  }
}

size_t TwoPhaseDriver::InFlightCount() {
  std::lock_guard<std::mutex> lock(registry_.mu);
  return registry_.flights.size();
}

size_t TwoPhaseDriver::PendingCallsForTests() const { return participants_->PendingCalls(); }

// ---- executing the step function -------------------------------------------------

void TwoPhaseDriver::Fence(WriteBatch* batch) const {
  for (TxnUpdate& u : batch->txn_updates) {
    u.expected_owner = node_.node_id;
    u.expected_epoch = node_.epoch;
  }
  for (BranchUpdate& u : batch->branch_updates) {
    u.expected_owner = node_.node_id;
    u.expected_epoch = node_.epoch;
  }
}

Status TwoPhaseDriver::Feed(const std::shared_ptr<Flight>& flight, TwoPhaseEvent event) {
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    if (stopping_.load()) return Status::Unavailable("the coordinator is stopping");
    ++pending_writes_;
  }
  // Held until this step's effects ran (in the log callback when it writes).
  auto done = std::shared_ptr<void>(nullptr, [this](void*) {
    std::lock_guard<std::mutex> lock(pending_mu_);
    if (--pending_writes_ == 0) pending_cv_.notify_all();
  });
  event.now_ms = NowUnixMs();
  event.jitter = RandomUnit();
  TwoPhaseStep step;
  TxnState before;
  TxnState after;
  bool first_vote = false;
  bool first_ack = false;
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    if (flight->released) return Status::Ok();  // the drive is over; a late answer
    Result<TwoPhaseStep> r = StepTwoPhase(flight->run, event, timing_);
    if (!r.ok()) return r.status();
    if (r->noop) return Status::Ok();
    if (event.kind == TwoPhaseEventKind::kVote && !flight->first_vote_seen) {
      flight->first_vote_seen = first_vote = true;
    }
    if (event.kind == TwoPhaseEventKind::kPhaseTwoAnswer && event.error.ok() &&
        !flight->first_ack_seen) {
      flight->first_ack_seen = first_ack = true;
    }
    before = flight->run.txn.state;
    after = r->run.txn.state;
    flight->run = std::move(r->run);  // moved, not copied: the step's run is not used after
    step = std::move(r).value();
  }
  if (first_vote) TXC_CRASH_POINT("2pc.after_prepare_sent");
  if (first_ack) TXC_CRASH_POINT("2pc.mid_phase2");
  if (step.writes.empty()) {
    Execute(flight, before, after, step.effects);
    return Status::Ok();
  }
  if (before != after && IsFinal(after)) TXC_CRASH_POINT("2pc.before_final_state");
  Fence(&step.writes);
  log_->WriteLater(std::move(step.writes),
                   [this, flight, before, after, effects = std::move(step.effects),
                    done](const Status& written) {
                     if (!written.ok()) {
                       OnWriteFailed(flight, written);
                       return;
                     }
                     Execute(flight, before, after, effects);
                   });
  return Status::Ok();
}

void TwoPhaseDriver::Execute(const std::shared_ptr<Flight>& flight, TxnState before, TxnState after,
                             const std::vector<TwoPhaseEffect>& effects) {
  if (before != after) {
    // Durable now.
    const bool commit_requested = (flight->run.txn.flags & kFlagCommitRequested) != 0;
    VLOG(1) << flight->gtid << ": " << TxnStateName(before) << " -> " << TxnStateName(after);
    if (after == TxnState::kPreparing) TXC_CRASH_POINT("2pc.after_preparing_logged");
    if (before == TxnState::kPreparing && commit_requested &&
        (after == TxnState::kCommitting || after == TxnState::kAborting)) {
      TXC_CRASH_POINT("2pc.after_decision_logged");
    } else if (after == TxnState::kAborting) {
      TXC_CRASH_POINT("2pc.after_abort_logged");
    }
    if (!IsFinal(after)) {
      const bool decided = DecisionOf(after).has_value();
      std::vector<std::function<void()>> watchers;
      {
        std::lock_guard<std::mutex> lock(flight->mu);
        flight->published = after;
        if (decided) watchers.swap(flight->watchers);
      }
      // WaitOnFlight waits for a decision or a final state: PREPARING wakes
      // nobody (a needless wake-up per commit otherwise). Notified after the
      // unlock so the woken thread does not block on the mutex at once.
      if (decided) flight->cv.notify_all();
      for (auto& watcher : watchers) watcher();
    }
  }
  for (const TwoPhaseEffect& fx : effects) {
    switch (fx.kind) {
      case TwoPhaseEffectKind::kSendPrepare:
      case TwoPhaseEffectKind::kSendCommitOnePhase:
      case TwoPhaseEffectKind::kSendCommit:
      case TwoPhaseEffectKind::kSendAbort: Send(flight, fx); break;
      case TwoPhaseEffectKind::kRetryAfter:
        participants_->After(fx.delay_ms, gate_.Wrap([this, flight, branch = fx.branch] {
          Feed(flight, EventOf(TwoPhaseEventKind::kRetryDue, branch)).IgnoreError();
        }));
        break;
      case TwoPhaseEffectKind::kPrepareWindow:
        participants_->After(fx.delay_ms, gate_.Wrap([this, flight] {
          Feed(flight, EventOf(TwoPhaseEventKind::kPrepareWindowEnded)).IgnoreError();
        }));
        break;
      case TwoPhaseEffectKind::kContinue:
        Feed(flight, EventOf(TwoPhaseEventKind::kCheck)).IgnoreError();
        break;
      case TwoPhaseEffectKind::kFinished: Release(flight, after); break;
      case TwoPhaseEffectKind::kLeftToSweeper: {
        TxnRecord txn;
        {
          std::lock_guard<std::mutex> lock(flight->mu);
          txn = flight->run.txn;
        }
        if (DecisionOf(txn.state).has_value()) {
          LOG(ERROR) << txn.gtid << ": phase 2 (" << TxnStateName(txn.state)
                     << ") incomplete after round " << txn.attempts << "; the sweeper redrives it";
        } else if (txn.state == TxnState::kPreparing) {
          LOG(ERROR) << txn.gtid << ": one-phase commit outcome unknown after round "
                     << txn.attempts << "; the sweeper asks the participant again";
        }
        Release(flight, std::nullopt);
        break;
      }
    }
  }
}

ParticipantCall TwoPhaseDriver::MakeCall(const TwoPhaseRun& run, size_t index, int timeout_ms) {
  const BranchRecord& branch = run.branches[index];
  ParticipantCall call;
  call.endpoint = branch.endpoint;
  call.gtid = run.txn.gtid;
  call.branch_id = branch.branch_id;
  call.resource = branch.resource;
  call.payload = branch.payload;
  if (options_.coordinator_endpoints) call.coordinators = options_.coordinator_endpoints();
  if (call.coordinators.empty() && !node_.endpoint.empty()) {
    call.coordinators.push_back(node_.endpoint);
  }
  call.deadline_ms = run.txn.deadline_ms;
  call.timeout_ms = timeout_ms;
  return call;
}

void TwoPhaseDriver::Send(const std::shared_ptr<Flight>& flight, const TwoPhaseEffect& fx) {
  const size_t b = fx.branch;
  const bool phase_one = fx.kind == TwoPhaseEffectKind::kSendPrepare ||
                         fx.kind == TwoPhaseEffectKind::kSendCommitOnePhase;
  ParticipantCall call;
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    call = MakeCall(flight->run, b,
                    phase_one ? options_.prepare_timeout_ms : options_.phase_two_timeout_ms);
  }
  // A call still waiting for its turn when the drive moved on is not sent (a
  // prepare queued behind a slow participant once the decision is taken).
  const bool prepare = fx.kind == TwoPhaseEffectKind::kSendPrepare;
  call.still_wanted = [flight, prepare] {
    std::lock_guard<std::mutex> lock(flight->mu);
    return !flight->released && (!prepare || flight->run.txn.state == TxnState::kPreparing);
  };
  switch (fx.kind) {
    case TwoPhaseEffectKind::kSendPrepare:
      participants_->Prepare(
          std::move(call), gate_.Wrap([this, flight, b](Result<BranchVote> vote) {
            if (vote.status().code() == StatusCode::kCancelled) return;
            TwoPhaseEvent e = EventOf(TwoPhaseEventKind::kVote, b);
            if (vote.ok()) {
              e.vote = *vote;
              if (*vote == BranchVote::kAbort)
                VLOG(1) << flight->gtid << ": branch " << b << " voted ABORT";
            } else {
              e.error = vote.status();
              LOG(WARNING) << flight->gtid << ": no vote from branch " << b << ": " << e.error;
            }
            Feed(flight, std::move(e)).IgnoreError();
          }));
      break;
    case TwoPhaseEffectKind::kSendCommitOnePhase:
      participants_->CommitOnePhase(
          std::move(call), gate_.Wrap([this, flight](Result<Outcome> outcome) {
            if (outcome.status().code() == StatusCode::kCancelled) return;
            TwoPhaseEvent e = EventOf(TwoPhaseEventKind::kOnePhaseAnswer);
            if (outcome.ok()) {
              e.outcome = *outcome;
            } else {
              e.error = outcome.status();
              LOG(WARNING) << flight->gtid << ": commitOnePhase: " << e.error;
            }
            Feed(flight, std::move(e)).IgnoreError();
          }));
      break;
    case TwoPhaseEffectKind::kSendCommit:
    case TwoPhaseEffectKind::kSendAbort: {
      auto answered = gate_.Wrap([this, flight, b](Status s) {
        if (s.code() == StatusCode::kCancelled) return;
        if (!s.ok()) VLOG(1) << flight->gtid << ": phase 2 to branch " << b << ": " << s;
        TwoPhaseEvent e = EventOf(TwoPhaseEventKind::kPhaseTwoAnswer, b);
        e.error = std::move(s);
        Feed(flight, std::move(e)).IgnoreError();
      });
      if (fx.kind == TwoPhaseEffectKind::kSendCommit) {
        participants_->Commit(std::move(call), std::move(answered));
      } else {
        participants_->Abort(std::move(call), std::move(answered));
      }
      break;
    }
    default: break;
  }
}

void TwoPhaseDriver::OnWriteFailed(const std::shared_ptr<Flight>& flight, const Status& written) {
  TxnState durable;
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    durable = flight->published;
  }
  if (written.code() != StatusCode::kConflict) {
    LOG(ERROR) << flight->gtid << ": logging a step from " << TxnStateName(durable)
               << " failed: " << written << "; the store decides what comes next";
  } else {
    VLOG(1) << flight->gtid << ": a step from " << TxnStateName(durable)
            << " lost to another write (rollback, takeover or enlist); re-reading";
  }
  Release(flight, std::nullopt, written);
  if (durable == TxnState::kActive || stopping_.load())
    return;  // the caller or the sweeper re-reads
  // Past ACTIVE: the record is the truth. If it is still this node's, continue
  // from it now (a rollback's ABORTING to finish, a decision write whose
  // outcome was unknown) rather than at the sweeper's next look.
  driver_pool_.Submit([this, gtid = flight->gtid] {
    Result<TxnRecord> txn = Load(gtid);
    if (txn.ok() && OwnedBy(*txn, node_) && !IsFinal(txn->state)) Resume(*txn);
  });
}

void TwoPhaseDriver::StartDrive(const std::shared_ptr<Flight>& flight, TwoPhaseRun run,
                                TwoPhaseEventKind kind) {
  {
    std::lock_guard<std::mutex> lock(flight->mu);
    flight->published = run.txn.state;
    flight->run = std::move(run);
  }
  Status s = Feed(flight, EventOf(kind));
  if (!s.ok()) Release(flight, std::nullopt, s);
}

// ---- helpers -------------------------------------------------------------------

Result<TxnRecord> TwoPhaseDriver::Load(const std::string& gtid) {
  TXC_ASSIGN_OR_RETURN(TxnRecord txn, store_->GetTxn(gtid));
  if (txn.kind != TxnKind::kTwoPhase) {
    return Status::IllegalTransition("transaction " + gtid + " is a saga, not a 2PC transaction");
  }
  return txn;
}

Result<TwoPhaseRun> TwoPhaseDriver::LoadRun(const TxnRecord& txn) {
  TwoPhaseRun run;
  run.txn = txn;
  TXC_ASSIGN_OR_RETURN(run.branches, store_->GetBranches(txn.gtid));
  return run;
}

void TwoPhaseDriver::Begun(const TxnRecord& txn, const std::vector<BranchRecord>& branches) {
  if (options_.max_cached_txns == 0) return;
  std::lock_guard<std::mutex> lock(cache_mu_);
  while (cache_.size() >= options_.max_cached_txns && !cache_order_.empty()) {
    cache_.erase(cache_order_.front());  // never committed here (or by another replica)
    cache_order_.pop_front();
  }
  auto [it, inserted] = cache_.emplace(txn.gtid, Cached{txn, branches, {}});
  if (inserted) it->second.order = cache_order_.insert(cache_order_.end(), txn.gtid);
}

std::optional<TwoPhaseDriver::Cached> TwoPhaseDriver::TakeCached(const std::string& gtid) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = cache_.find(gtid);
  if (it == cache_.end()) return std::nullopt;
  Cached c = std::move(it->second);
  cache_order_.erase(c.order);
  cache_.erase(it);
  return c;
}

Result<TxnRecord> TwoPhaseDriver::WatchOtherOwner(TxnRecord txn, int64_t deadline_ms) {
  VLOG(1) << txn.gtid << ": " << TxnStateName(txn.state) << " at " << txn.owner << " (epoch "
          << txn.epoch << "), waiting for it";
  for (int attempt = 1;; ++attempt) {
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) return txn;
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min(left, BackoffDelayMs(kStorePoll, attempt))));
    TXC_ASSIGN_OR_RETURN(TxnRecord now, store_->GetTxn(txn.gtid));
    if (now.state != txn.state || now.owner != txn.owner || now.epoch != txn.epoch) return now;
    TXC_ASSIGN_OR_RETURN(bool live, OwnerLeaseLive(store_, txn.owner, txn.epoch, NowUnixMs()));
    if (!live) return now;
  }
}

Status TwoPhaseDriver::TakeOver(TxnRecord* txn) {
  WriteBatch batch;
  TxnUpdate u = TakeOverUpdate(*txn, node_);
  // While it is driven here the sweeper need not look at it.
  if (txn->state == TxnState::kPreparing) u.next_attempt_ms = NowUnixMs() + options_.drive_lease_ms;
  batch.txn_updates.push_back(std::move(u));
  Status s = log_->Write(std::move(batch));
  if (!s.ok()) {
    if (s.code() != StatusCode::kConflict) {
      LOG(ERROR) << txn->gtid << ": taking it over from " << txn->owner << " failed: " << s;
    }
    return s;
  }
  LOG(INFO) << txn->gtid << ": taken over in " << TxnStateName(txn->state) << " from " << txn->owner
            << " (epoch " << txn->epoch << ")";
  txn->owner = node_.node_id;
  txn->epoch = node_.epoch;
  return Status::Ok();
}

Status TwoPhaseDriver::LogAbortUnderOwner(const TxnRecord& txn) {
  TwoPhaseRun run;
  run.txn = txn;
  TwoPhaseEvent e = EventOf(TwoPhaseEventKind::kRollbackForOwner);
  e.now_ms = NowUnixMs();
  TXC_ASSIGN_OR_RETURN(TwoPhaseStep step, StepTwoPhase(run, e, timing_));
  if (step.noop) return Status::Ok();
  for (TxnUpdate& u : step.writes.txn_updates) {
    u.expected_owner = txn.owner;  // under the fence of whoever drives it
    u.expected_epoch = txn.epoch;
  }
  Status s = log_->Write(std::move(step.writes));
  if (s.ok()) {
    VLOG(1) << txn.gtid << ": " << TxnStateName(txn.state) << " -> ABORTING (rollback, under "
            << txn.owner << " epoch " << txn.epoch << ")";
  } else if (s.code() != StatusCode::kConflict) {
    LOG(ERROR) << txn.gtid << ": logging ABORTING failed: " << s;
  }
  return s;
}

Result<TxnRecord> TwoPhaseDriver::AnswerCommit(const TxnRecord& txn) {
  if (txn.state == TxnState::kActive || txn.state == TxnState::kPreparing) {
    return Status::Timeout("commit of " + txn.gtid + ": no decision yet (" +
                           TxnStateName(txn.state) + "), ask again");
  }
  // The step function's rule: decided on the commit path or by the votes is
  // the answer; aborted by rollback or the deadline is an illegal commit.
  TwoPhaseRun run;
  run.txn = txn;
  TXC_ASSIGN_OR_RETURN(TwoPhaseStep step,
                       StepTwoPhase(run, EventOf(TwoPhaseEventKind::kCommit), TwoPhaseTiming{}));
  (void)step;  // a no-op for every decided state
  return txn;
}

Result<TxnRecord> TwoPhaseDriver::AnswerFromFlight(Flight& flight, int64_t deadline_ms) {
  WaitOnFlight(flight, /*completion=*/false, deadline_ms);
  return AnswerNow(flight);
}

Result<TxnRecord> TwoPhaseDriver::AnswerNow(Flight& flight) {
  std::lock_guard<std::mutex> lock(flight.mu);
  if (DecisionOf(flight.published).has_value()) {
    TxnRecord txn = flight.run.txn;
    txn.state = flight.published;
    return AnswerCommit(txn);
  }
  if (flight.released && !flight.failure.ok()) return flight.failure;
  if (flight.released) {
    const bool one_phase = (flight.run.txn.flags & kFlagOnePhase) != 0;
    return Status::Unavailable("commit of " + flight.gtid +
                               (one_phase ? ": the one-phase outcome is not known yet; ask again"
                                          : ": no decision reached yet; ask again"));
  }
  return Status::Timeout("commit of " + flight.gtid + ": still deciding after the wait; ask again");
}

Result<TxnRecord> TwoPhaseDriver::AwaitCompletion(TxnRecord txn, int64_t deadline_ms) {
  if (IsFinal(txn.state)) return AnswerCommit(txn);
  const std::string gtid = txn.gtid;
  // Registered before anything is read again, so that a final write landing
  // from now on wakes this call. While this process drives the transaction
  // (a flight), that write is announced; otherwise read the store first.
  std::shared_ptr<Completion> completion;
  bool announced;
  {
    std::lock_guard<std::mutex> lock(registry_.mu);
    auto& slot = registry_.completions[gtid];
    if (slot == nullptr) slot = std::make_shared<Completion>();
    completion = slot;
    ++completion->waiters;
    announced = registry_.flights.count(gtid) > 0;
  }
  Status read_error;
  for (int attempt = 1; !IsFinal(txn.state); ++attempt) {
    if (!announced || attempt > 1) {
      auto reread = store_->GetTxn(gtid);
      if (!reread.ok()) {
        read_error = reread.status();
        break;
      }
      txn = std::move(reread).value();
      if (IsFinal(txn.state)) break;
    }
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) break;
    // Woken by this process's final write; else look at the store again after
    // a backoff (another replica may finish it, or the sweeper here later).
    std::unique_lock<std::mutex> lock(completion->mu);
    completion->cv.wait_for(
        lock, std::chrono::milliseconds(std::min(left, BackoffDelayMs(kStorePoll, attempt))),
        [&] { return completion->final_state.has_value(); });
    if (completion->final_state.has_value()) txn.state = *completion->final_state;
  }
  {
    std::lock_guard<std::mutex> lock(registry_.mu);
    if (--completion->waiters == 0) registry_.completions.erase(gtid);
  }
  if (!read_error.ok()) {
    LOG(WARNING) << gtid << ": waiting for completion, the store read failed: " << read_error;
  }
  return AnswerCommit(txn);  // final, or the decision as it stood when the wait ran out
}

// ---- enlist --------------------------------------------------------------------

namespace {

// The record of a branch enlisted as the transaction's `count`-th.
BranchRecord NewBranch(const std::string& gtid, const BranchRecord& in, size_t count) {
  BranchRecord branch = in;
  branch.gtid = gtid;
  branch.ordinal = static_cast<int32_t>(count);
  branch.state = BranchState::kRegistered;
  branch.attempts = 0;
  branch.next_attempt_ms = 0;
  branch.last_error.clear();
  return branch;
}

// Inserts `branch` under the fence of (owner, epoch), while its transaction is ACTIVE.
WriteBatch EnlistBatch(const BranchRecord& branch, const std::string& owner, int64_t epoch) {
  WriteBatch batch;
  TxnUpdate check;  // a pure precondition
  check.gtid = branch.gtid;
  check.expected_states = {TxnState::kActive};
  check.expected_owner = owner;
  check.expected_epoch = epoch;
  batch.txn_updates.push_back(std::move(check));
  batch.insert_branches.push_back(branch);
  return batch;
}

}  // namespace

void TwoPhaseDriver::Enlisted(const BranchRecord& branch, const std::string& owner) {
  VLOG(1) << branch.gtid << ": branch " << branch.branch_id << " REGISTERED at " << branch.endpoint
          << (owner == node_.node_id ? "" : " (owner " + owner + ")");
  std::lock_guard<std::mutex> lock(cache_mu_);
  auto it = cache_.find(branch.gtid);
  if (it != cache_.end()) it->second.branches.push_back(branch);
}

bool TwoPhaseDriver::EnlistAsync(const std::string& gtid, const BranchRecord& branch_in,
                                 std::function<void(Status)> done) {
  // Anything but the plain case is Enlist()'s: it validates and re-reads.
  if (!ValidateId("gtid", gtid).ok() || !ValidateBranch(branch_in).ok()) return false;
  BranchRecord branch;
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(gtid);
    if (it == cache_.end()) return false;
    for (const BranchRecord& b : it->second.branches) {
      if (b.branch_id == branch_in.branch_id) return false;  // a retry, or a clash
    }
    branch = NewBranch(gtid, branch_in, it->second.branches.size());
  }
  log_->WriteAsync(EnlistBatch(branch, node_.node_id, node_.epoch),
                   [this, branch, done = std::move(done)](const Status& s) {
                     if (s.ok()) {
                       Enlisted(branch, node_.node_id);
                       done(Status::Ok());
                       return;
                     }
                     // Enlist() re-reads: a branch that landed is a retried enlist there.
                     done(Status::Conflict("enlist of " + branch.branch_id + " in " + branch.gtid +
                                           " not confirmed: " + s.ToString()));
                   });
  return true;
}

Status TwoPhaseDriver::Enlist(const std::string& gtid, const BranchRecord& branch_in) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TXC_RETURN_IF_ERROR(ValidateBranch(branch_in));
  // Begun here: the branches are in memory (an enlist elsewhere that this
  // misses makes the commit's branch count check fail, and it re-reads).
  std::vector<BranchRecord> existing;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(gtid);
    if (it != cache_.end()) {
      existing = it->second.branches;
      cached = true;
    }
  }
  if (!cached) {
    TXC_ASSIGN_OR_RETURN(existing, store_->GetBranches(gtid));
  }
  for (const auto& b : existing) {
    if (b.branch_id != branch_in.branch_id) continue;
    if (SameBranchContent(b, branch_in)) return Status::Ok();  // a retried enlist
    return Status::IllegalTransition("branch " + branch_in.branch_id + " of " + gtid +
                                     " is already enlisted with other content");
  }
  const BranchRecord branch = NewBranch(gtid, branch_in, existing.size());

  // No ownership needed: the branch is written under the fence of whichever
  // (owner, epoch) holds the transaction ACTIVE -- first this node's (a
  // transaction begun here), else the one read after a conflict. A commit
  // that logs PREPARING meanwhile makes the write conflict, or (when the
  // branch landed first) sees it when it re-reads the branches.
  std::string owner = node_.node_id;
  int64_t epoch = node_.epoch;
  for (int round = 0; round < kMaxRounds; ++round) {
    Status s = log_->Write(EnlistBatch(branch, owner, epoch));
    if (s.ok()) {
      Enlisted(branch, owner);
      return s;
    }
    switch (s.code()) {
      case StatusCode::kNotFound: return Status::NotFound("no transaction " + gtid);
      case StatusCode::kAlreadyExists: {
        // A concurrent enlist of the same branch id won.
        TXC_ASSIGN_OR_RETURN(std::vector<BranchRecord> now, store_->GetBranches(gtid));
        for (const auto& b : now) {
          if (b.branch_id == branch.branch_id && SameBranchContent(b, branch)) return Status::Ok();
        }
        return Status::IllegalTransition("branch " + branch.branch_id + " of " + gtid +
                                         " is already enlisted with other content");
      }
      case StatusCode::kConflict: {
        TXC_ASSIGN_OR_RETURN(TxnRecord txn, Load(gtid));
        if (txn.state != TxnState::kActive) {
          return Status::IllegalTransition("enlist in " + gtid + ": transaction is " +
                                           TxnStateName(txn.state));
        }
        owner = txn.owner;  // enlist under the fence of its owner
        epoch = txn.epoch;
        continue;
      }
      default:
        LOG(ERROR) << gtid << ": enlist of branch " << branch.branch_id << " failed: " << s;
        return s;
    }
  }
  return Status::Unavailable("enlist in " + gtid + " raced with other writes; retry");
}

// ---- commit --------------------------------------------------------------------

Result<TxnRecord> TwoPhaseDriver::CommitClaimed(const std::shared_ptr<Flight>& flight,
                                                TxnRecord txn, int64_t deadline_ms) {
  TwoPhaseRun run;
  std::optional<Cached> cached = TakeCached(txn.gtid);
  if (cached.has_value() && cached->txn.owner == txn.owner && cached->txn.epoch == txn.epoch) {
    run.txn = std::move(txn);
    run.branches = std::move(cached->branches);
  } else {
    Result<TwoPhaseRun> loaded = LoadRun(txn);
    if (!loaded.ok()) {
      Release(flight, std::nullopt, loaded.status());
      return loaded.status();
    }
    run = std::move(loaded).value();
  }
  StartDrive(flight, std::move(run), TwoPhaseEventKind::kCommit);
  return AnswerFromFlight(*flight, deadline_ms);
}

Result<TxnRecord> TwoPhaseDriver::Commit(const std::string& gtid, CommitWait wait,
                                         int64_t wait_timeout_ms) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  const int64_t deadline = MonotonicMs() + std::max<int64_t>(0, wait_timeout_ms);
  const bool completion = wait == CommitWait::kCompletion;
  auto finish = [&](Result<TxnRecord> answer) -> Result<TxnRecord> {
    if (!answer.ok() || !completion || IsFinal(answer->state)) return answer;
    return AwaitCompletion(std::move(answer).value(), deadline);
  };
  // The hot path: begun here, its branches in memory, nothing read back.
  {
    std::optional<Cached> cached = TakeCached(gtid);
    if (cached.has_value() && OwnedBy(cached->txn, node_)) {
      if (auto flight = Claim(gtid, TxnState::kActive)) {
        TwoPhaseRun run;
        run.txn = std::move(cached->txn);
        run.branches = std::move(cached->branches);
        StartDrive(flight, std::move(run), TwoPhaseEventKind::kCommit);
        Result<TxnRecord> answer = AnswerFromFlight(*flight, deadline);
        if (answer.ok() || answer.status().code() != StatusCode::kConflict) {
          return finish(std::move(answer));
        }
        // The record moved on (an enlist elsewhere, a rollback, a takeover): read it.
      }
    }
  }
  // Set once a write of this call lost to another replica's: from then on an
  // ACTIVE transaction that a live replica holds is left to it (two commits of
  // one gtid at two replicas would otherwise take it from each other in turn).
  bool lost_race = false;
  for (int round = 0; round < kMaxRounds; ++round) {
    TXC_ASSIGN_OR_RETURN(TxnRecord txn, Load(gtid));
    Result<TxnRecord> answer = Status::Internal("unset");
    const bool mine = OwnedBy(txn, node_);
    auto owner_live = [&] {
      auto live = OwnerLeaseLive(store_, txn.owner, txn.epoch, NowUnixMs());
      return !live.ok() || *live;  // a failed read is no proof that it died
    };
    if (DecisionOf(txn.state).has_value()) {
      answer = AnswerCommit(txn);  // whoever owns it: the store holds the decision
    } else if (!mine &&
               (txn.state == TxnState::kPreparing ||
                (txn.state == TxnState::kActive && lost_race)) &&
               owner_live()) {
      // Its owner collects the votes: wait for the decision it logs.
      TXC_ASSIGN_OR_RETURN(TxnRecord latest, WatchOtherOwner(txn, deadline));
      if (!DecisionOf(latest.state).has_value() && MonotonicMs() >= deadline) {
        return Status::Timeout("commit of " + gtid + ": still deciding at " + latest.owner +
                               " after the wait; ask again");
      }
      continue;
    } else if (auto flight = Claim(gtid, txn.state)) {
      if (!mine) {
        // ACTIVE at another replica (live or not), or PREPARING whose owner's
        // lease lapsed: drive it here.
        Status taken = TakeOver(&txn);
        if (!taken.ok()) {
          Release(flight, std::nullopt, taken);
          if (taken.code() == StatusCode::kConflict) {
            lost_race = true;
            continue;  // re-read
          }
          return taken;
        }
      }
      if (txn.state == TxnState::kActive) {
        answer = CommitClaimed(flight, txn, deadline);  // past its deadline: aborted, illegal
      } else {
        // PREPARING that a crash left behind (presumed abort, or one-phase resend).
        Result<TwoPhaseRun> run = LoadRun(txn);
        if (!run.ok()) {
          Release(flight, std::nullopt, run.status());
          return run.status();
        }
        StartDrive(flight, std::move(run).value(), TwoPhaseEventKind::kRecover);
        answer = AnswerFromFlight(*flight, deadline);
      }
      if (!answer.ok() && answer.status().code() == StatusCode::kConflict) {
        lost_race = true;
        continue;  // re-read
      }
    } else if (auto other = FindFlight(gtid)) {
      // Another call drives it now (a concurrent commit, rollback or the sweeper).
      WaitOnFlight(*other, /*completion=*/false, deadline);
      if (MonotonicMs() >= deadline) {
        return Status::Timeout("commit of " + gtid + ": still deciding after the wait");
      }
      continue;
    } else {
      continue;  // released between the two looks
    }
    return finish(std::move(answer));
  }
  return Status::Unavailable("commit of " + gtid + ": the record kept changing; retry");
}

bool TwoPhaseDriver::CommitAsync(const std::string& gtid,
                                 std::function<void(Result<TxnRecord>)> done) {
  if (!ValidateId("gtid", gtid).ok()) return false;
  std::optional<Cached> cached = TakeCached(gtid);
  if (!cached.has_value() || !OwnedBy(cached->txn, node_)) return false;
  std::shared_ptr<Flight> flight = Claim(gtid, TxnState::kActive);
  if (flight == nullptr) return false;  // another call drives it: Commit() waits on it
  {
    // Registered before the drive starts, so that no decision can slip by;
    // the drive may end inside StartDrive, and then `done` runs there.
    std::lock_guard<std::mutex> lock(flight->mu);
    // Raw: watchers run only inside Release and the publish step, whose
    // callers hold the flight (a shared_ptr here would be a cycle).
    flight->watchers.push_back([f = flight.get(), done = std::move(done)] { done(AnswerNow(*f)); });
  }
  TwoPhaseRun run;
  run.txn = std::move(cached->txn);
  run.branches = std::move(cached->branches);
  StartDrive(flight, std::move(run), TwoPhaseEventKind::kCommit);
  return true;
}

// ---- rollback --------------------------------------------------------------------

Result<TxnRecord> TwoPhaseDriver::Rollback(const std::string& gtid) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  // A one-phase commit in flight is decided by its participant, not by a
  // rollback: wait for its outcome at most this long.
  const int64_t deadline = MonotonicMs() + timing_.prepare_window_ms;
  TakeCached(gtid);  // whatever happens, its commit will read the store
  for (int round = 0; round < kMaxRounds; ++round) {
    TXC_ASSIGN_OR_RETURN(TxnRecord txn, Load(gtid));
    {
      // The step function's rule on the record alone: aborted is the answer,
      // COMMIT decided is illegal.
      TwoPhaseRun probe;
      probe.txn = txn;
      TwoPhaseEvent e = EventOf(TwoPhaseEventKind::kRollbackForOwner);
      e.now_ms = NowUnixMs();
      TXC_ASSIGN_OR_RETURN(TwoPhaseStep step, StepTwoPhase(probe, e, timing_));
      if (step.noop && txn.state != TxnState::kPreparing) return txn;  // aborting or aborted
    }
    const bool mine = OwnedBy(txn, node_);
    bool owner_live = mine;
    if (!mine && txn.state == TxnState::kPreparing) {
      auto live = OwnerLeaseLive(store_, txn.owner, txn.epoch, NowUnixMs());
      owner_live = !live.ok() || *live;  // a failed read is no proof that it died
    }
    const bool one_phase = txn.state == TxnState::kPreparing && (txn.flags & kFlagOnePhase);
    if (one_phase && owner_live) {
      std::shared_ptr<Flight> driving = mine ? FindFlight(gtid) : nullptr;
      if (!mine || driving != nullptr) {
        // commitOnePhase is out: wait for the outcome the driver logs.
        if (driving != nullptr) {
          WaitOnFlight(*driving, /*completion=*/true, deadline);
        } else {
          TXC_ASSIGN_OR_RETURN(TxnRecord latest, WatchOtherOwner(txn, deadline));
          (void)latest;
        }
        if (MonotonicMs() >= deadline) {
          return Status::Unavailable("rollback of " + gtid +
                                     ": one-phase commit outcome not known yet; ask again");
        }
        continue;
      }
    }
    if (!mine && owner_live) {
      // PREPARING at a live replica collecting votes: log the abort under its
      // fence; its decision write then conflicts and it follows the abort.
      Status s = LogAbortUnderOwner(txn);
      if (s.code() == StatusCode::kConflict) continue;
      TXC_RETURN_IF_ERROR(s);
      txn.state = TxnState::kAborting;
      return txn;
    }
    if (auto flight = Claim(gtid, txn.state)) {
      if (!mine) {
        Status taken = TakeOver(&txn);
        if (!taken.ok()) {
          Release(flight, std::nullopt, taken);
          if (taken.code() == StatusCode::kConflict) continue;  // re-read
          return taken;
        }
      }
      Result<TwoPhaseRun> run = LoadRun(txn);
      if (!run.ok()) {
        Release(flight, std::nullopt, run.status());
        return run.status();
      }
      StartDrive(flight, std::move(run).value(), TwoPhaseEventKind::kRollback);
      // ABORTING (durable), or a one-phase outcome the participant gives.
      WaitOnFlight(*flight, /*completion=*/one_phase, deadline);
      TxnRecord answer;
      Status failure;
      {
        std::lock_guard<std::mutex> lock(flight->mu);
        answer = flight->run.txn;
        answer.state = flight->published;
        failure = flight->failure;
      }
      if (!failure.ok()) {
        if (failure.code() == StatusCode::kConflict) continue;
        return failure;
      }
      if (DecisionOf(answer.state) == Decision::kCommit) {
        return Status::IllegalTransition("rollback of " + gtid +
                                         ": its only branch committed (one-phase)");
      }
      if (DecisionOf(answer.state) == Decision::kAbort) return answer;
      return Status::Unavailable("rollback of " + gtid + ": not aborted yet; ask again");
    }
    // Someone in this process drives it (a commit collecting votes): log
    // ABORTING under it. Its own conditional write then conflicts and it
    // follows the abort; the sweeper sends the aborts if nobody here does.
    Status s = LogAbortUnderOwner(txn);
    if (s.code() == StatusCode::kConflict) continue;
    TXC_RETURN_IF_ERROR(s);
    txn.state = TxnState::kAborting;
    return txn;
  }
  return Status::Unavailable("rollback of " + gtid + ": the record kept changing; retry");
}

// ---- outcome, recovery -----------------------------------------------------------

Result<Outcome> TwoPhaseDriver::QueryOutcome(const std::string& gtid,
                                             const std::string& branch_id) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  (void)branch_id;  // the outcome is the transaction's, for every branch
  auto txn = store_->GetTxn(gtid);
  if (!txn.ok()) {
    if (txn.status().code() == StatusCode::kNotFound) return OutcomeOfState(std::nullopt);
    return txn.status();
  }
  return OutcomeOfState(txn->state);
}

void TwoPhaseDriver::Resume(const TxnRecord& txn) {
  if (txn.kind != TxnKind::kTwoPhase || IsFinal(txn.state) || stopping_.load()) return;
  auto flight = Claim(txn.gtid, txn.state);
  if (!flight) return;  // driven by this process right now
  TakeCached(txn.gtid);
  driver_pool_.Submit([this, flight, gtid = txn.gtid] {
    auto current = Load(gtid);
    if (!current.ok() || !OwnedBy(*current, node_)) {
      if (!current.ok() && current.status().code() != StatusCode::kNotFound) {
        LOG(WARNING) << gtid << ": resume skipped: " << current.status();
      } else if (current.ok()) {
        VLOG(1) << gtid << ": resume skipped: owned by " << current->owner << " (epoch "
                << current->epoch << ")";
      }
      Release(flight, std::nullopt);
      return;
    }
    Result<TwoPhaseRun> run = LoadRun(*current);
    if (!run.ok()) {
      LOG(WARNING) << gtid << ": resume: reading its branches failed: " << run.status();
      Release(flight, std::nullopt, run.status());
      return;
    }
    if (DecisionOf(current->state).has_value()) {
      VLOG(1) << gtid << ": redriving phase 2 of " << TxnStateName(current->state) << " (attempt "
              << current->attempts + 1 << ")";
    }
    StartDrive(flight, std::move(run).value(), TwoPhaseEventKind::kRecover);
  });
}

}  // namespace txc
