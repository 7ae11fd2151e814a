#include "coordinator/rpc/coordinator_handler.h"

#include <glog/logging.h>

#include <utility>

#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "coordinator/core/validation.h"
#include "coordinator/rpc/convert.h"

#ifndef TXC_VERSION
#define TXC_VERSION "dev"
#endif

namespace txc {
namespace {

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
  } catch (const std::exception& e) {
    LOG(ERROR) << method << " gtid=" << (gtid.empty() ? "-" : gtid)
               << ": unexpected exception: " << e.what();
  } catch (...) {
    LOG(ERROR) << method << " gtid=" << (gtid.empty() ? "-" : gtid)
               << ": unexpected non-standard exception";
  }
  wire::Unavailable unavailable;
  unavailable.__set_message(std::string(method) + ": internal error (logged on the coordinator)");
  unavailable.__set_retry_after_ms(1000);
  throw unavailable;
}

}  // namespace

const char CoordinatorHandler::kVersion[] = TXC_VERSION;

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
    LOG(ERROR) << "gtid=" << (gtid.empty() ? "-" : gtid)
               << ": error not declared by the method, answered as Unavailable: " << in;
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
      VLOG(1) << "gtid=" << (gtid.empty() ? "-" : gtid) << ": " << status;
      break;
    default: LOG(WARNING) << "gtid=" << (gtid.empty() ? "-" : gtid) << ": " << status;
  }
  ThrowIfError(status, gtid, current, owner_endpoint);
}

void CoordinatorHandler::beginTxn(wire::BeginResponse& out, const wire::BeginRequest& req) {
  Guarded("beginTxn", "", [&] {
    Result<BeginOptions> options = BeginOptionsFromWire(req);
    Throw(options.status(), "", kNone);
    Result<TxnRecord> txn = service_->Begin(*options);
    Throw(txn.status(), "", kNone);
    out.__set_gtid(txn->gtid);
    out.__set_context(MakeTxnContext(*txn, service_->CoordinatorEndpoints()));
  });
}

void CoordinatorHandler::enlist(const wire::EnlistRequest& req) {
  Guarded("enlist", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), req.gtid, kAll);
    BranchRecord branch = BranchFromWire(req.branch, req.gtid, /*ordinal=*/0);
    Throw(ValidateBranch(branch), req.gtid, kAll);
    Throw(service_->Enlist(req.gtid, branch), req.gtid, kAll);
  });
}

void CoordinatorHandler::commit(wire::CommitResponse& out, const wire::CommitRequest& req) {
  Guarded("commit", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), req.gtid, kAll);
    Result<CommitWait> wait = CommitWaitFromWire(WireEnumValue(req.wait));
    Throw(wait.status(), req.gtid, kAll);
    Throw(ValidateWaitTimeoutMs("wait_timeout_ms", req.wait_timeout_ms), req.gtid, kAll);
    Result<TxnRecord> txn = service_->Commit(req.gtid, *wait, req.wait_timeout_ms);
    Throw(txn.status(), req.gtid, kAll);
    out = CommitResponseToWire(*txn);
  });
}

void CoordinatorHandler::rollback(wire::CommitResponse& out, const std::string& gtid) {
  Guarded("rollback", gtid, [&] {
    Throw(ValidateId("gtid", gtid), gtid, kAll);
    Result<TxnRecord> txn = service_->Rollback(gtid);
    Throw(txn.status(), gtid, kAll);
    out = CommitResponseToWire(*txn);
  });
}

void CoordinatorHandler::status(wire::TxnStatus& out, const std::string& gtid) {
  Guarded("status", gtid, [&] {
    Throw(ValidateId("gtid", gtid), gtid, kNotFound);
    Result<TxnView> view = service_->GetStatus(gtid);
    Throw(view.status(), gtid, kNotFound);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::submitSaga(wire::SubmitSagaResponse& out,
                                    const wire::SubmitSagaRequest& req) {
  // The gtid named in logs and errors: only a valid one (a hostile one may be a
  // megabyte of binary). Whether it is valid is the service's answer to give.
  const std::string gtid = req.__isset.gtid && ValidateId("gtid", req.gtid).ok() ? req.gtid : "";
  Guarded("submitSaga", gtid, [&] {
    // Validated once, by the service (ValidateSagaSubmission in core/saga.h).
    Result<SagaSpec> spec = SagaSpecFromWire(req);
    Throw(spec.status(), gtid, kIllegal);
    Result<TxnRecord> txn = service_->SubmitSaga(*spec);
    Throw(txn.status(), gtid, kIllegal);
    out.__set_gtid(txn->gtid);
    out.__set_state(ToWire(txn->state));
  });
}

wire::Outcome::type CoordinatorHandler::queryOutcome(const std::string& gtid,
                                                     const std::string& branch_id) {
  return Guarded("queryOutcome", gtid, [&] {
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
  Guarded("health", "", [&] { out = HealthToWire(service_->Health(), version_); });
}

}  // namespace txc

namespace txc {

void CoordinatorHandler::listTxns(wire::ListTxnsResponse& out, const wire::ListTxnsRequest& req) {
  Guarded("listTxns", "", [&] {
    Result<TxnFilter> filter = TxnFilterFromWire(req);
    Throw(filter.status(), "", kNone);
    Result<TxnPage> page =
        service_->ListTxns(*filter, req.__isset.cursor ? req.cursor : "", req.limit);
    Throw(page.status(), "", kNone);
    out = ListTxnsResponseToWire(*page);
  });
}

void CoordinatorHandler::retryNow(wire::TxnStatus& out, const wire::AdminRequest& req) {
  Guarded("retryNow", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), "", kAdmin);
    Result<TxnView> view = service_->RetryNow(req.gtid, {CurrentThriftPeer(), req.reason});
    Throw(view.status(), req.gtid, kAdmin);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::cancelSaga(wire::TxnStatus& out, const wire::AdminRequest& req) {
  Guarded("cancelSaga", req.gtid, [&] {
    Throw(ValidateId("gtid", req.gtid), "", kAdmin);
    Result<TxnView> view = service_->CancelSaga(req.gtid, {CurrentThriftPeer(), req.reason});
    Throw(view.status(), req.gtid, kAdmin);
    out = TxnStatusToWire(*view);
  });
}

void CoordinatorHandler::resolveBranch(wire::TxnStatus& out, const wire::ResolveRequest& req) {
  Guarded("resolveBranch", req.gtid, [&] {
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
  Guarded("rebindEndpoint", gtid, [&] {
    if (req.__isset.gtid) Throw(ValidateId("gtid", gtid), "", kAdmin);
    Result<RebindResult> r = service_->Rebind(gtid, req.from_endpoint, req.to_endpoint,
                                              {CurrentThriftPeer(), req.reason});
    Throw(r.status(), gtid, kAdmin);
    out.__set_transactions(r->transactions);
    out.__set_branches(r->branches);
  });
}

}  // namespace txc
