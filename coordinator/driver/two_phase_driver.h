// TwoPhaseDriver: runs two-phase commit for the transactions this replica
// owns. It asks the pure rules (coordinator/core/two_phase.h) what to do, logs
// every decision through the GroupCommitter before acting on it, and talks to
// participants through ParticipantClient.
//
//   commit ─► log PREPARING ─► prepare fan-out (parallel) ─► votes
//             ─► log COMMITTING / ABORTING (durable: the decision)
//             ─► [crash point 2pc.after_decision_logged] ─► answer (WAIT_DECISION)
//             ─► phase 2 fan-out, retried with backoff ─► WriteLater COMMITTED / ABORTED
//
// Ownership and fencing: every store write is conditional on (owner, epoch)
// = this node's; a kConflict means the record moved on (rollback, deadline) or
// another replica took it: the driver re-reads and continues from what it
// finds, or stops.
//
// In-flight set: at most one driver per transaction inside this process (a
// Flight). Commit, Rollback and Resume claim it; whoever finds it claimed waits
// on it or (Resume) does nothing. No lock is held across a store call or an
// RPC: the in-flight map's mutex is taken only to claim, release and publish
// states.
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
#include <string>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "coordinator/core/two_phase.h"
#include "coordinator/driver/participant_client.h"
#include "coordinator/driver/two_phase_thread_pool.h"
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

  // Registers a branch durably. Errors: kInvalidArgument, kNotFound,
  // kIllegalTransition (not ACTIVE, or the same branch id with other content),
  // kNotOwner, kUnavailable.
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override;
  // Runs 2PC, or answers the decision already taken. Returns the record with
  // the state reached (COMMITTING/COMMITTED or ABORTING/ABORTED). Errors:
  // kInvalidArgument, kNotFound, kIllegalTransition (rolled back or timed out
  // before commit), kNotOwner, kUnavailable / kTimeout (no decision reached
  // yet: ask again).
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait,
                           int64_t wait_timeout_ms) override;
  // Aborts an undecided transaction; OK if already aborting/aborted. Errors:
  // kIllegalTransition once COMMIT is decided, kNotFound, kNotOwner, kUnavailable.
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
  struct PhaseTwoRun;

  // Claims gtid for this process; nullptr when already claimed.
  std::shared_ptr<Flight> Claim(const std::string& gtid, TxnState state);
  std::shared_ptr<Flight> FindFlight(const std::string& gtid);
  void Publish(Flight& flight, TxnState state);
  void Release(const std::shared_ptr<Flight>& flight);
  // Waits (until deadline_ms, monotonic) for flight to reach a decision (or a
  // final state when `completion`) or be released.
  void WaitOnFlight(Flight& flight, bool completion, int64_t deadline_ms);

  // Reads a 2PC transaction this node owns. kNotFound, kIllegalTransition
  // (a saga), kNotOwner.
  Result<TxnRecord> LoadOwned(const std::string& gtid);
  // The answer to commit for a decided record (kIllegalTransition for an abort
  // that no commit asked for).
  Result<TxnRecord> AnswerCommit(const TxnRecord& txn);
  // Waits until the record is final or the deadline passes, then answers.
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
  BranchUpdate FencedBranchUpdate(const TxnRecord& txn, const BranchRecord& branch) const;

  TxnStore* const store_;
  GroupCommitter* const log_;
  const NodeInfo node_;
  const TwoPhaseDriverOptions options_;
  ParticipantClient participants_;

  std::mutex flights_mu_;  // guards flights_; never held across I/O
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;

  // Declared last: destroyed (drained and joined) first, while the members
  // their closures use still exist.
  TaskPool fan_out_;
  TaskPool driver_pool_;
};

}  // namespace txc
