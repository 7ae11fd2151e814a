// TwoPhaseDriver: runs two-phase commit. It asks the pure rules
// (coordinator/core/two_phase.h) what to do, logs every decision through the
// GroupCommitter before acting on it, and talks to participants through
// ParticipantClient.
//
//   commit ─► log PREPARING ─► prepare fan-out (parallel) ─► votes
//             ─► log COMMITTING / ABORTING (durable: the decision)
//             ─► [crash point 2pc.after_decision_logged] ─► answer (WAIT_DECISION)
//             ─► phase 2 fan-out, retried with backoff ─► COMMITTED / ABORTED
//                (written without a waiter; WAIT_COMPLETION is answered once it is durable)
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
// Crash points (common/crash_point.h): "2pc.after_prepare_sent",
// "2pc.after_decision_logged", "2pc.mid_phase2" (after the first phase-2 ack),
// "2pc.before_final_state".
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/task_pool.h"
#include "coordinator/core/two_phase.h"
#include "coordinator/driver/participant_client.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct TwoPhaseDriverOptions {
  int connect_timeout_ms = 1000;
  int prepare_timeout_ms = 5000;    // per prepare / commitOnePhase call
  int phase_two_timeout_ms = 5000;  // per commit / abort call
  int fan_out_threads = 64;         // "2pc-fanout": participant calls
  int driver_threads = 4;           // "2pc-driver": sweeper-requested work
  // Phase-2 attempts per branch inside one drive before the branch is left to
  // the sweeper (which redrives at the transaction's next_attempt_ms).
  int phase_two_attempts = 4;
  BackoffPolicy phase_two_backoff{20, 500, 2.0};
  // How far the sweeper's next look at an unfinished transaction is pushed
  // (by attempts of the transaction).
  BackoffPolicy redrive_backoff{200, 30000, 2.0};
  // While this process drives a decided transaction, the sweeper need not look
  // at it before this much time passed (a crash makes the next owner claim it
  // with next_attempt_ms = now anyway).
  int64_t drive_lease_ms = 10000;
  // Endpoints of the live replicas for TxnContext.coordinators; empty: this
  // node's endpoint alone.
  std::function<std::vector<std::string>()> coordinator_endpoints;
};

class TwoPhaseDriver : public TwoPhaseOps {
 public:
  // `store` and `log` must outlive the driver.
  TwoPhaseDriver(TxnStore* store, GroupCommitter* log, NodeInfo node,
                 TwoPhaseDriverOptions options);
  // Waits for queued fan-out and recovery work to finish.
  ~TwoPhaseDriver() override;

  // Registers a branch durably, whichever replica owns the transaction.
  // Errors: kInvalidArgument, kNotFound, kIllegalTransition (not ACTIVE, or
  // the same branch id with other content), kUnavailable (retry).
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override;
  // Runs 2PC, or answers the decision already taken (by any replica). Returns
  // the record with the state reached (COMMITTING/COMMITTED or
  // ABORTING/ABORTED; with kCompletion a final state only once it is durable,
  // unless the wait ran out). Errors: kInvalidArgument, kNotFound,
  // kIllegalTransition (rolled back or timed out before commit), kUnavailable /
  // kTimeout (no decision reached yet: ask again).
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                           int64_t wait_timeout_ms) override;
  // Aborts an undecided transaction; OK if already aborting/aborted. Errors:
  // kIllegalTransition once COMMIT is decided, kNotFound, kUnavailable (a
  // one-phase outcome still unknown, or the record kept changing: retry).
  Result<TxnRecord> Rollback(const std::string& gtid) override;
  // COMMIT / ABORT / PENDING; an unknown gtid is ABORT (presumed abort).
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id) override;
  // Finishes a transaction of this node left unfinished (deadline passed,
  // phase 2 to redrive, PREPARING after a crash) on the driver pool. A no-op
  // when this process already drives it.
  void Resume(const TxnRecord& txn) override;

  // Number of transactions this process is driving right now.
  size_t InFlightCount();

 private:
  // One transaction being driven by this process.
  struct Flight {
    explicit Flight(std::string id) : gtid(std::move(id)) {}
    const std::string gtid;
    std::mutex mu;               // guards state and released
    std::condition_variable cv;  // notified on every change of state / released
    TxnState state = TxnState::kActive;
    bool released = false;  // the driver let go (finished or left it to the sweeper)
  };
  // commit(WAIT_COMPLETION) calls of this process waiting for one gtid.
  struct Completion {
    std::mutex mu;                        // guards final_state
    std::condition_variable cv;           // notified when final_state is set
    std::optional<TxnState> final_state;  // set once this process made a final state durable
    int waiters = 0;                      // guarded by Registry::mu
  };
  // The in-flight set and the completion waiters. Shared (by shared_ptr) with
  // the group-commit callbacks of final-state writes, which may run after the
  // driver is gone. Lock order: Registry::mu, then Flight::mu or Completion::mu.
  struct Registry {
    std::mutex mu;  // guards both maps; never held across I/O
    std::unordered_map<std::string, std::shared_ptr<Flight>> flights;
    std::unordered_map<std::string, std::shared_ptr<Completion>> completions;
  };
  struct PhaseTwoRun;

  // Claims gtid for this process; nullptr when already claimed.
  std::shared_ptr<Flight> Claim(const std::string& gtid, TxnState state);
  std::shared_ptr<Flight> FindFlight(const std::string& gtid);
  static void Publish(Flight& flight, TxnState state);
  void Release(const std::shared_ptr<Flight>& flight);
  // Removes flight from the registry, wakes its waiters and, when `final_state`
  // is set (it is durable), the gtid's completion waiters.
  static void ReleaseIn(Registry& registry, const std::shared_ptr<Flight>& flight,
                        std::optional<TxnState> final_state);
  // Waits (until deadline_ms, monotonic) for flight to reach a decision (or a
  // final state when `completion`) or be released.
  static void WaitOnFlight(Flight& flight, bool completion, int64_t deadline_ms);

  // Reads a 2PC transaction (any owner). kNotFound, kIllegalTransition (a saga).
  Result<TxnRecord> Load(const std::string& gtid);
  // Polls the store (backoff with jitter) until txn's state, owner or epoch
  // changes, its owner's lease lapses, or deadline_ms (monotonic) passes;
  // returns the last record read.
  Result<TxnRecord> WatchOtherOwner(TxnRecord txn, int64_t deadline_ms);
  // Makes this node the owner of txn (read in state ACTIVE or PREPARING under
  // another owner or epoch) with one fenced write, the flight claimed. On
  // error releases the flight; kConflict: the record moved on (re-read).
  Status TakeOver(const std::shared_ptr<Flight>& flight, TxnRecord* txn);
  // The answer to commit for a decided record (kIllegalTransition for an abort
  // that no commit asked for).
  Result<TxnRecord> AnswerCommit(const TxnRecord& txn);
  // Waits until the record's final state is durable or the deadline passes,
  // then answers. Woken by this process's final write of the gtid; polls the
  // store (backoff) for a transaction finished by another replica.
  Result<TxnRecord> AwaitCompletion(TxnRecord txn, int64_t deadline_ms);

  // The steps below run with the Flight claimed; each releases it on every
  // path (directly or when phase 2 ends).
  Result<TxnRecord> CommitClaimed(std::shared_ptr<Flight> flight, TxnRecord txn);
  Result<TxnRecord> OnePhaseClaimed(std::shared_ptr<Flight> flight, TxnRecord txn,
                                    const BranchRecord& branch);
  // Logs ABORTING (from ACTIVE or PREPARING) and starts abort phase 2.
  Result<TxnRecord> AbortClaimed(std::shared_ptr<Flight> flight, TxnRecord txn, const char* why);
  // Continues an unfinished transaction from its logged state.
  Result<TxnRecord> ResumeClaimed(std::shared_ptr<Flight> flight, TxnRecord txn);
  // Sends phase 2 to the branches that need it, in parallel; when all are done
  // writes the final state (or the next redrive time) and releases the flight.
  void StartPhaseTwo(std::shared_ptr<Flight> flight, TxnRecord txn,
                     std::vector<BranchRecord> branches, Decision decision);
  void SendPhaseTwo(const std::shared_ptr<PhaseTwoRun>& run, size_t index);
  void FinishPhaseTwo(const std::shared_ptr<PhaseTwoRun>& run);

  BranchCall MakeCall(const TxnRecord& txn, const BranchRecord& branch);
  TxnUpdate FencedUpdate(const TxnRecord& txn, std::vector<TxnState> expected) const;
  // ABORTING, conditional on txn's state and (owner, epoch) as read (the owner
  // may be another replica, or a driver in this process): whoever drives it
  // loses its own decision write to it and follows the abort.
  Status LogAbortUnderOwner(const TxnRecord& txn);
  BranchUpdate FencedBranchUpdate(const TxnRecord& txn, const BranchRecord& branch) const;

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  const TwoPhaseDriverOptions options_;
  ParticipantClient participants_;

  const std::shared_ptr<Registry> registry_ = std::make_shared<Registry>();

  // Declared last: destroyed (drained and joined) first, while the members
  // their closures use still exist.
  TaskPool fan_out_;
  TaskPool driver_pool_;
};

}  // namespace txc
