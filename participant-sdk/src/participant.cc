#include "txc/participant/participant.h"

#include <glog/logging.h>

namespace txc {
namespace participant {

const char* VoteName(Vote vote) {
  switch (vote) {
    case Vote::kPrepared: return "PREPARED";
    case Vote::kReadOnly: return "READ_ONLY";
    case Vote::kAbort: return "ABORT";
  }
  return "?";
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCommit: return "COMMIT";
    case Outcome::kAbort: return "ABORT";
    case Outcome::kPending: return "PENDING";
  }
  return "?";
}

const char* StepOutcomeName(StepOutcome outcome) {
  switch (outcome) {
    case StepOutcome::kSuccess: return "SUCCESS";
    case StepOutcome::kFailure: return "FAILURE";
    case StepOutcome::kRetryLater: return "RETRY_LATER";
  }
  return "?";
}

Vote Participant::Prepare(const BranchContext& ctx) {
  LOG(WARNING) << "gtid=" << ctx.gtid << " branch=" << ctx.branch_id
               << ": prepare not supported by this participant, voting abort";
  return Vote::kAbort;
}

Outcome Participant::CommitOnePhase(const BranchContext& ctx) {
  switch (Prepare(ctx)) {
    case Vote::kPrepared: Commit(ctx); return Outcome::kCommit;
    case Vote::kReadOnly: return Outcome::kCommit;
    case Vote::kAbort: return Outcome::kAbort;
  }
  return Outcome::kAbort;
}

void Participant::Commit(const BranchContext& ctx) {
  throw NotSupportedError("commit not supported by this participant (gtid " + ctx.gtid + ")");
}

void Participant::Abort(const BranchContext&) {}

std::vector<PreparedBranch> Participant::Recover() { return {}; }

StepResult Participant::Action(const StepContext& ctx) {
  return StepResult::Failure("action '" + ctx.name + "' not supported by this participant");
}

StepResult Participant::Compensate(const StepContext& ctx) {
  return StepResult::RetryLater("compensation '" + ctx.name +
                                "' not supported by this participant");
}

}  // namespace participant
}  // namespace txc
