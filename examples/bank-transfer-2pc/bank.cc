// bank: one bank of the 2PC bank-transfer example. A participant service over
// its own PostgreSQL database of accounts, built on the participant SDK and
// PgXaResource (PostgreSQL prepared transactions).
//
// A branch's payload says what to do to one account (and a row in the
// `journal` table records it, in the same local transaction):
//   "debit:<account>:<amount>"   votes ABORT when the balance is insufficient
//   "credit:<account>:<amount>"  votes ABORT when the account does not exist
//
//   bank --port=7101 --db="host=127.0.0.1 port=5432 dbname=bank_a user=postgres"
//        --coordinators=127.0.0.1:7000 --accounts=100 --initial_balance=1000
//
// On start it creates the account table (seeding --accounts accounts with
// --initial_balance when the table is empty) and the SDK's barrier table,
// then serves until SIGTERM/SIGINT. Prepared branches left by a crash are
// resolved with the coordinator by the SDK's recovery.
#include <glog/logging.h>
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>

#include "common/cli.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "migrations/migrator.h"
#include "txc/participant/participant_server.h"
#include "txc/participant/pg_resource.h"

namespace po = boost::program_options;
using txc::participant::BranchContext;
using txc::participant::Outcome;
using txc::participant::Vote;

namespace {

class Bank : public txc::participant::Participant {
 public:
  explicit Bank(std::unique_ptr<txc::participant::PgXaResource> pg) : pg_(std::move(pg)) {}

  Vote Prepare(const BranchContext& ctx) override {
    auto vote = pg_->Prepare(ctx, [&](pqxx::work& w) { return Apply(ctx, w); });
    if (!vote.ok()) {
      LOG(ERROR) << ctx.gtid << "/" << ctx.branch_id << ": prepare failed: " << vote.status();
      return Vote::kAbort;
    }
    return *vote;
  }
  Outcome CommitOnePhase(const BranchContext& ctx) override {
    return txc::participant::ValueOrThrow(
        pg_->CommitOnePhase(ctx, [&](pqxx::work& w) { return Apply(ctx, w); }));
  }
  void Commit(const BranchContext& ctx) override {
    txc::participant::ThrowIfError(pg_->Commit(ctx));
  }
  void Abort(const BranchContext& ctx) override { txc::participant::ThrowIfError(pg_->Abort(ctx)); }
  std::vector<txc::participant::PreparedBranch> Recover() override {
    return txc::participant::ValueOrThrow(pg_->Recover());
  }

 private:
  static Vote Apply(const BranchContext& ctx, pqxx::work& w) {
    auto op = bank::ParsePayload(ctx.payload);
    if (!op.ok()) {
      LOG(ERROR) << ctx.gtid << ": bad payload: " << op.status();
      return Vote::kAbort;
    }
    pqxx::result r =
        op->debit ? w.exec_params(
                        "UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
                        op->amount, op->account)
                  : w.exec_params("UPDATE account SET balance = balance + $1 WHERE id = $2",
                                  op->amount, op->account);
    if (r.affected_rows() != 1) {
      VLOG(1) << ctx.gtid << ": " << ctx.payload << " refused (insufficient funds or no account)";
      return Vote::kAbort;
    }
    // The journal row commits or aborts with the balance change: which
    // transactions took effect here, per gtid (the chaos tests check it).
    w.exec_params("INSERT INTO journal (gtid, branch_id, account, delta) VALUES ($1, $2, $3, $4)",
                  ctx.gtid, ctx.branch_id, op->account, op->debit ? -op->amount : op->amount);
    return Vote::kPrepared;
  }

  std::unique_ptr<txc::participant::PgXaResource> pg_;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  int port = 0;
  int accounts = 100;
  int64_t initial_balance = 1000;
  std::string db, coordinators, name, port_file;
  po::options_description desc("Flags");
  desc.add_options()(
      "port",
      po::value<int>(&port)->default_value(0)->notifier(txc::cli::InRange("port", 0, 65535)),
      "port to serve on (0: any free port)")(
      "db", po::value<std::string>(&db)->required()->notifier(txc::cli::NotEmpty("db")),
      "libpq connection string of the bank's database")(
      "coordinators", po::value<std::string>(&coordinators)->default_value(""),
      "coordinator replicas host:port,host:port (for recovery)")(
      "name",
      po::value<std::string>(&name)->default_value("bank")->notifier(txc::cli::NotEmpty("name")),
      "resource name; prefix of its prepared transactions")(
      "accounts",
      po::value<int>(&accounts)->default_value(100)->notifier(
          txc::cli::InRange("accounts", 1, 100000000)),
      "accounts seeded when empty")(
      "initial_balance",
      po::value<int64_t>(&initial_balance)
          ->default_value(1000)
          ->notifier(txc::cli::InRange64("initial_balance", 0, int64_t{1} << 50)),
      "balance of each seeded account")("port_file",
                                        po::value<std::string>(&port_file)->default_value(""),
                                        "write the bound port here once serving")(
      "v", po::value<int>(&FLAGS_v)->default_value(0), "glog verbosity");
  txc::cli::TlsFlags tls;
  txc::cli::AddTlsFlags(desc, &tls);
  if (int rc = txc::cli::Parse("bank", "Usage: bank --db=CONNINFO [flags]", argc, argv, desc);
      rc >= 0) {
    return rc;
  }
  txc::RouteThriftLogsToGlog();
  // Blocked before any thread starts, so that only sigwait gets them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // re-read the TLS files
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  try {
    pqxx::connection conn(db);
    txc::Status migrated = txc::MigratePostgres(conn, "participant");
    if (!migrated.ok()) {
      LOG(ERROR) << "participant migration failed: " << migrated;
      return 1;
    }
    pqxx::work w(conn);
    w.exec0(
        "CREATE TABLE IF NOT EXISTS account (id integer PRIMARY KEY, "
        "balance bigint NOT NULL CHECK (balance >= 0))");
    w.exec0(
        "CREATE TABLE IF NOT EXISTS journal (gtid text NOT NULL, branch_id text NOT NULL, "
        "account integer NOT NULL, delta bigint NOT NULL, PRIMARY KEY (gtid, branch_id))");
    const int64_t existing = w.exec1("SELECT count(*) FROM account")[0].as<int64_t>();
    if (existing == 0) {
      w.exec_params(
          "INSERT INTO account (id, balance) SELECT g, $2 FROM generate_series(0, $1 - 1) g",
          accounts, initial_balance);
      LOG(INFO) << "seeded " << accounts << " accounts with " << initial_balance;
    }
    w.commit();
  } catch (const std::exception& e) {
    LOG(ERROR) << "database setup failed: " << e.what();
    return 1;
  }

  txc::participant::PgXaOptions pg_options;
  pg_options.conninfo = db;
  pg_options.prefix = name;
  pg_options.max_connections = 16;
  auto pg = txc::participant::PgXaResource::Create(pg_options);
  if (!pg.ok()) {
    LOG(ERROR) << "PgXaResource: " << pg.status();
    return 1;
  }
  auto bank = std::make_shared<Bank>(std::move(pg).value());

  txc::participant::ParticipantServerOptions options;
  options.host = "127.0.0.1";
  options.port = port;
  options.coordinators = txc::SplitList(coordinators);
  options.recovery_rescan_interval_ms = 10000;  // catches prepares an abort overtook
  options.tls = tls.Options();
  options.coordinator_client.tls = options.tls;
  txc::participant::ParticipantServer server(bank, options);
  txc::Status started = server.Start();
  if (!started.ok()) {
    LOG(ERROR) << "bank server: " << started;
    return 1;
  }
  LOG(INFO) << "bank " << name << " serving at " << server.endpoint();
  if (!port_file.empty()) {
    std::string tmp = port_file + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (f != nullptr) {
      fprintf(f, "%d\n", server.port());
      fclose(f);
      rename(tmp.c_str(), port_file.c_str());
    }
  }

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    txc::Status reloaded = server.ReloadTls();
    if (!reloaded.ok()) LOG(ERROR) << "TLS reload failed (previous files stay): " << reloaded;
  }
  LOG(INFO) << "bank " << name << ": signal " << sig << ", stopping";
  server.Stop();
  return 0;
}
