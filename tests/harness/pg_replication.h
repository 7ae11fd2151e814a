// SyncStandbyPair: a PostgreSQL primary with one SYNCHRONOUS streaming
// standby on loopback, for store-failover tests.
//
//   auto pair = txc::testing::SyncStandbyPair::Start({});
//   ASSERT_TRUE(pair.ok()) << pair.status();
//   std::string store = (*pair)->MultiHostConnectionString("txc");
//   ... load ...
//   ASSERT_TRUE((*pair)->FailOver().ok());  // primary stop -m immediate, standby promoted
//
// Start(): a primary (PgCluster), a standby made with pg_basebackup -R -X
// stream that connects as application_name "standby", then on the primary
// synchronous_standby_names = 'standby' (ALTER SYSTEM, reload) and a wait
// until pg_stat_replication reports it 'sync': from then on every commit on
// the primary waits for the standby's flush. The standby does not carry the
// setting, so once promoted it commits alone (the "relax the setting on
// failover" of STACK-NOTES).
//
// Both servers are torn down by their PgCluster destructors (and watchdogs).
// Thread-safety: one thread at a time.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "tests/harness/pg_cluster.h"

namespace txc {
namespace testing {

struct SyncStandbyPairOptions {
  int64_t start_timeout_ms = 60000;
};

class SyncStandbyPair {
 public:
  static Result<std::unique_ptr<SyncStandbyPair>> Start(SyncStandbyPairOptions options);

  // "host=127.0.0.1,127.0.0.1 port=<primary>,<standby> user=postgres
  //  dbname=<dbname> target_session_attrs=read-write connect_timeout=2":
  // libpq tries the hosts in order and keeps the one that accepts writes.
  std::string MultiHostConnectionString(const std::string& dbname) const;

  // CREATE DATABASE on the primary, then waits until the standby has it.
  Status CreateDatabase(const std::string& name);

  // `pg_ctl stop -m immediate` on the primary (like a crash), then
  // `pg_ctl promote -w` on the standby. Returns when the standby accepts writes.
  Status FailOver();
  // Stops the standby (-m immediate) while the primary still requires it:
  // commits on the primary then wait for it forever.
  Status StopStandby();
  Status RestartStandby();

  PgCluster* primary() { return primary_.get(); }
  PgCluster* standby() { return standby_.get(); }

 private:
  SyncStandbyPair() = default;

  std::unique_ptr<PgCluster> primary_;
  std::unique_ptr<PgCluster> standby_;
  SyncStandbyPairOptions options_;
};

}  // namespace testing
}  // namespace txc
