// participant_sdk_bench: rough costs of the SDK's hot paths on this machine.
//
//   participant_sdk_bench [--seconds=2] [--pg]
//
// Prints one line per case: operations per second and mean microseconds.
//   context      EncodeTxnContext + DecodeTxnContext of a typical context
//   rpc_action   ParticipantServer.action over loopback Thrift, 1 client, no barrier
//   sqlite_barrier  SqliteBarrierStore action (WAL, synchronous=FULL: one fsync each)
//   pg_barrier   PgBarrierStore action on a throwaway PostgreSQL (--pg), 1 client
#include <glog/logging.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>

#include "common/cli.h"
#include "gen-cpp/Participant.h"
#include "migrations/migrator.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "txc/participant/barrier.h"
#include "txc/participant/context.h"
#include "txc/participant/participant_server.h"

using namespace txc;               // NOLINT: a bench binary
using namespace txc::participant;  // NOLINT

namespace {

void Run(const std::string& name, double seconds, const std::function<void(int64_t)>& op) {
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  int64_t n = 0;
  while (std::chrono::steady_clock::now() < end) op(n++);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-16s %10.0f ops/s %10.1f us/op  (%lld ops)\n", name.c_str(), n / took,
              took * 1e6 / n, static_cast<long long>(n));
}

class Echo : public Participant {
 public:
  StepResult Action(const StepContext& ctx) override {
    if (sqlite3* db = SqliteDbOf(ctx)) {
      sqlite3_exec(db, "UPDATE counter SET n = n + 1", nullptr, nullptr, nullptr);
    } else if (pqxx::work* w = PgWorkOf(ctx)) {
      w->exec("UPDATE counter SET n = n + 1");
    }
    return StepResult::Success();
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  double seconds = 2;
  bool with_pg = false;
  po::options_description flags("Flags");
  flags.add_options()("seconds", po::value(&seconds)->default_value(2), "time per measurement")(
      "pg", po::bool_switch(&with_pg), "also measure the PostgreSQL barrier and XA resource");
  if (int rc = txc::cli::Parse("participant_sdk_bench", "Usage: participant_sdk_bench [flags]",
                               argc, argv, flags);
      rc >= 0) {
    return rc;
  }
  if (!(seconds > 0 && seconds <= 3600)) {
    return txc::cli::UsageError("participant_sdk_bench", "--seconds must be in (0, 3600]");
  }
  google::InitGoogleLogging(argv[0]);
  FLAGS_minloglevel = 1;

  wire::TxnContext ctx;
  ctx.gtid = "c0a8011e-7400-0000-0000-000000012345";
  ctx.coordinators = {"10.0.0.1:7400", "10.0.0.2:7400", "10.0.0.3:7400"};
  ctx.deadline_unix_ms = NowUnixMs();
  Run("context", seconds, [&](int64_t) {
    auto d = DecodeTxnContext(EncodeTxnContext(ctx));
    if (!d.ok()) std::abort();
  });

  auto run_rpc = [&](const std::string& name, std::shared_ptr<BarrierStore> barrier) {
    ParticipantServerOptions o;
    o.host = "127.0.0.1";
    o.run_recovery = false;
    o.barrier = std::move(barrier);
    ParticipantServer server(std::make_shared<Echo>(), o);
    if (!server.Start().ok()) std::abort();
    ClientPool<wire::ParticipantClient> pool(ConnectOptions{});
    Run(name, seconds, [&](int64_t i) {
      wire::StepRequest req;
      req.gtid = "g" + std::to_string(i);
      req.step_id = "s1";
      req.name = "echo";
      req.attempt = 1;
      wire::StepResult r;
      Status s =
          pool.Call(server.endpoint(), [&](wire::ParticipantClient& c) { c.action(r, req); });
      if (!s.ok() || r.outcome != wire::StepOutcome::SUCCESS) std::abort();
    });
    server.Stop();
  };
  run_rpc("rpc_action", nullptr);

  testing::TempDir dir("txc-bench-");
  {
    sqlite3* db = nullptr;
    sqlite3_open(dir.Child("b.db").c_str(), &db);
    if (!MigrateSqlite(db, "participant").ok()) std::abort();
    sqlite3_exec(db, "CREATE TABLE counter (n INTEGER); INSERT INTO counter VALUES (0);", nullptr,
                 nullptr, nullptr);
    sqlite3_close(db);
  }
  run_rpc("sqlite_barrier", std::make_shared<SqliteBarrierStore>(dir.Child("b.db")));

  if (with_pg) {
    auto pg = testing::PgCluster::Start({});
    if (!pg.ok()) {
      std::cerr << pg.status() << "\n";
      return 1;
    }
    const std::string db = (*pg)->CreateUniqueDatabase("bench");
    {
      pqxx::connection conn((*pg)->ConnectionString(db));
      if (!MigratePostgres(conn, "participant").ok()) std::abort();
      pqxx::work w(conn);
      w.exec("CREATE TABLE counter (n BIGINT); INSERT INTO counter VALUES (0);");
      w.commit();
    }
    run_rpc("pg_barrier", std::make_shared<PgBarrierStore>((*pg)->ConnectionString(db)));
  }
  return 0;
}
