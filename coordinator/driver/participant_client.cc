#include "coordinator/driver/participant_client.h"

#include <glog/logging.h>

#include "common/thrift_util.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "gen-cpp/Participant.h"

namespace txc {

struct ParticipantClient::Pools {
  Pools(const ParticipantClientOptions& o)
      : prepare(ConnectOptions{o.connect_timeout_ms, o.prepare_timeout_ms, kDefaultMaxMessageBytes},
                o.max_idle_per_endpoint),
        phase_two(
            ConnectOptions{o.connect_timeout_ms, o.phase_two_timeout_ms, kDefaultMaxMessageBytes},
            o.max_idle_per_endpoint) {}
  ClientPool<wire::ParticipantClient> prepare;
  ClientPool<wire::ParticipantClient> phase_two;
};

namespace {

wire::BranchRequest ToWire(const BranchCall& call) {
  wire::BranchRequest req;
  req.gtid = call.gtid;
  req.branch_id = call.branch->branch_id;
  req.resource = call.branch->resource;
  req.payload = call.branch->payload;
  req.context.gtid = call.gtid;
  req.context.coordinators = call.coordinators;
  req.context.deadline_unix_ms = call.deadline_ms;
  req.context.__set_branch_id(call.branch->branch_id);
  return req;
}

// Runs a call whose declared exception is wire::Unavailable; `method` names
// it in the metrics.
Status CallWithUnavailable(const char* method, ClientPool<wire::ParticipantClient>& pool,
                           const std::string& endpoint,
                           const std::function<void(wire::ParticipantClient&)>& fn) {
  ParticipantCallTimer timer(method, endpoint);
  try {
    Status s = pool.Call(endpoint, fn);
    if (s.code() == StatusCode::kUnavailable) LogParticipantConnectionError(endpoint, s);
    return timer.Done(std::move(s));
  } catch (const wire::Unavailable& e) {
    return timer.Done(
        Status::Unavailable("participant " + endpoint + " unavailable: " + e.message));
  } catch (const wire::PermissionDenied& e) {
    // Retried like Unavailable: the participant's allowed coordinator
    // identities (or this coordinator's certificate) must change.
    return timer.Done(Status::Unavailable(
        "participant " + endpoint + " refused this coordinator (PermissionDenied): " + e.message));
  } catch (const std::exception& e) {
    return timer.Done(Status::Unavailable("participant " + endpoint + ": " + e.what()));
  }
}

}  // namespace

ParticipantClient::ParticipantClient(ParticipantClientOptions options)
    : pools_(std::make_unique<Pools>(options)) {}

ParticipantClient::~ParticipantClient() = default;

Result<BranchVote> ParticipantClient::Prepare(const BranchCall& call) {
  const wire::BranchRequest req = ToWire(call);
  wire::Vote::type vote = wire::Vote::VOTE_ABORT;
  TXC_RETURN_IF_ERROR(
      CallWithUnavailable("prepare", pools_->prepare, call.branch->endpoint,
                          [&](wire::ParticipantClient& client) { vote = client.prepare(req); }));
  switch (vote) {
    case wire::Vote::VOTE_PREPARED: return BranchVote::kPrepared;
    case wire::Vote::VOTE_READ_ONLY: return BranchVote::kReadOnly;
    case wire::Vote::VOTE_ABORT: return BranchVote::kAbort;
  }
  return BranchVote::kAbort;  // an unknown vote is a no
}

Result<Outcome> ParticipantClient::CommitOnePhase(const BranchCall& call) {
  const wire::BranchRequest req = ToWire(call);
  wire::Outcome::type outcome = wire::Outcome::OUTCOME_PENDING;
  TXC_RETURN_IF_ERROR(CallWithUnavailable(
      "commit_one_phase", pools_->prepare, call.branch->endpoint,
      [&](wire::ParticipantClient& client) { outcome = client.commitOnePhase(req); }));
  switch (outcome) {
    case wire::Outcome::OUTCOME_COMMIT: return Outcome::kCommit;
    case wire::Outcome::OUTCOME_ABORT: return Outcome::kAbort;
    case wire::Outcome::OUTCOME_PENDING: return Outcome::kPending;
  }
  return Outcome::kPending;
}

Status ParticipantClient::Commit(const BranchCall& call) {
  const wire::BranchRequest req = ToWire(call);
  return CallWithUnavailable("commit", pools_->phase_two, call.branch->endpoint,
                             [&](wire::ParticipantClient& client) { client.commit(req); });
}

Status ParticipantClient::Abort(const BranchCall& call) {
  const wire::BranchRequest req = ToWire(call);
  return CallWithUnavailable("abort", pools_->phase_two, call.branch->endpoint,
                             [&](wire::ParticipantClient& client) { client.abort(req); });
}

void ParticipantClient::Clear() {
  pools_->prepare.Clear();
  pools_->phase_two.Clear();
}

}  // namespace txc
