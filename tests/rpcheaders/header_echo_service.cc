// header_echo_service: a user's own Thrift service (participant-sdk/test/
// header_echo.thrift, no transaction field) served with the transaction context
// in headers, owning one PostgreSQL database as an auto-enlisted resource.
// For rpc_headers_process_test.
//
//   header_echo_service <port> <participant_port> <conninfo> <name> <coordinator host:port>
//                       [idle_timeout_ms]
//
// whoami(next_hop): inserts (gtid, name) into echo_calls through PgTxnResource
// (in the caller's transaction when a context is current, committed at once
// otherwise), then calls the first endpoint of the comma-separated next_hop
// with the rest, and answers "<gtid>|<downstream answer>".
// fail(): the same insert, then throws Refused (a business refusal).
// current(): the gtid current in the handler ("" when none).
// bad_sql(): a statement that fails (NOT NULL) through the resource; throws Refused.
// Crash points come from TXC_CRASH_POINTS (participant.after_prepare).
#include <glog/logging.h>
#include <signal.h>

#include <pqxx/pqxx>

#include "gen-cpp/Echo.h"
#include "migrations/migrator.h"
#include "txc/participant/participant_server.h"
#include "txc/participant/pg_txn_resource.h"
#include "txc/participant/thrift_headers.h"

namespace {

using txc::participant::CurrentTxnContext;

class EchoService : public txc::headertest::EchoIf {
 public:
  EchoService(std::shared_ptr<txc::participant::PgTxnResource> db, std::string name)
      : db_(std::move(db)), name_(std::move(name)) {}

  void whoami(std::string& out, const std::string& next_hop) override {
    Record();
    const auto* ctx = CurrentTxnContext();
    out = (ctx == nullptr ? std::string() : ctx->gtid) + "|";
    if (next_hop.empty()) return;
    const auto comma = next_hop.find(',');
    const std::string first = next_hop.substr(0, comma);
    const std::string rest = comma == std::string::npos ? "" : next_hop.substr(comma + 1);
    auto client = txc::participant::TxnHeaderClient<txc::headertest::EchoClient>::Open(first);
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
};

}  // namespace

int main(int argc, char** argv) {
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc != 6 && argc != 7) {
    LOG(ERROR) << "usage: header_echo_service <port> <participant_port> <conninfo> <name> "
                  "<coordinator> [idle_timeout_ms]";
    return 2;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const std::string conninfo = argv[3], name = argv[4];
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
  ro.allowed_coordinators = {argv[5]};
  auto resources = std::make_shared<txc::participant::TxnResources>(ro);
  txc::participant::PgTxnResourceOptions pg;
  pg.xa.conninfo = conninfo;
  pg.xa.prefix = name;
  if (argc == 7) pg.idle_timeout_ms = std::atoll(argv[6]);
  auto db = txc::participant::PgTxnResource::Create(resources, name + "-db", pg);
  if (!db.ok()) {
    LOG(ERROR) << db.status();
    return 1;
  }
  txc::participant::ParticipantServerOptions po;
  po.host = "127.0.0.1";
  po.port = std::atoi(argv[2]);
  po.coordinators = {argv[5]};
  po.recovery_backoff = txc::BackoffPolicy{20, 500, 2.0};
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
  so.port = std::atoi(argv[1]);
  txc::participant::TxnHeaderServer server(
      txc::participant::WrapTxnContextProcessor(std::make_shared<txc::headertest::EchoProcessor>(
          std::make_shared<EchoService>(*db, name))),
      so);
  s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << "echo server: " << s;
    return 1;
  }
  LOG(INFO) << name << ": echo on 127.0.0.1:" << server.port() << ", participant on "
            << participant.endpoint();
  int sig = 0;
  sigwait(&signals, &sig);
  server.Stop();
  participant.Stop();
  return 0;
}
