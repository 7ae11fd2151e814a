// TwoPhaseDriver: runs two-phase commit by executing what the 2PC step
// function (coordinator/core/two_phase_machine.h) decides. It never picks a
// state itself: every event (commit, rollback, a vote, a phase-2 answer, a
// timer, recovery) goes into StepTwoPhase; the driver fences the writes it
// returns with (owner, epoch), logs them through the GroupCommitter, and only
// once they are durable runs the effects: participant calls through the
// event-driven AsyncParticipantClient (no thread waits on a call), timers for
// retries and the prepare window, the end of the drive.
//
//   commit ─► step: PREPARING ─► durable ─► [2pc.after_preparing_logged]
//          ─► prepares sent (async) ─► votes (events) ─► [2pc.after_prepare_sent]
//          ─► step: COMMITTING / ABORTING (the decision) ─► durable
//          ─► [2pc.after_decision_logged] ─► the commit call is answered
//          ─► phase 2 (async, retried on timers) ─► [2pc.mid_phase2]
//          ─► [2pc.before_final_state] ─► COMMITTED / ABORTED durable
//   rollback / deadline / presumed abort ─► ABORTING durable ─► [2pc.after_abort_logged]
//
// The commit path holds the transaction in memory: a commit of a transaction
// this replica began and enlisted reads nothing back from the store (the
// PREPARING write is conditional on the branch count it knows, so an enlist
// it did not see makes it re-read).
//
// Any replica answers (ARCHITECTURE invariant 6). Whoever owns a transaction:
//   * decided (COMMITTING/COMMITTED/ABORTING/ABORTED): commit and rollback
//     answer the decision from the store; enlist is kIllegalTransition;
//   * ACTIVE: enlist writes the branch under the fence of the (owner, epoch)
//     it read (no ownership needed); commit and rollback take the transaction
//     over (one write conditional on ACTIVE and the owner, epoch just read:
//     ownership.h) and drive it here;
//   * PREPARING owned by another replica with a live lease (it collects the
//     votes): commit waits on the store for the decision (backoff poll,
//     bounded by the caller's wait timeout, then kTimeout "ask again");
//     rollback logs ABORTING under the owner's fence, which the owner's own
//     decision write then loses to, so it follows the abort (one-phase: the
//     participant decides, so rollback waits like commit);
//   * PREPARING whose owner's lease expired (or an older epoch of this node):
//     taken over and resumed at once (presumed abort, or one-phase resend).
//
// Ownership and fencing: every store write that drives a transaction is
// conditional on (owner, epoch) = this node's; a kConflict means the record
// moved on (rollback, deadline) or another replica took it: the driver
// re-reads and continues from what it finds, or stops.
//
// In-flight set: at most one driver per transaction inside this process (a
// Flight). Commit, Rollback and Resume claim it; whoever finds it claimed waits
// on it or (Resume) does nothing. No lock is held across a store call or an
// RPC: the in-flight map's mutex is taken only to claim, release and publish
// states. A flight publishes a final state only once that state is durable.
//
// Crash points (common/crash_point.h), named after the model's steps
// (docs/model/twopc.pml): "2pc.after_preparing_logged", "2pc.after_prepare_sent"
// (when the first vote arrives: at least one prepare went out),
// "2pc.after_decision_logged" (the votes' decision), "2pc.after_abort_logged"
// (ABORTING by rollback, deadline or presumed abort), "2pc.mid_phase2" (after
// the first phase-2 ack), "2pc.before_final_state".
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/callback_gate.h"
#include "common/task_pool.h"
#include "coordinator/core/two_phase.h"
#include "coordinator/core/two_phase_machine.h"
#include "coordinator/driver/async_participant_client.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct TwoPhaseDriverOptions {
  int connect_timeout_ms = 1000;
  int prepare_timeout_ms = 5000;    // per prepare / commitOnePhase call
  int phase_two_timeout_ms = 5000;  // per commit / abort call
  // The participant client, shared with the saga driver (one set of I/O
  // threads, one per-endpoint limit). Null: the driver makes its own from
  // io_threads, max_calls_per_endpoint and connect_timeout_ms.
  std::shared_ptr<AsyncParticipantClient> participants;
  int io_threads = 1;               // participant calls (event driven: no thread per call)
  int max_calls_per_endpoint = 32;  // outstanding calls to one participant; more wait in line
  // Calls written together on one connection to a fast participant
  // (AsyncParticipantClientOptions::max_batch_calls, batch_below_us).
  int max_batch_calls = 16;
  int64_t batch_below_us = 2000;
  // TLS to participants when the driver makes its own client (also the
  // coordinator's shared client unless CoordinatorServerOptions::participant_tls
  // is set); AsyncParticipantClientOptions::tls, off when not enabled().
  TlsOptions participant_tls{};
  int driver_threads = 2;  // "2pc-driver": store reads for recovery and re-reads
  // Sends per branch inside one drive (phase 2, commitOnePhase) before the
  // branch is left to the sweeper (which redrives at the transaction's next_attempt_ms).
  int phase_two_attempts = 4;
  BackoffPolicy phase_two_backoff{20, 500, 2.0};
  // How far the sweeper's next look at an unfinished transaction is pushed
  // (by attempts of the transaction).
  BackoffPolicy redrive_backoff{200, 30000, 2.0};
  // While this process drives a decided transaction, the sweeper need not look
  // at it before this much time passed (a crash makes the next owner claim it
  // with next_attempt_ms = now anyway).
  int64_t drive_lease_ms = 10000;
  // Transactions begun here kept in memory for their commit (oldest dropped first).
  size_t max_cached_txns = 16384;
  // Endpoints of the live replicas for TxnContext.coordinators; empty: this
  // node's endpoint alone.
  std::function<std::vector<std::string>()> coordinator_endpoints;
};

class TwoPhaseDriver : public TwoPhaseOps {
 public:
  // `store` and `log` must outlive the driver.
  TwoPhaseDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                 TwoPhaseDriverOptions options);
  // Stops the participant calls and waits for this driver's pending log
  // callbacks; unfinished transactions stay in the store for recovery.
  ~TwoPhaseDriver() override;

  void Begun(const TxnRecord& txn, const std::vector<BranchRecord>& branches) override;
  // Registers a branch durably, whichever replica owns the transaction.
  // Errors: kInvalidArgument, kNotFound, kIllegalTransition (not ACTIVE, or
  // the same branch id with other content), kUnavailable (retry).
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override;
  // The hot path of Enlist (begun here, held in memory, a new branch id):
  // one WriteAsync, answered on the group-done thread (TwoPhaseOps::EnlistAsync).
  bool EnlistAsync(const std::string& gtid, const BranchRecord& branch,
                   std::function<void(Status)> done) override;
  // Runs 2PC, or answers the decision already taken (by any replica). Returns
  // the record with the state reached (COMMITTING/COMMITTED or
  // ABORTING/ABORTED; with kCompletion a final state only once it is durable,
  // unless the wait ran out). Errors: kInvalidArgument, kNotFound,
  // kIllegalTransition (rolled back or timed out before commit), kUnavailable /
  // kTimeout (no decision reached yet: ask again).
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                           int64_t wait_timeout_ms) override;
  // The hot path of Commit (begun here, its branches in memory) without a
  // waiting thread: `done` is run by whichever thread publishes the decision
  // or ends the drive (TwoPhaseOps::CommitAsync).
  bool CommitAsync(const std::string& gtid, std::function<void(Result<TxnRecord>)> done) override;
  // Aborts an undecided transaction; OK if already aborting/aborted. Errors:
  // kIllegalTransition once COMMIT is decided, kNotFound, kUnavailable (a
  // one-phase outcome still unknown, or the record kept changing: retry).
  Result<TxnRecord> Rollback(const std::string& gtid) override;
  // COMMIT / ABORT / PENDING; an unknown gtid is ABORT (presumed abort).
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) override;
  // Finishes a transaction of this node left unfinished (deadline passed,
  // phase 2 to redrive, PREPARING after a crash). Non-blocking; a no-op when
  // this process already drives it.
  void Resume(const TxnRecord& txn) override;

  // Re-reads the participant TLS files (AsyncParticipantClient::ReloadTls).
  Status ReloadTls() { return participants_->ReloadTls(); }

  // Number of transactions this process is driving right now.
  size_t InFlightCount();
  // Participant calls outstanding or queued.
  size_t PendingCallsForTests() const;

 private:
  // One transaction being driven by this process: the step function's run
  // and what is durable of it.
  struct Flight {
    explicit Flight(std::string id) : gtid(std::move(id)) {}
    const std::string gtid;
    std::mutex mu;               // guards everything below
    std::condition_variable cv;  // notified on every change of published / released
    TwoPhaseRun run;             // the machine's state (ahead of the store while a write is out)
    TxnState published = TxnState::kActive;  // the last state known durable
    bool released = false;  // the drive is over (finished, left to the sweeper, or failed)
    Status failure;         // why it was released unfinished (kConflict: re-read)
    bool first_vote_seen = false;
    bool first_ack_seen = false;
    // Run once (outside mu) when a decision is published or the flight is
    // released: the answers of CommitAsync calls.
    std::vector<std::function<void()>> watchers;
  };
  // commit(WAIT_COMPLETION) calls of this process waiting for one gtid.
  struct Completion {
    std::mutex mu;                        // guards final_state
    std::condition_variable cv;           // notified when final_state is set
    std::optional<TxnState> final_state;  // set once this process made a final state durable
    int waiters = 0;                      // guarded by Registry::mu
  };
  // The in-flight set and the completion waiters. Lock order: Registry::mu,
  // then Flight::mu or Completion::mu.
  struct Registry {
    std::mutex mu;  // guards both maps; never held across I/O
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
    std::unordered_map<std::string, std::shared_ptr<Completion>> completions;
  };
  // Transactions begun (and enlisted) here, for their commit.
  struct Cached {
    TxnRecord txn;
    std::vector<BranchRecord> branches;
    std::list<std::string>::iterator order;  // its place in cache_order_
  };

  // Claims gtid for this process; nullptr when already claimed.
  std::shared_ptr<Flight> Claim(const std::string& gtid, TxnState state);
  std::shared_ptr<Flight> FindFlight(const std::string& gtid);
  // Ends the drive: removes the flight, wakes its waiters and, when
  // `final_state` is set (it is durable), the gtid's completion waiters.
  void Release(const std::shared_ptr<Flight>& flight, std::optional<TxnState> final_state,
               Status failure = Status::Ok());
  // Waits (until deadline_ms, monotonic) for flight to reach a decision (or a
  // final state when `completion`) or be released.
  static void WaitOnFlight(Flight& flight, bool completion, int64_t deadline_ms);
  // What a commit call is told once it waited on its own flight.
  Result<TxnRecord> AnswerFromFlight(Flight& flight, int64_t deadline_ms);
  // The same without waiting: from what the flight published so far.
  static Result<TxnRecord> AnswerNow(Flight& flight);

  // ---- executing the step function
  // Steps `event` on the flight's run, logs the writes, then runs the effects.
  // Returns the step function's error (an illegal edge) or OK.
  Status Feed(const std::shared_ptr<Flight>& flight, TwoPhaseEvent event);
  void Execute(const std::shared_ptr<Flight>& flight, TxnState before, TxnState after,
               const std::vector<TwoPhaseEffect>& effects);
  void Send(const std::shared_ptr<Flight>& flight, const TwoPhaseEffect& effect);
  // A write of the drive failed: the store is the truth. Ends the drive and
  // lets a re-read decide what comes next.
  void OnWriteFailed(const std::shared_ptr<Flight>& flight, const Status& written);
  ParticipantCall MakeCall(const TwoPhaseRun& run, size_t branch, int timeout_ms);
  // The drive of a claimed flight, from the run given (the store's or the cache's).
  void StartDrive(const std::shared_ptr<Flight>& flight, TwoPhaseRun run, TwoPhaseEventKind kind);

  // Reads a 2PC transaction (any owner). kNotFound, kIllegalTransition (a saga).
  Result<TxnRecord> Load(const std::string& gtid);
  Result<TwoPhaseRun> LoadRun(const TxnRecord& txn);
  std::optional<Cached> TakeCached(const std::string& gtid);
  // `branch` is durable (written under owner's fence): VLOG, and kept with
  // its transaction's cached record when this process holds it.
  void Enlisted(const BranchRecord& branch, const std::string& owner);
  // Polls the store (backoff with jitter) until txn's state, owner or epoch
  // changes, its owner's lease lapses, or deadline_ms (monotonic) passes;
  // returns the last record read.
  Result<TxnRecord> WatchOtherOwner(TxnRecord txn, int64_t deadline_ms);
  // Makes this node the owner of txn (read in state ACTIVE or PREPARING under
  // another owner or epoch) with one fenced write. kConflict: the record moved on.
  Status TakeOver(TxnRecord* txn);
  // The answer to commit for a record read from the store.
  static Result<TxnRecord> AnswerCommit(const TxnRecord& txn);
  // Waits until the record's final state is durable or the deadline passes,
  // then answers. Woken by this process's final write of the gtid; polls the
  // store (backoff) for a transaction finished by another replica.
  Result<TxnRecord> AwaitCompletion(TxnRecord txn, int64_t deadline_ms);
  // Drives a claimed flight for a commit call and answers it.
  Result<TxnRecord> CommitClaimed(const std::shared_ptr<Flight>& flight, TxnRecord txn,
                                  int64_t deadline_ms);
  // ABORTING under the (owner, epoch) read, decided by the step function
  // (kRollbackForOwner): whoever drives it loses its own decision write to it.
  Status LogAbortUnderOwner(const TxnRecord& txn);
  void Fence(WriteBatch* batch) const;

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  const TwoPhaseDriverOptions options_;
  const TwoPhaseTiming timing_;

  Registry registry_;

  std::mutex cache_mu_;  // guards cache_ and cache_order_
  std::unordered_map<std::string, Cached> cache_;
  std::list<std::string> cache_order_;  // insertion order, for dropping the oldest

  // Log callbacks of this driver not yet run; the destructor waits for zero.
  std::mutex pending_mu_;
  std::condition_variable pending_cv_;
  int pending_writes_ = 0;  // guarded by pending_mu_
  std::atomic<bool> stopping_{false};

  TaskPool driver_pool_;
  // Declared last: destroyed first (completes its calls, joins its threads)
  // while everything its callbacks use still exists.
  std::shared_ptr<AsyncParticipantClient> participants_;  // options_.participants, or own
  CallbackGate gate_;  // closed first at destruction: late answers and timers are dropped
};

}  // namespace txc
