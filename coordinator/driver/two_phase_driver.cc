#include "coordinator/driver/two_phase_driver.h"

#include <glog/logging.h>

#include <algorithm>
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

// Counts down to zero; Wait has a deadline.
struct Latch {
  explicit Latch(int n) : remaining(n) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu);
    if (--remaining == 0) cv.notify_all();
  }
  bool WaitUntil(int64_t deadline_monotonic_ms) {
    std::unique_lock<std::mutex> lock(mu);
    while (remaining > 0) {
      const int64_t left = deadline_monotonic_ms - MonotonicMs();
      if (left <= 0) return false;
      cv.wait_for(lock, std::chrono::milliseconds(left));
    }
    return true;
  }
  std::mutex mu;
  std::condition_variable cv;
  int remaining;  // guarded by mu
};

}  // namespace

// One phase-2 round of one transaction, shared by the fan-out closures; the
// last one to finish moves the transaction on.
struct TwoPhaseDriver::PhaseTwoRun {
  std::shared_ptr<Flight> flight;
  TxnRecord txn;
  Decision decision = Decision::kAbort;
  std::vector<BranchRecord> targets;  // branches that need a phase-2 message
  std::atomic<int> remaining{0};
  std::atomic<bool> all_acked{true};
  std::atomic<bool> first_ack_seen{false};
  // Per-branch results, written with the transaction's own update in ONE
  // batch at the end: one store row set per transaction per round, and no two
  // batches of one gtid in a group (which would cost the store its fast path).
  std::mutex mu;
  std::vector<BranchUpdate> branch_updates;  // guarded by mu
};

TwoPhaseDriver::TwoPhaseDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                               TwoPhaseDriverOptions options)
    : store_(store),
      log_(log),
      node_(std::move(node)),
      options_(std::move(options)),
      participants_(ParticipantClientOptions{options_.connect_timeout_ms,
                                             options_.prepare_timeout_ms,
                                             options_.phase_two_timeout_ms, 64}),
      fan_out_("2pc-fanout", options_.fan_out_threads),
      driver_pool_("2pc-driver", options_.driver_threads) {}

TwoPhaseDriver::~TwoPhaseDriver() = default;

// ---- in-flight set -----------------------------------------------------------

std::shared_ptr<TwoPhaseDriver::Flight> TwoPhaseDriver::Claim(const std::string& gtid,
                                                              TxnState state) {
  std::lock_guard<std::mutex> lock(registry_->mu);
  auto [it, inserted] = registry_->flights.try_emplace(gtid, nullptr);
  if (!inserted) return nullptr;
  it->second = std::make_shared<Flight>(gtid);
  it->second->state = state;
  return it->second;
}

std::shared_ptr<TwoPhaseDriver::Flight> TwoPhaseDriver::FindFlight(const std::string& gtid) {
  std::lock_guard<std::mutex> lock(registry_->mu);
  auto it = registry_->flights.find(gtid);
  return it == registry_->flights.end() ? nullptr : it->second;
}

void TwoPhaseDriver::Publish(Flight& flight, TxnState state) {
  std::lock_guard<std::mutex> lock(flight.mu);
  flight.state = state;
  flight.cv.notify_all();
}

void TwoPhaseDriver::Release(const std::shared_ptr<Flight>& flight) {
  ReleaseIn(*registry_, flight, std::nullopt);
}

void TwoPhaseDriver::ReleaseIn(Registry& registry, const std::shared_ptr<Flight>& flight,
                               std::optional<TxnState> final_state) {
  {
    std::lock_guard<std::mutex> lock(registry.mu);
    auto it = registry.flights.find(flight->gtid);
    if (it != registry.flights.end() && it->second == flight) registry.flights.erase(it);
    if (final_state.has_value()) {
      auto waiting = registry.completions.find(flight->gtid);
      if (waiting != registry.completions.end()) {
        Completion& c = *waiting->second;
        std::lock_guard<std::mutex> c_lock(c.mu);
        c.final_state = final_state;
        c.cv.notify_all();
      }
    }
  }
  std::lock_guard<std::mutex> lock(flight->mu);
  if (final_state.has_value()) flight->state = *final_state;
  flight->released = true;
  flight->cv.notify_all();
}

void TwoPhaseDriver::WaitOnFlight(Flight& flight, bool completion, int64_t deadline_ms) {
  std::unique_lock<std::mutex> lock(flight.mu);
  for (;;) {
    if (flight.released) return;
    if (completion ? IsFinal(flight.state) : DecisionOf(flight.state).has_value()) return;
    const int64_t left = deadline_ms - MonotonicMs();
    if (left <= 0) return;
    flight.cv.wait_for(lock, std::chrono::milliseconds(left));
  }
}

size_t TwoPhaseDriver::InFlightCount() {
  std::lock_guard<std::mutex> lock(registry_->mu);
  return registry_->flights.size();
}

// ---- helpers -------------------------------------------------------------------

Result<TxnRecord> TwoPhaseDriver::Load(const std::string& gtid) {
  TXC_ASSIGN_OR_RETURN(TxnRecord txn, store_->GetTxn(gtid));
  if (txn.kind != TxnKind::kTwoPhase) {
    return Status::IllegalTransition("transaction " + gtid + " is a saga, not a 2PC transaction");
  }
  return txn;
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

Status TwoPhaseDriver::TakeOver(const std::shared_ptr<Flight>& flight, TxnRecord* txn) {
  WriteBatch batch;
  TxnUpdate u = TakeOverUpdate(*txn, node_);
  // While it is driven here the sweeper need not look at it.
  if (txn->state == TxnState::kPreparing) u.next_attempt_ms = NowUnixMs() + options_.drive_lease_ms;
  batch.txn_updates.push_back(std::move(u));
  Status s = log_->Write(std::move(batch));
  if (!s.ok()) {
    Release(flight);
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
  WriteBatch batch;
  TxnUpdate u;
  u.gtid = txn.gtid;
  u.expected_states = {txn.state};  // never a PREPARING the read did not see
  u.expected_owner = txn.owner;
  u.expected_epoch = txn.epoch;
  u.state = TxnState::kAborting;
  u.next_attempt_ms = NowUnixMs();  // its owner's sweeper sends the aborts if nobody else does
  batch.txn_updates.push_back(std::move(u));
  Status s = log_->Write(std::move(batch));
  if (s.ok()) {
    VLOG(1) << txn.gtid << ": " << TxnStateName(txn.state) << " -> ABORTING (rollback, under "
            << txn.owner << " epoch " << txn.epoch << ")";
  } else if (s.code() != StatusCode::kConflict) {
    LOG(ERROR) << txn.gtid << ": logging ABORTING failed: " << s;
  }
  return s;
}

TxnUpdate TwoPhaseDriver::FencedUpdate(const TxnRecord& txn, std::vector<TxnState> expected) const {
  TxnUpdate u;
  u.gtid = txn.gtid;
  u.expected_states = std::move(expected);
  u.expected_owner = node_.node_id;
  u.expected_epoch = node_.epoch;
  return u;
}

BranchUpdate TwoPhaseDriver::FencedBranchUpdate(const TxnRecord& txn,
                                                const BranchRecord& branch) const {
  BranchUpdate u;
  u.gtid = txn.gtid;
  u.branch_id = branch.branch_id;
  u.expected_owner = node_.node_id;
  u.expected_epoch = node_.epoch;
  return u;
}

BranchCall TwoPhaseDriver::MakeCall(const TxnRecord& txn, const BranchRecord& branch) {
  BranchCall call;
  call.gtid = txn.gtid;
  call.branch = &branch;
  if (options_.coordinator_endpoints) call.coordinators = options_.coordinator_endpoints();
  if (call.coordinators.empty() && !node_.endpoint.empty()) {
    call.coordinators.push_back(node_.endpoint);
  }
  call.deadline_ms = txn.deadline_ms;
  return call;
}

Result<TxnRecord> TwoPhaseDriver::AnswerCommit(const TxnRecord& txn) {
  switch (txn.state) {
    case TxnState::kCommitting:
    case TxnState::kCommitted: return txn;
    case TxnState::kAborting:
    case TxnState::kAborted:
      if (txn.flags & kFlagCommitRequested) return txn;  // the votes decided ABORT
      return Status::IllegalTransition("commit of " + txn.gtid + ": already " +
                                       TxnStateName(txn.state) + " by rollback or deadline");
    case TxnState::kActive:
    case TxnState::kPreparing:
      return Status::Timeout("commit of " + txn.gtid + ": no decision yet (" +
                             TxnStateName(txn.state) + "), ask again");
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: break;
  }
  return Status::IllegalTransition("transaction " + txn.gtid + " is not a 2PC transaction");
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
    std::lock_guard<std::mutex> lock(registry_->mu);
    auto& slot = registry_->completions[gtid];
    if (slot == nullptr) slot = std::make_shared<Completion>();
    completion = slot;
    ++completion->waiters;
    announced = registry_->flights.count(gtid) > 0;
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
    std::lock_guard<std::mutex> lock(registry_->mu);
    if (--completion->waiters == 0) registry_->completions.erase(gtid);
  }
  if (!read_error.ok()) {
    LOG(WARNING) << gtid << ": waiting for completion, the store read failed: " << read_error;
  }
  return AnswerCommit(txn);  // final, or the decision as it stood when the wait ran out
}

// ---- enlist --------------------------------------------------------------------

Status TwoPhaseDriver::Enlist(const std::string& gtid, const BranchRecord& branch_in) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TXC_RETURN_IF_ERROR(ValidateBranch(branch_in));
  TXC_ASSIGN_OR_RETURN(std::vector<BranchRecord> existing, store_->GetBranches(gtid));
  for (const auto& b : existing) {
    if (b.branch_id != branch_in.branch_id) continue;
    if (SameBranchContent(b, branch_in)) return Status::Ok();  // a retried enlist
    return Status::IllegalTransition("branch " + branch_in.branch_id + " of " + gtid +
                                     " is already enlisted with other content");
  }
  BranchRecord branch = branch_in;
  branch.gtid = gtid;
  branch.ordinal = static_cast<int32_t>(existing.size());
  branch.state = BranchState::kRegistered;
  branch.attempts = 0;
  branch.next_attempt_ms = 0;
  branch.last_error.clear();

  // No ownership needed: the branch is written under the fence of whichever
  // (owner, epoch) holds the transaction ACTIVE -- first this node's (a
  // transaction begun here), else the one read after a conflict. A commit
  // that logs PREPARING meanwhile makes the write conflict, or (when the
  // branch landed first) sees it when it re-reads the branches.
  std::string owner = node_.node_id;
  int64_t epoch = node_.epoch;
  for (int round = 0; round < kMaxRounds; ++round) {
    WriteBatch batch;
    TxnUpdate check;  // a pure precondition
    check.gtid = gtid;
    check.expected_states = {TxnState::kActive};
    check.expected_owner = owner;
    check.expected_epoch = epoch;
    batch.txn_updates.push_back(std::move(check));
    batch.insert_branches.push_back(branch);
    Status s = log_->Write(std::move(batch));
    if (s.ok()) {
      VLOG(1) << gtid << ": branch " << branch.branch_id << " REGISTERED at " << branch.endpoint
              << (owner == node_.node_id ? "" : " (owner " + owner + ")");
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

Result<TxnRecord> TwoPhaseDriver::Commit(const std::string& gtid, CommitWait wait,
                                         int64_t wait_timeout_ms) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  const int64_t deadline = MonotonicMs() + std::max<int64_t>(0, wait_timeout_ms);
  const bool completion = wait == CommitWait::kCompletion;
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
        Status taken = TakeOver(flight, &txn);
        if (taken.code() == StatusCode::kConflict) {
          lost_race = true;
          continue;  // re-read
        }
        TXC_RETURN_IF_ERROR(taken);
      }
      if (txn.state == TxnState::kActive && NowUnixMs() >= txn.deadline_ms) {
        answer = AbortClaimed(flight, txn, "commit after the deadline");
        if (answer.ok()) answer = AnswerCommit(*answer);  // kIllegalTransition
      } else if (txn.state == TxnState::kActive) {
        answer = CommitClaimed(flight, txn);
      } else {
        answer = ResumeClaimed(flight, txn);  // PREPARING that a crash left behind
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
    if (!answer.ok() || !completion || IsFinal(answer->state)) return answer;
    return AwaitCompletion(std::move(answer).value(), deadline);
  }
  return Status::Unavailable("commit of " + gtid + ": the record kept changing; retry");
}

Result<TxnRecord> TwoPhaseDriver::CommitClaimed(std::shared_ptr<Flight> flight, TxnRecord txn) {
  const std::string& gtid = txn.gtid;
  // Branches known now decide whether this is one-phase; they are read again
  // once PREPARING is durable (no enlist can succeed after it).
  auto before = store_->GetBranches(gtid);
  if (!before.ok()) {
    Release(flight);
    return before.status();
  }
  const bool one_phase = before->size() == 1;

  int32_t flags = txn.flags | kFlagCommitRequested;
  if (one_phase) flags |= kFlagOnePhase;
  WriteBatch prepare_batch;
  TxnUpdate u = FencedUpdate(txn, {TxnState::kActive});
  u.state = TxnState::kPreparing;
  u.flags = flags;
  // The sweeper leaves it alone while the votes can still arrive.
  u.next_attempt_ms = NowUnixMs() + options_.prepare_timeout_ms + options_.connect_timeout_ms +
                      options_.drive_lease_ms;
  prepare_batch.txn_updates.push_back(u);
  Status s = log_->Write(std::move(prepare_batch));
  if (!s.ok()) {
    Release(flight);
    if (s.code() == StatusCode::kConflict) return s;  // the caller re-reads
    LOG(ERROR) << gtid << ": logging PREPARING failed: " << s;
    return s;
  }
  txn.state = TxnState::kPreparing;
  txn.flags = flags;
  Publish(*flight, txn.state);
  VLOG(1) << gtid << ": ACTIVE -> PREPARING" << (one_phase ? " (one-phase)" : "");

  auto branches_or = store_->GetBranches(gtid);
  if (!branches_or.ok()) {
    // PREPARING is logged and no decision: the sweeper aborts it (presumed abort).
    LOG(ERROR) << gtid << ": reading branches failed: " << branches_or.status();
    Release(flight);
    return branches_or.status();
  }
  std::vector<BranchRecord> branches = std::move(branches_or).value();
  if (branches.size() != before->size()) {
    // An enlist raced with commit: the branch set is not the one the flags say.
    return AbortClaimed(flight, txn, "an enlist raced with commit");
  }
  if (one_phase) return OnePhaseClaimed(flight, txn, branches.front());

  // Phase 1: prepare fan-out in parallel; this thread takes the first branch.
  struct Votes {
    explicit Votes(size_t n) : votes(n), latch(static_cast<int>(n)) {}
    std::vector<std::optional<BranchVote>> votes;  // slot i written by one closure
    std::vector<Status> errors{};
    Latch latch;
  };
  auto shared_branches = std::make_shared<std::vector<BranchRecord>>(branches);
  auto votes = std::make_shared<Votes>(branches.size());
  votes->errors.resize(branches.size());
  auto prepare_one = [this, txn, shared_branches, votes](size_t i) {
    auto vote = participants_.Prepare(MakeCall(txn, (*shared_branches)[i]));
    if (vote.ok()) {
      votes->votes[i] = *vote;
    } else {
      votes->errors[i] = vote.status();
    }
    votes->latch.CountDown();
  };
  for (size_t i = 1; i < branches.size(); ++i) {
    fan_out_.Submit([prepare_one, i] { prepare_one(i); });
  }
  if (!branches.empty()) prepare_one(0);
  const bool all_answered = votes->latch.WaitUntil(MonotonicMs() + options_.prepare_timeout_ms +
                                                   options_.connect_timeout_ms + 1000);
  TXC_CRASH_POINT("2pc.after_prepare_sent");

  std::vector<std::optional<BranchVote>> collected(branches.size());
  {
    std::lock_guard<std::mutex> lock(votes->latch.mu);  // orders the slots' writes before reads
    if (all_answered) collected = votes->votes;
  }
  for (size_t i = 0; i < branches.size(); ++i) {
    if (!collected[i].has_value()) {
      LOG(WARNING) << gtid << ": no vote from branch " << branches[i].branch_id << " at "
                   << branches[i].endpoint << ": "
                   << (all_answered ? votes->errors[i].ToString() : std::string("timed out"));
    } else if (*collected[i] == BranchVote::kAbort) {
      VLOG(1) << gtid << ": branch " << branches[i].branch_id << " voted ABORT";
    }
  }
  const Decision decision = DecideFromVotes(collected);

  // The decision: durable before any participant or the client hears it.
  WriteBatch decision_batch;
  TxnUpdate d = FencedUpdate(txn, {TxnState::kPreparing});
  d.state = DecisionState(decision);
  d.next_attempt_ms = NowUnixMs() + options_.drive_lease_ms;
  decision_batch.txn_updates.push_back(d);
  for (size_t i = 0; i < branches.size(); ++i) {
    if (!collected[i].has_value()) continue;
    const BranchState after = BranchStateAfterVote(*collected[i]);
    auto action = DecideBranchTransition(branches[i].state, after);
    if (!action.ok() || *action != TransitionAction::kApply) continue;
    BranchUpdate bu = FencedBranchUpdate(txn, branches[i]);
    bu.expected_states = {branches[i].state};
    bu.state = after;
    decision_batch.branch_updates.push_back(bu);
    branches[i].state = after;
  }
  s = log_->Write(std::move(decision_batch));
  if (!s.ok()) {
    // Rollback or the deadline may have logged ABORTING first; or the write's
    // outcome is unknown. Continue from what the store holds.
    auto reread = store_->GetTxn(gtid);
    if (!reread.ok() || reread->owner != node_.node_id || reread->epoch != node_.epoch ||
        !DecisionOf(reread->state).has_value()) {
      Release(flight);
      if (s.code() == StatusCode::kConflict) {
        // Another replica took it over (it thought this one dead): the caller
        // re-reads and follows that owner.
        LOG(WARNING) << gtid << ": lost ownership before logging the decision";
        return s;
      }
      LOG(ERROR) << gtid << ": logging the " << (decision == Decision::kCommit ? "COMMIT" : "ABORT")
                 << " decision failed: " << s << "; left to recovery";
      return s;
    }
    txn = std::move(reread).value();
    auto reread_branches = store_->GetBranches(gtid);
    if (reread_branches.ok()) branches = std::move(reread_branches).value();
  } else {
    txn.state = DecisionState(decision);
    VLOG(1) << gtid << ": PREPARING -> " << TxnStateName(txn.state);
  }
  TXC_CRASH_POINT("2pc.after_decision_logged");
  Publish(*flight, txn.state);
  StartPhaseTwo(flight, txn, std::move(branches), *DecisionOf(txn.state));
  return txn;
}

Result<TxnRecord> TwoPhaseDriver::OnePhaseClaimed(std::shared_ptr<Flight> flight, TxnRecord txn,
                                                  const BranchRecord& branch) {
  const std::string& gtid = txn.gtid;
  Status last_error;
  for (int attempt = 1; attempt <= options_.phase_two_attempts; ++attempt) {
    auto outcome = participants_.CommitOnePhase(MakeCall(txn, branch));
    TXC_CRASH_POINT("2pc.after_prepare_sent");
    if (outcome.ok() && *outcome != Outcome::kPending) {
      const Decision decision = *outcome == Outcome::kCommit ? Decision::kCommit : Decision::kAbort;
      WriteBatch batch;
      TxnUpdate u = FencedUpdate(txn, {TxnState::kPreparing});
      u.state = FinalState(decision);
      batch.txn_updates.push_back(u);
      BranchUpdate bu = FencedBranchUpdate(txn, branch);
      bu.state = BranchFinalState(decision);
      batch.branch_updates.push_back(bu);
      // Durable: the client is told the outcome the participant reached.
      Status s = log_->Write(std::move(batch));
      if (!s.ok()) {
        // kConflict: another replica took it over and asks the participant
        // again; the caller re-reads.
        LOG(ERROR) << gtid << ": logging the one-phase outcome failed: " << s
                   << "; recovery asks the participant again";
        Release(flight);
        return s;
      }
      txn.state = FinalState(decision);
      VLOG(1) << gtid << ": PREPARING -> " << TxnStateName(txn.state) << " (one-phase)";
      ReleaseIn(*registry_, flight, txn.state);  // durable: announced to completion waiters
      return txn;
    }
    last_error =
        outcome.ok() ? Status::Unavailable("participant has no outcome yet") : outcome.status();
    LOG(WARNING) << gtid << ": commitOnePhase to " << branch.endpoint << " attempt " << attempt
                 << ": " << last_error;
    if (attempt < options_.phase_two_attempts) {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(BackoffDelayMs(options_.phase_two_backoff, attempt)));
    }
  }
  // Unknown outcome: recovery re-sends commitOnePhase (idempotent on the SDK).
  WriteBatch later;
  TxnUpdate u = FencedUpdate(txn, {TxnState::kPreparing});
  u.attempts = txn.attempts + 1;
  u.next_attempt_ms = NowUnixMs() + BackoffDelayMs(options_.redrive_backoff, txn.attempts + 1);
  later.txn_updates.push_back(u);
  log_->WriteLater(std::move(later));
  LOG(ERROR) << gtid << ": one-phase commit outcome unknown: " << last_error;
  Release(flight);
  return Status::Unavailable("commit of " + gtid + ": outcome not known yet (" +
                             last_error.message() + "); ask again");
}

// ---- abort ---------------------------------------------------------------------

Result<TxnRecord> TwoPhaseDriver::AbortClaimed(std::shared_ptr<Flight> flight, TxnRecord txn,
                                               const char* why) {
  const std::string& gtid = txn.gtid;
  auto action = DecideTxnTransition(txn.state, TxnState::kAborting, false);
  if (!action.ok()) {
    Release(flight);
    return action.status();
  }
  if (*action == TransitionAction::kApply) {
    WriteBatch batch;
    // Only from the state read: never over a one-phase PREPARING it did not see.
    TxnUpdate u = FencedUpdate(txn, {txn.state});
    u.state = TxnState::kAborting;
    u.next_attempt_ms = NowUnixMs() + options_.drive_lease_ms;
    batch.txn_updates.push_back(u);
    Status s = log_->Write(std::move(batch));
    if (!s.ok()) {
      Release(flight);
      if (s.code() != StatusCode::kConflict) {
        LOG(ERROR) << gtid << ": logging ABORTING failed: " << s;
      }
      return s;  // kConflict: the caller re-reads
    }
    VLOG(1) << gtid << ": " << TxnStateName(txn.state) << " -> ABORTING (" << why << ")";
    txn.state = TxnState::kAborting;
  }
  Publish(*flight, txn.state);
  auto branches = store_->GetBranches(gtid);
  if (!branches.ok()) {
    LOG(ERROR) << gtid << ": reading branches failed: " << branches.status()
               << "; abort left to recovery";
    Release(flight);
    return txn;  // the decision is logged; the sweeper sends the aborts
  }
  StartPhaseTwo(flight, txn, std::move(branches).value(), Decision::kAbort);
  return txn;
}

Result<TxnRecord> TwoPhaseDriver::Rollback(const std::string& gtid) {
  TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  // A one-phase commit in flight is decided by its participant, not by a
  // rollback: wait for its outcome at most this long.
  const int64_t deadline =
      MonotonicMs() + options_.prepare_timeout_ms + options_.connect_timeout_ms + 1000;
  for (int round = 0; round < kMaxRounds; ++round) {
    TXC_ASSIGN_OR_RETURN(TxnRecord txn, Load(gtid));
    switch (txn.state) {
      case TxnState::kAborting:
      case TxnState::kAborted: return txn;
      case TxnState::kCommitting:
      case TxnState::kCommitted:
        return Status::IllegalTransition("rollback of " + gtid + ": COMMIT already decided");
      case TxnState::kActive:
      case TxnState::kPreparing: break;
      case TxnState::kRunning:
      case TxnState::kSucceeded:
      case TxnState::kCompensating:
      case TxnState::kCompensated:
      case TxnState::kParked: return Status::IllegalTransition(gtid + " is not a 2PC transaction");
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
          WaitOnFlight(*driving, /*completion=*/false, deadline);
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
        Status taken = TakeOver(flight, &txn);
        if (taken.code() == StatusCode::kConflict) continue;  // re-read
        TXC_RETURN_IF_ERROR(taken);
      }
      Result<TxnRecord> result = Status::Internal("unset");
      if (one_phase) {
        // Nobody waits for the participant's answer: ask it again.
        result = ResumeClaimed(flight, txn);
        if (result.ok() && DecisionOf(result->state) == Decision::kCommit) {
          return Status::IllegalTransition("rollback of " + gtid +
                                           ": its only branch committed (one-phase)");
        }
      } else {
        result = AbortClaimed(flight, txn, "rollback");
      }
      if (!result.ok() && result.status().code() == StatusCode::kConflict) continue;
      return result;
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
  if (txn.kind != TxnKind::kTwoPhase || IsFinal(txn.state)) return;
  auto flight = Claim(txn.gtid, txn.state);
  if (!flight) return;  // driven by this process right now
  driver_pool_.Submit([this, flight, gtid = txn.gtid] {
    auto current = Load(gtid);
    if (!current.ok() || !OwnedBy(*current, node_)) {
      if (!current.ok() && current.status().code() != StatusCode::kNotFound) {
        LOG(WARNING) << gtid << ": resume skipped: " << current.status();
      } else if (current.ok()) {
        VLOG(1) << gtid << ": resume skipped: owned by " << current->owner << " (epoch "
                << current->epoch << ")";
      }
      Release(flight);
      return;
    }
    auto result = ResumeClaimed(flight, std::move(current).value());
    if (!result.ok() && result.status().code() != StatusCode::kConflict) {
      LOG(WARNING) << gtid << ": resume: " << result.status();
    }
  });
}

Result<TxnRecord> TwoPhaseDriver::ResumeClaimed(std::shared_ptr<Flight> flight, TxnRecord txn) {
  const std::string& gtid = txn.gtid;
  switch (txn.state) {
    case TxnState::kActive:
      if (NowUnixMs() >= txn.deadline_ms) return AbortClaimed(flight, txn, "deadline passed");
      {
        // Not due yet: look again at the deadline.
        WriteBatch later;
        TxnUpdate u = FencedUpdate(txn, {TxnState::kActive});
        u.next_attempt_ms = txn.deadline_ms;
        later.txn_updates.push_back(u);
        log_->WriteLater(std::move(later));
      }
      Release(flight);
      return txn;
    case TxnState::kPreparing:
      if (txn.flags & kFlagOnePhase) {
        auto branches = store_->GetBranches(gtid);
        if (!branches.ok()) {
          Release(flight);
          return branches.status();
        }
        if (branches->size() == 1) {
          VLOG(1) << gtid << ": PREPARING (one-phase) found without a driver: re-sending "
                  << "commitOnePhase";
          return OnePhaseClaimed(flight, txn, branches->front());
        }
      }
      // No decision was logged and nobody is collecting votes: presumed abort.
      return AbortClaimed(flight, txn, "recovery: no decision logged (presumed abort)");
    case TxnState::kCommitting:
    case TxnState::kAborting: {
      auto branches = store_->GetBranches(gtid);
      if (!branches.ok()) {
        Release(flight);
        return branches.status();
      }
      VLOG(1) << gtid << ": redriving phase 2 of " << TxnStateName(txn.state) << " (attempt "
              << txn.attempts + 1 << ")";
      Publish(*flight, txn.state);
      StartPhaseTwo(flight, txn, std::move(branches).value(), *DecisionOf(txn.state));
      return txn;
    }
    case TxnState::kCommitted:
    case TxnState::kAborted:
    case TxnState::kRunning:
    case TxnState::kSucceeded:
    case TxnState::kCompensating:
    case TxnState::kCompensated:
    case TxnState::kParked: break;
  }
  Release(flight);
  return txn;
}

// ---- phase 2 -------------------------------------------------------------------

void TwoPhaseDriver::StartPhaseTwo(std::shared_ptr<Flight> flight, TxnRecord txn,
                                   std::vector<BranchRecord> branches, Decision decision) {
  auto run = std::make_shared<PhaseTwoRun>();
  run->flight = std::move(flight);
  run->txn = std::move(txn);
  run->decision = decision;
  for (auto& b : branches) {
    if (NeedsPhaseTwo(b.state, decision)) run->targets.push_back(std::move(b));
  }
  if (run->targets.empty()) {
    FinishPhaseTwo(run);
    return;
  }
  run->remaining.store(static_cast<int>(run->targets.size()));
  for (size_t i = 0; i < run->targets.size(); ++i) {
    fan_out_.Submit([this, run, i] {
      SendPhaseTwo(run, i);
      if (run->remaining.fetch_sub(1) == 1) FinishPhaseTwo(run);
    });
  }
}

void TwoPhaseDriver::SendPhaseTwo(const std::shared_ptr<PhaseTwoRun>& run, size_t index) {
  const TxnRecord& txn = run->txn;
  const BranchRecord& branch = run->targets[index];
  const bool commit = run->decision == Decision::kCommit;
  Status s;
  for (int attempt = 1; attempt <= options_.phase_two_attempts; ++attempt) {
    const BranchCall call = MakeCall(txn, branch);
    s = commit ? participants_.Commit(call) : participants_.Abort(call);
    if (s.ok()) {
      BranchUpdate bu = FencedBranchUpdate(txn, branch);
      bu.state = BranchFinalState(run->decision);
      bu.attempts = branch.attempts + attempt;
      {
        std::lock_guard<std::mutex> lock(run->mu);
        run->branch_updates.push_back(std::move(bu));
      }
      VLOG(1) << txn.gtid << ": branch " << branch.branch_id << " -> "
              << BranchStateName(BranchFinalState(run->decision));
      if (!run->first_ack_seen.exchange(true)) TXC_CRASH_POINT("2pc.mid_phase2");
      return;
    }
    // Retried here, then by the sweeper (which logs an ERROR per incomplete
    // round): only the last attempt of a round is worth a WARNING.
    const std::string failed = txn.gtid + ": " + (commit ? "commit" : "abort") + " of branch " +
                               branch.branch_id + " at " + branch.endpoint + " attempt " +
                               std::to_string(attempt) + ": " + s.ToString();
    if (attempt == options_.phase_two_attempts) {
      LOG(WARNING) << failed;
    } else {
      VLOG(1) << failed;
    }
    if (attempt < options_.phase_two_attempts) {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(BackoffDelayMs(options_.phase_two_backoff, attempt)));
    }
  }
  run->all_acked.store(false);
  BranchUpdate bu = FencedBranchUpdate(txn, branch);
  bu.attempts = branch.attempts + options_.phase_two_attempts;
  bu.last_error = s.ToString();
  bu.next_attempt_ms =
      NowUnixMs() + BackoffDelayMs(options_.redrive_backoff, run->txn.attempts + 1);
  std::lock_guard<std::mutex> lock(run->mu);
  run->branch_updates.push_back(std::move(bu));
}

void TwoPhaseDriver::FinishPhaseTwo(const std::shared_ptr<PhaseTwoRun>& run) {
  const TxnRecord& txn = run->txn;
  const TxnState decided = DecisionState(run->decision);
  // Losing this batch is harmless: phase 2 would be redriven (idempotent).
  WriteBatch batch;
  {
    std::lock_guard<std::mutex> lock(run->mu);
    batch.branch_updates = std::move(run->branch_updates);
  }
  if (run->all_acked.load()) {
    TXC_CRASH_POINT("2pc.before_final_state");
    TxnUpdate u = FencedUpdate(txn, {decided});
    u.state = FinalState(run->decision);
    batch.txn_updates.push_back(u);
    // Nobody blocks on this write; but the final state is published (to the
    // flight and to commit(WAIT_COMPLETION) callers) only once it is durable,
    // so that what a client is told is what the store holds. The callback
    // may run after this driver is gone: it uses only what it captures.
    const TxnState final_state = FinalState(run->decision);
    log_->WriteLater(std::move(batch), [registry = registry_, flight = run->flight, final_state,
                                        decided](const Status& written) {
      if (written.ok()) {
        VLOG(1) << flight->gtid << ": " << TxnStateName(decided) << " -> "
                << TxnStateName(final_state);
        ReleaseIn(*registry, flight, final_state);
        return;
      }
      if (written.code() != StatusCode::kConflict) {
        LOG(ERROR) << flight->gtid << ": writing " << TxnStateName(final_state)
                   << " failed: " << written << "; the sweeper redrives phase 2";
      }
      ReleaseIn(*registry, flight, std::nullopt);
    });
    return;
  }
  const int32_t attempts = txn.attempts + 1;
  TxnUpdate u = FencedUpdate(txn, {decided});
  u.attempts = attempts;
  u.next_attempt_ms = NowUnixMs() + BackoffDelayMs(options_.redrive_backoff, attempts);
  batch.txn_updates.push_back(u);
  log_->WriteLater(std::move(batch));
  LOG(ERROR) << txn.gtid << ": phase 2 (" << TxnStateName(decided) << ") incomplete after round "
             << attempts << "; the sweeper redrives it";
  Release(run->flight);
}

}  // namespace txc
