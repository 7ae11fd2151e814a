// CoordinatorHandler: the Thrift face of a TxnService. It only validates,
// converts wire <-> internal (coordinator/rpc/convert.h), calls the service and
// converts the answer back; a non-OK Status becomes the typed wire exception
// documented in txn_service.h.
//
// No exception other than the declared wire exceptions leaves a method: an
// unexpected C++ exception is logged with the gtid and answered as Unavailable,
// so a bug never kills a connection silently.
//
// Thread-safety: every method may be called concurrently (one thread per
// connection); the service must outlive the handler.
#pragma once

#include <string>

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

 private:
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
};

}  // namespace txc
