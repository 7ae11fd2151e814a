// header_echo_service: a user's own Thrift service (participant-sdk/test/
// header_echo.thrift, no transaction field) served with the transaction context
// in headers, owning one PostgreSQL database as an auto-enlisted resource.
// For rpc_headers_process_test.
//
//   header_echo_service <port> <participant_port> <conninfo> <name> <coordinator host:port>
//                       [idle_timeout_ms] [--tls_cert=F --tls_key=F --tls_ca=F]
//                       [--participant_tls] [--plain_echo]
//
// With the --tls_* flags the service's own port serves mutual TLS and its
// calls to the next hop present that certificate; the participant port and
// the calls to the coordinator stay plaintext unless --participant_tls (the
// suite's mutual-TLS mode, tests/harness/suite_tls.h). --plain_echo keeps the
// service's own port plaintext (stock clients) while the rest uses TLS.
//
// whoami(next_hop): inserts (gtid, name) into echo_calls through PgTxnResource
// (in the caller's transaction when a context is current, committed at once
// otherwise), then calls the first endpoint of the comma-separated next_hop
// with the rest, and answers "<gtid>|<downstream answer>".
// fail(): the same insert, then throws Refused (a business refusal).
// current(): the gtid current in the handler ("" when none).
// caller(): the caller's identity as this service sees it.
// bad_sql(): a statement that fails (NOT NULL) through the resource; throws Refused.
// Crash points come from TXC_CRASH_POINTS (participant.after_prepare).
#include <glog/logging.h>
#include <signal.h>

#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "common/peer_identity.h"
#include "gen-cpp/Echo.h"
#include "migrations/migrator.h"
#include "txc/participant/participant_server.h"
#include "txc/participant/pg_txn_resource.h"
#include "txc/participant/thrift_headers.h"

namespace {

using txc::participant::CurrentTxnContext;

class EchoService : public txc::headertest::EchoIf {
 public:
  EchoService(std::shared_ptr<txc::participant::PgTxnResource> db, std::string name,
              txc::ConnectOptions hop_options)
      : db_(std::move(db)), name_(std::move(name)), hop_options_(std::move(hop_options)) {}

  void whoami(std::string& out, const std::string& next_hop) override {
    Record();
    const auto* ctx = CurrentTxnContext();
    out = (ctx == nullptr ? std::string() : ctx->gtid) + "|";
    if (next_hop.empty()) return;
    const auto comma = next_hop.find(',');
    const std::string first = next_hop.substr(0, comma);
    const std::string rest = comma == std::string::npos ? "" : next_hop.substr(comma + 1);
    auto client =
        txc::participant::TxnHeaderClient<txc::headertest::EchoClient>::Open(first, hop_options_);
    if (!client.ok()) Refuse(client.status().ToString());
    std::string downstream;
    (**client)->whoami(downstream, rest);
    out += downstream;
  }
  void fail() override {
    Record();
    Refuse(name_ + " refuses");
  }
  void current(std::string& out) override {
    const auto* ctx = CurrentTxnContext();
    out = ctx == nullptr ? "" : ctx->gtid;
  }
  void bad_sql() override {
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      t.exec("INSERT INTO echo_calls (gtid, service) VALUES (NULL, 'bad')");
    });
    Refuse(name_ + ": " + s.ToString());
  }
  void ping() override {}
  void caller(std::string& out) override { out = txc::CurrentPeerIdentity().Describe(); }

 private:
  [[noreturn]] static void Refuse(const std::string& message) {
    txc::headertest::Refused r;
    r.message = message;
    throw r;
  }
  void Record() {
    const auto* ctx = CurrentTxnContext();
    const std::string gtid = ctx == nullptr ? "" : ctx->gtid;
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      t.exec_params("INSERT INTO echo_calls (gtid, service) VALUES ($1, $2)", gtid, name_);
    });
    if (!s.ok()) Refuse(name_ + ": " + s.ToString());
  }
  std::shared_ptr<txc::participant::PgTxnResource> db_;
  const std::string name_;
  const txc::ConnectOptions hop_options_;
};

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  std::vector<std::string> args;
  txc::TlsOptions tls;
  bool participant_tls = false, plain_echo = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--participant_tls" || arg == "--plain_echo") {
      (arg == "--plain_echo" ? plain_echo : participant_tls) = true;
      continue;
    }
    const auto value = [&](const std::string& flag) {
      return arg.rfind(flag + "=", 0) == 0 ? arg.substr(flag.size() + 1) : std::string();
    };
    if (!value("--tls_cert").empty()) {
      tls.cert_file = value("--tls_cert");
    } else if (!value("--tls_key").empty()) {
      tls.key_file = value("--tls_key");
    } else if (!value("--tls_ca").empty()) {
      tls.ca_file = value("--tls_ca");
    } else {
      args.push_back(arg);
    }
  }
  if (args.size() != 5 && args.size() != 6) {
    LOG(ERROR) << "usage: header_echo_service <port> <participant_port> <conninfo> <name> "
                  "<coordinator> [idle_timeout_ms] [--tls_cert=F --tls_key=F --tls_ca=F] "
                  "[--participant_tls] [--plain_echo]";
    return 2;
  }
  txc::ConnectOptions hop_options;
  if (tls.enabled()) {
    auto client_tls = txc::TlsContext::Create(tls, txc::TlsRole::kClient);
    if (!client_tls.ok()) {
      LOG(ERROR) << "TLS: " << client_tls.status();
      return 2;
    }
    hop_options.tls = std::move(client_tls).value();
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const std::string conninfo = args[2], name = args[3];
  try {
    pqxx::connection conn(conninfo);
    txc::Status migrated = txc::MigratePostgres(conn, "participant");
    if (!migrated.ok()) {
      LOG(ERROR) << migrated;
      return 1;
    }
    pqxx::work w(conn);
    w.exec(
        "CREATE TABLE IF NOT EXISTS echo_calls (id bigserial PRIMARY KEY, gtid text NOT NULL, "
        "service text NOT NULL)");
    w.commit();
  } catch (const std::exception& e) {
    LOG(ERROR) << "database: " << e.what();
    return 1;
  }

  txc::participant::TxnResourcesOptions ro;
  ro.allowed_coordinators = {args[4]};
  if (participant_tls) ro.coordinator_client.tls = tls;
  auto resources = std::make_shared<txc::participant::TxnResources>(ro);
  txc::participant::PgTxnResourceOptions pg;
  pg.xa.conninfo = conninfo;
  pg.xa.prefix = name;
  if (args.size() == 6) pg.idle_timeout_ms = std::atoll(args[5].c_str());
  auto db = txc::participant::PgTxnResource::Create(resources, name + "-db", pg);
  if (!db.ok()) {
    LOG(ERROR) << db.status();
    return 1;
  }
  txc::participant::ParticipantServerOptions po;
  po.host = "127.0.0.1";
  po.port = std::atoi(args[1].c_str());
  po.coordinators = {args[4]};
  po.recovery_backoff = txc::BackoffPolicy{20, 500, 2.0};
  if (participant_tls) {
    po.tls = tls;
    po.coordinator_client.tls = tls;
  }
  txc::participant::ParticipantServer participant(resources->participant(), po);
  txc::Status s = participant.Start();
  if (!s.ok()) {
    LOG(ERROR) << "participant server: " << s;
    return 1;
  }
  s = resources->SetEndpoint(participant.endpoint());
  if (!s.ok()) {
    LOG(ERROR) << s;
    return 1;
  }
  txc::ThriftServerOptions so;
  so.host = "127.0.0.1";
  so.port = std::atoi(args[0].c_str());
  if (!plain_echo) so.tls = tls;
  txc::participant::TxnHeaderServer server(
      txc::participant::WrapTxnContextProcessor(std::make_shared<txc::headertest::EchoProcessor>(
          std::make_shared<EchoService>(*db, name, hop_options))),
      so);
  s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << "echo server: " << s;
    return 1;
  }
  LOG(INFO) << name << ": echo on 127.0.0.1:" << server.port()
            << (server.tls() ? " (mutual TLS)" : "") << ", participant on "
            << participant.endpoint();
  int sig = 0;
  sigwait(&signals, &sig);
  server.Stop();
  participant.Stop();
  return 0;
}
