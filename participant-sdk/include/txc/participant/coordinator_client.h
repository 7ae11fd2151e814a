// CoordinatorClient: calls the txc coordinator, failing over between replicas.
//
// The client speaks the wire types of idl/coordinator.thrift directly
// (txc::wire::BeginRequest, CommitResponse, TxnStatus, ... from
// "gen-cpp/Coordinator.h"): they are the documented, versioned contract, and
// a thin copy of them would add nothing but conversions. Errors come back as a
// Status instead of Thrift exceptions:
//
//   wire exception        StatusCode           what the client did first
//   NotFound              kNotFound            nothing (final)
//   IllegalTransition     kIllegalTransition   nothing (final)
//   InvalidArgument       kInvalidArgument     nothing (final)
//   NotOwner              kNotOwner            retried at the owner endpoint it names
//                                              (then at the other replicas)
//   Unavailable           kUnavailable         retried with backoff + jitter
//   connection refused    kUnavailable         failed over to the next replica
//   call timed out        kTimeout             see "retry-safe" below
//
// Timeouts: every attempt has connect_timeout_ms and rpc_timeout_ms; a Commit
// with WAIT_COMPLETION (SubmitSaga with wait_for_completion) waits up to the
// request's wait_timeout_ms + 2 s for its reply instead.
//
// Retry-safe calls (Enlist, Commit, Rollback, GetStatus, QueryOutcome, Health,
// Begin -- which always carries an idempotency key, generated when the request
// has none -- and SubmitSaga with a gtid) are retried on any transport error or
// timeout, on the next replica, up to `max_attempts` attempts and
// `call_deadline_ms` in total, with exponential backoff and jitter once every
// replica was tried. A call that is not retry-safe (SubmitSaga without a gtid)
// is retried only when the request never left this process (connect failure);
// after a send its transport error is returned, since the coordinator may
// have acted on it.
//
// Thread-safety: every method may be called concurrently from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "common/thrift_util.h"
#include "gen-cpp/Coordinator.h"
#include "txc/participant/participant.h"

namespace txc {
namespace participant {

struct CoordinatorClientOptions {
  // Every coordinator replica, "host:port". Tried in order, starting from the
  // last one that answered.
  std::vector<std::string> endpoints;
  int connect_timeout_ms = 1000;
  int rpc_timeout_ms = 5000;             // send + receive timeout of one attempt
  int max_attempts = 6;                  // attempts per call, over all replicas
  int64_t call_deadline_ms = 30000;      // no new attempt starts after this (per call)
  BackoffPolicy backoff{50, 2000, 2.0};  // between rounds over all replicas
  bool auto_idempotency_key = true;      // Begin without a key gets a random one (retry-safe)
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // TLS to the coordinators when tls.enabled(): tls.ca_file verifies their
  // certificates (which must name the host of the endpoint dialled, or
  // tls.server_name); tls.cert_file/key_file is this service's identity for
  // coordinators that require client certificates (mutual TLS);
  // tls.crl_file, when set, refuses a revoked coordinator certificate.
  TlsOptions tls{};
};

class CoordinatorClient {
 public:
  // kInvalidArgument when `endpoints` is empty or one is not "host:port", or
  // when the TLS files cannot be loaded.
  static Result<std::unique_ptr<CoordinatorClient>> Create(CoordinatorClientOptions options);

  // Starts a 2PC transaction. The response carries the gtid and the context to
  // propagate (context.h). Errors: kInvalidArgument, kUnavailable, kTimeout.
  Result<wire::BeginResponse> Begin(wire::BeginRequest request);
  // Registers a branch (before it does its work). Same branch again: OK.
  // Errors: kNotFound, kIllegalTransition (the transaction is deciding or
  // decided), kInvalidArgument, kUnavailable, kTimeout.
  Status Enlist(const wire::EnlistRequest& request);
  // Commits; idempotent. Errors as Enlist.
  Result<wire::CommitResponse> Commit(const wire::CommitRequest& request);
  // Aborts an undecided transaction; idempotent. kIllegalTransition once COMMIT
  // was decided. Errors as Enlist.
  Result<wire::CommitResponse> Rollback(const std::string& gtid);
  // The transaction with its branches/steps. kNotFound, kInvalidArgument, kUnavailable.
  Result<wire::TxnStatus> GetStatus(const std::string& gtid);
  // Logs and starts a saga. Retry-safe only with request.gtid set.
  // Errors: kInvalidArgument, kIllegalTransition, kUnavailable, kTimeout.
  Result<wire::SubmitSagaResponse> SubmitSaga(const wire::SubmitSagaRequest& request);
  // For participant recovery: kCommit, kAbort (also for unknown ids) or kPending.
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch_id);
  // Health of whichever replica answers first.
  Result<wire::HealthResponse> Health();
  // Health of one given replica (no failover, one attempt).
  Result<wire::HealthResponse> HealthOf(const std::string& endpoint);

  const std::vector<std::string>& endpoints() const { return options_.endpoints; }

  // Re-reads the TLS files (new connections use them; pooled ones keep
  // theirs). kInvalidArgument without TLS or when a file cannot be loaded
  // (the current ones stay).
  Status ReloadTls();

 private:
  CoordinatorClient(CoordinatorClientOptions options, std::shared_ptr<TlsContext> tls);

  // Runs `fn` against a replica with failover/retry as described above.
  // `what` and `gtid` only label log lines. call_timeout_ms > rpc_timeout_ms
  // raises the receive timeout for this call only.
  Status Invoke(const char* what, const std::string& gtid, bool retry_safe,
                const std::function<void(wire::CoordinatorClient&)>& fn,
                int64_t call_timeout_ms = 0);

  const CoordinatorClientOptions options_;
  const std::shared_ptr<TlsContext> tls_;  // null: plaintext
  ClientPool<wire::CoordinatorClient> pool_;
  // Index into endpoints of the replica to try first: the last that answered.
  std::atomic<size_t> preferred_{0};
};

}  // namespace participant
}  // namespace txc
