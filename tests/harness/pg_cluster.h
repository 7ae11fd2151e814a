// PgCluster: a throwaway PostgreSQL 15 server for tests.
//
//   auto pg = txc::testing::PgCluster::Start({});
//   ASSERT_TRUE(pg.ok()) << pg.status();     // names the missing package, if any
//   ASSERT_TRUE((*pg)->CreateDatabase("bank").ok());
//   pqxx::connection conn((*pg)->ConnectionString("bank"));
//
// or, shared by every test of one test binary (started once, on first use,
// stopped at exit):
//
//   txc::testing::PgCluster* pg = txc::testing::SharedPgCluster();
//   std::string db = pg->CreateUniqueDatabase("store");   // fresh per test
//
// Start(): initdb (or a copy of a cached initdb result) into a fresh temporary directory (as the
// `postgres` user via `runuser` when running as root: PostgreSQL refuses root), a free loopback
// port, trust authentication for user postgres, fsync=on,
// max_prepared_transactions=64, max_connections=200, then `pg_ctl start -w`.
// The destructor stops the server (`pg_ctl stop -m immediate`) and removes the
// directory, also when a test fails. A watchdog process does the same if the
// test process dies without running destructors (SIGKILL, abort, timeout).
//
// Thread-safety: const methods and CreateDatabase may be called from any
// thread; Start/Stop/Restart from one thread at a time.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/harness/process.h"
#include "tests/harness/watchdog.h"

namespace txc {
namespace testing {

struct PgClusterOptions {
  // Directory with initdb/pg_ctl/postgres; empty: /usr/lib/postgresql/15/bin
  // (the newest /usr/lib/postgresql/*/bin is used when 15 is missing).
  std::string bin_dir;
  int port = 0;                      // 0: a free loopback port
  int64_t start_timeout_ms = 60000;  // initdb and pg_ctl start, each
  // Extra postgresql.conf lines, e.g. "synchronous_commit = off" (never for decisions).
  std::vector<std::string> extra_settings;
  // Non-zero: a streaming-replication standby of the server on this loopback
  // port (pg_basebackup -R -X stream instead of initdb), which connects as
  // application_name `standby_name` (what synchronous_standby_names lists).
  int standby_of_port = 0;
  std::string standby_name = "standby";
};

class PgCluster {
 public:
  // Fails with a clear message when the PostgreSQL server binaries are missing
  // ("install the Debian package postgresql-15") or the server does not start
  // (with the tail of its log).
  static Result<std::unique_ptr<PgCluster>> Start(PgClusterOptions options);

  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // libpq key=value: "host=127.0.0.1 port=N user=postgres dbname=<dbname>".
  std::string ConnectionString(const std::string& dbname = "postgres") const;
  // Same as a URI: "postgresql://postgres@127.0.0.1:N/<dbname>".
  std::string ConnectionUri(const std::string& dbname = "postgres") const;

  // CREATE DATABASE <name> (kAlreadyExists when it exists).
  Status CreateDatabase(const std::string& name);
  // Creates "<prefix>_<n>" with a process-unique n and returns the name.
  // LOG(FATAL)s on failure (tests need it to go on).
  std::string CreateUniqueDatabase(const std::string& prefix);
  // DROP DATABASE IF EXISTS <name> WITH (FORCE).
  Status DropDatabase(const std::string& name);
  // Runs `sql` (one or more statements) in database `dbname`, autocommit.
  Status Execute(const std::string& dbname, const std::string& sql);

  int port() const { return port_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& bin_dir() const { return options_.bin_dir; }
  // The server log file (pg_ctl -l).
  std::string log_path() const;
  bool running() const { return running_; }

  // pg_ctl stop -m <mode> ("fast", "immediate" = like a crash). The data
  // directory is kept, so Restart() can bring the same cluster back.
  Status Stop(const std::string& mode = "fast");
  // pg_ctl start -w on the same directory and port.
  Status Restart();
  // pg_ctl promote -w: a standby becomes a primary (accepts writes).
  Status Promote();
  // Runs `sql` and returns the first column of the first row ("" for none).
  Result<std::string> QueryValue(const std::string& dbname, const std::string& sql);

 private:
  explicit PgCluster(PgClusterOptions options);
  Status Init();
  // data_dir_ := a copy of a cached pristine cluster (made with initdb once per
  // machine), or initdb when TXC_PG_NO_TEMPLATE=1.
  Status InitDataDir();
  Status RunInitdb(const std::string& dir) const;
  Status StartServer();
  // Builds argv that runs `binary args...` as user postgres when we are root.
  ChildProcess::Options AsPostgres(std::vector<std::string> argv) const;
  void StartWatchdog();

  PgClusterOptions options_;
  std::unique_ptr<TempDir> dir_;
  std::string data_dir_;
  int port_ = 0;
  bool running_ = false;
  Watchdog watchdog_;
};

// One cluster per test binary, started on first call (from any thread) and
// stopped at exit. Never null: a cluster that cannot start is a test failure,
// so this LOG(FATAL)s with the reason (e.g. the missing postgresql-15 package).
PgCluster* SharedPgCluster();

}  // namespace testing
}  // namespace txc
