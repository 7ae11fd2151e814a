// A coordinator replica's life, with real processes on a real PostgreSQL store
// (the harness's shared cluster) or on SQLite:
//
//  * a second copy of a running node (same port, or same node id elsewhere)
//    refuses to start and the running one never notices;
//  * --replace_node takes a node over on purpose, and the old process gives way
//    (exit 3);
//  * two processes never open one SQLite store;
//  * a replica paused (SIGSTOP) past its lease, then resumed, drops its
//    in-flight work, acquires a new epoch and serves again without exiting,
//    and nothing it writes is committed under the old epoch (a trigger in the
//    store audits every write of a txns row against its owner's current lease).
//
// Every wait has a deadline; nothing is asserted about time.
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/backoff.h"
#include "coordinator/core/states.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kWaitMs = 30000;
constexpr int kLeaseTtlMs = 1000;

// Records every insert/update of a txns row whose (owner, epoch) is older than
// the owner's current lease epoch: a write by a replica that lost its lease.
constexpr const char* kStaleWriteAudit = R"sql(
CREATE TABLE stale_writes (gtid TEXT, owner TEXT, epoch BIGINT, lease_epoch BIGINT, state INT,
                           op TEXT, at TIMESTAMPTZ DEFAULT now());
CREATE FUNCTION audit_stale_write() RETURNS trigger AS $$
DECLARE current_epoch BIGINT;
BEGIN
  SELECT epoch INTO current_epoch FROM leases WHERE node_id = NEW.owner;
  IF current_epoch IS NOT NULL AND NEW.epoch < current_epoch THEN
    INSERT INTO stale_writes (gtid, owner, epoch, lease_epoch, state, op)
      VALUES (NEW.gtid, NEW.owner, NEW.epoch, current_epoch, NEW.state, TG_OP);
  END IF;
  RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_stale_write BEFORE INSERT OR UPDATE ON txns
  FOR EACH ROW EXECUTE FUNCTION audit_stale_write();
)sql";

class ReplicaLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = testing::SharedPgCluster();
    dir_ = std::make_unique<testing::TempDir>("txc-lifecycle-");
    store_db_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("coord_store"));
  }

  void TearDown() override {
    if (HasFailure()) {
      for (auto& [name, proc] : procs_) {
        if (proc) LOG(ERROR) << name << " log:\n" << proc->LogTail(6000);
      }
    }
    procs_.clear();
  }

  // Starts `coordinator` as node_id on port; `store` empty: SQLite in data_dir.
  ChildProcess* Start(const std::string& name, const std::string& node_id, int port,
                      const std::string& data_dir, const std::string& store,
                      std::vector<std::string> extra = {}) {
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(port),
              "--data_dir=" + data_dir,
              "--node_id=" + node_id,
              "--sweep_interval_ms=100",
              "--verbose=1"};
    testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    if (!store.empty()) o.argv.push_back("--store=" + store);
    bool ttl_given = false;
    for (auto& e : extra) {
      ttl_given = ttl_given || e.rfind("--lease_ttl_ms=", 0) == 0;
      o.argv.push_back(std::move(e));
    }
    if (!ttl_given) o.argv.push_back("--lease_ttl_ms=" + std::to_string(kLeaseTtlMs));
    o.log_path = dir_->Child(name + ".log");
    auto child = ChildProcess::Start(o);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return nullptr;
    procs_.emplace_back(name, std::move(child).value());
    return procs_.back().second.get();
  }

  static std::unique_ptr<participant::CoordinatorClient> Client(const std::string& endpoint,
                                                                int rpc_timeout_ms = 2000) {
    participant::CoordinatorClientOptions co;
    co.endpoints = {endpoint};
    co.rpc_timeout_ms = rpc_timeout_ms;
    co.call_deadline_ms = 2 * rpc_timeout_ms;
    co.tls = testing::SuiteTls::Get().ClientTls();
    auto client = participant::CoordinatorClient::Create(co);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  // Health of the replica at endpoint, or an error.
  static Result<wire::HealthResponse> Health(const std::string& endpoint) {
    auto client = Client(endpoint, 1000);
    if (!client) return Status::Internal("no client");
    return client->HealthOf(endpoint);
  }

  static bool WaitServing(const std::string& endpoint, int64_t min_epoch = 0) {
    return testing::WaitUntil(
        [&] {
          auto h = Health(endpoint);
          return h.ok() && h->serving && h->epoch >= min_epoch;
        },
        kWaitMs);
  }

  // The lease row of node_id: {epoch, expires_ms}; {-1, -1} when absent.
  std::pair<int64_t, int64_t> LeaseRow(const std::string& node_id) {
    pqxx::connection conn(store_db_);
    pqxx::nontransaction n(conn);
    auto r = n.exec_params("SELECT epoch, expires_ms FROM leases WHERE node_id = $1", node_id);
    if (r.empty()) return {-1, -1};
    return {r[0][0].as<int64_t>(), r[0][1].as<int64_t>()};
  }

  int64_t CountSql(const std::string& sql) {
    pqxx::connection conn(store_db_);
    pqxx::nontransaction n(conn);
    return n.exec(sql)[0][0].as<int64_t>();
  }

  int64_t UnfinishedCount() {
    pqxx::connection conn(store_db_);
    pqxx::nontransaction n(conn);
    int64_t unfinished = 0;
    for (const auto& row : n.exec("SELECT state FROM txns")) {
      if (!IsFinal(static_cast<TxnState>(row[0].as<int>()))) ++unfinished;
    }
    return unfinished;
  }

  testing::PgCluster* pg_ = nullptr;
  std::unique_ptr<testing::TempDir> dir_;
  std::string store_db_;
  std::vector<std::pair<std::string, std::unique_ptr<ChildProcess>>> procs_;
};

TEST_F(ReplicaLifecycleTest, SecondCopyOfARunningNodeRefusesAndTheFirstKeepsServing) {
  const int port = testing::FreeLoopbackPort();
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  ChildProcess* first = Start("first", "c1", port, dir_->Child("first"), store_db_);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(WaitServing(endpoint));
  const int64_t epoch = LeaseRow("c1").first;
  ASSERT_GT(epoch, 0);

  // The same command again: the port is busy. It must fail before it touches the lease.
  ChildProcess* same_port = Start("same_port", "c1", port, dir_->Child("same"), store_db_);
  ASSERT_NE(same_port, nullptr);
  auto exited = same_port->Wait(kWaitMs);
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->exit_code, 1) << exited->ToString() << "\n" << same_port->LogTail();

  // The same node id on another port: the lease is live, so it refuses, saying so.
  ChildProcess* same_node =
      Start("same_node", "c1", testing::FreeLoopbackPort(), dir_->Child("other"), store_db_);
  ASSERT_NE(same_node, nullptr);
  exited = same_node->Wait(kWaitMs);
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->exit_code, 1) << exited->ToString();
  EXPECT_NE(same_node->LogTail().find("already running"), std::string::npos)
      << same_node->LogTail();

  // The first keeps its epoch and renews its lease after both attempts.
  EXPECT_EQ(LeaseRow("c1").first, epoch);
  const int64_t after_attempts = NowUnixMs();
  EXPECT_TRUE(
      testing::WaitUntil([&] { return LeaseRow("c1").second > after_attempts + 100; }, kWaitMs));
  EXPECT_EQ(LeaseRow("c1").first, epoch);
  EXPECT_TRUE(first->IsRunning());
  auto h = Health(endpoint);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(h->serving);
  EXPECT_EQ(h->epoch, epoch);
  auto client = Client(endpoint);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Begin(wire::BeginRequest()).ok());
}

TEST_F(ReplicaLifecycleTest, RestartAtTheSameEndpointRightAfterAKillTakesTheLease) {
  // A crashed process's lease is still live for a TTL, but it advertised the
  // very endpoint the new process has just bound: the holder is gone.
  const int port = testing::FreeLoopbackPort();
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  ChildProcess* first =
      Start("first", "c1", port, dir_->Child("first"), store_db_, {"--lease_ttl_ms=60000"});
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(WaitServing(endpoint));
  const int64_t epoch = LeaseRow("c1").first;
  ASSERT_TRUE(first->Kill(SIGKILL).ok());
  ASSERT_TRUE(first->Wait(kWaitMs).ok());
  ASSERT_GT(LeaseRow("c1").second, NowUnixMs());  // still live
  ChildProcess* again =
      Start("again", "c1", port, dir_->Child("first"), store_db_, {"--lease_ttl_ms=60000"});
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(WaitServing(endpoint, epoch + 1));
  EXPECT_EQ(LeaseRow("c1").first, epoch + 1);
}

TEST_F(ReplicaLifecycleTest, ReplaceNodeTakesTheNodeOverAndTheOldProcessGivesWay) {
  const int old_port = testing::FreeLoopbackPort();
  const int new_port = testing::FreeLoopbackPort();
  ChildProcess* old_proc = Start("old", "c1", old_port, dir_->Child("old"), store_db_);
  ASSERT_NE(old_proc, nullptr);
  ASSERT_TRUE(WaitServing("127.0.0.1:" + std::to_string(old_port)));
  const int64_t epoch = LeaseRow("c1").first;
  ChildProcess* new_proc =
      Start("new", "c1", new_port, dir_->Child("new"), store_db_, {"--replace_node"});
  ASSERT_NE(new_proc, nullptr);
  ASSERT_TRUE(WaitServing("127.0.0.1:" + std::to_string(new_port), epoch + 1));
  auto exited = old_proc->Wait(kWaitMs);
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->exit_code, 3) << exited->ToString();
  EXPECT_TRUE(new_proc->IsRunning());
  EXPECT_EQ(LeaseRow("c1").first, epoch + 1);
}

TEST_F(ReplicaLifecycleTest, TwoProcessesNeverOpenOneSqliteStore) {
  const std::string data_dir = dir_->Child("sqlite");
  const int port = testing::FreeLoopbackPort();
  ChildProcess* first = Start("first", "s1", port, data_dir, "");
  ASSERT_NE(first, nullptr);
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(WaitServing(endpoint));
  ChildProcess* second = Start("second", "s2", testing::FreeLoopbackPort(), data_dir, "");
  ASSERT_NE(second, nullptr);
  auto exited = second->Wait(kWaitMs);
  ASSERT_TRUE(exited.ok()) << exited.status();
  EXPECT_EQ(exited->exit_code, 1) << exited->ToString();
  EXPECT_NE(second->LogTail().find("already uses this SQLite store"), std::string::npos)
      << second->LogTail();
  EXPECT_TRUE(first->IsRunning());
  auto client = Client(endpoint);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Begin(wire::BeginRequest()).ok());
}

TEST_F(ReplicaLifecycleTest, PausedPastItsLeaseComesBackWithANewEpochAndWritesNothingStale) {
  const int port_a = testing::FreeLoopbackPort();
  const int port_b = testing::FreeLoopbackPort();
  const std::string a = "127.0.0.1:" + std::to_string(port_a);
  const std::string b = "127.0.0.1:" + std::to_string(port_b);
  ChildProcess* proc_a = Start("replica_a", "ra", port_a, dir_->Child("a"), store_db_);
  ASSERT_NE(proc_a, nullptr);
  ASSERT_TRUE(WaitServing(a));  // A has migrated the store
  {
    pqxx::connection conn(store_db_);
    pqxx::work w(conn);
    w.exec(kStaleWriteAudit);
    w.commit();
  }
  ChildProcess* proc_b = Start("replica_b", "rb", port_b, dir_->Child("b"), store_db_);
  ASSERT_NE(proc_b, nullptr);
  ASSERT_TRUE(WaitServing(b));

  // Load on A: begin + commit, some left ACTIVE (their deadline aborts them).
  std::atomic<bool> stop{false};
  std::atomic<int64_t> committed{0}, failed{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 3; ++t) {
    load.emplace_back([&, t] {
      auto client = Client(a, 500);
      if (!client) return;
      for (int i = 0; !stop.load(); ++i) {
        wire::BeginRequest begin;
        begin.timeout_ms = 3000;
        auto begun = client->Begin(begin);
        if (!begun.ok()) {
          failed++;
          std::this_thread::sleep_for(std::chrono::milliseconds(BackoffDelayMs({10, 200}, 1)));
          continue;
        }
        if ((i + t) % 5 == 0) continue;  // left ACTIVE
        wire::CommitRequest commit;
        commit.gtid = begun->gtid;
        auto done = client->Commit(commit);
        done.ok() ? committed++ : failed++;
      }
    });
  }
  struct StopLoad {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~StopLoad() {
      stop = true;
      for (auto& t : threads) t.join();
    }
  } stop_load{stop, load};

  ASSERT_TRUE(testing::WaitUntil([&] { return committed.load() >= 30; }, kWaitMs));
  const int64_t epoch = LeaseRow("ra").first;
  ASSERT_TRUE(proc_a->Kill(SIGSTOP).ok());
  const int64_t stopped_at = MonotonicMs();
  // Past A's lease, B claims everything unfinished that A owned.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        return LeaseRow("ra").second < NowUnixMs() &&
               CountSql("SELECT count(*) FROM txns WHERE owner = 'ra' AND state IN (1, 2, 3, 5)") ==
                   0;
      },
      kWaitMs));
  const int64_t claimed_after = MonotonicMs() - stopped_at;
  ASSERT_TRUE(proc_a->Kill(SIGCONT).ok());
  const int64_t resumed_at = MonotonicMs();
  ASSERT_TRUE(WaitServing(a, epoch + 1)) << "A did not come back with a new epoch";
  const int64_t back_after = MonotonicMs() - resumed_at;
  EXPECT_TRUE(proc_a->IsRunning());
  EXPECT_GT(LeaseRow("ra").first, epoch);

  // It serves again.
  const int64_t before = committed.load();
  EXPECT_TRUE(testing::WaitUntil([&] { return committed.load() >= before + 20; }, kWaitMs));
  stop = true;
  for (auto& t : load) t.join();
  load.clear();

  EXPECT_TRUE(testing::WaitUntil([&] { return UnfinishedCount() == 0; }, kWaitMs))
      << UnfinishedCount() << " transactions unfinished";
  EXPECT_EQ(CountSql("SELECT count(*) FROM stale_writes"), 0)
      << "writes committed under a lost epoch (see stale_writes)";
  EXPECT_TRUE(proc_a->IsRunning());
  EXPECT_TRUE(proc_b->IsRunning());
  EXPECT_NE(proc_a->LogTail(200000).find("acquired its lease again"), std::string::npos);
  LOG(INFO) << "paused replica: claimed by the other replica " << claimed_after
            << " ms after SIGSTOP; serving again " << back_after << " ms after SIGCONT; "
            << committed.load() << " commits, " << failed.load() << " failed calls";
}

}  // namespace
}  // namespace txc
