// Authorization and the participant allow-list on a real coordinator process:
// a policy file refusing a caller (PermissionDenied, nothing changed, reloaded
// on SIGHUP, a bad file refused at start naming its line), requests naming a
// participant endpoint outside --participant_allow refused with nothing
// stored, and the loopback default (a non-loopback --host without TLS needs
// --insecure).
//
// Transport: the allow-list test runs over the suite's transport
// (suite_tls.h: mutual TLS under TXC_TEST_TLS=1). The policy and loopback
// tests are about plaintext callers on purpose (unauthenticated: what a
// policy grants them comes from its @anyone line; --host=0.0.0.0 without TLS)
// and stay plaintext in every run. Certificate-based roles: authz_tls_process_test.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/thrift_util.h"
#include "gen-cpp/Coordinator.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace {

using testing::ChildProcess;
using testing::TempDir;
using Client = wire::CoordinatorClient;
using Conn = ThriftConnection<Client>;

constexpr int64_t kStartTimeoutMs = 30000;

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// Which transport a test's coordinator and callers use.
enum class Transport {
  kSuite,      // the suite's (plaintext, or mutual TLS under TXC_TEST_TLS=1)
  kPlaintext,  // plaintext on purpose (unauthenticated callers, the loopback default)
};

class Coordinator {
 public:
  Coordinator(const TempDir& dir, std::vector<std::string> flags, Transport transport)
      : dir_(dir), port_(testing::FreeLoopbackPort()), transport_(transport) {
    options_.argv = {TXC_COORDINATOR_BIN, "--port=" + std::to_string(port_),
                     "--data_dir=" + dir.Child("data"), "--node_id=authz-1", "--lease_ttl_ms=3000"};
    if (transport_ == Transport::kSuite) {
      testing::SuiteTls::Get().AppendCoordinatorFlags(&options_.argv);
    }
    options_.argv.insert(options_.argv.end(), flags.begin(), flags.end());
    options_.log_path = dir.Child("coordinator.log");
  }

  // Starts and waits until the port answers.
  Status Start() {
    TXC_ASSIGN_OR_RETURN(child_, ChildProcess::Start(options_));
    Status up = testing::WaitForPort(port_, kStartTimeoutMs);
    if (!up.ok()) return Status(up.code(), up.message() + "\n" + child_->LogTail());
    // The port is bound before the lease is held: wait until health says serving.
    auto conn = Connect();
    if (conn == nullptr) return Status::Unavailable("cannot connect\n" + child_->LogTail());
    const bool serving = testing::WaitUntil(
        [&] {
          wire::HealthResponse health;
          conn->client->health(health);
          return health.serving;
        },
        kStartTimeoutMs);
    if (!serving) return Status::Timeout("not serving\n" + child_->LogTail());
    return Status::Ok();
  }

  // Starts and waits for the exit code (a start-up refusal).
  Result<int> StartExpectingExit() {
    TXC_ASSIGN_OR_RETURN(child_, ChildProcess::Start(options_));
    TXC_ASSIGN_OR_RETURN(testing::ExitStatus exit, child_->Wait(20000));
    return exit.exit_code;
  }

  std::unique_ptr<Conn> Connect() const {
    ConnectOptions options{1000, 20000};
    if (transport_ == Transport::kSuite) options = testing::SuiteTls::Get().Connect(options);
    auto conn = OpenConnection<Client>(HostPort{"127.0.0.1", port_}, options);
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  Transport transport() const { return transport_; }
  ChildProcess* child() { return child_.get(); }
  std::string LogTail() const { return child_ ? child_->LogTail(20000) : ""; }

 private:
  const TempDir& dir_;
  int port_;
  const Transport transport_;
  ChildProcess::Options options_;
  std::unique_ptr<ChildProcess> child_;
};

wire::BranchSpec Branch(const std::string& id, const std::string& endpoint) {
  wire::BranchSpec b;
  b.__set_branch_id(id);
  b.__set_endpoint(endpoint);
  b.__set_resource("accounts");
  b.__set_payload("p");
  return b;
}

int CountTxns(Client& c) {
  wire::ListTxnsRequest req;
  wire::ListTxnsResponse resp;
  c.listTxns(resp, req);
  return static_cast<int>(resp.txns.size());
}

// Runs txcctl against `coord`, over its transport; returns its exit code and output.
int RunTxcctl(const TempDir& dir, const Coordinator& coord, std::vector<std::string> args,
              std::string* output) {
  ChildProcess::Options o;
  o.argv = {TXC_TXCCTL_BIN, "--coordinator=" + coord.endpoint()};
  if (coord.transport() == Transport::kSuite) testing::SuiteTls::Get().AppendTxcctlFlags(&o.argv);
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.log_path = dir.Child("txcctl.log");
  auto child = ChildProcess::Start(o);
  if (!child.ok()) return -1;
  auto exit = (*child)->Wait(20000);
  *output = (*child)->LogTail();
  return exit.ok() ? exit->exit_code : -1;
}

TEST(AuthzProcessTest, AllowListRefusesOutsideEndpointsAndStoresNothing) {
  TempDir dir("txc-authz-test-");
  Coordinator coord(dir, {"--participant_allow=127.0.0.1:9100-9199", "--participant_allow=*.ok"},
                    Transport::kSuite);
  ASSERT_TRUE(coord.Start().ok()) << coord.LogTail();
  auto conn = coord.Connect();
  ASSERT_NE(conn, nullptr);
  Client& c = *conn->client;

  // beginTxn with a branch outside the list: refused, no transaction.
  wire::BeginRequest begin;
  begin.__set_branches({Branch("b1", "127.0.0.1:9100"), Branch("b2", "127.0.0.1:22")});
  wire::BeginResponse begun;
  try {
    c.beginTxn(begun, begin);
    FAIL() << "begin naming 127.0.0.1:22 accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branches[1].endpoint");
    EXPECT_NE(e.message.find("'127.0.0.1:22'"), std::string::npos) << e.message;
  }
  EXPECT_EQ(CountTxns(c), 0);

  // submitSaga with a step outside: refused, its gtid unknown afterwards.
  wire::SubmitSagaRequest saga;
  saga.__set_gtid("saga-outside");
  wire::SagaStep step;
  step.__set_step_id("s1");
  step.__set_endpoint("169.254.169.254:80");
  step.__set_action("reserve");
  step.__set_compensation("release");
  saga.__set_steps({step});
  wire::SubmitSagaResponse submitted;
  try {
    c.submitSaga(submitted, saga);
    FAIL() << "saga naming 169.254.169.254:80 accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "steps[0].endpoint");
    EXPECT_NE(e.message.find("'169.254.169.254:80'"), std::string::npos) << e.message;
  }
  wire::TxnStatus status;
  EXPECT_THROW(c.status(status, "saga-outside"), wire::NotFound);

  // enlist outside: refused, the transaction keeps its branches.
  begin.__set_branches({Branch("b1", "127.0.0.1:9100")});
  c.beginTxn(begun, begin);
  wire::EnlistRequest enlist;
  enlist.__set_gtid(begun.gtid);
  enlist.__set_branch(Branch("b2", "db.internal:5432"));
  try {
    c.enlist(enlist);
    FAIL() << "enlist naming db.internal:5432 accepted";
  } catch (const wire::InvalidArgument& e) {
    EXPECT_EQ(e.field, "branch.endpoint");
  }
  enlist.__set_branch(Branch("b2", "p2.ok:7002"));
  c.enlist(enlist);  // inside: stored
  c.status(status, begun.gtid);
  ASSERT_EQ(status.branches.size(), 2u);
  EXPECT_EQ(status.branches[1].endpoint, "p2.ok:7002");

  // The operator's rebind respects the list too.
  std::string out;
  EXPECT_EQ(
      RunTxcctl(dir, coord,
                {"rebind", begun.gtid, "--from", "127.0.0.1:9100", "--to", "10.0.0.1:9100"}, &out),
      1)
      << out;
  EXPECT_NE(out.find("allow-list"), std::string::npos) << out;
  c.status(status, begun.gtid);
  EXPECT_EQ(status.branches[0].endpoint, "127.0.0.1:9100");
  EXPECT_EQ(CountTxns(c), 1);
}

TEST(AuthzProcessTest, PolicyRefusesCallerAndReloadsOnSighup) {
  TempDir dir("txc-authz-test-");
  const std::string policy = dir.Child("policy.conf");
  WriteFile(policy, "# plaintext callers may only look\n@anyone = reader\nops = admin\n");
  // Plaintext on purpose: the policy's @anyone line is what applies to it.
  Coordinator coord(dir, {"--auth_policy=" + policy}, Transport::kPlaintext);
  ASSERT_TRUE(coord.Start().ok()) << coord.LogTail();
  auto conn = coord.Connect();
  ASSERT_NE(conn, nullptr);
  Client& c = *conn->client;

  wire::HealthResponse health;
  c.health(health);
  EXPECT_TRUE(health.serving);
  wire::TxnStatus status;
  EXPECT_THROW(c.status(status, "nope"), wire::NotFound);  // reader: let through
  EXPECT_EQ(CountTxns(c), 0);

  wire::BeginResponse begun;
  try {
    c.beginTxn(begun, wire::BeginRequest());
    FAIL() << "a reader began a transaction";
  } catch (const wire::PermissionDenied& e) {
    EXPECT_EQ(e.method, "beginTxn");
    EXPECT_EQ(e.identity, "");
    EXPECT_NE(e.message.find("no verified client certificate"), std::string::npos) << e.message;
  }
  wire::CommitRequest commit;
  commit.__set_gtid("nope");
  wire::CommitResponse committed;
  EXPECT_THROW(c.commit(committed, commit), wire::PermissionDenied);
  EXPECT_EQ(CountTxns(c), 0);  // nothing changed

  std::string out;
  EXPECT_EQ(RunTxcctl(dir, coord, {"retry", "nope"}, &out), 7) << out;
  EXPECT_NE(out.find("PermissionDenied"), std::string::npos) << out;
  EXPECT_NE(coord.LogTail().find("permission denied: beginTxn by unauthenticated peer"),
            std::string::npos)
      << coord.LogTail();

  // SIGHUP re-reads the file: now plaintext callers are clients as well.
  WriteFile(policy, "@anyone = reader, client\n");
  ASSERT_TRUE(coord.child()->Kill(SIGHUP).ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        try {
          c.beginTxn(begun, wire::BeginRequest());
          return true;
        } catch (const wire::PermissionDenied&) {
          return false;
        }
      },
      10000))
      << coord.LogTail();
  EXPECT_EQ(CountTxns(c), 1);

  // A bad file on SIGHUP keeps the policy in force.
  WriteFile(policy, "@anyone = superuser\n");
  ASSERT_TRUE(coord.child()->Kill(SIGHUP).ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return coord.LogTail().find("not reloaded") != std::string::npos; }, 10000))
      << coord.LogTail();
  EXPECT_NE(coord.LogTail().find("policy.conf:1: unknown role 'superuser'"), std::string::npos);
  c.beginTxn(begun, wire::BeginRequest());
  EXPECT_EQ(CountTxns(c), 2);
  EXPECT_TRUE(coord.child()->IsRunning());
}

TEST(AuthzProcessTest, StartUpRefusals) {
  TempDir dir("txc-authz-test-");
  const std::string policy = dir.Child("bad.conf");
  WriteFile(policy, "ops = admin\n\nreaders = reader, root\n");
  struct Case {
    std::vector<std::string> flags;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{"--auth_policy=" + policy}, "bad.conf:3: unknown role 'root'"},
      {{"--auth_policy=" + dir.Child("missing.conf")}, "cannot read the policy file"},
      {{"--participant_allow=*.ok,10.0.0.1/8"}, "bad pattern '10.0.0.1/8'"},
      {{"--host=0.0.0.0"}, "--insecure"},
  };
  for (const Case& c : cases) {
    // Plaintext on purpose: --host=0.0.0.0 is refused only without TLS.
    Coordinator coord(dir, c.flags, Transport::kPlaintext);
    Result<int> code = coord.StartExpectingExit();
    ASSERT_TRUE(code.ok()) << c.flags[0] << ": " << code.status();
    EXPECT_EQ(*code, 2) << c.flags[0] << "\n" << coord.LogTail();
    EXPECT_NE(coord.LogTail().find(c.expect), std::string::npos) << c.flags[0] << "\n"
                                                                 << coord.LogTail();
  }
}

TEST(AuthzProcessTest, NonLoopbackWithInsecureStartsWithAWarning) {
  TempDir dir("txc-authz-test-");
  Coordinator coord(dir, {"--host=0.0.0.0", "--insecure"}, Transport::kPlaintext);  // on purpose
  ASSERT_TRUE(coord.Start().ok()) << coord.LogTail();
  auto conn = coord.Connect();
  ASSERT_NE(conn, nullptr);
  wire::HealthResponse health;
  conn->client->health(health);
  EXPECT_TRUE(health.serving);
  EXPECT_NE(coord.LogTail().find("INSECURE: listening on 0.0.0.0 without TLS"), std::string::npos)
      << coord.LogTail();
}

}  // namespace
}  // namespace txc
