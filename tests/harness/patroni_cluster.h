// PatroniCluster: PostgreSQL with automatic failover, as in production, for
// store-failover tests: one etcd member and N PostgreSQL members managed by
// Patroni (Debian packages `patroni` and `etcd-server`), all on loopback.
//
//   auto cluster = txc::testing::PatroniCluster::Start({});
//   ASSERT_TRUE(cluster.ok()) << cluster.status();
//   std::string store = (*cluster)->MultiHostConnectionString("txc");
//   auto leader = (*cluster)->WaitForLeader(60000);
//   ASSERT_TRUE((*cluster)->KillMember(*leader).ok());   // SIGKILL patroni + postgres
//   auto next = (*cluster)->WaitForLeader(60000, /*not=*/*leader);
//
// Start(): etcd (v2 API on, data in the temp dir), then each member's Patroni
// (run as `postgres` via setpriv when root) with a generated YAML: REST API
// and PostgreSQL on free loopback ports, data dirs in the temp dir, trust
// authentication on loopback, and in the DCS: synchronous_mode on, ttl 10 s,
// loop_wait 1 s, retry_timeout 3 s (the fastest failover Patroni allows with
// loop_wait + 2 * retry_timeout <= ttl). Returns when one member leads and
// every other streams from it.
//
// The destructor SIGKILLs every Patroni and postmaster and etcd and removes
// the directory; a watchdog process does the same if the test process dies.
// Thread-safety: one thread at a time.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/harness/process.h"
#include "tests/harness/watchdog.h"

namespace txc {
namespace testing {

struct PatroniClusterOptions {
  int members = 2;
  int64_t start_timeout_ms = 120000;
  std::string pg_bin_dir;  // empty: /usr/lib/postgresql/15/bin
};

class PatroniCluster {
 public:
  // kUnavailable naming the Debian package when patroni or etcd is missing.
  static Result<std::unique_ptr<PatroniCluster>> Start(PatroniClusterOptions options);
  ~PatroniCluster();
  PatroniCluster(const PatroniCluster&) = delete;
  PatroniCluster& operator=(const PatroniCluster&) = delete;

  // Every member's PostgreSQL port in one libpq string with
  // target_session_attrs=read-write connect_timeout=2.
  std::string MultiHostConnectionString(const std::string& dbname) const;
  // The member index of the leader (the member whose REST API answers 200 on
  // /primary and whose PostgreSQL accepts writes), waiting up to timeout_ms;
  // with `not_member` >= 0 that member is not accepted.
  Result<int> WaitForLeader(int64_t timeout_ms, int not_member = -1);
  // SIGKILL the member's Patroni and its postmaster (its backends follow).
  Status KillMember(int member);
  // CREATE DATABASE on the leader.
  Status CreateDatabase(const std::string& name);

  int pg_port(int member) const { return members_[member].pg_port; }
  int members() const { return static_cast<int>(members_.size()); }
  // Logs (Patroni of each member, etcd) for failure messages.
  std::string LogTails(size_t max_bytes_each = 3000) const;

 private:
  struct Member {
    std::string name;
    int pg_port = 0;
    int api_port = 0;
    std::string data_dir;
    std::unique_ptr<ChildProcess> patroni;
  };
  PatroniCluster() = default;
  Status StartEtcd();
  Status StartMember(int index);
  void StartWatchdog();
  pid_t PostmasterPid(const Member& m) const;

  PatroniClusterOptions options_;
  std::unique_ptr<TempDir> dir_;
  int etcd_port_ = 0;
  int etcd_peer_port_ = 0;
  std::unique_ptr<ChildProcess> etcd_;
  std::vector<Member> members_;
  Watchdog watchdog_;
};

// GET http://127.0.0.1:port<path>; returns the HTTP status code (kUnavailable
// when nothing answers within timeout_ms).
Result<int> HttpGetStatus(int port, const std::string& path, int64_t timeout_ms);

}  // namespace testing
}  // namespace txc
