// CoordinatorServer: one coordinator replica, wired together from an options
// struct so that tests can run it in-process and main.cc can run it as the
// `coordinator` executable.
//
//   CoordinatorServerOptions o;
//   o.port = 0;                          // any free port
//   o.data_dir = dir;                    // SQLite file <data_dir>/coordinator.db
//   CoordinatorServer server(o);
//   TXC_RETURN_IF_ERROR(server.Start());
//   ... server.port(), server.service() ...
//   server.Stop();
//
// Start(): locks the data directory when the store is SQLite (a second process
// on the same file refuses to start), opens the store and migrates it, binds
// the Thrift port (so a second copy on a busy port fails before it touches
// the lease), then acquires this node's lease: a new epoch fences off
// everything an earlier incarnation of this node id might still try to write.
// A lease that another process still renews is NOT taken (kAlreadyExists: the
// node is already running) unless options.lease_takeover is kAlways (the
// operator replaces the node on purpose, --replace_node).
//
// Incarnations: everything that writes under one lease epoch (the group
// commit, the CoordinatorService, the 2PC and Saga drivers, the sweeper) is
// one Incarnation. The Thrift server and its handler outlive them and reach
// the current one through a ReplicaService.
//
// Lease loss: when no renewal succeeded for a whole TTL (store down, process
// paused) the incarnation is retired at once: its group commit is fenced (no
// store transaction starts after that; the writer also refuses any group
// while the lease is not known to be live, so a process resumed after SIGSTOP
// writes nothing before the lease thread notices), it stops serving, its
// in-flight work is dropped (the store keeps it; other replicas or the next
// incarnation resume it). Then the server acquires the lease again with a new
// epoch (retrying with backoff while the store is down) and serves again.
// When the lease was taken by another process of the same node id (a renewal
// is refused: the node was replaced on purpose), or options.exit_on_lease_loss
// is set, it does not come back: lease_lost() turns true and the executable
// exits 3. options.on_lease_lost runs on every loss.
//
// HTTP (options.http_port > 0, or -1 for any free port): /metrics (the
// Prometheus text format), /healthz (200 while the process runs) and /readyz
// (200 while Ready(): the store answers and this replica serves under a live
// lease; 503 naming the reason otherwise). Served on its own thread; it only
// reads what others computed, so it never waits for the store and never
// delays a Thrift call. A port that cannot be bound is logged and the
// coordinator serves Thrift without it (observability must not take the
// transaction path down; the scrape target shows as down).
//
// With TLS (options.tls.enabled()) the HTTP port serves HTTPS with the same
// certificate, key and CA bundle as the Thrift port and the same client
// certificate rule (mutual TLS unless tls.require_client_cert is off); with
// an auth policy, AuthorizeHttpPath() decides per path. ReloadTls() re-reads
// its files with the Thrift port's. options.http_probe_port adds a plaintext
// listener with /healthz and /readyz only, for probes that cannot present a
// client certificate (kubelet); docs/security.md.
//
// Stop(): stops accepting and closes connections (in-flight calls finish), stops
// the drivers, stops the lease thread, drains the group commit. Idempotent.
//
// Thread-safety: Start/Stop/the destructor from one owning thread; the
// accessors from any thread after Start() returned OK. The pointers the part
// accessors return stay valid until the next lease loss or Stop().
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/auth_policy.h"
#include "common/backoff.h"
#include "common/http_server.h"
#include "common/peer_identity.h"
#include "common/rpc_server.h"
#include "common/status.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "coordinator/driver/saga_driver.h"
#include "coordinator/driver/two_phase_driver.h"
#include "coordinator/recovery/sweeper.h"
#include "coordinator/rpc/coordinator_async_handler.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "coordinator/server/replica_service.h"
#include "coordinator/service/coordinator_service.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/store_location.h"
#include "coordinator/store/txn_store.h"

namespace txc {

constexpr int kDefaultCoordinatorPort = 7400;
constexpr int kDefaultCoordinatorHttpPort = 7401;

struct CoordinatorServerOptions {
  // Address to listen on. Loopback by default: without TLS, a non-loopback
  // address is refused unless `insecure` is set (CheckListenSecurity).
  std::string host = "127.0.0.1";
  int port = kDefaultCoordinatorPort;  // 0: a free port (see CoordinatorServer::port())
  // "host:port" clients and participants reach this replica at; stored in the
  // lease table. Empty: host:port, with the machine's hostname when host is a
  // wildcard address.
  std::string advertise_endpoint;
  std::string data_dir = "./txc-data";  // created if missing
  // Empty: the SQLite file <data_dir>/coordinator.db. "postgresql://..." or a
  // libpq key=value string (multi-host allowed): PostgreSQL. See OpenStore().
  std::string store;
  std::string node_id;                  // empty: <hostname>:<port>
  int64_t lease_ttl_ms = 10000;         // a lease not renewed for this long is lost
  int64_t lease_renew_interval_ms = 0;  // 0: lease_ttl_ms / 3
  // How far another replica's wall clock may run ahead of this one's. A lease's
  // stored expiry is this replica's clock at renewal + TTL, and another replica
  // takes its transactions over once its own clock passes that. So this
  // replica stops acting on its lease (writes, a saga's unlogged forward
  // progress, readiness) this much before its TTL runs out by its own
  // monotonic clock. -1: lease_ttl_ms / 10. Must leave room for a renewal:
  // below lease_ttl_ms - the renew interval.
  int64_t max_clock_skew_ms = -1;
  // kIfExpired: refuse to start while another process holds this node id's
  // lease; kAlways: take it (that process stops at its next renewal).
  LeaseTakeover lease_takeover = LeaseTakeover::kIfExpired;
  // After a lost lease: false re-acquires it and serves again; true stops for
  // good (lease_lost(); the executable exits 3, for an outside supervisor).
  bool exit_on_lease_loss = false;
  // Retries of the lease acquisition after a loss (store down, lease not yet expired).
  BackoffPolicy lease_reacquire_backoff{100, 2000, 2.0};
  // PostgreSQL store: deadline of each store call, and statement_timeout,
  // lock_timeout and idle_in_transaction_session_timeout of its sessions.
  // 0: lease_ttl_ms / 2 (a paused session frees its row locks before its
  // lease expires). See StoreOpenOptions.
  int64_t store_call_timeout_ms = 0;
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // How the Thrift port is served. kEventLoop (the default): AsyncThriftServer,
  // one I/O thread; beginTxn and commit(WAIT_DECISION) of a transaction begun
  // here are answered by the thread that learns the answer, every other call
  // runs on a growing pool (CoordinatorAsyncHandler). kThreadPerConnection:
  // ThriftServer, a thread per connection running every call synchronously.
  enum class RpcModel { kEventLoop, kThreadPerConnection };
  RpcModel rpc_model = RpcModel::kEventLoop;
  // Connections one peer IP may hold on the Thrift port (more are closed at
  // accept, with a WARNING). 0: no limit.
  int64_t max_connections_per_peer = ThriftServerOptions{}.max_connections_per_peer;
  // TLS on the Thrift port when tls.enabled() (common/tls.h): certificate,
  // key, CA bundle, require_client_cert (mutual TLS; the client certificate's
  // CN/SANs become the caller's PeerIdentity).
  TlsOptions tls{};
  // TLS for the calls to participants when enabled(): the CA bundle that
  // verifies participants and the certificate this coordinator presents to
  // them (overrides two_phase.participant_tls and saga.participant_tls).
  TlsOptions participant_tls{};
  GroupCommitOptions group_commit;
  TwoPhaseDriverOptions two_phase;  // 2PC driver: timeouts, participant I/O, retries
  // Recovery sweeper: interval, batch limits, retention of finished
  // transactions (finished_retention_ms, retention_sweep_interval_ms).
  SweeperOptions sweeper;
  SagaDriverOptions saga;  // Saga driver: call timeouts, parking, worker threads
  // HTTP listener for /metrics, /healthz and /readyz. 0: none; -1: any free
  // port (tests; see http_port()). http_host empty: the same address as host.
  int http_port = 0;
  std::string http_host;
  // A plaintext listener on http_host serving only /healthz and /readyz
  // (a terse readyz body: no store error text), for probes that cannot
  // present a client certificate while the HTTP port is HTTPS. 0: none; -1:
  // any free port (tests; see http_probe_port()).
  int http_probe_port = 0;
  // How often the store-derived gauges (unfinished transactions by state,
  // PARKED, oldest unfinished age) are read from the store; 0: never.
  int64_t metrics_store_refresh_ms = 5000;
  // Security (docs/security.md). Binding a non-loopback host without TLS is
  // refused at Start() unless this is set (then a warning is logged).
  bool insecure = false;
  // Policy file mapping certificate identities to roles (AuthPolicy). Empty:
  // no authorization, every caller may call every method. Read at Start()
  // (a bad file: kInvalidArgument naming file:line) and by ReloadAuthPolicy().
  std::string auth_policy_file;
  // Participant endpoint patterns (EndpointAllowList) that enlist, beginTxn,
  // submitSaga and rebindEndpoint may name. Empty: any endpoint.
  std::vector<std::string> participant_allow;
  // Called from the lease thread on every lease loss, after the incarnation
  // stopped serving and before the lease is acquired again. May be empty.
  std::function<void(const Status&)> on_lease_lost;
};

// Whether the Thrift port is served over TLS with these options (tls.enabled()).
bool TransportSecurityConfigured(const CoordinatorServerOptions& options);

// Who may GET a path of the HTTP port under `policy` (with TLS; without a
// policy every caller that passed the TLS handshake may): /metrics needs the
// reader or admin role, /healthz and /readyz any role. kPermissionDenied
// naming the path, the roles needed and the caller otherwise.
Status AuthorizeHttpPath(const AuthPolicy& policy, const std::string& path,
                         const PeerIdentity& peer);

// OK when options.host may be bound: a loopback address, or TLS configured, or
// options.insecure (then a warning is logged). kInvalidArgument otherwise,
// saying how to fix it.
Status CheckListenSecurity(const CoordinatorServerOptions& options);

// The lease timing options resolved (0 / -1 defaults applied) and checked.
struct LeaseTiming {
  int64_t ttl_ms = 0;
  int64_t renew_interval_ms = 0;
  int64_t margin_ms = 0;  // max_clock_skew_ms
};
// kInvalidArgument naming the option when the TTL is below 100 ms, the renew
// interval not below the TTL, or the skew margin negative (other than -1) or
// leaving no room for a renewal (margin + interval >= TTL).
Result<LeaseTiming> ResolveLeaseTiming(const CoordinatorServerOptions& options);

// Whether a replica may still act on its lease at `now_ms` (monotonic): its
// lease is certainly its own until `valid_until_ms` by its own clock, and a
// replica whose clock is up to `margin_ms` ahead may take over that much
// earlier. False once the lease was given up (valid_until_ms 0).
inline bool LeaseKnownLive(int64_t valid_until_ms, int64_t now_ms, int64_t margin_ms) {
  return now_ms + margin_ms < valid_until_ms;
}

class CoordinatorServer {
 public:
  explicit CoordinatorServer(CoordinatorServerOptions options);
  ~CoordinatorServer();  // Stop()s
  CoordinatorServer(const CoordinatorServer&) = delete;
  CoordinatorServer& operator=(const CoordinatorServer&) = delete;

  // kInvalidArgument for bad options; kUnavailable when the store or the port
  // cannot be opened or the SQLite data directory is locked by another
  // process; kAlreadyExists when the node id's lease is held by a live
  // process; or another store error. On error nothing keeps running.
  Status Start();
  void Stop();

  // Reads options.auth_policy_file again and, when it parses, serves with the
  // new policy from the next call on; a bad file keeps the old policy
  // (kInvalidArgument naming file:line, also logged). OK and nothing done
  // without a policy file. Any thread after Start().
  Status ReloadAuthPolicy();

  // Waits until the lease is lost for good (returns true and sets *reason) or
  // timeout_ms passed / Stop() was called (returns false).
  bool WaitForLeaseLoss(int64_t timeout_ms, Status* reason);
  // True once the lease was lost for good (see the class comment).
  bool lease_lost() const { return lease_lost_.load(std::memory_order_acquire); }
  // How many times the lease was lost (each loss retires one incarnation).
  int64_t lease_losses() const { return lease_losses_.load(std::memory_order_acquire); }

  int port() const { return port_; }
  // Re-reads the TLS files of the Thrift port and of the participant calls
  // (SIGHUP in the executable): new connections use them, open ones keep
  // theirs. Returns the first failure (the files that failed stay as they
  // were); OK when TLS is off.
  Status ReloadTls();
  // The HTTP port serving /metrics, 0 when there is none.
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  // The plaintext probe port (options.http_probe_port), 0 when there is none.
  int http_probe_port() const { return probe_http_ != nullptr ? probe_http_->port() : 0; }
  // OK when this replica is ready for traffic: started, holding a lease it
  // knows to be live (not re-acquiring it after a loss) and the store
  // answering (TxnStore::HealthCheck, no I/O). Otherwise kUnavailable naming
  // why. Any thread.
  Status Ready();
  const std::string& endpoint() const { return endpoint_; }
  const CoordinatorServerOptions& options() const { return options_; }
  // "sqlite:<path>" or "postgresql" (no credentials), for logs.
  std::string StoreDescription() const;

  // The parts, for the drivers and for tests. Valid between Start() and Stop();
  // the per-incarnation ones (all but store()) until the next lease loss, and
  // nullptr while the server re-acquires its lease.
  TxnStore* store() { return store_.get(); }
  GroupCommitter* log();
  NodeInfo node();  // the current incarnation's identity (epoch 0 while there is none)
  CoordinatorService* service();
  TwoPhaseDriver* two_phase_driver();
  Sweeper* sweeper();
  SagaDriver* saga_driver();
  // What the Thrift handler serves: forwards to the current incarnation.
  TxnService* replica_service() { return replica_.get(); }

 private:
  struct Incarnation;

  // Builds and starts everything that writes under `node`'s epoch.
  std::shared_ptr<Incarnation> NewIncarnation(const NodeInfo& node, int64_t lease_valid_until);
  std::shared_ptr<Incarnation> Current();
  static std::shared_ptr<CoordinatorService> ServiceOf(const std::shared_ptr<Incarnation>& inc);
  // Renews inc's lease until it is lost (returns why) or Stop() (returns OK).
  Status RenewUntilLost(Incarnation& inc);
  // Fences, unplugs and stops the current incarnation after a lease loss.
  void Retire(const Status& reason);
  // Acquires the lease again after a loss; nullptr when stopping or when
  // another process now holds this node id (*for_good set).
  std::shared_ptr<Incarnation> Reacquire(int64_t lost_epoch, Status* for_good);
  void LeaseLoop();
  bool Stopping();
  // Reads the store-derived gauges every options_.metrics_store_refresh_ms.
  void StoreGaugeLoop();
  void RefreshStoreGauges();
  void StartHttp();

  CoordinatorServerOptions options_;
  int64_t lease_margin_ms_ = 0;  // max_clock_skew_ms resolved (Start)
  std::string store_location_;
  StoreLocation store_where_;  // store_location_ parsed
  int port_ = 0;
  std::string node_id_;
  std::string endpoint_;
  bool started_ = false;
  int data_dir_lock_fd_ = -1;  // flock'ed SQLite lock file, -1: none

  std::unique_ptr<TxnStore> store_;
  std::shared_ptr<ReplicaService> replica_;
  std::shared_ptr<CoordinatorHandler> handler_;
  std::shared_ptr<CoordinatorAsyncHandler> async_handler_;  // kEventLoop only
  std::unique_ptr<RpcServer> thrift_;

  std::mutex incarnation_mu_;             // guards current_ and retiring_
  std::shared_ptr<Incarnation> current_;  // nullptr while re-acquiring the lease
  std::vector<std::thread> retiring_;     // tear retired incarnations down; joined in Stop()

  // Lease renewal.
  std::thread lease_thread_;
  std::mutex lease_mu_;               // guards lease_stop_ and lease_loss_reason_
  std::condition_variable lease_cv_;  // signalled on stop and on loss
  bool lease_stop_ = false;
  Status lease_loss_reason_;
  std::atomic<bool> lease_lost_{false};
  std::atomic<int64_t> lease_losses_{0};

  // Metrics and probes.
  std::unique_ptr<HttpServer> http_;        // nullptr: none (off, or the port was busy)
  std::unique_ptr<HttpServer> probe_http_;  // plaintext /healthz, /readyz; nullptr: none
  // The policy the HTTP port authorizes with (the handler's, shared); read
  // with std::atomic_load, replaced with std::atomic_store. nullptr: none.
  std::shared_ptr<const AuthPolicy> http_policy_;
  std::thread store_gauge_thread_;
  std::mutex store_gauge_mu_;  // guards store_gauge_stop_
  std::condition_variable store_gauge_cv_;
  bool store_gauge_stop_ = false;
};

}  // namespace txc
