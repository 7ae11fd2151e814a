// CoordinatorHandler: the Thrift face of a TxnService. It only validates,
// converts wire <-> internal (coordinator/rpc/convert.h), calls the service and
// converts the answer back; a non-OK Status becomes the typed wire exception
// documented in txn_service.h.
//
// No exception other than the declared wire exceptions leaves a method: an
// unexpected C++ exception is logged with the gtid and answered as Unavailable,
// so a bug never kills a connection silently.
//
// Authorization is the first thing every method does (Serve()): with an
// AuthPolicy set, a caller (CurrentPeerIdentity()) whose roles do not include
// one of the method's roles (MethodRoles) gets PermissionDenied before
// anything is read or written; the refusal is logged (WARNING, rate-limited,
// with the identity and the method) and counted in
// txc_refused_calls_total{method, reason="permission_denied"}. Without a
// policy every caller may call every method.
//
//   method                                          roles allowed
//   beginTxn, enlist, commit, rollback, submitSaga  client, admin
//   status                                          client, reader, admin
//   queryOutcome                                    participant, admin
//   listTxns                                        reader, admin
//   health                                          any role
//   retryNow, cancelSaga, resolveBranch,
//   rebindEndpoint                                  admin
//
// The participant allow-list (SetParticipantAllowList) is checked before a
// request is handed to the service: enlist, beginTxn with branches,
// submitSaga and rebindEndpoint (to_endpoint) naming an endpoint outside it
// get InvalidArgument naming the field and the endpoint, and nothing is
// stored (reason="endpoint_not_allowed" in the same counter).
//
// Thread-safety: every method may be called concurrently (one thread per
// connection); the service must outlive the handler.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/auth_policy.h"
#include "common/endpoint_allow_list.h"
#include "coordinator/service/txn_service.h"
#include "gen-cpp/Coordinator.h"

namespace txc {

class CoordinatorHandler : public wire::CoordinatorIf {
 public:
  explicit CoordinatorHandler(TxnService* service, std::string version = kVersion);

  void beginTxn(wire::BeginResponse& out, const wire::BeginRequest& req) override;
  void enlist(const wire::EnlistRequest& req) override;
  void commit(wire::CommitResponse& out, const wire::CommitRequest& req) override;
  void rollback(wire::CommitResponse& out, const std::string& gtid) override;
  void status(wire::TxnStatus& out, const std::string& gtid) override;
  void submitSaga(wire::SubmitSagaResponse& out, const wire::SubmitSagaRequest& req) override;
  wire::Outcome::type queryOutcome(const std::string& gtid, const std::string& branch_id) override;
  void health(wire::HealthResponse& out) override;

  // Admin API. The caller recorded in audit records is the connection's peer.
  void listTxns(wire::ListTxnsResponse& out, const wire::ListTxnsRequest& req) override;
  void retryNow(wire::TxnStatus& out, const wire::AdminRequest& req) override;
  void cancelSaga(wire::TxnStatus& out, const wire::AdminRequest& req) override;
  void resolveBranch(wire::TxnStatus& out, const wire::ResolveRequest& req) override;
  void rebindEndpoint(wire::RebindResponse& out, const wire::RebindRequest& req) override;

  static const char kVersion[];

  // The hot calls without a waiting thread, for the event-loop front end
  // (CoordinatorAsyncHandler). Each authorizes and checks the request now, on
  // the calling thread, throwing the wire exceptions beginTxn()/commit()
  // would; then hands it to the service, which calls `done` once with its
  // answer, on any thread (possibly before the call returns). False when the
  // service does not take it that way (TxnService::BeginAsync/CommitAsync; a
  // commit that waits for completion): nothing was done, serve it with
  // beginTxn()/commit().
  bool BeginTxnAsync(const wire::BeginRequest& req, std::function<void(Result<TxnRecord>)> done);
  bool CommitAsync(const wire::CommitRequest& req, std::function<void(Result<TxnRecord>)> done);
  // enlist the same way (TxnService::EnlistAsync): `done` gets OK, or
  // kConflict when enlist() must serve the call after all.
  bool EnlistAsync(const wire::EnlistRequest& req, std::function<void(Status)> done);
  // The wire answer to enlist's outcome (the wire exception for an error).
  void EnlistAnswer(const std::string& gtid, const Status& enlisted);
  // submitSaga in two parts, so that the caller knows the gtid (the
  // coordinator names it now when the request does not): the authorized,
  // checked definition (nullopt: no gtid can be made now, serve it with
  // submitSaga()), then the service's asynchronous submission.
  std::optional<SagaSpec> SagaSpecForAsync(const wire::SubmitSagaRequest& req);
  bool SubmitSagaAsync(const SagaSpec& spec, std::function<void(Result<TxnRecord>)> done);
  // The wire answer to the service's answer given to `done` above (the wire
  // exception thrown for an error). An error may read the store (the current
  // state for IllegalTransition): call these for errors off the event loop.
  void BeginTxnAnswer(wire::BeginResponse& out, const Result<TxnRecord>& txn);
  void CommitAnswer(wire::CommitResponse& out, const std::string& gtid,
                    const Result<TxnRecord>& txn);
  void SubmitSagaAnswer(wire::SubmitSagaResponse& out, const wire::SubmitSagaRequest& req,
                        const Result<TxnRecord>& txn);
  // The answer to a submitSaga whose wait ran out: the saga `gtid` as it
  // stands in the store (Unavailable "resubmit it" when not logged yet).
  void SubmitSagaAnswerFromStore(wire::SubmitSagaResponse& out, const wire::SubmitSagaRequest& req,
                                 const std::string& gtid);

  // Replaces the authorization policy; nullptr: every caller may call every
  // method. Any thread, any time (the coordinator reloads it on SIGHUP).
  void SetAuthPolicy(std::shared_ptr<const AuthPolicy> policy);
  // The participant endpoints requests may name (empty: any). Call before
  // serving.
  void SetParticipantAllowList(EndpointAllowList allow);
  // The roles that may call `method` (a Coordinator method name, see the
  // table above); roles::kNone for a name that is not a method.
  static RoleSet MethodRoles(const std::string& method);

 private:
  // beginTxn's checks and conversion (throws the wire exceptions).
  BeginOptions CheckBegin(const wire::BeginRequest& req);
  // commit's checks (throws the wire exceptions).
  CommitWait CheckCommit(const wire::CommitRequest& req);
  // enlist's checks and conversion (throws the wire exceptions).
  BranchRecord CheckEnlist(const wire::EnlistRequest& req);
  // submitSaga's checks and conversion (throws the wire exceptions).
  SagaSpec CheckSaga(const wire::SubmitSagaRequest& req, const std::string& gtid);
  // Authorizes the call (PermissionDenied, see above), then runs `body`
  // guarded: the declared wire exceptions pass, anything else is logged and
  // answered as Unavailable.
  template <typename F>
  auto Serve(const char* method, const std::string& gtid, F&& body) -> decltype(body());
  void Authorize(const char* method);
  // InvalidArgument (thrown) when `endpoint` is not on the allow-list.
  void CheckEndpoint(const char* method, const std::string& field, const std::string& endpoint);

  // Which optional exceptions a method declares (InvalidArgument and
  // Unavailable are declared by all but health).
  enum Declared : unsigned {
    kNone = 0,
    kNotFound = 1,
    kIllegal = 2,
    kNotOwner = 4,
    kAll = 7,
    kAdmin = kNotFound | kIllegal,
  };
  // ThrowIfError with the details the typed exceptions carry (the current
  // state for IllegalTransition, the owner's endpoint for NotOwner), looked up
  // only on those error paths. A code whose exception the method does not
  // declare is answered as Unavailable (a client could not decode it).
  void Throw(const Status& status, const std::string& gtid, unsigned declared);

  TxnService* const service_;
  const std::string version_;
  // Read with std::atomic_load, replaced with std::atomic_store.
  std::shared_ptr<const AuthPolicy> policy_;
  EndpointAllowList allow_;  // set before serving, then read-only
};

}  // namespace txc
