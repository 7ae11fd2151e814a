// The `coordinator` executable: one replica of the transaction coordinator.
//
//   coordinator                                   # SQLite in ./txc-data, port 7400
//   coordinator --store 'host=db1,db2 port=5432,5432 dbname=txc target_session_attrs=read-write'
//   coordinator --config /etc/txc/coordinator.conf   # same keys, "key = value" lines
//   coordinator --tls_cert c.pem --tls_key c.key --tls_ca ca.pem --participant_tls   # mutual TLS
//
// SIGHUP re-reads the TLS certificate, key, CA and CRL files (new connections
// use them; a file that fails to load keeps the previous one, logged).
//
// SIGHUP re-reads --auth_policy (a bad file keeps the previous policy).
//
// Exit codes: 0 after SIGTERM/SIGINT (clean shutdown), 1 when it cannot start
// (store, port, a data directory that is locked or cannot be created, the node already running),
// 2 for bad flags, 3 when the
// lease was taken by another process of this node id (or lost with --exit_on_lease_loss), 86 at
// an armed crash point.
#include <glog/logging.h>
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <string>

#include "common/crash_point.h"
#include "common/thrift_util.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "coordinator/server/coordinator_server.h"

namespace po = boost::program_options;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitCannotStart = 1;
constexpr int kExitUsage = 2;
constexpr int kExitLeaseLost = 3;

int Usage(const std::string& message) {
  std::cerr << "coordinator: " << message << "\nRun 'coordinator --help' for the flags.\n";
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  txc::CoordinatorServerOptions options;
  std::string config_file;
  std::string crash_points;
  std::string pause_points;
  std::string rpc_server;
  int verbose = 0;
  bool replace_node = false;
  bool participant_tls = false;

  po::options_description settings("Settings (flags, or 'key = value' lines in --config)");
  settings.add_options()("host", po::value(&options.host)->default_value(options.host),
                         "address to listen on (a non-loopback address needs TLS or --insecure)")(
      "insecure", po::bool_switch(&options.insecure),
      "allow listening on a non-loopback address without TLS (then anyone who reaches the port "
      "may call everything; logged as a warning)")(
      "auth_policy", po::value(&options.auth_policy_file),
      "policy file mapping client-certificate identities to roles (client, participant, "
      "reader, admin; docs/security.md); re-read on SIGHUP. Without it every caller may call "
      "every method")(
      "participant_allow",
      po::value(&options.participant_allow)->composing()->value_name("PATTERNS"),
      "participant endpoints requests may name, comma-separated, repeatable: host names "
      "(*.svc.local), host:port, :port, port ranges (h:7000-7099), IPv4/IPv6 addresses and CIDR "
      "ranges (10.0.0.0/8, [fd00::/8]:7000). Empty: any endpoint (unsafe beyond one machine)")(
      "port", po::value(&options.port)->default_value(txc::kDefaultCoordinatorPort),
      "port to listen on (0: any free port)")(
      "http_port", po::value(&options.http_port)->default_value(txc::kDefaultCoordinatorHttpPort),
      "HTTP port for /metrics (Prometheus), /healthz and /readyz (0: no HTTP listener); HTTPS "
      "with the --tls_* files and client-certificate rule when TLS is on, and with "
      "--auth_policy /metrics needs the reader or admin role")(
      "http_host", po::value(&options.http_host),
      "address the HTTP listener binds (default: the same as --host)")(
      "http_probe_port", po::value(&options.http_probe_port)->default_value(0),
      "plaintext port on --http_host serving only /healthz and /readyz, without authentication, "
      "for probes that cannot present a client certificate while TLS makes --http_port HTTPS "
      "(kubelet); 0: none")(
      "metrics_store_refresh_ms",
      po::value(&options.metrics_store_refresh_ms)->default_value(options.metrics_store_refresh_ms),
      "how often the store-derived gauges (unfinished transactions by state, PARKED, oldest "
      "unfinished age) are read from the store (0: never)")(
      "advertise_endpoint", po::value(&options.advertise_endpoint),
      "host:port clients reach this replica at (default: host:port, hostname for 0.0.0.0)")(
      "data_dir", po::value(&options.data_dir)->default_value(options.data_dir),
      "data directory (created); holds the SQLite file")(
      "store", po::value(&options.store),
      "empty: SQLite file <data_dir>/coordinator.db; 'postgresql://...' or a libpq "
      "'key=value ...' string (multi-host: host=h1,h2 port=p1,p2 "
      "target_session_attrs=read-write): PostgreSQL")("node_id", po::value(&options.node_id),
                                                      "this replica's id (default hostname:port)")(
      "lease_ttl_ms", po::value(&options.lease_ttl_ms)->default_value(options.lease_ttl_ms),
      "lease time-to-live; renewed every ttl/3; a replica that could not renew it for a whole "
      "ttl drops its in-flight work and acquires the lease again with a new epoch")(
      "max_clock_skew_ms",
      po::value(&options.max_clock_skew_ms)->default_value(options.max_clock_skew_ms),
      "how far another replica's clock may run ahead of this one's: this replica stops acting "
      "on its lease (store writes, a saga's unlogged progress, /readyz) this long before its TTL "
      "runs out, because other replicas judge its lease by their own clocks (-1: lease_ttl_ms / "
      "10; below lease_ttl_ms minus the renew interval)")(
      "exit_on_lease_loss", po::bool_switch(&options.exit_on_lease_loss),
      "exit with code 3 after a lost lease instead of acquiring it again (for a supervisor "
      "that restarts the process)")(
      "replace_node", po::bool_switch(&replace_node),
      "take this node id's lease even while another process still renews it (that process "
      "stops at its next renewal); without it a second copy of a running node refuses to start")(
      "store_call_timeout_ms",
      po::value(&options.store_call_timeout_ms)->default_value(options.store_call_timeout_ms),
      "PostgreSQL store: deadline of each store call (then cancelled; a cancelled commit is "
      "indeterminate and re-read) and statement_timeout, lock_timeout, "
      "idle_in_transaction_session_timeout of its sessions (0: lease_ttl_ms / 2; keep it below "
      "the lease TTL)")(
      "max_message_bytes",
      po::value(&options.max_message_bytes)->default_value(options.max_message_bytes),
      "largest Thrift message accepted (a larger frame closes the connection)")(
      "rpc_server", po::value(&rpc_server)->default_value("event-loop"),
      "how the Thrift port is served: event-loop (one I/O thread; beginTxn and commit answered "
      "by the thread that learns the answer, other calls on a pool) or thread-per-connection")(
      "max_connections_per_peer",
      po::value(&options.max_connections_per_peer)->default_value(options.max_connections_per_peer),
      "Thrift connections one peer IP may hold; more are closed at accept with a warning "
      "(0: no limit)")(
      "tls_cert", po::value(&options.tls.cert_file),
      "PEM certificate (chain) of the Thrift port and the HTTP port; with --tls_key turns TLS "
      "on for both (TLS 1.2+; the HTTP port becomes HTTPS)")(
      "tls_key", po::value(&options.tls.key_file), "PEM private key of --tls_cert")(
      "tls_ca", po::value(&options.tls.ca_file),
      "PEM CA bundle that verifies client certificates (and participants' with "
      "--participant_tls)")(
      "tls_crl", po::value(&options.tls.crl_file),
      "PEM certificate revocation list(s) of the --tls_ca CA(s): every TLS handshake refuses a "
      "revoked client certificate (and every certificate of a CA without a current CRL in the "
      "file); re-read on SIGHUP")(
      "tls_crl_chain", po::bool_switch(&options.tls.crl_check_chain),
      "check every certificate of a client's chain against --tls_crl, intermediate CAs too (the "
      "file must then hold a current CRL of every CA in the chain)")(
      "tls_require_client_cert", po::value(&options.tls.require_client_cert)->default_value(true),
      "mutual TLS: refuse clients without a certificate from --tls_ca (false: a client "
      "certificate is optional, verified when presented)")(
      "participant_tls", po::bool_switch(&participant_tls),
      "call participants over TLS: verify them with --participant_tls_ca and present "
      "--participant_tls_cert (both default to the --tls_* files)")(
      "participant_tls_cert", po::value(&options.participant_tls.cert_file),
      "PEM certificate this coordinator presents to participants (default: --tls_cert)")(
      "participant_tls_key", po::value(&options.participant_tls.key_file),
      "PEM private key of --participant_tls_cert (default: --tls_key)")(
      "participant_tls_ca", po::value(&options.participant_tls.ca_file),
      "PEM CA bundle that verifies participants' certificates (default: --tls_ca)")(
      "participant_tls_crl", po::value(&options.participant_tls.crl_file),
      "PEM CRL(s) checked against participants' certificates (default: --tls_crl when "
      "--participant_tls_ca is not set)")(
      "participant_tls_crl_chain", po::bool_switch(&options.participant_tls.crl_check_chain),
      "check participants' whole chains against their CRLs (default: --tls_crl_chain when "
      "--participant_tls_crl is taken from --tls_crl)")(
      "prepare_timeout_ms",
      po::value(&options.two_phase.prepare_timeout_ms)
          ->default_value(options.two_phase.prepare_timeout_ms),
      "2PC: timeout of each prepare / commitOnePhase call (no vote in time: ABORT)")(
      "phase_two_timeout_ms",
      po::value(&options.two_phase.phase_two_timeout_ms)
          ->default_value(options.two_phase.phase_two_timeout_ms),
      "2PC: timeout of each phase-2 commit / abort call (retried with backoff)")(
      "participant_io_threads",
      po::value(&options.two_phase.io_threads)->default_value(options.two_phase.io_threads),
      "I/O threads of the event-driven participant calls, 2PC and Saga (no thread waits per "
      "call)")("max_calls_per_endpoint",
               po::value(&options.two_phase.max_calls_per_endpoint)
                   ->default_value(options.two_phase.max_calls_per_endpoint),
               "outstanding calls to one participant endpoint, 2PC and Saga together; more wait in "
               "line (one slow participant cannot hold the others' calls)")(
      "participant_batch_calls",
      po::value(&options.two_phase.max_batch_calls)
          ->default_value(options.two_phase.max_batch_calls),
      "calls to one participant that became ready together are written on one connection, up "
      "to this many (1: one call per connection), while that participant answers within "
      "--participant_batch_below_us")(
      "participant_batch_below_us",
      po::value(&options.two_phase.batch_below_us)->default_value(options.two_phase.batch_below_us),
      "a participant whose recent replies (a moving average) take longer than this gets one "
      "call per connection: a batch's calls wait for each other at the participant")(
      "sweep_interval_ms",
      po::value(&options.sweeper.interval_ms)->default_value(options.sweeper.interval_ms),
      "recovery sweeper: time between passes (claims orphans, redrives due transactions)")(
      "finished_retention_ms",
      po::value(&options.sweeper.finished_retention_ms)
          ->default_value(options.sweeper.finished_retention_ms),
      "finished transactions (COMMITTED/ABORTED/SUCCEEDED/COMPENSATED) are deleted this long "
      "after their last update (0: kept forever); afterwards status is NotFound and "
      "queryOutcome ABORT")(
      "retention_sweep_interval_ms",
      po::value(&options.sweeper.retention_sweep_interval_ms)
          ->default_value(options.sweeper.retention_sweep_interval_ms),
      "recovery sweeper: time between deletions of old finished transactions")(
      "saga_park_after_attempts",
      po::value(&options.saga.park_after_attempts)->default_value(options.saga.park_after_attempts),
      "Saga: compensation deliveries before the saga is PARKED (then retried by the sweeper)")(
      "saga_parked_retry_ms",
      po::value(&options.saga.parked_retry_ms)->default_value(options.saga.parked_retry_ms),
      "Saga: how often the sweeper retries a PARKED saga's compensations")(
      "saga_progress_log_ms",
      po::value(&options.saga.progress_log_ms)->default_value(options.saga.progress_log_ms),
      "Saga: forward progress (steps started / done) is logged with the saga's next change of "
      "state or at most this long after it happened; a restart redoes the unlogged steps "
      "(0: log every step before its effects)")(
      "saga_call_timeout_ms",
      po::value(&options.saga.call_timeout_ms)->default_value(options.saga.call_timeout_ms),
      "Saga: timeout of each action / compensate call (then retried with backoff)")(
      "crash_points", po::value(&crash_points),
      "comma-separated crash points to arm (fault-injection tests; exit code 86)")(
      "pause_points", po::value(&pause_points),
      "comma-separated pause points to arm (fault-injection tests: the process stops itself "
      "with SIGSTOP there, once, and waits for a SIGCONT)")(
      "verbose,v", po::value(&verbose)->implicit_value(1)->default_value(0),
      "VLOG level (-v: 1, one line per state transition)");
  po::options_description cli("Usage: coordinator [flags]");
  cli.add_options()("help,h", "print this help and exit")("version", "print the version and exit")(
      "config", po::value(&config_file), "read settings from FILE (flags win over the file)");
  cli.add(settings);

  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, cli), vm);
    if (vm.count("help")) {
      std::cout << cli
                << "\nExit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 cannot start, "
                   "2 bad flags, 3 lease lost for good (another process took this node id, or "
                   "--exit_on_lease_loss), 86 crash point.\n";
      return kExitOk;
    }
    if (vm.count("version")) {
      std::cout << "coordinator " << txc::CoordinatorHandler::kVersion << "\n";
      return kExitOk;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      if (!in) return Usage("cannot read --config file '" + path + "'");
      po::store(po::parse_config_file(in, settings), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return Usage(e.what());
  }
  if (options.port < 0 || options.port > 65535) {
    return Usage("--port must be 0..65535, got " + std::to_string(options.port));
  }
  if (options.http_port < 0 || options.http_port > 65535) {
    return Usage("--http_port must be 0..65535, got " + std::to_string(options.http_port));
  }
  if (options.http_probe_port < 0 || options.http_probe_port > 65535) {
    return Usage("--http_probe_port must be 0..65535, got " +
                 std::to_string(options.http_probe_port));
  }
  if (options.metrics_store_refresh_ms < 0) return Usage("--metrics_store_refresh_ms must be >= 0");
  if (txc::Result<txc::LeaseTiming> lease = txc::ResolveLeaseTiming(options); !lease.ok()) {
    return Usage("--" + lease.status().message());
  }
  if (options.saga.progress_log_ms < 0 || options.saga.progress_log_ms > 60000) {
    return Usage("--saga_progress_log_ms must be 0..60000");
  }
  if (options.max_message_bytes < 1024 || options.max_message_bytes > (int64_t{1} << 30)) {
    return Usage("--max_message_bytes must be between 1024 and 1073741824");
  }
  if (!options.advertise_endpoint.empty() && !txc::ParseEndpoint(options.advertise_endpoint).ok()) {
    return Usage("--advertise_endpoint must be host:port, got '" + options.advertise_endpoint +
                 "'");
  }
  if (options.data_dir.empty()) return Usage("--data_dir must not be empty");
  if (options.max_connections_per_peer < 0) return Usage("--max_connections_per_peer must be >= 0");
  if (rpc_server == "event-loop") {
    options.rpc_model = txc::CoordinatorServerOptions::RpcModel::kEventLoop;
  } else if (rpc_server == "thread-per-connection") {
    options.rpc_model = txc::CoordinatorServerOptions::RpcModel::kThreadPerConnection;
  } else {
    return Usage("--rpc_server must be event-loop or thread-per-connection, not '" + rpc_server +
                 "'");
  }
  if (options.tls.enabled()) {
    txc::Status tls = options.tls.ValidateForServer();
    if (!tls.ok()) return Usage(tls.message());
  } else if (!options.tls.crl_file.empty()) {
    return Usage("--tls_crl needs TLS on the port (--tls_cert, --tls_key, --tls_ca)");
  } else if (options.tls.crl_check_chain) {
    return Usage("--tls_crl_chain needs --tls_crl");
  }
  if (!participant_tls && !options.participant_tls.enabled() &&
      (!options.participant_tls.crl_file.empty() || options.participant_tls.crl_check_chain)) {
    return Usage("--participant_tls_crl and --participant_tls_crl_chain need --participant_tls");
  }
  if (participant_tls || options.participant_tls.enabled()) {
    txc::TlsOptions& p = options.participant_tls;
    if (p.cert_file.empty() && p.key_file.empty()) {
      p.cert_file = options.tls.cert_file;
      p.key_file = options.tls.key_file;
    }
    if (p.ca_file.empty()) {
      p.ca_file = options.tls.ca_file;
      // The same CA bundle, the same revocation list.
      if (p.crl_file.empty()) {
        p.crl_file = options.tls.crl_file;
        p.crl_check_chain = p.crl_check_chain || options.tls.crl_check_chain;
      }
    }
    txc::Status tls = p.ValidateForClient();
    if (!tls.ok()) return Usage("participant TLS: " + tls.message());
  }
  if (replace_node) options.lease_takeover = txc::LeaseTakeover::kAlways;

  FLAGS_logtostderr = true;
  FLAGS_v = verbose;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();
  if (!crash_points.empty()) txc::ArmCrashPoints(crash_points);
  if (!pause_points.empty()) txc::ArmPausePoints(pause_points);

  // Signals: SIGTERM/SIGINT (stop) and SIGHUP (reload TLS files) are taken by
  // sigtimedwait below, in this thread only (blocked before any thread starts,
  // so every thread inherits the mask).
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  txc::CoordinatorServer server(options);
  txc::Status started = server.Start();
  if (!started.ok()) {
    LOG(ERROR) << "coordinator cannot start: " << started;
    return started.code() == txc::StatusCode::kInvalidArgument ? kExitUsage : kExitCannotStart;
  }

  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig == SIGHUP) {
      LOG(INFO) << "SIGHUP: reloading the auth policy";
      server.ReloadAuthPolicy().IgnoreError();  // logged; the previous policy stays
      LOG(INFO) << "SIGHUP: re-reading the TLS files";
      txc::Status reloaded = server.ReloadTls();
      if (!reloaded.ok()) LOG(ERROR) << "TLS reload failed (previous files stay): " << reloaded;
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT) {
      LOG(INFO) << "signal " << sig << ": shutting down";
      server.Stop();
      google::FlushLogFiles(google::GLOG_INFO);
      return kExitOk;
    }
    txc::Status reason;
    if (server.WaitForLeaseLoss(0, &reason)) {
      // Exit at once: nothing of this process may write again.
      LOG(ERROR) << "exiting: lease lost for good: " << reason;
      google::FlushLogFiles(google::GLOG_INFO);
      std::_Exit(kExitLeaseLost);
    }
  }
}
