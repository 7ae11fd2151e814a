// CoordinatorServer in-process: start on a free port over SQLite, serve,
// restart on the same data directory, lose the lease to another process of
// the same node id.
#include "coordinator/server/coordinator_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "common/backoff.h"
#include "gen-cpp/Coordinator.h"

namespace txc {
namespace {

class CoordinatorServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-server-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  CoordinatorServerOptions Options() {
    CoordinatorServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.data_dir = dir_ + "/data";
    o.node_id = "node-1";
    return o;
  }

  static std::unique_ptr<ThriftConnection<wire::CoordinatorClient>> Connect(int port) {
    auto conn =
        OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", port}, ConnectOptions{});
    EXPECT_TRUE(conn.ok()) << conn.status();
    return conn.ok() ? std::move(conn).value() : nullptr;
  }

  std::string dir_;
};

TEST(AuthorizeHttpPathTest, MetricsNeedReaderOrAdminProbesAnyRole) {
  auto policy = AuthPolicy::Parse(
      "prometheus = reader\nops = admin\norders = client\nnobody-* = client\n", "test");
  ASSERT_TRUE(policy.ok()) << policy.status();
  auto peer = [](const std::string& cn) {
    PeerIdentity p;
    p.address = "127.0.0.1:5000";
    p.authenticated = true;
    p.common_name = cn;
    return p;
  };
  EXPECT_TRUE(AuthorizeHttpPath(*policy, "/metrics", peer("prometheus")).ok());
  EXPECT_TRUE(AuthorizeHttpPath(*policy, "/metrics", peer("ops")).ok());
  Status denied = AuthorizeHttpPath(*policy, "/metrics", peer("orders"));
  EXPECT_EQ(denied.code(), StatusCode::kPermissionDenied) << denied;
  EXPECT_NE(denied.message().find("/metrics needs the reader or admin role; CN=orders"),
            std::string::npos)
      << denied;
  EXPECT_NE(denied.message().find("holds client"), std::string::npos) << denied;
  // Probes: any role, so a client service may check the coordinator's health.
  EXPECT_TRUE(AuthorizeHttpPath(*policy, "/readyz", peer("orders")).ok());
  EXPECT_TRUE(AuthorizeHttpPath(*policy, "/healthz", peer("prometheus")).ok());
  // A verified certificate the policy gives no role, and an unauthenticated peer.
  EXPECT_EQ(AuthorizeHttpPath(*policy, "/healthz", peer("stranger")).code(),
            StatusCode::kPermissionDenied);
  PeerIdentity anonymous;
  EXPECT_EQ(AuthorizeHttpPath(*policy, "/metrics", anonymous).code(),
            StatusCode::kPermissionDenied);
  // @anyone grants its roles to callers without a certificate too.
  auto open = AuthPolicy::Parse("@anyone = reader\n", "test");
  ASSERT_TRUE(open.ok());
  EXPECT_TRUE(AuthorizeHttpPath(*open, "/metrics", anonymous).ok());
}

TEST(CheckListenSecurityTest, NonLoopbackWithoutTlsNeedsInsecure) {
  CoordinatorServerOptions o;
  EXPECT_EQ(o.host, "127.0.0.1");  // the default serves this machine only
  for (const std::string host : {"127.0.0.1", "127.0.0.2", "::1", "localhost"}) {
    o.host = host;
    EXPECT_TRUE(CheckListenSecurity(o).ok()) << host;
  }
  for (const std::string host : {"0.0.0.0", "", "::", "10.0.0.1", "myhost.example"}) {
    o.host = host;
    o.insecure = false;
    Status s = CheckListenSecurity(o);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << host;
    EXPECT_NE(s.message().find("--insecure"), std::string::npos) << s;
    o.insecure = true;
    EXPECT_TRUE(CheckListenSecurity(o).ok()) << host;
  }
}

TEST_F(CoordinatorServerTest, BadSecurityOptionsRefuseToStart) {
  {
    CoordinatorServerOptions o = Options();
    o.auth_policy_file = dir_ + "/policy.conf";
    std::ofstream(o.auth_policy_file) << "ops = admin\nops = root\n";
    CoordinatorServer server(o);
    Status s = server.Start();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("policy.conf:2: unknown role 'root'"), std::string::npos) << s;
  }
  {
    CoordinatorServerOptions o = Options();
    o.participant_allow = {"*.svc.local", "10.0.0.0/33"};
    CoordinatorServer server(o);
    Status s = server.Start();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("'10.0.0.0/33'"), std::string::npos) << s;
  }
  {
    CoordinatorServerOptions o = Options();
    o.host = "0.0.0.0";
    CoordinatorServer server(o);
    EXPECT_EQ(server.Start().code(), StatusCode::kInvalidArgument);
  }
}

TEST_F(CoordinatorServerTest, PolicyReloadKeepsTheOldOneOnABadFile) {
  CoordinatorServerOptions o = Options();
  o.auth_policy_file = dir_ + "/policy.conf";
  std::ofstream(o.auth_policy_file) << "@anyone = reader\n";
  CoordinatorServer server(o);
  ASSERT_TRUE(server.Start().ok());
  auto conn = Connect(server.port());
  ASSERT_NE(conn, nullptr);
  wire::BeginResponse begun;
  EXPECT_THROW(conn->client->beginTxn(begun, wire::BeginRequest()), wire::PermissionDenied);
  std::ofstream(o.auth_policy_file, std::ios::trunc) << "@anyone = client\n";
  ASSERT_TRUE(server.ReloadAuthPolicy().ok());
  conn->client->beginTxn(begun, wire::BeginRequest());
  EXPECT_FALSE(begun.gtid.empty());
  std::ofstream(o.auth_policy_file, std::ios::trunc) << "@anyone client\n";
  EXPECT_EQ(server.ReloadAuthPolicy().code(), StatusCode::kInvalidArgument);
  conn->client->beginTxn(begun, wire::BeginRequest());  // still a client
  server.Stop();
}

TEST_F(CoordinatorServerTest, ServesAndKeepsTransactionsAcrossRestart) {
  std::string gtid;
  int64_t first_epoch = 0;
  {
    CoordinatorServer server(Options());
    ASSERT_TRUE(server.Start().ok());
    EXPECT_GT(server.port(), 0);
    EXPECT_EQ(server.endpoint(), "127.0.0.1:" + std::to_string(server.port()));
    EXPECT_TRUE(std::filesystem::exists(dir_ + "/data/coordinator.db"));
    EXPECT_EQ(server.StoreDescription(), "sqlite:" + dir_ + "/data/coordinator.db");
    first_epoch = server.node().epoch;
    auto conn = Connect(server.port());
    ASSERT_NE(conn, nullptr);
    wire::BeginResponse begun;
    conn->client->beginTxn(begun, wire::BeginRequest());
    gtid = begun.gtid;
    EXPECT_EQ(begun.context.coordinators, std::vector<std::string>{server.endpoint()});
    wire::HealthResponse h;
    conn->client->health(h);
    EXPECT_EQ(h.node_id, "node-1");
    EXPECT_EQ(h.epoch, first_epoch);
    EXPECT_TRUE(h.serving);
    server.Stop();
    server.Stop();  // idempotent
  }
  CoordinatorServer again(Options());
  ASSERT_TRUE(again.Start().ok());
  EXPECT_GT(again.node().epoch, first_epoch);  // a new incarnation fences the old one
  auto conn = Connect(again.port());
  ASSERT_NE(conn, nullptr);
  wire::TxnStatus status;
  conn->client->status(status, gtid);
  EXPECT_EQ(status.state, wire::TxnState::ACTIVE);
  EXPECT_EQ(status.owner, "node-1");
  // Begun under the first epoch; the recovery sweeper may already have claimed
  // it for the new one.
  EXPECT_GE(status.epoch, first_epoch);
}

TEST_F(CoordinatorServerTest, LosesLeaseWhenAnotherProcessTakesTheNodeId) {
  CoordinatorServerOptions o = Options();
  o.lease_ttl_ms = 600;
  o.lease_renew_interval_ms = 50;
  std::atomic<int> callbacks{0};
  o.on_lease_lost = [&](const Status&) { callbacks++; };
  CoordinatorServer server(o);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_FALSE(server.WaitForLeaseLoss(10, nullptr));
  // Another process takes node-1's lease (bumping the epoch), as a restarted
  // replica would while this one is still running.
  {
    auto store = OpenStore(dir_ + "/data/coordinator.db");
    ASSERT_TRUE(store.ok());
    auto taken = (*store)->AcquireLease("node-1", "elsewhere:1", 60000, NowUnixMs());
    ASSERT_TRUE(taken.ok()) << taken.status();
    EXPECT_GT(taken->epoch, server.node().epoch);
  }
  Status reason;
  ASSERT_TRUE(server.WaitForLeaseLoss(5000, &reason));
  EXPECT_EQ(reason.code(), StatusCode::kConflict) << reason;
  EXPECT_TRUE(server.lease_lost());
  EXPECT_EQ(callbacks.load(), 1);
  EXPECT_EQ(server.lease_losses(), 1);
  // It gives way for good: no new work, no incarnation.
  EXPECT_EQ(server.replica_service()->Begin({}).status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(server.replica_service()->Health().serving);
  EXPECT_EQ(server.service(), nullptr);
}

TEST_F(CoordinatorServerTest, SecondProcessOnTheSameSqliteStoreRefusesToStart) {
  CoordinatorServer first(Options());
  ASSERT_TRUE(first.Start().ok());
  const int64_t epoch = first.node().epoch;
  CoordinatorServerOptions o = Options();
  o.node_id = "node-2";
  CoordinatorServer second(o);
  Status s = second.Start();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("already uses this SQLite store"), std::string::npos) << s;
  // The first one is untouched and serves.
  EXPECT_EQ(first.node().epoch, epoch);
  EXPECT_TRUE(first.replica_service()->Health().serving);
  EXPECT_TRUE(first.replica_service()->Begin({}).ok());
  first.Stop();
  // Once the first is gone the lock is free again.
  CoordinatorServer third(o);
  EXPECT_TRUE(third.Start().ok());
}

TEST(LeaseTimingTest, DefaultsAndLimits) {
  CoordinatorServerOptions o;
  Result<LeaseTiming> t = ResolveLeaseTiming(o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->ttl_ms, 10000);
  EXPECT_EQ(t->renew_interval_ms, 3333);
  EXPECT_EQ(t->margin_ms, 1000);  // -1: a tenth of the TTL
  o.max_clock_skew_ms = 0;
  EXPECT_EQ(ResolveLeaseTiming(o)->margin_ms, 0);
  o.max_clock_skew_ms = 10000 - 3333 - 1;  // the largest that leaves room for a renewal
  EXPECT_EQ(ResolveLeaseTiming(o)->margin_ms, 6666);
  for (int64_t bad : {int64_t{-2}, int64_t{10000 - 3333}, int64_t{20000}}) {
    o.max_clock_skew_ms = bad;
    Result<LeaseTiming> r = ResolveLeaseTiming(o);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(r.status().message().find("max_clock_skew_ms"), std::string::npos) << r.status();
  }
  o = CoordinatorServerOptions{};
  o.lease_ttl_ms = 600;
  o.lease_renew_interval_ms = 50;
  EXPECT_EQ(ResolveLeaseTiming(o)->margin_ms, 60);
}

TEST(LeaseTimingTest, LiveOnlyUntilTheMarginBeforeTheDeadline) {
  // Certainly ours until 10000 by our clock; another replica's clock may be 1000 ahead.
  EXPECT_TRUE(LeaseKnownLive(10000, 8999, 1000));
  EXPECT_FALSE(LeaseKnownLive(10000, 9000, 1000));
  EXPECT_FALSE(LeaseKnownLive(10000, 9500, 1000));  // ours by our clock, not by theirs
  EXPECT_TRUE(LeaseKnownLive(10000, 9999, 0));
  EXPECT_FALSE(LeaseKnownLive(10000, 10000, 0));
  EXPECT_FALSE(LeaseKnownLive(0, 5000, 1000));  // given up (Retire stores 0)
}

TEST_F(CoordinatorServerTest, BadOptionsAndBusyPort) {
  CoordinatorServerOptions o = Options();
  o.lease_ttl_ms = 5;
  EXPECT_EQ(CoordinatorServer(o).Start().code(), StatusCode::kInvalidArgument);
  o = Options();
  o.lease_ttl_ms = 3000;
  o.lease_renew_interval_ms = 1000;
  o.max_clock_skew_ms = 2000;  // a renewal could never keep the lease live
  Status skew = CoordinatorServer(o).Start();
  EXPECT_EQ(skew.code(), StatusCode::kInvalidArgument) << skew;
  EXPECT_NE(skew.message().find("max_clock_skew_ms"), std::string::npos) << skew;
  o = Options();
  o.advertise_endpoint = "no-port";
  EXPECT_EQ(CoordinatorServer(o).Start().code(), StatusCode::kInvalidArgument);

  // A data_dir the filesystem refuses is a startup failure (exit 1), not a bad flag (exit 2).
  std::ofstream(dir_ + "/a-file") << "x";
  o = Options();
  o.data_dir = dir_ + "/a-file/data";
  Status no_dir = CoordinatorServer(o).Start();
  EXPECT_EQ(no_dir.code(), StatusCode::kUnavailable) << no_dir;
  EXPECT_NE(no_dir.message().find("cannot create data_dir"), std::string::npos) << no_dir;

  CoordinatorServer first(Options());
  ASSERT_TRUE(first.Start().ok());
  o = Options();
  o.port = first.port();
  o.node_id = "node-2";
  o.data_dir = dir_ + "/other";
  CoordinatorServer second(o);
  EXPECT_EQ(second.Start().code(), StatusCode::kUnavailable);
}

// GET 127.0.0.1:port/target over a raw socket: the status line's code and the body.
std::pair<int, std::string> Get(int port, const std::string& target) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return {0, ""};
  }
  const std::string req = "GET " + target + " HTTP/1.0\r\n\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  if (out.rfind("HTTP/1.0 ", 0) != 0) return {0, out};
  const size_t body = out.find("\r\n\r\n");
  return {std::atoi(out.c_str() + 9), body == std::string::npos ? "" : out.substr(body + 4)};
}

TEST_F(CoordinatorServerTest, ServesMetricsAndProbesOverHttp) {
  CoordinatorServerOptions o = Options();
  o.http_port = -1;  // any free port
  CoordinatorServer server(o);
  ASSERT_TRUE(server.Start().ok());
  ASSERT_GT(server.http_port(), 0);
  EXPECT_TRUE(server.Ready().ok());
  EXPECT_EQ(Get(server.http_port(), "/healthz"), std::make_pair(200, std::string("ok\n")));
  EXPECT_EQ(Get(server.http_port(), "/readyz"), std::make_pair(200, std::string("ready\n")));
  auto metrics = Get(server.http_port(), "/metrics");
  EXPECT_EQ(metrics.first, 200);
  EXPECT_NE(metrics.second.find("\ntxc_lease_epoch " + std::to_string(server.node().epoch) + "\n"),
            std::string::npos)
      << metrics.second;
  EXPECT_NE(metrics.second.find("\ntxc_lease_held 1\n"), std::string::npos);
  EXPECT_EQ(Get(server.http_port(), "/nope").first, 404);
  const int http_port = server.http_port();
  server.Stop();
  EXPECT_EQ(Get(http_port, "/healthz").first, 0);  // the listener is gone
}

TEST_F(CoordinatorServerTest, ProbePortServesOnlyTheProbes) {
  CoordinatorServerOptions o = Options();
  o.http_probe_port = -1;  // any free port; no --http_port
  CoordinatorServer server(o);
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.http_port(), 0);
  ASSERT_GT(server.http_probe_port(), 0);
  EXPECT_EQ(Get(server.http_probe_port(), "/healthz"), std::make_pair(200, std::string("ok\n")));
  EXPECT_EQ(Get(server.http_probe_port(), "/readyz"), std::make_pair(200, std::string("ready\n")));
  EXPECT_EQ(Get(server.http_probe_port(), "/metrics").first, 404);
  const int probe_port = server.http_probe_port();
  server.Stop();
  EXPECT_EQ(Get(probe_port, "/healthz").first, 0);
}

TEST_F(CoordinatorServerTest, NoHttpListenerByDefaultInProcess) {
  CoordinatorServer server(Options());
  ASSERT_TRUE(server.Start().ok());
  EXPECT_EQ(server.http_port(), 0);
}

}  // namespace
}  // namespace txc
