// ParticipantClient: the coordinator's typed calls to a participant's
// Participant service (idl/participant.thrift), over pooled persistent
// connections (common/thrift_util.h ClientPool).
//
// Each kind of call has its own timeout (prepare vs phase 2), so each has its
// own pool. A transport error or timeout discards that connection and returns
// kUnavailable / kTimeout: the caller decides what an unanswered call means
// (a missing vote is ABORT; an unacknowledged phase-2 message is retried).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/two_phase.h"
#include "coordinator/store/txn_store.h"

namespace txc {

struct ParticipantClientOptions {
  int connect_timeout_ms = 1000;
  int prepare_timeout_ms = 5000;    // prepare and commitOnePhase
  int phase_two_timeout_ms = 5000;  // commit and abort
  size_t max_idle_per_endpoint = 64;
};

// What a call says about the branch: the transaction it belongs to, and the
// context the participant may use to reach the coordinator.
struct BranchCall {
  std::string gtid;
  const BranchRecord* branch = nullptr;  // not owned; outlives the call
  std::vector<std::string> coordinators;
  int64_t deadline_ms = 0;
};

class ParticipantClient {
 public:
  explicit ParticipantClient(ParticipantClientOptions options);
  ~ParticipantClient();

  // Phase 1. Errors: kUnavailable, kTimeout (the caller counts them as ABORT).
  Result<BranchVote> Prepare(const BranchCall& call);
  // One-phase commit of the only branch: kCommit, kAbort or kPending (outcome
  // not known yet: ask again). Errors: kUnavailable, kTimeout.
  Result<Outcome> CommitOnePhase(const BranchCall& call);
  // Phase 2; idempotent on the participant. Errors: kUnavailable, kTimeout.
  Status Commit(const BranchCall& call);
  Status Abort(const BranchCall& call);

  // Drops every idle connection.
  void Clear();

 private:
  struct Pools;
  std::unique_ptr<Pools> pools_;
};

}  // namespace txc
