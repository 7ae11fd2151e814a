// What both downstream services of this example share: flags, their database,
// the auto-enlisted resource, the participant server and the header server,
// all over mutual TLS with --tls_cert/--tls_key/--tls_ca (SIGHUP re-reads them).
#pragma once

#include <glog/logging.h>
#include <signal.h>

#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <pqxx/pqxx>
#include <string>

#include "common/cli.h"
#include "common/strings.h"
#include "migrations/migrator.h"
#include "txc/participant/participant_server.h"
#include "txc/participant/pg_txn_resource.h"
#include "txc/participant/thrift_headers.h"

namespace rpc_integration {

// Creates the service's table and seeds it from "key=value,..." (existing
// rows are kept).
using SetupFn = std::function<void(pqxx::work&, const std::string& key, int64_t value)>;
// The service's generated processor over its handler, given its database.
using ProcessorFn = std::function<std::shared_ptr<apache::thrift::TProcessor>(
    std::shared_ptr<txc::participant::PgTxnResource>)>;

// Runs a downstream service until SIGTERM/SIGINT. Returns main's exit code.
inline int RunDownstream(const std::string& program, const std::string& resource, int argc,
                         char** argv, const std::string& schema_sql, const SetupFn& seed_row,
                         const ProcessorFn& make_processor) {
  namespace po = boost::program_options;
  std::string host = "127.0.0.1", db, coordinators = "127.0.0.1:7400", seed;
  int port = 0, participant_port = 0;
  po::options_description flags(program);
  flags.add_options()("host", po::value(&host)->default_value(host), "address to listen on")(
      "port", po::value(&port)->notifier(txc::cli::InRange("port", 1, 65535))->required(),
      "the service's own Thrift port (THeader; plain framed/compact clients work too)")(
      "participant_port",
      po::value(&participant_port)
          ->notifier(txc::cli::InRange("participant_port", 1, 65535))
          ->required(),
      "the txc Participant port the coordinator calls (fixed: branches are enlisted with it)")(
      "db", po::value(&db)->required(), "libpq connection string of this service's database")(
      "coordinators", po::value(&coordinators)->default_value(coordinators),
      "coordinator replicas host:port,... (recovery; the only ones a context may name)")(
      "seed", po::value(&seed)->default_value(""), "initial rows key=value,...");
  txc::cli::TlsFlags tls_flags;
  txc::cli::AddTlsFlags(flags, &tls_flags);
  if (int rc = txc::cli::Parse(program, "Usage: " + program + " [flags]", argc, argv, flags);
      rc >= 0) {
    return rc;
  }
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  txc::RouteThriftLogsToGlog();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // re-read the TLS files
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // One identity for everything this service serves and calls (mutual TLS
  // when the flags are given; plaintext otherwise).
  const txc::TlsOptions tls = tls_flags.Options();

  try {
    pqxx::connection conn(db);
    // txc_barrier, for one-phase commits of a lone branch.
    txc::Status migrated = txc::MigratePostgres(conn, "participant");
    if (!migrated.ok()) {
      LOG(ERROR) << migrated;
      return 1;
    }
    pqxx::work w(conn);
    w.exec(schema_sql);
    for (const std::string& entry : txc::SplitList(seed)) {
      const auto eq = entry.find('=');
      auto value = eq == std::string::npos ? txc::Result<int64_t>(txc::Status::InvalidArgument(""))
                                           : txc::ParseInt64(entry.substr(eq + 1));
      if (eq == 0 || !value.ok()) return txc::cli::UsageError(program, "bad --seed " + entry);
      seed_row(w, entry.substr(0, eq), *value);
    }
    w.commit();
  } catch (const std::exception& e) {
    LOG(ERROR) << "database: " << e.what();
    return 1;
  }

  // 1. The resource registry and this service's database as a resource.
  // Only contexts naming our coordinators are joined: a caller cannot make
  // this service enlist somewhere else.
  txc::participant::TxnResourcesOptions ro;
  ro.allowed_coordinators = txc::SplitList(coordinators);
  ro.coordinator_client.tls = tls;  // enlisting
  auto resources = std::make_shared<txc::participant::TxnResources>(ro);
  txc::participant::PgTxnResourceOptions pg;
  pg.xa.conninfo = db;
  pg.xa.prefix = resource;
  auto database = txc::participant::PgTxnResource::Create(resources, resource, pg);
  if (!database.ok()) {
    LOG(ERROR) << database.status();
    return 1;
  }
  // 2. The Participant server the coordinator drives the branches through.
  txc::participant::ParticipantServerOptions po_options;
  po_options.host = host;
  po_options.port = participant_port;
  po_options.coordinators = txc::SplitList(coordinators);
  po_options.tls = tls;                     // the coordinator's calls
  po_options.coordinator_client.tls = tls;  // recovery
  txc::participant::ParticipantServer participant(resources->participant(), po_options);
  txc::Status s = participant.Start();
  if (s.ok()) s = resources->SetEndpoint(participant.endpoint());
  if (!s.ok()) {
    LOG(ERROR) << "participant server: " << s;
    return 1;
  }
  // 3. The service itself: its generated processor, wrapped, on a header server
  // (with --tls_*: mutual TLS; callers need a certificate from --tls_ca).
  txc::ThriftServerOptions so;
  so.host = host;
  so.port = port;
  so.tls = tls;
  txc::participant::TxnHeaderServer server(
      txc::participant::WrapTxnContextProcessor(make_processor(*database)), so);
  s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << program << ": " << s;
    return 1;
  }
  LOG(INFO) << program << " on " << host << ":" << server.port()
            << (server.tls() ? " (mutual TLS)" : "") << ", participant on "
            << participant.endpoint();
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    if (!tls.enabled()) continue;
    txc::Status reloaded = server.ReloadTls();
    if (reloaded.ok()) reloaded = participant.ReloadTls();
    if (reloaded.ok()) {
      LOG(INFO) << program << ": TLS files reloaded";
    } else {
      LOG(ERROR) << program << ": TLS reload failed (previous files stay): " << reloaded;
    }
  }
  LOG(INFO) << "signal " << sig << ", stopping";
  server.Stop();
  participant.Stop();
  return 0;
}

}  // namespace rpc_integration
