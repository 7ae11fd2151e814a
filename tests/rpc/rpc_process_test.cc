// The coordinator as a real process, talked to over Thrift: begin/status/health
// on SQLite and PostgreSQL, durability across SIGKILL, idempotent begin, bad
// input, malformed and oversized frames, a long-lived connection carrying more
// than 110 MiB, clean shutdown on SIGTERM, flag errors, txcctl.
//
// Transport: the suite's (suite_tls.h): every coordinator, connection, raw
// frame and txcctl run goes over mutual TLS under TXC_TEST_TLS=1, plaintext
// otherwise. StockFramedTransportTest's in-process server is plaintext on
// purpose (it shows a Thrift bug, not our server).
#include <arpa/inet.h>
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <thrift/server/TThreadedServer.h>
#include <thrift/transport/TServerSocket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/thrift_util.h"
#include "common/tls.h"
#include "coordinator/core/validation.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "coordinator/service/coordinator_service.h"
#include "gen-cpp/Coordinator.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace {

using testing::ChildProcess;
using testing::TempDir;
using Client = wire::CoordinatorClient;
using Conn = ThriftConnection<Client>;

constexpr int64_t kStartTimeoutMs = 30000;

// One coordinator process on a fixed port; restartable on the same data.
class CoordinatorProcess {
 public:
  CoordinatorProcess(std::string data_dir, std::string store, std::string node_id,
                     std::vector<std::string> extra_flags = {})
      : data_dir_(std::move(data_dir)),
        store_(std::move(store)),
        node_id_(std::move(node_id)),
        extra_flags_(std::move(extra_flags)),
        port_(testing::FreeLoopbackPort()) {}

  Status Start() {
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,       "--host=127.0.0.1",      "--port=" + std::to_string(port_),
              "--data_dir=" + data_dir_, "--node_id=" + node_id_, "--lease_ttl_ms=3000"};
    if (!store_.empty()) o.argv.push_back("--store=" + store_);
    testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    for (const auto& f : extra_flags_) o.argv.push_back(f);
    o.log_path = data_dir_ + "/coordinator-" + node_id_ + ".log";
    TXC_ASSIGN_OR_RETURN(child_, ChildProcess::Start(o));
    Status up = testing::WaitForPort(port_, kStartTimeoutMs);
    if (!up.ok()) return Status(up.code(), up.message() + "\n" + child_->LogTail());
    return Status::Ok();
  }

  std::unique_ptr<Conn> Connect() const {
    auto conn = OpenConnection<Client>(HostPort{"127.0.0.1", port_},
                                       testing::SuiteTls::Get().Connect({1000, 20000}));
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  ChildProcess* child() { return child_.get(); }
  int port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string LogTail() const { return child_ ? child_->LogTail() : ""; }

 private:
  std::string data_dir_;
  std::string store_;
  std::string node_id_;
  std::vector<std::string> extra_flags_;
  int port_;
  std::unique_ptr<ChildProcess> child_;
};

wire::BranchSpec Branch(const std::string& id, std::string payload = "p") {
  wire::BranchSpec b;
  b.__set_branch_id(id);
  b.__set_endpoint("127.0.0.1:9");
  b.__set_resource("accounts");
  b.__set_payload(std::move(payload));
  return b;
}

std::string Begin(Client& c, const std::string& key = "", std::vector<wire::BranchSpec> br = {}) {
  wire::BeginRequest req;
  req.__set_timeout_ms(120000);
  if (!key.empty()) req.__set_idempotency_key(key);
  if (!br.empty()) req.__set_branches(br);
  wire::BeginResponse resp;
  c.beginTxn(resp, req);
  return resp.gtid;
}

// ---- per store: SQLite (the default) and PostgreSQL ---------------------------

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      testing::PgCluster* pg = testing::SharedPgCluster();
      store_ = pg->ConnectionString(pg->CreateUniqueDatabase("rpc"));
    }
  }
  std::unique_ptr<CoordinatorProcess> Make(const std::string& node = "node-1") {
    return std::make_unique<CoordinatorProcess>(dir_.path(), store_, node);
  }
  TempDir dir_{"txc-rpc-test-"};
  std::string store_;  // empty: SQLite in the data dir
};

TEST_P(StoreTest, BeginStatusHealth) {
  auto coord = Make();
  ASSERT_TRUE(coord->Start().ok());
  auto conn = coord->Connect();
  ASSERT_NE(conn, nullptr);
  const std::string gtid = Begin(*conn->client, "", {Branch("b1"), Branch("b2")});
  ASSERT_TRUE(ValidateId("gtid", gtid).ok()) << gtid;

  wire::TxnStatus status;
  conn->client->status(status, gtid);
  EXPECT_EQ(status.gtid, gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
  EXPECT_EQ(status.owner, "node-1");
  ASSERT_EQ(status.branches.size(), 2u);
  EXPECT_EQ(status.branches[1].branch_id, "b2");
  EXPECT_EQ(status.branches[1].state, wire::BranchState::REGISTERED);

  wire::HealthResponse health;
  conn->client->health(health);
  EXPECT_EQ(health.node_id, "node-1");
  EXPECT_EQ(health.store, GetParam());
  EXPECT_TRUE(health.serving);
  EXPECT_GE(health.epoch, 1);
  EXPECT_EQ(health.replicas, std::vector<std::string>{coord->endpoint()});
}

TEST_P(StoreTest, TransactionSurvivesSigkillAndRestart) {
  auto coord = Make();
  ASSERT_TRUE(coord->Start().ok());
  std::string gtid;
  int64_t epoch = 0;
  {
    auto conn = coord->Connect();
    ASSERT_NE(conn, nullptr);
    gtid = Begin(*conn->client, "", {Branch("b1", std::string(1000, 'x'))});
    wire::HealthResponse h;
    conn->client->health(h);
    epoch = h.epoch;
  }
  ASSERT_TRUE(coord->child()->Kill(SIGKILL).ok());
  auto exit = coord->child()->Wait(10000);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->signal, SIGKILL);

  ASSERT_TRUE(coord->Start().ok()) << coord->LogTail();
  auto conn = coord->Connect();
  ASSERT_NE(conn, nullptr);
  wire::TxnStatus status;
  conn->client->status(status, gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
  ASSERT_EQ(status.branches.size(), 1u);
  EXPECT_EQ(status.branches[0].branch_id, "b1");
  wire::HealthResponse h;
  conn->client->health(h);
  EXPECT_GT(h.epoch, epoch);  // the restarted node fences its previous incarnation
}

TEST_P(StoreTest, SameIdempotencyKeySameGtid) {
  auto coord = Make();
  ASSERT_TRUE(coord->Start().ok());
  auto a = coord->Connect();
  auto b = coord->Connect();
  ASSERT_TRUE(a && b);
  const std::string first = Begin(*a->client, "checkout-991");
  const std::string second = Begin(*b->client, "checkout-991");
  EXPECT_EQ(first, second);
  EXPECT_NE(Begin(*a->client, "checkout-992"), first);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

TEST(RpcProcessTest, TwoReplicasOnOnePostgresSeeEachOther) {
  testing::PgCluster* pg = testing::SharedPgCluster();
  const std::string store = pg->ConnectionUri(pg->CreateUniqueDatabase("replicas"));
  TempDir dir("txc-rpc-test-");
  CoordinatorProcess a(dir.path(), store, "replica-a");
  CoordinatorProcess b(dir.path(), store, "replica-b");
  ASSERT_TRUE(a.Start().ok()) << a.LogTail();
  ASSERT_TRUE(b.Start().ok()) << b.LogTail();
  auto conn_a = a.Connect();
  auto conn_b = b.Connect();
  ASSERT_TRUE(conn_a && conn_b);
  // A transaction begun on one replica is visible on the other.
  const std::string gtid = Begin(*conn_a->client);
  wire::TxnStatus status;
  conn_b->client->status(status, gtid);
  EXPECT_EQ(status.owner, "replica-a");
  // Both leases are live: health and the begin context list both endpoints.
  std::vector<std::string> want = {a.endpoint(), b.endpoint()};
  std::sort(want.begin(), want.end());
  bool both = testing::WaitUntil(
      [&] {
        wire::HealthResponse h;
        conn_b->client->health(h);
        std::sort(h.replicas.begin(), h.replicas.end());
        return h.replicas == want;
      },
      5000);
  EXPECT_TRUE(both);
}

// ---- bad input ----------------------------------------------------------------

class SqliteCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coord_ = std::make_unique<CoordinatorProcess>(dir_.path(), "", "node-1");
    ASSERT_TRUE(coord_->Start().ok()) << coord_->LogTail();
    conn_ = coord_->Connect();
    ASSERT_NE(conn_, nullptr);
  }
  // The server still serves on the same connection.
  void ExpectServing() {
    wire::HealthResponse h;
    ASSERT_NO_THROW(conn_->client->health(h));
    EXPECT_TRUE(h.serving);
  }
  Client& client() { return *conn_->client; }

  TempDir dir_{"txc-rpc-test-"};
  std::unique_ptr<CoordinatorProcess> coord_;
  std::unique_ptr<Conn> conn_;
};

TEST_F(SqliteCoordinatorTest, BadInputGetsTypedErrorsAndChangesNothing) {
  const std::string gtid = Begin(client());
  auto expect_invalid = [&](const std::function<void()>& call, const std::string& field) {
    try {
      call();
      ADD_FAILURE() << "accepted bad " << field;
    } catch (const wire::InvalidArgument& e) {
      EXPECT_EQ(e.field, field) << e.message;
    }
    ExpectServing();
  };
  wire::BeginResponse br;
  for (int64_t timeout : {int64_t{0}, int64_t{-1}, kMaxTimeoutMs + 1}) {
    wire::BeginRequest req;
    req.__set_timeout_ms(timeout);
    expect_invalid([&] { client().beginTxn(br, req); }, "timeout_ms");
  }
  {
    wire::BeginRequest req;
    req.__set_idempotency_key(std::string(kMaxIdBytes + 1, 'k'));
    expect_invalid([&] { client().beginTxn(br, req); }, "idempotency_key");
  }
  {
    wire::BeginRequest req;
    req.__set_branches({Branch(std::string(kMaxIdBytes + 1, 'b'))});
    expect_invalid([&] { client().beginTxn(br, req); }, "branch.branch_id");
  }
  for (const char* endpoint : {"no-port", "host:", ":7", "host:99999", "host:12ab"}) {
    wire::BeginRequest req;
    wire::BranchSpec b = Branch("b1");
    b.__set_endpoint(endpoint);
    req.__set_branches({b});
    expect_invalid([&] { client().beginTxn(br, req); }, "branch.endpoint");
    wire::EnlistRequest enlist;
    enlist.__set_gtid(gtid);
    enlist.__set_branch(b);
    expect_invalid([&] { client().enlist(enlist); }, "branch.endpoint");
  }
  wire::TxnStatus status;
  expect_invalid([&] { client().status(status, std::string(kMaxIdBytes + 1, 'g')); }, "gtid");
  expect_invalid([&] { client().status(status, ""); }, "gtid");
  try {
    client().status(status, "no-such-gtid");
    ADD_FAILURE() << "unknown gtid found";
  } catch (const wire::NotFound& e) {
    EXPECT_EQ(e.gtid, "no-such-gtid");
  }
  ExpectServing();
  wire::CommitResponse cr;
  EXPECT_THROW(client().rollback(cr, "no-such-gtid"), wire::NotFound);
  ExpectServing();

  // Nothing changed: the one transaction is as it was, with no branch.
  client().status(status, gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
  EXPECT_TRUE(status.branches.empty());
}

// ---- raw bytes on the port ----------------------------------------------------------

int RawConnect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return -1;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// The same over a mutual-TLS connection of the suite's client identity: the
// bytes reach the framed transport behind the handshake.
bool TlsServerClosesAfter(int port, const std::string& bytes) {
  auto context = TlsContext::Create(testing::SuiteTls::Get().ClientTls(), TlsRole::kClient);
  EXPECT_TRUE(context.ok()) << context.status();
  if (!context.ok()) return false;
  auto socket =
      (*context)->ClientSocket("127.0.0.1", port, MakeThriftConfig(kDefaultMaxMessageBytes));
  socket->setRecvTimeout(10000);
  try {
    socket->open();
    Status handshake = socket->Handshake();
    EXPECT_TRUE(handshake.ok()) << handshake;
    if (!handshake.ok()) return false;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "TLS connect: " << e.what();
    return false;
  }
  try {
    socket->write(reinterpret_cast<const uint8_t*>(bytes.data()),
                  static_cast<uint32_t>(bytes.size()));
    socket->flush();
    uint8_t buf[256];
    while (socket->read(buf, sizeof(buf)) > 0) {
    }
    return true;  // EOF
  } catch (const apache::thrift::transport::TTransportException& e) {
    LOG(INFO) << "TLS connection after " << bytes.size() << " raw bytes: " << e.what();
    return e.getType() != apache::thrift::transport::TTransportException::TIMED_OUT;
  }
}

// Sends `bytes` and reports whether the server then closed the connection
// (EOF or reset) rather than answering or leaving it open. Over the suite's
// transport: plain TCP, or TLS under TXC_TEST_TLS=1.
bool ServerClosesAfter(int port, const std::string& bytes) {
  if (testing::SuiteTls::Get().enabled()) return TlsServerClosesAfter(port, bytes);
  const int fd = RawConnect(port);
  if (fd < 0) return false;
  send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  char buf[256];
  bool closed = false;
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) {
      closed = true;
      break;
    }
    if (n < 0) break;  // timeout: still open
  }
  close(fd);
  return closed;
}

std::string FrameHeader(uint32_t length) {
  const uint32_t be = htonl(length);
  return std::string(reinterpret_cast<const char*>(&be), 4);
}

TEST_F(SqliteCoordinatorTest, GarbageAndOversizedFramesCloseOnlyThatConnection) {
  const std::string gtid = Begin(client(), "", {Branch("b1")});
  wire::TxnStatus before;
  client().status(before, gtid);

  // An HTTP request: its first four bytes read as a ~1.2 GB frame length.
  EXPECT_TRUE(ServerClosesAfter(coord_->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  // A frame just over --max_message_bytes (16 MiB), with a few bytes of it.
  EXPECT_TRUE(ServerClosesAfter(coord_->port(), FrameHeader(16 * 1024 * 1024 + 1) + "xxxx"));
  // The largest possible length prefix.
  EXPECT_TRUE(ServerClosesAfter(coord_->port(), FrameHeader(0x7fffffff) + "xxxx"));
  // A well-sized frame whose content is not a Thrift message.
  std::string junk(64, '\xee');
  EXPECT_TRUE(ServerClosesAfter(coord_->port(), FrameHeader(junk.size()) + junk));
  // A negative length.
  EXPECT_TRUE(ServerClosesAfter(coord_->port(), FrameHeader(0xfffffff0u) + "xxxx"));

  // A new connection works, and so does the old one; the transaction is unchanged.
  auto fresh = coord_->Connect();
  ASSERT_NE(fresh, nullptr);
  wire::TxnStatus after;
  fresh->client->status(after, gtid);
  EXPECT_EQ(after, before);
  ExpectServing();
  EXPECT_TRUE(coord_->child()->IsRunning());
}

// ---- a long-lived connection past Thrift 0.17's 100 MiB budget -------------------------

// Sends `calls` enlist requests of ~1 MiB each for an unknown gtid through ONE
// connection; returns how many answered NotFound before anything else happened.
int PushThroughOneConnection(Client& client, int calls, std::string* failure) {
  wire::EnlistRequest req;
  req.__set_gtid("unknown-gtid-for-volume");
  req.__set_branch(Branch("b1", std::string(kMaxPayloadBytes - 1024, 'v')));
  for (int i = 0; i < calls; ++i) {
    try {
      client.enlist(req);
      *failure = "enlist of an unknown gtid succeeded";
      return i;
    } catch (const wire::NotFound&) {
      continue;
    } catch (const std::exception& e) {
      *failure = "call " + std::to_string(i + 1) + ": " + e.what();
      return i;
    }
  }
  return calls;
}

constexpr int kVolumeCalls = 110;  // ~110 MiB in one connection

TEST_F(SqliteCoordinatorTest, OneConnectionCarriesMoreThan110MiB) {
  std::string failure;
  EXPECT_EQ(PushThroughOneConnection(client(), kVolumeCalls, &failure), kVolumeCalls) << failure;
  ExpectServing();  // the same connection still works
  wire::TxnStatus status;
  EXPECT_THROW(client().status(status, "unknown-gtid-for-volume"), wire::NotFound);
}

// The same traffic against a server using the stock TFramedTransportFactory
// fails: this is what makes the test above able to fail (see STACK-NOTES).
// If a Thrift upgrade fixes the bug, this test says so.
TEST(StockFramedTransportTest, DropsALongLivedConnectionPast100MiB) {
  TempDir dir("txc-rpc-stock-");
  auto store = OpenStore(dir.Child("coordinator.db"));
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Migrate().ok());
  GroupCommitter log(store->get(), GroupCommitOptions{});
  CoordinatorService service(store->get(), &log, NodeInfo{"stock", "127.0.0.1:1", 1});
  auto config = MakeThriftConfig(kDefaultMaxMessageBytes);
  auto socket = std::make_shared<apache::thrift::transport::TServerSocket>("127.0.0.1", 0);
  auto server = std::make_shared<apache::thrift::server::TThreadedServer>(
      std::make_shared<wire::CoordinatorProcessor>(std::make_shared<CoordinatorHandler>(&service)),
      socket, std::make_shared<apache::thrift::transport::TFramedTransportFactory>(),
      MakeProtocolFactory());
  std::thread serving([&] { server->serve(); });
  ASSERT_TRUE(testing::WaitUntil([&] { return socket->getPort() > 0; }, 5000));
  auto conn =
      OpenConnection<Client>(HostPort{"127.0.0.1", socket->getPort()}, ConnectOptions{1000, 20000});
  ASSERT_TRUE(conn.ok());
  std::string failure;
  const int ok_calls = PushThroughOneConnection(*(*conn)->client, kVolumeCalls, &failure);
  LOG(INFO) << "stock TFramedTransport server: " << ok_calls
            << " calls of ~1 MiB, then: " << failure;
  EXPECT_LT(ok_calls, kVolumeCalls) << "the stock transport no longer drops long connections";
  EXPECT_GE(ok_calls, 90);
  server->stop();
  serving.join();
}

// ---- process lifecycle -------------------------------------------------------------

TEST(RpcProcessTest, SigtermAndSigintExitZero) {
  for (int sig : {SIGTERM, SIGINT}) {
    TempDir dir("txc-rpc-test-");
    CoordinatorProcess coord(dir.path(), "", "node-1");
    ASSERT_TRUE(coord.Start().ok()) << coord.LogTail();
    {
      auto conn = coord.Connect();
      ASSERT_NE(conn, nullptr);
      Begin(*conn->client);
      ASSERT_TRUE(coord.child()->Kill(sig).ok());
      auto exit = coord.child()->Wait(15000);
      ASSERT_TRUE(exit.ok()) << "did not exit after signal " << sig << "\n" << coord.LogTail();
      EXPECT_TRUE(exit->exited_ok()) << exit->ToString() << "\n" << coord.LogTail();
    }
  }
}

TEST(RpcProcessTest, BadFlagsExitTwoWithAMessage) {
  TempDir dir("txc-rpc-test-");
  const std::vector<std::vector<std::string>> bad = {
      {"--port=abc"},       {"--no_such_flag"},
      {"--port=70000"},     {"--advertise_endpoint=nope"},
      {"--lease_ttl_ms=1"}, {"--config=" + dir.Child("missing")}};
  for (const auto& flags : bad) {
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN, "--data_dir=" + dir.Child("d")};
    o.argv.insert(o.argv.end(), flags.begin(), flags.end());
    o.log_path = dir.Child("bad.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok());
    auto exit = (*child)->Wait(10000);
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(exit->exit_code, 2) << flags[0];
    EXPECT_NE((*child)->LogTail().find("coordinator: "), std::string::npos) << (*child)->LogTail();
  }
}

TEST(RpcProcessTest, ConfigFileSetsTheSameKeys) {
  TempDir dir("txc-rpc-test-");
  const int port = testing::FreeLoopbackPort();
  {
    std::ofstream conf(dir.Child("coordinator.conf"));
    conf << "# comment\nhost = 127.0.0.1\nport = " << port << "\nnode_id = from-config\n"
         << "data_dir = " << dir.Child("data") << "\n";
    // The suite's TLS settings as config keys ("--participant_tls" is a switch).
    for (const std::string& flag : testing::SuiteTls::Get().CoordinatorFlags()) {
      const size_t eq = flag.find('=');
      conf << flag.substr(2, eq == std::string::npos ? std::string::npos : eq - 2) << " = "
           << (eq == std::string::npos ? "true" : flag.substr(eq + 1)) << "\n";
    }
  }
  ChildProcess::Options o;
  o.argv = {TXC_COORDINATOR_BIN, "--config=" + dir.Child("coordinator.conf")};
  o.log_path = dir.Child("coordinator.log");
  auto child = ChildProcess::Start(o);
  ASSERT_TRUE(child.ok());
  ASSERT_TRUE(testing::WaitForPort(port, kStartTimeoutMs).ok()) << (*child)->LogTail();
  auto conn =
      OpenConnection<Client>(HostPort{"127.0.0.1", port}, testing::SuiteTls::Get().Connect());
  ASSERT_TRUE(conn.ok());
  wire::HealthResponse h;
  (*conn)->client->health(h);
  EXPECT_EQ(h.node_id, "from-config");
  EXPECT_TRUE(testing::ReadFileOrEmpty(dir.Child("data/coordinator.db")).size() > 0);
}

TEST_F(SqliteCoordinatorTest, TxcctlBeginStatusHealth) {
  auto run = [&](std::vector<std::string> args, std::string* out) {
    ChildProcess::Options o;
    o.argv = {TXC_TXCCTL_BIN, "--coordinator=127.0.0.1:1," + coord_->endpoint()};
    testing::SuiteTls::Get().AppendTxcctlFlags(&o.argv);
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = dir_.Child("txcctl.out");
    o.log_path = dir_.Child("txcctl.err");
    Status s = testing::RunCommand(o, 20000);
    *out = testing::ReadFileOrEmpty(o.stdout_path);
    return s;
  };
  std::string out;
  ASSERT_TRUE(run({"begin", "--timeout_ms=90000"}, &out).ok());
  const std::string gtid = out.substr(0, out.find('\n'));
  ASSERT_TRUE(ValidateId("gtid", gtid).ok()) << out;
  ASSERT_TRUE(run({"status", gtid}, &out).ok());
  EXPECT_NE(out.find("state:    ACTIVE"), std::string::npos) << out;
  ASSERT_TRUE(run({"health"}, &out).ok());
  EXPECT_NE(out.find("node_id:  node-1"), std::string::npos) << out;
  EXPECT_NE(out.find("store:    sqlite"), std::string::npos) << out;
  EXPECT_FALSE(run({"status", "no-such-gtid"}, &out).ok());  // NotFound: exit 1
  // With no branches the 2PC driver decides at once.
  ASSERT_TRUE(run({"commit", gtid, "--wait=completion"}, &out).ok()) << out;
  EXPECT_NE(out.find(gtid + ": COMMITTED (outcome COMMIT)"), std::string::npos) << out;
  EXPECT_FALSE(run({"rollback", gtid}, &out).ok());  // IllegalTransition: exit 1
  EXPECT_NE(testing::ReadFileOrEmpty(dir_.Child("txcctl.err")).find("IllegalTransition"),
            std::string::npos);
}

// txcctl's errors are one line of its own on stderr, whatever Thrift said:
// no line from Thrift's GlobalOutput and no Thrift exception wording; the
// exit codes stay (3: unreachable). No coordinator needed.
TEST(TxcctlErrorsTest, OneLineInItsOwnWordsWithTheSameExitCodes) {
  TempDir dir("txc-rpc-test-");
  // Answers every connection with a frame header of 2 GiB.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int oversized_port = ntohs(addr.sin_port);
  std::thread server([listener] {
    for (;;) {
      const int fd = accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      char buf[4096];
      (void)!read(fd, buf, sizeof(buf));
      const unsigned char huge[4] = {0x7f, 0xff, 0xff, 0xff};
      (void)!write(fd, huge, sizeof(huge));
      close(fd);
    }
  });
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  const int closed_port = testing::FreeLoopbackPort();
  const std::vector<Case> cases = {
      {{"--coordinator=127.0.0.1:" + std::to_string(closed_port), "health"},
       3,
       "Connection refused"},
      {{"--coordinator=no-such-host.invalid:7400", "health"}, 3, "cannot resolve the host name"},
      {{"--coordinator=127.0.0.1:" + std::to_string(oversized_port), "status", "g1"},
       3,
       "larger than the message limit"},
      // --timeout 0 is a duration (look once): unreachable, not a usage error.
      {{"--coordinator=127.0.0.1:" + std::to_string(closed_port), "watch", "g1", "--timeout", "0s"},
       3,
       "Connection refused"},
  };
  for (const Case& c : cases) {
    ChildProcess::Options o;
    o.argv = {TXC_TXCCTL_BIN};
    o.argv.insert(o.argv.end(), c.args.begin(), c.args.end());
    o.stdout_path = dir.Child("txcctl.out");
    o.log_path = dir.Child("txcctl.err");
    std::remove(o.log_path.c_str());
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    auto exit = (*child)->Wait(20000);
    ASSERT_TRUE(exit.ok());
    const std::string err = testing::ReadFileOrEmpty(o.log_path);
    EXPECT_EQ(exit->exit_code, c.exit_code) << c.args.back() << "\n" << err;
    EXPECT_EQ(err.rfind("txcctl: ", 0), 0u) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(c.says), std::string::npos) << err;
    for (const char* thrift : {"socket open() error", "Could not resolve host for client socket",
                               "Received an oversized frame", "TSocket::"}) {
      EXPECT_EQ(err.find(thrift), std::string::npos) << err;
    }
  }
  shutdown(listener, SHUT_RDWR);
  close(listener);
  server.join();
}

}  // namespace
}  // namespace txc
