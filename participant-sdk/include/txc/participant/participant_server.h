// ParticipantServer: serves the coordinator's calls (idl/participant.thrift)
// for one Participant, and resolves the participant's in-doubt branches.
//
//   auto hooks = std::make_shared<MyService>();
//   txc::participant::ParticipantServerOptions o;
//   o.port = 7001;
//   o.coordinators = {"10.0.0.1:7000", "10.0.0.2:7000"};
//   o.barrier = std::make_shared<txc::participant::PgBarrierStore>(conninfo);  // optional
//   txc::participant::ParticipantServer server(hooks, o);
//   txc::Status s = server.Start();        // listening; recovery runs behind
//   ... enlist branches with endpoint server.endpoint() ...
//   server.Stop();
//
// What the coordinator gets when a hook throws (any std::exception):
//   prepare          -> VOTE_ABORT
//   commitOnePhase   -> wire Unavailable (the coordinator retries)
//   commit, abort    -> wire Unavailable (the coordinator retries)
//   action, compensate -> RETRY_LATER with the exception text
// With options.barrier set, Action and Compensate run under the barrier
// (barrier.h): duplicates answer the first outcome, a compensation without its
// action is a recorded no-op, an action after its compensation is refused
// (FAILURE). A barrier error (database down) answers RETRY_LATER.
//
// Recovery: Start() launches a background thread that calls Recover() and,
// for every branch it returns, asks the coordinator (queryOutcome, with
// failover between options.coordinators) and then calls Commit() or Abort().
// PENDING, an unreachable coordinator or a failing Commit()/Abort() are asked
// again later with exponential backoff and jitter; a prepared branch is never
// decided locally. Recover() is called again every recovery_rescan_interval_ms
// to catch branches prepared after an abort overtook their prepare.
//
// Authorization: with options.allowed_coordinator_identities set, only callers whose
// verified client certificate names match one of those patterns reach the
// hooks; others get the wire PermissionDenied (the coordinator retries such a
// call like Unavailable, so fixing the list or the certificate lets the
// transaction finish).
//
// Thread-safety: Start/Stop from one owning thread; the accessors from any.
// Hooks are called concurrently (see participant.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "common/thrift_server.h"
#include "txc/participant/barrier.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant.h"

namespace txc {
namespace wire {
class ParticipantIf;
}  // namespace wire
namespace participant {

struct ParticipantServerOptions {
  // Address to listen on. The default serves this machine only; a
  // non-loopback address without TLS is logged as a warning at Start().
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port (see port())
  // Host put in endpoint(); empty: `host`, or 127.0.0.1 when host is 0.0.0.0.
  std::string advertise_host;
  // Coordinator identities allowed to call this participant: patterns ('*'
  // matches any run of characters, ASCII case ignored) matched against the
  // caller's verified client-certificate CN and SANs. Empty (the default):
  // anyone who can connect. Non-empty: every other caller, and every caller
  // without a verified certificate (plaintext), gets PermissionDenied and no
  // hook runs. Needs mutual TLS to be useful.
  std::vector<std::string> allowed_coordinator_identities;
  // Coordinator replicas "host:port", for recovery. Empty: recovery uses the
  // coordinators named in each incoming call's context, and does nothing until
  // one arrived.
  std::vector<std::string> coordinators;
  CoordinatorClientOptions coordinator_client;  // endpoints are filled from `coordinators`
  // When set, Action and Compensate hooks run under this barrier.
  std::shared_ptr<BarrierStore> barrier;
  bool run_recovery = true;
  BackoffPolicy recovery_backoff{100, 10000, 2.0};
  int64_t recovery_rescan_interval_ms = 60000;  // 0: Recover() only on start
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // TLS on this participant's port when tls.enabled() (common/tls.h): its
  // certificate and key, the CA bundle verifying callers, and
  // require_client_cert (mutual TLS: only callers with a certificate from that
  // CA, e.g. the coordinator, get through). tls.crl_file: a PEM CRL of that CA,
  // checked on every handshake (a revoked caller certificate is refused) and
  // re-read by ReloadTls(). The recovery client's TLS is coordinator_client.tls
  // (its own crl_file checks the coordinators' certificates).
  TlsOptions tls{};
  // Connections one peer IP may hold (more are closed at accept). 0: no limit.
  int64_t max_connections_per_peer = ThriftServerOptions{}.max_connections_per_peer;
};

// Counters of the recovery loop (for tests and metrics).
struct RecoveryStats {
  int64_t scans = 0;       // successful Recover() calls
  int64_t queries = 0;     // queryOutcome answers received
  int64_t committed = 0;   // branches committed by recovery
  int64_t aborted = 0;     // branches aborted by recovery
  int64_t retries = 0;     // PENDING / unreachable / hook failure: asked again later
  int64_t unresolved = 0;  // branches currently waiting for an answer
};

class ParticipantServer {
 public:
  ParticipantServer(std::shared_ptr<Participant> participant, ParticipantServerOptions options);
  ~ParticipantServer();  // Stop()s
  ParticipantServer(const ParticipantServer&) = delete;
  ParticipantServer& operator=(const ParticipantServer&) = delete;

  // Listens, then starts recovery in the background. kUnavailable when the
  // port cannot be bound; kInvalidArgument for a bad coordinator endpoint.
  Status Start();
  // Stops serving and the recovery thread (waits for both). Idempotent.
  void Stop();

  int port() const;
  // "advertise_host:port", what to enlist branches with. Valid after Start().
  std::string endpoint() const;

  RecoveryStats recovery_stats() const;
  // Waits until at least one scan ran and no recovered branch is unresolved.
  // False on timeout.
  bool WaitForRecovery(int64_t timeout_ms) const;

  // The coordinator client recovery uses (nullptr before the first coordinator
  // endpoint is known). Services may use it to enlist.
  std::shared_ptr<CoordinatorClient> coordinator_client() const;

  // Re-reads the TLS files of the port and of the recovery client (call it on
  // SIGHUP): new connections use them, open ones keep theirs. Returns the
  // first failure (that side keeps its current files); OK without TLS.
  Status ReloadTls();

  // Called by the handler: remembers coordinator endpoints seen in contexts.
  void NoteCoordinators(const std::vector<std::string>& endpoints);

  // A handler like the one Start() serves, to call in-process as a given peer
  // (ScopedPeerIdentity).
  std::shared_ptr<wire::ParticipantIf> HandlerForTests();

 private:
  struct Pending {
    PreparedBranch branch;
    int attempts = 0;
    int64_t next_attempt_ms = 0;  // MonotonicMs()
  };
  void RecoveryLoop();
  // One pass over due branches; returns ms until the next due one (or rescan).
  int64_t RecoverDue();
  bool ScanLocked(std::unique_lock<std::mutex>& lock);

  std::shared_ptr<Participant> participant_;
  ParticipantServerOptions options_;
  std::unique_ptr<ThriftServer> server_;

  mutable std::mutex mu_;  // guards everything below
  mutable std::condition_variable changed_;
  bool stopping_ = false;
  std::shared_ptr<CoordinatorClient> client_;
  std::atomic<bool> has_client_{false};     // client_ != nullptr (read without mu_)
  std::map<std::string, Pending> pending_;  // key gtid + '\0' + branch_id
  RecoveryStats stats_;
  int scan_attempts_ = 0;
  int64_t next_scan_ms_ = 0;
  std::thread recovery_thread_;
};

}  // namespace participant
}  // namespace txc
