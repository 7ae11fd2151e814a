#include "coordinator/rpc/coordinator_async_handler.h"

#include <glog/logging.h>

#include <utility>
#include <vector>

#include "common/backoff.h"
#include "common/peer_identity.h"

namespace txc {
namespace {

using apache::thrift::TDelayedException;

// The exception being handled, kept for the processor to write: the declared
// wire exceptions as they are (CoordinatorHandler throws nothing else; the
// generated processor answers anything else as a TApplicationException).
TDelayedException* DelayCurrentException() {
  try {
    throw;
  } catch (const wire::InvalidArgument& e) {
    return TDelayedException::delayException(e);
  } catch (const wire::NotFound& e) {
    return TDelayedException::delayException(e);
  } catch (const wire::IllegalTransition& e) {
    return TDelayedException::delayException(e);
  } catch (const wire::NotOwner& e) {
    return TDelayedException::delayException(e);
  } catch (const wire::Unavailable& e) {
    return TDelayedException::delayException(e);
  } catch (const wire::PermissionDenied& e) {
    return TDelayedException::delayException(e);
  } catch (const std::exception& e) {
    LOG(ERROR) << "unexpected exception from the coordinator handler: " << e.what();
  } catch (...) {
    LOG(ERROR) << "unexpected non-standard exception from the coordinator handler";
  }
  wire::Unavailable unavailable;
  unavailable.__set_message("internal error (logged on the coordinator)");
  unavailable.__set_retry_after_ms(1000);
  return TDelayedException::delayException(unavailable);
}

// Runs `fill(out)` and answers with `out`, or with the exception it threw.
template <typename Response, typename Fill>
void AnswerWith(const std::function<void(const Response&)>& cob,
                const CoordinatorAsyncHandler::ExnCob& exn, Fill&& fill) {
  Response out;
  try {
    fill(out);
  } catch (...) {
    exn(DelayCurrentException());
    return;
  }
  cob(out);
}

// Makes the caller's identity current on a pool thread for one call.
class IdentityScope {
 public:
  explicit IdentityScope(PeerIdentity who) { SetCurrentPeerIdentity(std::move(who)); }
  ~IdentityScope() { SetCurrentPeerIdentity(PeerIdentity{}); }
};

struct NoResponse {};

}  // namespace

CoordinatorAsyncHandler::CoordinatorAsyncHandler(CoordinatorHandler* handler,
                                                 CoordinatorAsyncHandlerOptions options)
    : handler_(handler),
      options_(options),
      pool_("rpc-pool", std::max(1, options.pool_threads),
            TaskPool::Options{TaskPool::AtShutdown::kDropQueued, "rpc-timer",
                              std::max(options.pool_threads, options.max_threads)}) {
  CHECK(handler_ != nullptr);
  pool_.SubmitAfter(options_.deadline_scan_ms, [this] { ScanDeadlines(); });
}

CoordinatorAsyncHandler::~CoordinatorAsyncHandler() {
  if (!shut_down_.load()) Shutdown();  // an owner that forgot: from its thread, it is safe
}

void CoordinatorAsyncHandler::Shutdown() {
  if (shut_down_.exchange(true)) return;
  gate_.Close();  // answers still to come (group-done, driver threads) are dropped
  pool_.Shutdown();
  std::multimap<int64_t, std::shared_ptr<Hot>> waiting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    waiting.swap(deadlines_);
  }
  // Destroyed here, outside the lock: their cobs hold the processor.
}

template <typename Response, typename Call>
void CoordinatorAsyncHandler::OnPool(std::function<void(const Response&)> cob, ExnCob exn,
                                     Call call) {
  pool_.Submit([who = CurrentPeerIdentity(), cob = std::move(cob), exn = std::move(exn),
                call = std::move(call)]() mutable {
    IdentityScope scope(std::move(who));
    AnswerWith<Response>(cob, exn, call);
  });
}

std::shared_ptr<CoordinatorAsyncHandler::Hot> CoordinatorAsyncHandler::Track(
    int64_t deadline_ms, std::function<void()> on_deadline) {
  auto hot = std::make_shared<Hot>();
  hot->on_deadline = std::move(on_deadline);
  std::lock_guard<std::mutex> lock(mu_);
  hot->slot = deadlines_.emplace(deadline_ms, hot);
  hot->listed = true;
  return hot;
}

void CoordinatorAsyncHandler::Untrack(const std::shared_ptr<Hot>& hot) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!hot->listed) return;
  deadlines_.erase(hot->slot);
  hot->listed = false;
}

size_t CoordinatorAsyncHandler::PendingHotCalls() {
  std::lock_guard<std::mutex> lock(mu_);
  return deadlines_.size();
}

void CoordinatorAsyncHandler::ScanDeadlines() {
  std::vector<std::shared_ptr<Hot>> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto end = deadlines_.upper_bound(MonotonicMs());
    for (auto it = deadlines_.begin(); it != end; ++it) {
      it->second->listed = false;
      expired.push_back(std::move(it->second));
    }
    deadlines_.erase(deadlines_.begin(), end);
  }
  for (auto& hot : expired) {
    if (hot->Claim()) hot->on_deadline();
  }
  pool_.SubmitAfter(options_.deadline_scan_ms, [this] { ScanDeadlines(); });
}

// ---- the hot path ------------------------------------------------------------------

template <typename Response>
void CoordinatorAsyncHandler::RunHot(HotCall<Response> call) {
  auto shared = std::make_shared<HotCall<Response>>(std::move(call));
  auto hot = Track(shared->deadline_ms, [this, shared] {
    AnswerWith<Response>(shared->cob, shared->exn,
                         [&](Response& out) { shared->at_deadline(out); });
  });
  auto done =
      gate_.Wrap([this, hot, shared, who = CurrentPeerIdentity()](Result<TxnRecord> result) {
        if (!hot->Claim()) return;  // the deadline answered
        Untrack(hot);
        if (result.ok()) {
          AnswerWith<Response>(shared->cob, shared->exn,
                               [&](Response& out) { shared->answer(out, result); });
          return;
        }
        // Off the answering thread: an error's wire exception may read the store,
        // and a conflict is served by the full synchronous call.
        const bool conflict = result.status().code() == StatusCode::kConflict;
        pool_.Submit([shared, conflict, who, result = std::move(result)] {
          IdentityScope scope(who);  // the full call authorizes the caller again
          AnswerWith<Response>(shared->cob, shared->exn, [&](Response& out) {
            if (conflict) return shared->full(out);
            shared->answer(out, result);
          });
        });
      });
  bool taken = false;
  try {
    taken = shared->start(std::move(done));
  } catch (...) {
    Untrack(hot);
    if (hot->Claim()) shared->exn(DelayCurrentException());
    return;
  }
  if (taken) return;
  Untrack(hot);
  if (!hot->Claim()) return;
  OnPool<Response>(shared->cob, shared->exn, [shared](Response& out) { shared->full(out); });
}

void CoordinatorAsyncHandler::beginTxn(std::function<void(const wire::BeginResponse&)> cob,
                                       ExnCob exn, const wire::BeginRequest& req) {
  const int64_t timeout_ms = options_.begin_answer_timeout_ms;
  HotCall<wire::BeginResponse> call;
  call.cob = std::move(cob);
  call.exn = std::move(exn);
  call.deadline_ms = MonotonicMs() + timeout_ms;
  call.at_deadline = [this, timeout_ms](wire::BeginResponse& out) {
    handler_->BeginTxnAnswer(
        out,
        Status::Timeout("begin: not answered by the store within " + std::to_string(timeout_ms) +
                        " ms; its outcome is unknown: retry with an idempotency key"));
  };
  call.start = [this, req](Done done) { return handler_->BeginTxnAsync(req, std::move(done)); };
  call.answer = [this](wire::BeginResponse& out, const Result<TxnRecord>& txn) {
    handler_->BeginTxnAnswer(out, txn);
  };
  call.full = [this, req](wire::BeginResponse& out) { handler_->beginTxn(out, req); };
  RunHot(std::move(call));
}

void CoordinatorAsyncHandler::commit(std::function<void(const wire::CommitResponse&)> cob,
                                     ExnCob exn, const wire::CommitRequest& req) {
  HotCall<wire::CommitResponse> call;
  call.cob = std::move(cob);
  call.exn = std::move(exn);
  call.deadline_ms = MonotonicMs() + std::max<int64_t>(0, req.wait_timeout_ms);
  call.at_deadline = [this, gtid = req.gtid](wire::CommitResponse& out) {
    handler_->CommitAnswer(
        out, gtid,
        Status::Timeout("commit of " + gtid + ": still deciding after the wait; ask again"));
  };
  call.start = [this, req](Done done) { return handler_->CommitAsync(req, std::move(done)); };
  call.answer = [this, gtid = req.gtid](wire::CommitResponse& out, const Result<TxnRecord>& txn) {
    handler_->CommitAnswer(out, gtid, txn);
  };
  call.full = [this, req](wire::CommitResponse& out) { handler_->commit(out, req); };
  RunHot(std::move(call));
}

void CoordinatorAsyncHandler::submitSaga(std::function<void(const wire::SubmitSagaResponse&)> cob,
                                         ExnCob exn, const wire::SubmitSagaRequest& req) {
  // Named now (when the request does not name it), so that a wait that runs
  // out can answer the saga as it stands, as the synchronous path does.
  std::optional<SagaSpec> spec;
  try {
    spec = handler_->SagaSpecForAsync(req);
  } catch (...) {
    exn(DelayCurrentException());
    return;
  }
  if (!spec.has_value()) {
    OnPool<wire::SubmitSagaResponse>(
        std::move(cob), std::move(exn),
        [this, req](wire::SubmitSagaResponse& out) { handler_->submitSaga(out, req); });
    return;
  }
  wire::SubmitSagaRequest named = req;
  named.__set_gtid(spec->gtid);
  HotCall<wire::SubmitSagaResponse> call;
  call.cob = std::move(cob);
  call.exn = std::move(exn);
  if (req.wait_for_completion) {
    call.deadline_ms = MonotonicMs() + std::max<int64_t>(0, req.wait_timeout_ms);
    call.at_deadline = [this, named](wire::SubmitSagaResponse& out) {
      handler_->SubmitSagaAnswerFromStore(out, named, named.gtid);
    };
  } else {
    const int64_t timeout_ms = options_.begin_answer_timeout_ms;
    call.deadline_ms = MonotonicMs() + timeout_ms;
    call.at_deadline = [this, named, timeout_ms](wire::SubmitSagaResponse& out) {
      handler_->SubmitSagaAnswer(
          out, named,
          Status::Timeout("saga " + named.gtid + ": not logged within " +
                          std::to_string(timeout_ms) +
                          " ms; its outcome is unknown: resubmit it with this gtid"));
    };
  }
  call.start = [this, spec = std::move(spec).value()](Done done) {
    return handler_->SubmitSagaAsync(spec, std::move(done));
  };
  call.answer = [this, named](wire::SubmitSagaResponse& out, const Result<TxnRecord>& txn) {
    handler_->SubmitSagaAnswer(out, named, txn);
  };
  // A resubmission of the named saga: the service's rules for a known gtid.
  call.full = [this, named](wire::SubmitSagaResponse& out) { handler_->submitSaga(out, named); };
  RunHot(std::move(call));
}

// ---- everything else: the synchronous handler on the pool ---------------------------

void CoordinatorAsyncHandler::enlist(std::function<void()> cob, ExnCob exn,
                                     const wire::EnlistRequest& req) {
  const int64_t timeout_ms = options_.begin_answer_timeout_ms;
  HotCall<NoResponse> call;
  call.cob = [cob = std::move(cob)](const NoResponse&) { cob(); };
  call.exn = std::move(exn);
  call.deadline_ms = MonotonicMs() + timeout_ms;
  call.at_deadline = [this, gtid = req.gtid, timeout_ms](NoResponse&) {
    handler_->EnlistAnswer(gtid, Status::Timeout("enlist: not answered by the store within " +
                                                 std::to_string(timeout_ms) +
                                                 " ms; its outcome is unknown: enlist again"));
  };
  // The service answers OK or kConflict (then the full call re-reads and answers).
  call.start = [this, req](Done done) {
    return handler_->EnlistAsync(req, [done = std::move(done)](Status s) {
      if (s.ok()) {
        done(TxnRecord{});
      } else {
        done(std::move(s));
      }
    });
  };
  call.answer = [this, gtid = req.gtid](NoResponse&, const Result<TxnRecord>& r) {
    handler_->EnlistAnswer(gtid, r.status());
  };
  call.full = [this, req](NoResponse&) { handler_->enlist(req); };
  RunHot(std::move(call));
}

void CoordinatorAsyncHandler::rollback(std::function<void(const wire::CommitResponse&)> cob,
                                       ExnCob exn, const wire::Gtid& gtid) {
  OnPool<wire::CommitResponse>(
      std::move(cob), std::move(exn),
      [this, gtid](wire::CommitResponse& out) { handler_->rollback(out, gtid); });
}

void CoordinatorAsyncHandler::status(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
                                     const wire::Gtid& gtid) {
  OnPool<wire::TxnStatus>(std::move(cob), std::move(exn),
                          [this, gtid](wire::TxnStatus& out) { handler_->status(out, gtid); });
}

void CoordinatorAsyncHandler::queryOutcome(std::function<void(const wire::Outcome::type&)> cob,
                                           ExnCob exn, const wire::Gtid& gtid,
                                           const wire::BranchId& branch_id) {
  OnPool<wire::Outcome::type>(std::move(cob), std::move(exn),
                              [this, gtid, branch_id](wire::Outcome::type& out) {
                                out = handler_->queryOutcome(gtid, branch_id);
                              });
}

void CoordinatorAsyncHandler::health(std::function<void(const wire::HealthResponse&)> cob,
                                     ExnCob exn) {
  OnPool<wire::HealthResponse>(std::move(cob), std::move(exn),
                               [this](wire::HealthResponse& out) { handler_->health(out); });
}

void CoordinatorAsyncHandler::listTxns(std::function<void(const wire::ListTxnsResponse&)> cob,
                                       ExnCob exn, const wire::ListTxnsRequest& req) {
  OnPool<wire::ListTxnsResponse>(
      std::move(cob), std::move(exn),
      [this, req](wire::ListTxnsResponse& out) { handler_->listTxns(out, req); });
}

void CoordinatorAsyncHandler::retryNow(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
                                       const wire::AdminRequest& req) {
  OnPool<wire::TxnStatus>(std::move(cob), std::move(exn),
                          [this, req](wire::TxnStatus& out) { handler_->retryNow(out, req); });
}

void CoordinatorAsyncHandler::cancelSaga(std::function<void(const wire::TxnStatus&)> cob,
                                         ExnCob exn, const wire::AdminRequest& req) {
  OnPool<wire::TxnStatus>(std::move(cob), std::move(exn),
                          [this, req](wire::TxnStatus& out) { handler_->cancelSaga(out, req); });
}

void CoordinatorAsyncHandler::resolveBranch(std::function<void(const wire::TxnStatus&)> cob,
                                            ExnCob exn, const wire::ResolveRequest& req) {
  OnPool<wire::TxnStatus>(std::move(cob), std::move(exn),
                          [this, req](wire::TxnStatus& out) { handler_->resolveBranch(out, req); });
}

void CoordinatorAsyncHandler::rebindEndpoint(std::function<void(const wire::RebindResponse&)> cob,
                                             ExnCob exn, const wire::RebindRequest& req) {
  OnPool<wire::RebindResponse>(
      std::move(cob), std::move(exn),
      [this, req](wire::RebindResponse& out) { handler_->rebindEndpoint(out, req); });
}

}  // namespace txc
