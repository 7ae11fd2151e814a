#include "coordinator/rpc/coordinator_handler.h"

#include <glog/logging.h>

#include <utility>

#include "common/log_rate_limiter.h"
#include "common/peer_identity.h"
#include "common/strings.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "coordinator/core/validation.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "coordinator/rpc/convert.h"

#ifndef TXC_VERSION
#define TXC_VERSION "dev"
#endif

namespace txc {
namespace {

// A request's gtid in a log line: not validated yet, so escaped and cut.
std::string LoggedGtid(const std::string& gtid) { return gtid.empty() ? "-" : LogSafe(gtid); }

// Runs `body`; lets the declared wire exceptions through and turns anything
// else into Unavailable after logging it with the method and gtid.
template <typename F>
auto Guarded(const char* method, const std::string& gtid, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const wire::InvalidArgument&) {
    throw;
  } catch (const wire::NotFound&) {
    throw;
  } catch (const wire::IllegalTransition&) {
    throw;
  } catch (const wire::NotOwner&) {
    throw;
  } catch (const wire::Unavailable&) {
    throw;
  } catch (const wire::PermissionDenied&) {
    throw;
  } catch (const std::exception& e) {
    LOG(ERROR) << method << " gtid=" << LoggedGtid(gtid) << ": unexpected exception: " << e.what();
  } catch (...) {
    LOG(ERROR) << method << " gtid=" << LoggedGtid(gtid) << ": unexpected non-standard exception";
  }
  wire::Unavailable unavailable;
  unavailable.__set_message(std::string(method) + ": internal error (logged on the coordinator)");
  unavailable.__set_retry_after_ms(1000);
  throw unavailable;
}

struct MethodAccess {
  const char* method;
  RoleSet roles;
};
constexpr MethodAccess kMethodAccess[] = {
    {"beginTxn", roles::kClient | roles::kAdmin},
    {"enlist", roles::kClient | roles::kAdmin},
    {"commit", roles::kClient | roles::kAdmin},
    {"rollback", roles::kClient | roles::kAdmin},
    {"submitSaga", roles::kClient | roles::kAdmin},
    {"status", roles::kClient | roles::kReader | roles::kAdmin},
    {"queryOutcome", roles::kParticipant | roles::kAdmin},
    {"health", roles::kAll},
    {"listTxns", roles::kReader | roles::kAdmin},
    {"retryNow", roles::kAdmin},
    {"cancelSaga", roles::kAdmin},
    {"resolveBranch", roles::kAdmin},
    {"rebindEndpoint", roles::kAdmin},
};

// One warning per identity (or peer host) and method every 10 s, with the
// count of the others.
LogRateLimiter& RefusalLogLimiter() {
  static LogRateLimiter limiter(10000);
  return limiter;
}

// The rate limiter's key for a refusal: the certificate CN, or the peer's host
// without its (ephemeral) port, so that reconnecting does not defeat the limit.
std::string RefusalKey(const PeerIdentity& caller, const std::string& what) {
  if (caller.authenticated) return "CN=" + caller.common_name + " " + what;
  const auto colon = caller.address.rfind(':');
  return caller.address.substr(0, colon) + " " + what;
}

}  // namespace

const char CoordinatorHandler::kVersion[] = TXC_VERSION;

RoleSet CoordinatorHandler::MethodRoles(const std::string& method) {
  for (const MethodAccess& m : kMethodAccess) {
    if (method == m.method) return m.roles;
  }
  return roles::kNone;
}

void CoordinatorHandler::SetAuthPolicy(std::shared_ptr<const AuthPolicy> policy) {
  std::atomic_store(&policy_, std::move(policy));
}

void CoordinatorHandler::SetParticipantAllowList(EndpointAllowList allow) {
  allow_ = std::move(allow);
}

void CoordinatorHandler::Authorize(const char* method) {
  const std::shared_ptr<const AuthPolicy> policy = std::atomic_load(&policy_);
  if (policy == nullptr) return;
  const PeerIdentity& caller = CurrentPeerIdentity();
  const RoleSet needed = MethodRoles(method);
  const RoleSet held = policy->RolesOf(caller);
  if ((held & needed) != 0) return;
  CoordinatorMetrics::Get().RecordRefusedCall(method, "permission_denied");
  const std::string who = caller.Describe();
  if (auto d = RefusalLogLimiter().Admit(RefusalKey(caller, method), MonotonicMs()); d.log) {
    LOG(WARNING) << "permission denied: " << method << " by " << who
                 << " (roles: " << RoleSetNames(held) << ")" << d.Suffix();
  }
  std::string message = std::string(method) + ": permission denied for " + who + " (roles " +
                        RoleSetNames(held) + "; " + method + " needs one of " +
                        RoleSetNames(needed) + ")";
  if (!caller.authenticated) message += "; no verified client certificate";
  throw PermissionDeniedToWire(Status::PermissionDenied(message), caller, method);
}

void CoordinatorHandler::CheckEndpoint(const char* method, const std::string& field,
                                       const std::string& endpoint) {
  Status allowed = allow_.Check(field, endpoint);
  if (allowed.ok()) return;
  CoordinatorMetrics::Get().RecordRefusedCall(method, "endpoint_not_allowed");
  const std::string key = RefusalKey(
      CurrentPeerIdentity(), std::string("allow ") + method + " " + endpoint.substr(0, 256));
  if (auto d = RefusalLogLimiter().Admit(key, MonotonicMs()); d.log) {
    LOG(WARNING) << method << " by " << CurrentPeerIdentity().Describe()
                 << " refused: " << allowed.message() << d.Suffix();
  }
  ThrowIfError(allowed, "");
}

template <typename F>
auto CoordinatorHandler::Serve(const char* method, const std::string& gtid, F&& body)
    -> decltype(body()) {
  Authorize(method);
  return Guarded(method, gtid, std::forward<F>(body));
}

CoordinatorHandler::CoordinatorHandler(TxnService* service, std::string version)
    : service_(service), version_(std::move(version)) {
  CHECK(service_ != nullptr);
}

void CoordinatorHandler::Throw(const Status& in, const std::string& gtid, unsigned declared) {
  if (in.ok()) return;
  Status status = in;
  const StatusCode code = in.code();
  if ((code == StatusCode::kNotFound && !(declared & kNotFound)) ||
      ((code == StatusCode::kIllegalTransition || code == StatusCode::kAlreadyExists) &&
       !(declared & kIllegal)) ||
      (code == StatusCode::kNotOwner && !(declared & kNotOwner))) {
    LOG(ERROR) << "gtid=" << LoggedGtid(gtid)
               << ": error not declared by the method, answered as Unavailable: "
               << LogSafe(in.ToString(), 512);
    status = Status::Unavailable(in.ToString());
  }
  TxnState current = TxnState::kActive;
  std::string owner_endpoint;
  if ((status.code() == StatusCode::kIllegalTransition ||
       status.code() == StatusCode::kAlreadyExists || status.code() == StatusCode::kNotOwner) &&
      !gtid.empty()) {
    Result<TxnView> view = service_->GetStatus(gtid);
    if (view.ok()) {
      current = view->txn.state;
      if (status.code() == StatusCode::kNotOwner) {
        owner_endpoint = service_->EndpointOfNode(view->txn.owner);
      }
    }
  }
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kNotFound:
    case StatusCode::kNotOwner:  // the client retries at the owner named in the answer
      VLOG(1) << "gtid=" << LoggedGtid(gtid) << ": " << LogSafe(status.ToString(), 512);
      break;
    default: LOG(WARNING) << "gtid=" << LoggedGtid(gtid) << ": " << LogSafe(status.ToString(), 512);
  }
  ThrowIfError(status, gtid, current, owner_endpoint);
}

BeginOptions CoordinatorHandler::CheckBegin(const wire::BeginRequest& req) {
  if (req.__isset.branches) {
    for (size_t i = 0; i < req.branches.size(); ++i) {
      CheckEndpoint("beginTxn", "branches[" + std::to_string(i) + "].endpoint",
                    req.branches[i].endpoint);
    }
  }
  Result<BeginOptions> options = BeginOptionsFromWire(req);
  Throw(options.status(), "", kNone);
  return std::move(options).value();
}

void CoordinatorHandler::BeginTxnAnswer(wire::BeginResponse& out, const Result<TxnRecord>& txn) {
  Guarded("beginTxn", "", [&] {
    Throw(txn.status(), "", kNone);
    out.__set_gtid(txn->gtid);
    out.__set_context(MakeTxnContext(*txn, service_->CoordinatorEndpoints()));
  });
}

void CoordinatorHandler::beginTxn(wire::BeginResponse& out, const wire::BeginRequest& req) {
  Serve("beginTxn", "", [&] {
    const BeginOptions options = CheckBegin(req);
    BeginTxnAnswer(out, service_->Begin(options));
  });
}

bool CoordinatorHandler::BeginTxnAsync(const wire::BeginRequest& req,
                                       std::function<void(Result<TxnRecord>)> done) {
  return Serve("beginTxn", "",
               [&] { return service_->BeginAsync(CheckBegin(req), std::move(done)); });
}

BranchRecord CoordinatorHandler::CheckEnlist(const wire::EnlistRequest& req) {
  Throw(ValidateId("gtid", req.gtid), req.gtid, kAll);
  CheckEndpoint("enlist", "branch.endpoint", req.branch.endpoint);
  BranchRecord branch = BranchFromWire(req.branch, req.gtid, /*ordinal=*/0);
  Throw(ValidateBranch(branch), req.gtid, kAll);
  return branch;
}

void CoordinatorHandler::enlist(const wire::EnlistRequest& req) {
  Serve("enlist", req.gtid,
        [&] { Throw(service_->Enlist(req.gtid, CheckEnlist(req)), req.gtid, kAll); });
}

bool CoordinatorHandler::EnlistAsync(const wire::EnlistRequest& req,
                                     std::function<void(Status)> done) {
  return Serve("enlist", req.gtid,
               [&] { return service_->EnlistAsync(req.gtid, CheckEnlist(req), std::move(done)); });
}

void CoordinatorHandler::EnlistAnswer(const std::string& gtid, const Status& enlisted) {
  Guarded("enlist", gtid, [&] { Throw(enlisted, gtid, kAll); });
}

CommitWait CoordinatorHandler::CheckCommit(const wire::CommitRequest& req) {
  Throw(ValidateId("gtid", req.gtid), req.gtid, kAll);
  Result<CommitWait> wait = CommitWaitFromWire(WireEnumValue(req.wait));
  Throw(wait.status(), req.gtid, kAll);
  Throw(ValidateWaitTimeoutMs("wait_timeout_ms", req.wait_timeout_ms), req.gtid, kAll);
  return *wait;
}

void CoordinatorHandler::CommitAnswer(wire::CommitResponse& out, const std::string& gtid,
                                      const Result<TxnRecord>& txn) {
  Guarded("commit", gtid, [&] {
    Throw(txn.status(), gtid, kAll);
    out = CommitResponseToWire(*txn);
  });
}

void CoordinatorHandler::commit(wire::CommitResponse& out, const wire::CommitRequest& req) {
  Serve("commit", req.gtid, [&] {
    const CommitWait wait = CheckCommit(req);
    CommitAnswer(out, req.gtid, service_->Commit(req.gtid, wait, req.wait_timeout_ms));
  });
}

bool CoordinatorHandler::CommitAsync(const wire::CommitRequest& req,
                                     std::function<void(Result<TxnRecord>)> done) {
  return Serve("commit", req.gtid, [&] {
    return CheckCommit(req) == CommitWait::kDecision &&
           service_->CommitAsync(req.gtid, std::move(done));
  });
}

void CoordinatorHandler::rollback(wire::CommitResponse& out, const std::string& gtid) {
  Serve("rollback", gtid, [&] {
    Throw(ValidateId("gtid", gtid), gtid, kAll);
    Result<TxnRecord> txn = service_->Rollback(gtid);
    Throw(txn.status(), gtid, kAll);
    out = CommitResponseToWire(*txn);
  });
}

void CoordinatorHandler::status(wire::TxnStatus& out, const std::string& gtid) {
  Serve("status", gtid, [&] {
    Throw(ValidateId("gtid", gtid), gtid, kNotFound);
    Result<TxnView> view = service_->GetStatus(gtid);
    Throw(view.status(), gtid, kNotFound);
    out = TxnStatusToWire(*view);
  });
}

namespace {

// The gtid of a saga request named in logs and errors: only a valid one (a
// hostile one may be a megabyte of binary). Whether it is valid is the
// service's answer to give.
std::string SagaGtidForLogs(const wire::SubmitSagaRequest& req) {
  return req.__isset.gtid && ValidateId("gtid", req.gtid).ok() ? req.gtid : "";
}

}  // namespace

SagaSpec CoordinatorHandler::CheckSaga(const wire::SubmitSagaRequest& req,
                                       const std::string& gtid) {
  for (size_t i = 0; i < req.steps.size(); ++i) {
    CheckEndpoint("submitSaga", "steps[" + std::to_string(i) + "].endpoint", req.steps[i].endpoint);
  }
  // Validated once, by the service (ValidateSagaSubmission in core/saga.h).
  Result<SagaSpec> spec = SagaSpecFromWire(req);
  Throw(spec.status(), gtid, kIllegal);
  return std::move(spec).value();
}

void CoordinatorHandler::SubmitSagaAnswer(wire::SubmitSagaResponse& out,
                                          const wire::SubmitSagaRequest& req,
                                          const Result<TxnRecord>& txn) {
  const std::string gtid = SagaGtidForLogs(req);
  Guarded("submitSaga", gtid, [&] {
    Throw(txn.status(), gtid, kIllegal);
    out.__set_gtid(txn->gtid);
    out.__set_state(ToWire(txn->state));
  });
}

void CoordinatorHandler::submitSaga(wire::SubmitSagaResponse& out,
                                    const wire::SubmitSagaRequest& req) {
  const std::string gtid = SagaGtidForLogs(req);
  Serve("submitSaga", gtid,
        [&] { SubmitSagaAnswer(out, req, service_->SubmitSaga(CheckSaga(req, gtid))); });
}

std::optional<SagaSpec> CoordinatorHandler::SagaSpecForAsync(const wire::SubmitSagaRequest& req) {
  const std::string gtid = SagaGtidForLogs(req);
  return Serve("submitSaga", gtid, [&]() -> std::optional<SagaSpec> {
    SagaSpec spec = CheckSaga(req, gtid);
    if (spec.gtid.empty()) spec.gtid = service_->NewGtid();
    if (spec.gtid.empty()) return std::nullopt;
    return spec;
  });
}

void CoordinatorHandler::SubmitSagaAnswerFromStore(wire::SubmitSagaResponse& out,
                                                   const wire::SubmitSagaRequest& req,
                                                   const std::string& gtid) {
  Result<TxnView> view = service_->GetStatus(gtid);
  if (view.ok()) return SubmitSagaAnswer(out, req, view->txn);
  if (view.status().code() == StatusCode::kNotFound) {
    return SubmitSagaAnswer(out, req,
                            Status::Unavailable("saga " + gtid +
                                                " is not logged yet; its outcome is unknown: "
                                                "resubmit it with this gtid"));
  }
  SubmitSagaAnswer(out, req, view.status());
}

bool CoordinatorHandler::SubmitSagaAsync(const SagaSpec& spec,
                                         std::function<void(Result<TxnRecord>)> done) {
  return Guarded("submitSaga", spec.gtid,
                 [&] { return service_->SubmitSagaAsync(spec, std::move(done)); });
}

wire::Outcome::type CoordinatorHandler::queryOutcome(const std::string& gtid,
                                                     const std::string& branch_id) {
  return Serve("queryOutcome", gtid, [&] {
    Throw(ValidateId("gtid", gtid), gtid, kNone);
    if (!branch_id.empty()) Throw(ValidateId("branch_id", branch_id), gtid, kNone);
    Result<Outcome> outcome = service_->QueryOutcome(gtid, branch_id);
    // queryOutcome declares no NotFound: an unknown id is presumed aborted.
    if (outcome.status().code() == StatusCode::kNotFound) return wire::Outcome::OUTCOME_ABORT;
    Throw(outcome.status(), gtid, kNone);
    return ToWire(*outcome);
  });
}

void CoordinatorHandler::health(wire::HealthResponse& out) {
  Serve("health", "", [&] { out = HealthToWire(service_->Health(), version_); });
}

}  // namespace txc

namespace txc {

void CoordinatorHandler::listTxns(wire::ListTxnsResponse& out, const wire::ListTxnsRequest& req) {
  Serve("listTxns", "", [&] {
    Result<TxnFilter> filter = TxnFilterFromWire(req);
    Throw(filter.status(), "", kNone);
    Result<TxnPage> page =
        service_->ListTxns(*filter, req.__isset.cursor ? req.cursor : "", req.limit);
    Throw(page.status(), "", kNone);
    out = ListTxnsResponseToWire(*page);
  });
}

void CoordinatorHandler::retryNow(wire::TxnStatus& out, const wire::AdminRequest& req) {
  Serve("retryNow", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), "", kAdmin);
    Result<TxnView> view = service_->RetryNow(req.gtid, {CurrentThriftPeer(), req.reason});
    Throw(view.status(), req.gtid, kAdmin);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::cancelSaga(wire::TxnStatus& out, const wire::AdminRequest& req) {
  Serve("cancelSaga", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), "", kAdmin);
    Result<TxnView> view = service_->CancelSaga(req.gtid, {CurrentThriftPeer(), req.reason});
    Throw(view.status(), req.gtid, kAdmin);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::resolveBranch(wire::TxnStatus& out, const wire::ResolveRequest& req) {
  Serve("resolveBranch", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), "", kAdmin);
    Result<BranchState> resolved = BranchStateFromWire(WireEnumValue(req.resolved_state));
    Throw(resolved.status(), req.gtid, kAdmin);
    Result<TxnView> view =
        service_->Resolve(req.gtid, req.branch_id, *resolved, {CurrentThriftPeer(), req.reason});
    Throw(view.status(), req.gtid, kAdmin);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::rebindEndpoint(wire::RebindResponse& out, const wire::RebindRequest& req) {
  const std::string gtid = req.__isset.gtid ? req.gtid : "";
  Serve("rebindEndpoint", gtid, [&] {
    if (req.__isset.gtid) Throw(ValidateId("gtid", gtid), "", kAdmin);
    CheckEndpoint("rebindEndpoint", "to_endpoint", req.to_endpoint);
    Result<RebindResult> r = service_->Rebind(gtid, req.from_endpoint, req.to_endpoint,
                                              {CurrentThriftPeer(), req.reason});
    Throw(r.status(), gtid, kAdmin);
    out.__set_transactions(r->transactions);
    out.__set_branches(r->branches);
  });
}

}  // namespace txc
