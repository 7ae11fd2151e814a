// Participant recovery against the real `coordinator` process: a branch left
// prepared in PostgreSQL by a participant that went away is resolved by the
// next participant's start-up recovery -- only once the coordinator answers,
// and never locally. Every process and connection uses the suite's transport
// (tests/harness/suite_tls.h: mutual TLS under TXC_TEST_TLS=1).
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>

#include "common/crash_point.h"
#include "migrations/migrator.h"
#include "participant-sdk/test/ledger_participant.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant_server.h"
#include "txc/participant/pg_resource.h"

namespace txc {
namespace participant {
namespace {

class RecoveryProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pg_ = testing::SharedPgCluster();
    conninfo_ = pg_->ConnectionString(pg_->CreateUniqueDatabase("recovery"));
    pqxx::connection conn(conninfo_);
    ASSERT_TRUE(MigratePostgres(conn, "participant").ok());
    pqxx::work w(conn);
    w.exec("CREATE TABLE entry (gtid TEXT, branch_id TEXT, amount BIGINT NOT NULL)");
    w.commit();
    coord_port_ = testing::FreeLoopbackPort();
    coord_endpoint_ = "127.0.0.1:" + std::to_string(coord_port_);
    ASSERT_NO_FATAL_FAILURE(StartCoordinator());
    CoordinatorClientOptions o;
    o.endpoints = {coord_endpoint_};
    o.call_deadline_ms = 10000;
    o.tls = testing::SuiteTls::Get().ClientTls();
    client_ = std::move(CoordinatorClient::Create(o)).value();
  }
  void TearDown() override {
    if (coordinator_ != nullptr) {
      coordinator_->Kill(SIGTERM).IgnoreError();
      coordinator_->Wait(10000).status().IgnoreError();
    }
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    for (const auto& row :
         n.exec("SELECT gid FROM pg_prepared_xacts WHERE database = current_database()")) {
      n.exec("ROLLBACK PREPARED " + n.quote(row[0].as<std::string>()));
    }
  }

  void StartCoordinator() {
    testing::ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(coord_port_),
              "--data_dir=" + dir_.Child("coord"),
              "--lease_ttl_ms=1000",
              "--sweep_interval_ms=200"};
    testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    o.log_path = dir_.Child("coordinator.log");
    auto child = testing::ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(coord_port_, 30000).ok()) << coordinator_->LogTail();
  }

  std::shared_ptr<Ledger> NewLedger() {
    PgXaOptions o;
    o.conninfo = conninfo_;
    o.prefix = "ledger";
    return std::make_shared<Ledger>(std::move(PgXaResource::Create(o)).value());
  }
  ParticipantServerOptions ServerOptions() {
    ParticipantServerOptions o;
    o.host = "127.0.0.1";
    o.coordinators = {coord_endpoint_};
    o.coordinator_client.max_attempts = 1;
    o.coordinator_client.connect_timeout_ms = 300;
    o.coordinator_client.rpc_timeout_ms = 2000;
    o.recovery_backoff = BackoffPolicy{20, 200, 2.0};
    o.recovery_rescan_interval_ms = 0;
    o.tls = testing::SuiteTls::Get().ServiceTls();
    o.coordinator_client.tls = o.tls;
    return o;
  }
  int64_t Balance() {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n.exec("SELECT coalesce(sum(amount), 0) FROM entry")[0][0].as<int64_t>();
  }
  int64_t Prepared() {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n
        .exec("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")[0][0]
        .as<int64_t>();
  }
  std::string Enlist(const std::string& endpoint, const std::string& amount) {
    auto begun = client_->Begin(wire::BeginRequest());
    EXPECT_TRUE(begun.ok()) << begun.status();
    wire::EnlistRequest e;
    e.gtid = begun->gtid;
    e.branch.branch_id = "b1";
    e.branch.endpoint = endpoint;
    e.branch.resource = "ledger";
    e.branch.payload = amount;
    Status s = client_->Enlist(e);
    EXPECT_TRUE(s.ok()) << s;
    return begun->gtid;
  }

  testing::TempDir dir_;
  testing::PgCluster* pg_ = nullptr;
  std::string conninfo_;
  int coord_port_ = 0;
  std::string coord_endpoint_;
  std::unique_ptr<testing::ChildProcess> coordinator_;
  std::unique_ptr<CoordinatorClient> client_;
};

TEST_F(RecoveryProcessTest, CommitDecidedWhileParticipantGoneIsAppliedOnceCoordinatorAnswers) {
  // 1. The participant prepares and the coordinator decides COMMIT, but the
  //    participant's phase 2 fails and the participant then goes away.
  auto first = NewLedger();
  first->fail_commit = true;
  auto first_server = std::make_unique<ParticipantServer>(first, ServerOptions());
  ASSERT_TRUE(first_server->Start().ok());
  const std::string gtid = Enlist(first_server->endpoint(), "25");
  // A second branch on the same server keeps this a real two-phase commit.
  wire::EnlistRequest second;
  second.gtid = gtid;
  second.branch.branch_id = "b2";
  second.branch.endpoint = first_server->endpoint();
  second.branch.resource = "ledger";
  second.branch.payload = "0";
  ASSERT_TRUE(client_->Enlist(second).ok());
  wire::CommitRequest commit;
  commit.gtid = gtid;
  auto decided = client_->Commit(commit);
  ASSERT_TRUE(decided.ok()) << decided.status();
  ASSERT_EQ(decided->outcome, wire::Outcome::OUTCOME_COMMIT);
  ASSERT_TRUE(testing::WaitUntil([&] { return first->commit_calls.load() >= 1; }, 10000));
  first_server->Stop();
  first_server.reset();
  first.reset();  // its connections close; PostgreSQL keeps the prepared transactions
  EXPECT_EQ(Prepared(), 2);
  EXPECT_EQ(Balance(), 0);

  // 2. The coordinator goes down too.
  ASSERT_TRUE(coordinator_->Kill(SIGKILL).ok());
  ASSERT_TRUE(coordinator_->Wait(10000).ok());

  // 3. A new participant process starts: recovery finds both branches, cannot
  //    reach the coordinator, and keeps them prepared, asking again with backoff.
  auto second_ledger = NewLedger();
  ParticipantServer server(second_ledger, ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return server.recovery_stats().retries >= 4; }, 10000));
  EXPECT_EQ(server.recovery_stats().unresolved, 2);
  EXPECT_EQ(Prepared(), 2);
  EXPECT_EQ(Balance(), 0);

  // 4. The coordinator comes back: recovery asks, gets COMMIT, commits.
  ASSERT_NO_FATAL_FAILURE(StartCoordinator());
  ASSERT_TRUE(server.WaitForRecovery(30000)) << coordinator_->LogTail();
  EXPECT_EQ(server.recovery_stats().committed, 2);
  EXPECT_EQ(server.recovery_stats().aborted, 0);
  EXPECT_EQ(Prepared(), 0);
  EXPECT_EQ(Balance(), 25);
  server.Stop();
}

TEST_F(RecoveryProcessTest, UndecidedBranchStaysPreparedUntilTheCoordinatorAborts) {
  // A branch prepared locally (as if prepare had run and the participant then
  // died before answering) for a transaction that is still ACTIVE.
  auto ledger = NewLedger();
  const std::string gtid = Enlist("127.0.0.1:1", "40");
  BranchContext ctx;
  ctx.gtid = gtid;
  ctx.branch_id = "b1";
  ctx.payload = "40";
  ASSERT_EQ(ledger->Prepare(ctx), Vote::kPrepared);

  ParticipantServer server(ledger, ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  // The coordinator answers PENDING: the branch stays prepared, asked again.
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto s = server.recovery_stats();
        return s.queries >= 3 && s.retries >= 3;
      },
      10000));
  EXPECT_EQ(server.recovery_stats().unresolved, 1);
  EXPECT_EQ(Prepared(), 1);

  // The client rolls back: the next question gets ABORT and the branch rolls back.
  auto rolled = client_->Rollback(gtid);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  ASSERT_TRUE(server.WaitForRecovery(10000));
  EXPECT_EQ(server.recovery_stats().aborted, 1);
  EXPECT_EQ(Prepared(), 0);
  EXPECT_EQ(Balance(), 0);
  server.Stop();
}

TEST_F(RecoveryProcessTest, UnknownTransactionIsPresumedAborted) {
  auto ledger = NewLedger();
  BranchContext ctx;
  ctx.gtid = "never-begun-at-the-coordinator";
  ctx.branch_id = "b1";
  ctx.payload = "7";
  ASSERT_EQ(ledger->Prepare(ctx), Vote::kPrepared);
  ParticipantServer server(ledger, ServerOptions());
  ASSERT_TRUE(server.Start().ok());
  ASSERT_TRUE(server.WaitForRecovery(10000));
  EXPECT_EQ(server.recovery_stats().aborted, 1);
  EXPECT_EQ(Prepared(), 0);
  EXPECT_EQ(Balance(), 0);
}

// Real processes: the participant is killed (crash point, exit 86) right
// after PREPARE TRANSACTION, before it could vote. The coordinator presumes
// abort; the restarted participant finds the prepared branch in PostgreSQL and
// rolls it back through recovery.
TEST_F(RecoveryProcessTest, ParticipantKilledAfterPrepareRollsBackOnRestart) {
  const int port = testing::FreeLoopbackPort();
  auto start = [&](const std::string& crash_points) {
    testing::ChildProcess::Options o;
    o.argv = {TXC_LEDGER_PARTICIPANT_BIN, conninfo_, std::to_string(port), coord_endpoint_};
    testing::SuiteTls::Get().AppendServiceFlags(&o.argv);
    if (!crash_points.empty()) o.env = {{"TXC_CRASH_POINTS", crash_points}};
    o.log_path = dir_.Child("ledger.log");
    auto child = testing::ChildProcess::Start(o);
    EXPECT_TRUE(child.ok()) << child.status();
    EXPECT_TRUE(testing::WaitForPort(port, 20000).ok());
    return std::move(child).value();
  };
  auto participant = start("participant.after_prepare");
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  const std::string gtid = Enlist(endpoint, "11");
  wire::EnlistRequest second;
  second.gtid = gtid;
  second.branch.branch_id = "b2";
  second.branch.endpoint = endpoint;
  second.branch.resource = "ledger";
  second.branch.payload = "22";
  ASSERT_TRUE(client_->Enlist(second).ok());
  wire::CommitRequest commit;
  commit.gtid = gtid;
  auto decided = client_->Commit(commit);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_EQ(decided->outcome, wire::Outcome::OUTCOME_ABORT);
  auto exit = participant->Wait(10000);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, kCrashExitCode) << participant->LogTail();
  EXPECT_GE(Prepared(), 1);  // left behind by the killed process

  participant = start("");
  ASSERT_TRUE(testing::WaitUntil([&] { return Prepared() == 0; }, 20000)) << participant->LogTail();
  EXPECT_EQ(Balance(), 0);
  ASSERT_TRUE(participant->Kill(SIGTERM).ok());
  ASSERT_TRUE(participant->Wait(10000).ok());
}

// Real processes: COMMIT is decided, and the participant is killed just before
// COMMIT PREPARED. Restarted (on another port, so the coordinator's own
// redrive cannot reach it), its recovery commits the branches.
TEST_F(RecoveryProcessTest, ParticipantKilledBeforeCommitPreparedCommitsOnRestart) {
  const int port = testing::FreeLoopbackPort();
  testing::ChildProcess::Options o;
  o.argv = {TXC_LEDGER_PARTICIPANT_BIN, conninfo_, std::to_string(port), coord_endpoint_};
  testing::SuiteTls::Get().AppendServiceFlags(&o.argv);
  o.env = {{"TXC_CRASH_POINTS", "participant.before_commit_prepared"}};
  o.log_path = dir_.Child("ledger1.log");
  auto participant = testing::ChildProcess::Start(o);
  ASSERT_TRUE(participant.ok()) << participant.status();
  ASSERT_TRUE(testing::WaitForPort(port, 20000).ok());
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);
  const std::string gtid = Enlist(endpoint, "5");
  wire::EnlistRequest second;
  second.gtid = gtid;
  second.branch.branch_id = "b2";
  second.branch.endpoint = endpoint;
  second.branch.resource = "ledger";
  second.branch.payload = "6";
  ASSERT_TRUE(client_->Enlist(second).ok());
  wire::CommitRequest commit;
  commit.gtid = gtid;
  auto decided = client_->Commit(commit);
  ASSERT_TRUE(decided.ok()) << decided.status();
  ASSERT_EQ(decided->outcome, wire::Outcome::OUTCOME_COMMIT);
  auto exit = (*participant)->Wait(10000);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, kCrashExitCode) << (*participant)->LogTail();
  EXPECT_EQ(Prepared(), 2);
  EXPECT_EQ(Balance(), 0);

  const int new_port = testing::FreeLoopbackPort();
  o.argv = {TXC_LEDGER_PARTICIPANT_BIN, conninfo_, std::to_string(new_port), coord_endpoint_};
  testing::SuiteTls::Get().AppendServiceFlags(&o.argv);
  o.env.clear();
  o.log_path = dir_.Child("ledger2.log");
  auto restarted = testing::ChildProcess::Start(o);
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  ASSERT_TRUE(testing::WaitUntil([&] { return Prepared() == 0; }, 20000))
      << (*restarted)->LogTail();
  EXPECT_EQ(Balance(), 11);
  ASSERT_TRUE((*restarted)->Kill(SIGTERM).ok());
  ASSERT_TRUE((*restarted)->Wait(10000).ok());
}

}  // namespace
}  // namespace participant
}  // namespace txc
