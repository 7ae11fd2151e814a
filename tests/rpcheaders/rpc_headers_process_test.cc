// The transaction context in Thrift headers, end to end in processes: a real
// coordinator (SQLite store), three header_echo_service processes A, B, C (a
// user IDL without any transaction field; each owns a PostgreSQL database of
// the harness's shared cluster as an auto-enlisted PgTxnResource), real
// crashes (crash point) and the stock Python Thrift client. Every wait has a
// deadline.
//
// Transport: the suite's (suite_tls.h): under TXC_TEST_TLS=1 the coordinator,
// each service's participant and own ports, its calls and the test's clients
// are mutual TLS. PlainClientsAgainstHeaderServer is about stock plaintext
// clients (C++ and Python) on purpose: service A's own port is plaintext there
// (--plain_echo). HeadersPropagateOverMutualTls brings its own CA
// (RpcHeadersOwnCertsTest: the rest plaintext in every run).
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TSocket.h>

#include <filesystem>
#include <memory>
#include <pqxx/pqxx>
#include <set>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "gen-cpp/Echo.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "tests/harness/test_certs.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/thrift_headers.h"

namespace txc {
namespace {

using participant::ScopedTxnContext;
using participant::TxnHeaderClient;
using testing::ChildProcess;
using EchoClient = headertest::EchoClient;

constexpr int64_t kWaitMs = 30000;

class RpcHeadersProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::TempDir>("txc-rpcheaders-");
    pg_ = testing::SharedPgCluster();
    ASSERT_NE(pg_, nullptr);
    coordinator_port_ = testing::FreeLoopbackPort();
    coordinator_ = "127.0.0.1:" + std::to_string(coordinator_port_);
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(coordinator_port_),
              "--data_dir=" + dir_->Child("coordinator"),
              "--prepare_timeout_ms=2000",
              "--sweep_interval_ms=100",
              "--node_id=coordinator-1"};
    if (suite_tls_) testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    o.log_path = dir_->Child("coordinator.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_proc_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(coordinator_port_, kWaitMs).ok())
        << coordinator_proc_->LogTail();
    for (int i = 0; i < 3; ++i) {
      Service& s = services_[i];
      s.name = std::string(1, static_cast<char>('a' + i));
      s.db = pg_->CreateUniqueDatabase("echo_" + s.name);
      s.port = testing::FreeLoopbackPort();
      s.participant_port = testing::FreeLoopbackPort();
      s.endpoint = "127.0.0.1:" + std::to_string(s.port);
      ASSERT_NO_FATAL_FAILURE(StartService(i, ""));
    }
    participant::CoordinatorClientOptions co;
    co.endpoints = {coordinator_};
    if (suite_tls_) co.tls = testing::SuiteTls::Get().ClientTls();
    auto client = participant::CoordinatorClient::Create(co);
    ASSERT_TRUE(client.ok()) << client.status();
    coordinator_client_ = std::move(client).value();
  }

  void TearDown() override {
    if (HasFailure()) {
      if (coordinator_proc_) LOG(ERROR) << "coordinator log:\n" << coordinator_proc_->LogTail();
      for (auto& s : services_) {
        if (s.proc) LOG(ERROR) << s.name << " log:\n" << s.proc->LogTail(3000);
      }
    }
    for (auto& s : services_) s.proc.reset();
    coordinator_proc_.reset();
  }

  struct Service {
    std::string name, db, endpoint;
    int port = 0, participant_port = 0;
    std::unique_ptr<ChildProcess> proc;
  };

  void StartService(int i, const std::string& crash_points, int64_t idle_timeout_ms = 0,
                    const std::vector<std::string>& flags = {}) {
    Service& s = services_[i];
    ChildProcess::Options o;
    o.argv = {TXC_ECHO_SERVICE_BIN,
              std::to_string(s.port),
              std::to_string(s.participant_port),
              pg_->ConnectionString(s.db),
              s.name,
              coordinator_};
    if (idle_timeout_ms > 0) o.argv.push_back(std::to_string(idle_timeout_ms));
    if (suite_tls_ && testing::SuiteTls::Get().enabled()) {
      testing::SuiteTls::Get().AppendServiceFlags(&o.argv);
      o.argv.push_back("--participant_tls");  // its participant port and coordinator calls too
    }
    o.argv.insert(o.argv.end(), flags.begin(), flags.end());
    if (!crash_points.empty()) o.env = {{"TXC_CRASH_POINTS", crash_points}};
    o.log_path = dir_->Child("service_" + s.name + ".log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    s.proc = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(s.port, kWaitMs).ok()) << s.proc->LogTail();
  }

  wire::BeginResponse Begin(int64_t timeout_ms = 60000) {
    wire::BeginRequest request;
    request.timeout_ms = timeout_ms;
    auto begun = coordinator_client_->Begin(request);
    EXPECT_TRUE(begun.ok()) << begun.status();
    return begun.ok() ? *begun : wire::BeginResponse{};
  }

  Result<wire::CommitResponse> Commit(const std::string& gtid) {
    wire::CommitRequest request;
    request.gtid = gtid;
    request.wait = wire::CommitWait::WAIT_COMPLETION;
    request.wait_timeout_ms = 20000;
    return coordinator_client_->Commit(request);
  }

  // How the test reaches the services' own ports: the suite's transport, or
  // plaintext in a test that brings its own certificates.
  ConnectOptions Transport() const {
    return suite_tls_ ? testing::SuiteTls::Get().Connect() : ConnectOptions{};
  }
  std::unique_ptr<TxnHeaderClient<EchoClient>> Open(int i) { return Open(i, Transport()); }
  std::unique_ptr<TxnHeaderClient<EchoClient>> Open(int i, const ConnectOptions& options) {
    auto client = TxnHeaderClient<EchoClient>::Open(services_[i].endpoint, options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  int64_t Rows(int i, const std::string& gtid) {
    auto v = pg_->QueryValue(
        services_[i].db, "SELECT count(*) FROM echo_calls WHERE gtid = " +
                             pqxx::connection(pg_->ConnectionString(services_[i].db)).quote(gtid));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? std::stoll(*v) : -1;
  }
  int64_t AllRows(int i) {
    auto v = pg_->QueryValue(services_[i].db, "SELECT count(*) FROM echo_calls");
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? std::stoll(*v) : -1;
  }
  int64_t PreparedXacts(int i) {
    auto v = pg_->QueryValue(services_[i].db,
                             "SELECT count(*) FROM pg_prepared_xacts WHERE database = "
                             "current_database()");
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? std::stoll(*v) : -1;
  }

  std::vector<wire::BranchStatus> Branches(const std::string& gtid) {
    auto status = coordinator_client_->GetStatus(gtid);
    EXPECT_TRUE(status.ok()) << status.status();
    return status.ok() ? status->branches : std::vector<wire::BranchStatus>{};
  }

  // A -> B -> C, twice, inside the transaction; returns the answers.
  std::vector<std::string> CallChainTwice(const wire::TxnContext& context) {
    return CallChainTwice(context, Transport());
  }
  std::vector<std::string> CallChainTwice(const wire::TxnContext& context,
                                          const ConnectOptions& options) {
    std::vector<std::string> answers;
    auto a = Open(0, options);
    if (a == nullptr) return answers;
    ScopedTxnContext scope(context);
    for (int k = 0; k < 2; ++k) {
      std::string out;
      (*a)->whoami(out, services_[1].endpoint + "," + services_[2].endpoint);
      answers.push_back(out);
    }
    return answers;
  }

  std::unique_ptr<testing::TempDir> dir_;
  testing::PgCluster* pg_ = nullptr;
  int coordinator_port_ = 0;
  std::string coordinator_;
  std::unique_ptr<ChildProcess> coordinator_proc_;
  Service services_[3];
  std::unique_ptr<participant::CoordinatorClient> coordinator_client_;
  // The coordinator, the services (their participant ports, their calls to
  // the coordinator and their own ports) and the test's clients use the
  // suite's transport (suite_tls.h); false in tests with their own certificates.
  bool suite_tls_ = true;
};

// A test that brings its own CA for the services' own ports: the rest plaintext.
class RpcHeadersOwnCertsTest : public RpcHeadersProcessTest {
 protected:
  RpcHeadersOwnCertsTest() { suite_tls_ = false; }
};

TEST_F(RpcHeadersProcessTest, TwoHopsEnlistOncePerResourceAndCommit) {
  const wire::BeginResponse begun = Begin();
  const std::string& gtid = begun.gtid;
  auto answers = CallChainTwice(begun.context);
  ASSERT_EQ(answers.size(), 2u);
  for (const auto& answer : answers) EXPECT_EQ(answer, gtid + "|" + gtid + "|" + gtid + "|");

  // Six calls, three resources: exactly three branches, one per service.
  auto branches = Branches(gtid);
  ASSERT_EQ(branches.size(), 3u);
  std::set<std::string> resources;
  for (const auto& b : branches) resources.insert(b.resource);
  EXPECT_EQ(resources, (std::set<std::string>{"a-db", "b-db", "c-db"}));
  // Nothing visible before the commit: the work sits in open local transactions.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Rows(i, gtid), 0) << services_[i].name;

  auto committed = Commit(gtid);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->state, wire::TxnState::COMMITTED) << committed->state;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(testing::WaitUntil([&] { return Rows(i, gtid) == 2; }, kWaitMs))
        << services_[i].name << " has " << Rows(i, gtid);
    EXPECT_EQ(PreparedXacts(i), 0);
  }
}

TEST_F(RpcHeadersProcessTest, ConcurrentFirstCallsEnlistOnce) {
  const wire::BeginResponse begun = Begin();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&] {
      auto b = TxnHeaderClient<EchoClient>::Open(services_[1].endpoint, Transport());
      if (!b.ok()) return;
      ScopedTxnContext scope(begun.context);
      std::string out;
      (**b)->whoami(out, "");
      if (out == begun.gtid + "|") ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_EQ(Branches(begun.gtid).size(), 1u);
  auto committed = Commit(begun.gtid);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_TRUE(testing::WaitUntil([&] { return Rows(1, begun.gtid) == 6; }, kWaitMs))
      << Rows(1, begun.gtid);
}

TEST_F(RpcHeadersProcessTest, RollbackUndoesEveryHop) {
  const wire::BeginResponse begun = Begin();
  auto answers = CallChainTwice(begun.context);
  ASSERT_EQ(answers.size(), 2u);
  ASSERT_EQ(Branches(begun.gtid).size(), 3u);
  auto rolled = coordinator_client_->Rollback(begun.gtid);
  ASSERT_TRUE(rolled.ok()) << rolled.status();
  // The open local transactions are rolled back by the branches' abort; a
  // later call of the same gtid is refused rather than starting over.
  auto a = Open(0);
  ASSERT_NE(a, nullptr);
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        try {
          ScopedTxnContext scope(begun.context);
          std::string out;
          (*a)->whoami(out, "");
          return false;
        } catch (const headertest::Refused&) {
          return true;
        }
      },
      kWaitMs));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Rows(i, begun.gtid), 0) << services_[i].name;
    EXPECT_EQ(PreparedXacts(i), 0);
  }
}

TEST_F(RpcHeadersProcessTest, DownstreamRefusalRollsEverythingBack) {
  const wire::BeginResponse begun = Begin();
  auto a = Open(0);
  auto c = Open(2);
  ASSERT_TRUE(a && c);
  bool refused = false;
  {
    ScopedTxnContext scope(begun.context);
    std::string out;
    (*a)->whoami(out, services_[1].endpoint);
    EXPECT_EQ(out, begun.gtid + "|" + begun.gtid + "|");
    try {
      (*c)->fail();
    } catch (const headertest::Refused& r) {
      refused = true;
    }
  }
  ASSERT_TRUE(refused);
  // The front's choice on a refusal: roll back.
  ASSERT_TRUE(coordinator_client_->Rollback(begun.gtid).ok());
  auto status = coordinator_client_->GetStatus(begun.gtid);
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        auto s = coordinator_client_->GetStatus(begun.gtid);
        return !s.ok() || s->state == wire::TxnState::ABORTED;
      },
      kWaitMs));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Rows(i, begun.gtid), 0) << services_[i].name;
}

TEST_F(RpcHeadersProcessTest, FailedStatementUndoesOnlyItsCall) {
  const wire::BeginResponse begun = Begin();
  auto b = Open(1);
  ASSERT_NE(b, nullptr);
  {
    ScopedTxnContext scope(begun.context);
    std::string out;
    (*b)->whoami(out, "");
    EXPECT_THROW((*b)->bad_sql(), headertest::Refused);
    (*b)->whoami(out, "");  // the local transaction is still usable
    EXPECT_EQ(out, begun.gtid + "|");
  }
  auto committed = Commit(begun.gtid);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->state, wire::TxnState::COMMITTED) << committed->state;
  EXPECT_EQ(Rows(1, begun.gtid), 2);
}

TEST_F(RpcHeadersProcessTest, IdleLocalTransactionRolledBackAndBranchAborts) {
  // B rolls back a local transaction that saw no call for 1 s.
  services_[1].proc.reset();
  ASSERT_NO_FATAL_FAILURE(StartService(1, "", /*idle_timeout_ms=*/1000));
  const wire::BeginResponse begun = Begin();
  auto b = Open(1);
  ASSERT_NE(b, nullptr);
  auto idle_in_transaction = [&] {
    auto v = pg_->QueryValue(services_[1].db,
                             "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND state LIKE 'idle in transaction%'");
    return v.ok() ? std::stoll(*v) : -1;
  };
  {
    ScopedTxnContext scope(begun.context);
    std::string out;
    (*b)->whoami(out, "");
    ASSERT_EQ(out, begun.gtid + "|");
  }
  // (Held open between calls: see TwoHopsEnlistOncePerResourceAndCommit.)
  EXPECT_TRUE(testing::WaitUntil([&] { return idle_in_transaction() == 0; }, kWaitMs));
  // The gtid is finished there: a later call is refused, not run in a new
  // local transaction that would commit half of the work.
  {
    ScopedTxnContext scope(begun.context);
    std::string out;
    EXPECT_THROW((*b)->whoami(out, ""), headertest::Refused);
  }
  auto outcome = Commit(begun.gtid);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_TRUE(outcome->state == wire::TxnState::ABORTED ||
              outcome->state == wire::TxnState::ABORTING)
      << outcome->state;
  EXPECT_EQ(Rows(1, begun.gtid), 0);
}

TEST_F(RpcHeadersProcessTest, CallWithoutContextCarriesNothing) {
  const int64_t before_a = Rows(0, ""), before_b = Rows(1, "");
  auto a = Open(0);
  ASSERT_NE(a, nullptr);
  std::string out;
  (*a)->whoami(out, services_[1].endpoint);
  EXPECT_EQ(out, "||");
  (*a)->current(out);
  EXPECT_EQ(out, "");
  // Committed at once, outside any global transaction.
  EXPECT_EQ(Rows(0, ""), before_a + 1);
  EXPECT_EQ(Rows(1, ""), before_b + 1);
}

TEST_F(RpcHeadersProcessTest, ExpiredDeadlineRefusedBeforeHandler) {
  wire::BeginResponse begun = Begin();
  wire::TxnContext expired = begun.context;
  expired.deadline_unix_ms = NowUnixMs() - 1000;
  auto a = Open(0);
  ASSERT_NE(a, nullptr);
  const int64_t before = AllRows(0);
  try {
    ScopedTxnContext scope(expired);
    std::string out;
    (*a)->whoami(out, "");
    FAIL() << "an expired context reached the handler";
  } catch (const apache::thrift::TApplicationException& e) {
    EXPECT_TRUE(participant::IsTxnContextRefusal(e)) << e.what();
    EXPECT_NE(std::string(e.what()).find("expired"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(begun.gtid), std::string::npos) << e.what();
  }
  EXPECT_EQ(AllRows(0), before);
  EXPECT_TRUE(Branches(begun.gtid).empty());
}

TEST_F(RpcHeadersProcessTest, MalformedHeaderRefusedBeforeHandler) {
  // A raw client that sends a bad header value by hand, over the suite's transport.
  std::shared_ptr<apache::thrift::transport::TTransport> socket;
  if (auto tls = Transport().tls) {
    socket = tls->ClientSocket("127.0.0.1", services_[0].port,
                               MakeThriftConfig(kDefaultMaxMessageBytes));
  } else {
    socket = std::make_shared<apache::thrift::transport::TSocket>("127.0.0.1", services_[0].port);
  }
  auto raw = std::make_shared<participant::TxnHeaderProtocol>(socket, kDefaultMaxMessageBytes,
                                                              /*attach_context=*/false);
  raw->getTransport()->open();
  EchoClient client(raw);
  const int64_t before = AllRows(0);
  for (const std::string& bad : {std::string("v1;AAAA"), std::string("v7;whatever"),
                                 std::string("garbage without version")}) {
    raw->setHeader(participant::kTxnHeaderKey, bad);
    try {
      std::string out;
      client.whoami(out, "");
      FAIL() << "a malformed header reached the handler";
    } catch (const apache::thrift::TApplicationException& e) {
      EXPECT_TRUE(participant::IsTxnContextRefusal(e)) << e.what();
      EXPECT_EQ(e.getType(), apache::thrift::TApplicationException::PROTOCOL_ERROR);
    }
  }
  EXPECT_EQ(AllRows(0), before);
  raw->clearHeaders();
  std::string out;
  client.whoami(out, "");
  EXPECT_EQ(out, "|");
}

TEST_F(RpcHeadersProcessTest, DownstreamCrashAfterPrepareResolvedOnRestart) {
  // C dies right after PREPARE TRANSACTION, before voting.
  services_[2].proc.reset();
  ASSERT_NO_FATAL_FAILURE(StartService(2, "participant.after_prepare"));
  const wire::BeginResponse begun = Begin();
  auto answers = CallChainTwice(begun.context);
  ASSERT_EQ(answers.size(), 2u);
  auto outcome = Commit(begun.gtid);  // C's vote never comes: presumed abort
  auto exit = services_[2].proc->Wait(kWaitMs);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, kCrashExitCode) << exit->ToString();
  EXPECT_EQ(PreparedXacts(2), 1) << "C's branch stays prepared across the crash";

  ASSERT_NO_FATAL_FAILURE(StartService(2, ""));
  // Recovery asks the coordinator and finishes the prepared branch.
  EXPECT_TRUE(testing::WaitUntil([&] { return PreparedXacts(2) == 0; }, kWaitMs));
  auto status = coordinator_client_->GetStatus(begun.gtid);
  const bool committed = status.ok() && status->state == wire::TxnState::COMMITTED;
  // Atomic either way: every service has both calls' rows, or none has any.
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(
        testing::WaitUntil([&] { return Rows(i, begun.gtid) == (committed ? 2 : 0); }, kWaitMs))
        << services_[i].name << " " << Rows(i, begun.gtid) << " committed=" << committed;
  }
  std::printf("commit answer: %s, final state %s\n",
              outcome.ok() ? "ok" : outcome.status().ToString().c_str(),
              status.ok() ? std::to_string(static_cast<int>(status->state)).c_str() : "?");
}

TEST_F(RpcHeadersProcessTest, DownstreamCrashInPhaseTwoCommitsOnRestart) {
  // Every branch prepares, COMMIT is logged, then C dies before COMMIT PREPARED.
  services_[2].proc.reset();
  ASSERT_NO_FATAL_FAILURE(StartService(2, "participant.before_commit_prepared"));
  const wire::BeginResponse begun = Begin();
  ASSERT_EQ(CallChainTwice(begun.context).size(), 2u);
  wire::CommitRequest request;
  request.gtid = begun.gtid;
  request.wait = wire::CommitWait::WAIT_DECISION;
  auto decided = coordinator_client_->Commit(request);
  ASSERT_TRUE(decided.ok()) << decided.status();
  EXPECT_TRUE(decided->state == wire::TxnState::COMMITTING ||
              decided->state == wire::TxnState::COMMITTED)
      << decided->state;
  auto exit = services_[2].proc->Wait(kWaitMs);
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(exit->exit_code, kCrashExitCode) << exit->ToString();
  ASSERT_NO_FATAL_FAILURE(StartService(2, ""));
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(testing::WaitUntil([&] { return Rows(i, begun.gtid) == 2; }, kWaitMs))
        << services_[i].name << " " << Rows(i, begun.gtid);
  }
  EXPECT_TRUE(testing::WaitUntil([&] { return PreparedXacts(2) == 0; }, kWaitMs));
}

// The services' own ports serve mutual TLS (certificates from a throwaway CA):
// the context still travels A -> B -> C, every hop presenting its service's
// certificate, the branches enlist and commit; the caller's certificate is
// its identity on the server; a client without a certificate, and a
// plaintext one, are refused before any handler runs.
TEST_F(RpcHeadersOwnCertsTest, HeadersPropagateOverMutualTls) {
  auto ca = testing::TestCa::Create("rpcheaders-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  for (int i = 0; i < 3; ++i) {
    auto cert =
        (*ca)->IssueLoopbackServer("echo-" + services_[i].name, "echo-" + services_[i].name);
    ASSERT_TRUE(cert.ok()) << cert.status();
    services_[i].proc.reset();
    ASSERT_NO_FATAL_FAILURE(
        StartService(i, "", 0,
                     {"--tls_cert=" + cert->cert_file, "--tls_key=" + cert->key_file,
                      "--tls_ca=" + (*ca)->ca_file()}));
  }
  auto front = (*ca)->Issue("front", "front", {"URI:spiffe://txc/front"});
  ASSERT_TRUE(front.ok()) << front.status();
  auto client_tls = TlsContext::Create((*ca)->Options(*front), TlsRole::kClient);
  ASSERT_TRUE(client_tls.ok()) << client_tls.status();
  ConnectOptions tls;
  tls.rpc_timeout_ms = 30000;
  tls.tls = *client_tls;

  const wire::BeginResponse begun = Begin();
  auto answers = CallChainTwice(begun.context, tls);
  ASSERT_EQ(answers.size(), 2u);
  for (const auto& answer : answers) {
    EXPECT_EQ(answer, begun.gtid + "|" + begun.gtid + "|" + begun.gtid + "|");
  }
  EXPECT_EQ(Branches(begun.gtid).size(), 3u);
  auto a = Open(0, tls);
  ASSERT_NE(a, nullptr);
  std::string caller;
  (*a)->caller(caller);
  EXPECT_EQ(caller.rfind("CN=front from 127.0.0.1:", 0), 0u) << caller;
  auto committed = Commit(begun.gtid);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(committed->state, wire::TxnState::COMMITTED) << committed->state;
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(testing::WaitUntil([&] { return Rows(i, begun.gtid) == 2; }, kWaitMs))
        << services_[i].name << " has " << Rows(i, begun.gtid);
  }

  // No client certificate: refused in the handshake (under TLS 1.3 the
  // refusal reaches the client at its first call).
  const wire::BeginResponse second = Begin();
  const int64_t rows_before = AllRows(0);
  TlsOptions no_cert;
  no_cert.ca_file = (*ca)->ca_file();
  auto anonymous_tls = TlsContext::Create(no_cert, TlsRole::kClient);
  ASSERT_TRUE(anonymous_tls.ok());
  ConnectOptions anonymous_options = tls;
  anonymous_options.tls = *anonymous_tls;
  auto anonymous = TxnHeaderClient<EchoClient>::Open(services_[0].endpoint, anonymous_options);
  if (anonymous.ok()) {
    ScopedTxnContext scope(second.context);
    std::string out;
    try {
      (**anonymous)->whoami(out, "");
      ADD_FAILURE() << "a client without a certificate was served: " << out;
    } catch (const apache::thrift::transport::TTransportException& e) {
      EXPECT_NE(std::string(e.what()).find("certificate required"), std::string::npos) << e.what();
    }
  } else {
    EXPECT_NE(anonymous.status().message().find("certificate required"), std::string::npos)
        << anonymous.status();
  }
  // A plaintext header client: refused too.
  auto plaintext = Open(0);
  ASSERT_NE(plaintext, nullptr);
  {
    ScopedTxnContext scope(second.context);
    std::string out;
    EXPECT_THROW((*plaintext)->whoami(out, ""), apache::thrift::transport::TTransportException);
  }
  EXPECT_EQ(AllRows(0), rows_before);
  EXPECT_TRUE(Branches(second.gtid).empty());
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return services_[0].proc->LogTail(100000).find("TLS handshake with") != std::string::npos;
      },
      kWaitMs))
      << services_[0].proc->LogTail(3000);
  // The good client is still served.
  std::string out;
  (*a)->current(out);
  EXPECT_EQ(out, "");
}

TEST_F(RpcHeadersProcessTest, PlainClientsAgainstHeaderServer) {
  // Stock plaintext clients on purpose: A's own port plaintext in every run
  // (its participant port and calls stay on the suite's transport).
  services_[0].proc.reset();
  ASSERT_NO_FATAL_FAILURE(StartService(0, "", 0, {"--plain_echo"}));
  // C++: stock framed binary transport, no headers.
  auto socket =
      std::make_shared<apache::thrift::transport::TSocket>("127.0.0.1", services_[0].port);
  socket->setRecvTimeout(10000);
  auto framed = std::make_shared<apache::thrift::transport::TFramedTransport>(socket);
  framed->open();
  EchoClient plain(std::make_shared<apache::thrift::protocol::TBinaryProtocol>(framed));
  std::string out;
  plain.whoami(out, services_[1].endpoint);  // A still passes nothing on
  EXPECT_EQ(out, "||");
  framed->close();

  // Python: the stock compiler's client, TFramedTransport + TBinaryProtocol.
  const std::string gen = dir_->Child("gen-py");
  std::filesystem::create_directories(gen);
  testing::ChildProcess::Options generate;
  generate.argv = {TXC_THRIFT_COMPILER, "--gen", "py", "-out", gen, TXC_ECHO_IDL};
  generate.log_path = dir_->Child("thrift-py.log");
  Status s = testing::RunCommand(generate, kWaitMs);
  ASSERT_TRUE(s.ok()) << s;
  testing::ChildProcess::Options py;
  py.argv = {TXC_SYSTEM_PYTHON3, TXC_PLAIN_CLIENT_PY, gen, "127.0.0.1",
             std::to_string(services_[0].port)};
  py.stdout_path = dir_->Child("python.out");
  py.log_path = dir_->Child("python.err");
  s = testing::RunCommand(py, kWaitMs);
  ASSERT_TRUE(s.ok()) << s << testing::ReadFileOrEmpty(py.log_path);
  EXPECT_EQ(testing::ReadFileOrEmpty(py.stdout_path), "|\ncurrent=\n");
}

}  // namespace
}  // namespace txc
