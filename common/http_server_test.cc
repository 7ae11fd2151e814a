#include "common/http_server.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>

#include "tests/harness/http_client.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"

namespace txc {
namespace {

// Sends `request` raw to 127.0.0.1:port and returns everything the server
// sent back until it closed the connection (or 5 s passed).
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  if (!request.empty()) (void)!write(fd, request.data(), request.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HttpServerOptions o;
    o.request_timeout_ms = 300;
    o.max_connections = 4;
    server_ = std::make_unique<HttpServer>(
        o,
        std::map<std::string, HttpHandler>{{"/healthz",
                                            [] {
                                              return HttpResponse{200, "text/plain", "ok\n"};
                                            }},
                                           {"/readyz", [] {
                                              return HttpResponse{503, "text/plain", "not ready\n"};
                                            }}});
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_GT(server_->port(), 0);
  }
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, AnswersRegisteredPaths) {
  std::string r =
      Exchange(server_->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Length: 3\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.substr(r.size() - 3), "ok\n");
  r = Exchange(server_->port(), "GET /readyz?verbose=1 HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.0 503", 0), 0u) << r;
}

TEST_F(HttpServerTest, HeadHasNoBody) {
  std::string r =
      Exchange(server_->port(), "HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_EQ(r.substr(r.size() - 4), "\r\n\r\n") << r;
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequests) {
  std::string r = Exchange(server_->port(),
                           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                           "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(r.find("HTTP/1.1 200"), std::string::npos) << r;
  EXPECT_NE(r.find("HTTP/1.1 503"), std::string::npos) << r;
}

TEST_F(HttpServerTest, BadRequestsGet4xx) {
  EXPECT_EQ(Exchange(server_->port(), "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .rfind("HTTP/1.1 404", 0),
            0u);
  std::string r =
      Exchange(server_->port(), "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << r;
  EXPECT_NE(r.find("Allow: GET, HEAD"), std::string::npos) << r;
  r = Exchange(server_->port(), "BLAH\x01 / FOO\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  r = Exchange(server_->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                    std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  // Still serving.
  EXPECT_EQ(Exchange(server_->port(), "GET /healthz HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200", 0),
            0u);
}

// A body is refused for what is wrong with the request, never as "too large":
// a method no route serves is 405 with Allow, as it is without a body (curl -d
// x sends POST with a 1-byte body); a GET with a body is 400.
TEST_F(HttpServerTest, RequestWithABodyGets405Or400NotTooLarge) {
  std::string r = Exchange(server_->port(),
                           "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n\r\nx");
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << r;
  EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos) << r;
  EXPECT_EQ(r.find("too large"), std::string::npos) << r;
  r = Exchange(server_->port(),
               "PUT /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(r.rfind("HTTP/1.1 405", 0), 0u) << r;
  EXPECT_NE(r.find("Allow: GET, HEAD\r\n"), std::string::npos) << r;
  r = Exchange(server_->port(),
               "GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  EXPECT_NE(r.find("GET takes no body"), std::string::npos) << r;
  EXPECT_EQ(r.find("too large"), std::string::npos) << r;
  // A header past max_header_bytes is still too large.
  r = Exchange(server_->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                    std::string(20000, 'a') + "\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  EXPECT_EQ(Exchange(server_->port(), "GET /healthz HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200", 0),
            0u);
}

TEST_F(HttpServerTest, SilentClientIsClosedAfterTheTimeout) {
  // Sends nothing: the server closes the connection after request_timeout_ms
  // (Exchange would otherwise give up after its own 5 s with what it has: "").
  EXPECT_EQ(Exchange(server_->port(), ""), "");
  EXPECT_EQ(Exchange(server_->port(), "GET /healthz HTTP/1.0\r\n\r\n").rfind("HTTP/1.0 200", 0),
            0u);
}

// A connected socket to 127.0.0.1:port that sends nothing (-1 on failure).
int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

TEST(HttpServerLimitTest, ConnectionsPastTheLimitAreClosed) {
  HttpServerOptions o;
  o.max_connections = 2;
  o.request_timeout_ms = 30000;  // the idle ones are not timed out during the test
  HttpServer server(o, {{"/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"}; }}});
  ASSERT_TRUE(server.Start().ok());
  const int idle1 = Connect(server.port());
  const int idle2 = Connect(server.port());
  ASSERT_GE(idle1, 0);
  ASSERT_GE(idle2, 0);
  // Accepted in order: the third connection is over the limit and closed unanswered.
  EXPECT_EQ(Exchange(server.port(), "GET /healthz HTTP/1.0\r\n\r\n"), "");
  close(idle1);
  // Once the server saw the close, a slot is free again.
  std::string answer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (answer.rfind("HTTP/1.0 200", 0) != 0 && std::chrono::steady_clock::now() < deadline) {
    answer = Exchange(server.port(), "GET /healthz HTTP/1.0\r\n\r\n");
    if (answer.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll
  }
  EXPECT_EQ(answer.rfind("HTTP/1.0 200", 0), 0u) << answer;
  close(idle2);
}

// ---- HTTPS ----------------------------------------------------------------------

using testing::TestCa;

using testing::HttpGet;
using testing::HttpResult;

// An HTTPS server with mutual TLS whose /metrics only CN=prometheus may read,
// and clients: prometheus (allowed), order-service (a verified certificate
// without the right), a certificate from another CA, and none.
class HttpsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = TestCa::Create("http-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(ca).value();
    auto other = TestCa::Create("other-ca");
    ASSERT_TRUE(other.ok()) << other.status();
    other_ca_ = std::move(other).value();
    auto server = ca_->IssueLoopbackServer("server", "coordinator");
    auto prometheus = ca_->Issue("prometheus", "prometheus");
    auto orders = ca_->Issue("orders", "order-service");
    auto stranger = other_ca_->Issue("stranger", "prometheus");
    ASSERT_TRUE(server.ok() && prometheus.ok() && orders.ok() && stranger.ok());
    server_tls_ = ca_->Options(*server);
    prometheus_ = ca_->Options(*prometheus);
    orders_ = ca_->Options(*orders);
    stranger_ = other_ca_->Options(*stranger);
    stranger_.ca_file = ca_->ca_file();  // it trusts our server; we do not trust it
    no_cert_.ca_file = ca_->ca_file();
  }

  // Starts server_ with `tls` (default: server_tls_).
  void StartServer(const TlsOptions* tls = nullptr) {
    HttpServerOptions o;
    o.request_timeout_ms = 1000;
    o.max_connections = 8;
    o.tls = tls != nullptr ? *tls : server_tls_;
    o.authorize = [this](const std::string& path, const PeerIdentity& peer) {
      std::lock_guard<std::mutex> lock(mu_);
      last_peer_ = peer;
      if (path != "/metrics") return Status::Ok();
      if (peer.authenticated && peer.common_name == "prometheus") return Status::Ok();
      return Status::PermissionDenied("/metrics needs the reader role; " + peer.Describe() +
                                      " holds none");
    };
    server_ = std::make_unique<HttpServer>(
        o,
        std::map<std::string, HttpHandler>{{"/metrics",
                                            [] {
                                              return HttpResponse{200, "text/plain", "txc_up 1\n"};
                                            }},
                                           {"/healthz", [] {
                                              return HttpResponse{200, "text/plain", "ok\n"};
                                            }}});
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(server_->tls());
  }

  PeerIdentity last_peer() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_peer_;
  }

  std::unique_ptr<TestCa> ca_, other_ca_;
  TlsOptions server_tls_, prometheus_, orders_, stranger_, no_cert_;
  std::unique_ptr<HttpServer> server_;
  std::mutex mu_;
  PeerIdentity last_peer_;  // guarded by mu_: the identity the authorizer saw last
};

TEST_F(HttpsServerTest, VerifiedCertificateWithTheRightGets200) {
  StartServer();
  HttpResult r = HttpGet(server_->port(), "/metrics", prometheus_);
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.body, "txc_up 1\n");
  const PeerIdentity peer = last_peer();
  EXPECT_TRUE(peer.authenticated);
  EXPECT_EQ(peer.common_name, "prometheus");
  EXPECT_EQ(peer.address.rfind("127.0.0.1:", 0), 0u) << peer.address;
}

TEST_F(HttpsServerTest, WrongRoleGets403WithTheReason) {
  StartServer();
  HttpResult r = HttpGet(server_->port(), "/metrics", orders_);
  EXPECT_EQ(r.status, 403) << r.error;
  EXPECT_NE(r.body.find("forbidden: /metrics needs the reader role; CN=order-service"),
            std::string::npos)
      << r.body;
  // The same identity may read what the authorizer allows it.
  EXPECT_EQ(HttpGet(server_->port(), "/healthz", orders_).status, 200);
}

TEST_F(HttpsServerTest, NoCertificateIsRefusedByTheHandshake) {
  StartServer();
  HttpResult r = HttpGet(server_->port(), "/healthz", no_cert_);
  EXPECT_EQ(r.status, 0) << r.body;
  EXPECT_FALSE(r.error.empty());
  // Under TLS 1.3 the client learns it on its first read: the alert says why.
  LOG(INFO) << "without a certificate: " << r.error;
  EXPECT_EQ(HttpGet(server_->port(), "/healthz", prometheus_).status, 200);
}

TEST_F(HttpsServerTest, CertificateFromAnotherCaIsRefusedByTheHandshake) {
  StartServer();
  HttpResult r = HttpGet(server_->port(), "/metrics", stranger_);
  EXPECT_EQ(r.status, 0) << r.body;
  EXPECT_FALSE(r.error.empty());
  LOG(INFO) << "foreign CA: " << r.error;
  // The authorizer never saw it.
  EXPECT_EQ(last_peer().common_name, "");
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 200);
}

// --tls_crl holds on the HTTPS port as on the Thrift port.
TEST_F(HttpsServerTest, RevokedClientCertificateIsRefusedByTheHandshake) {
  auto revoked = ca_->Issue("revoked-prometheus", "prometheus");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_TRUE(ca_->Revoke(*revoked).ok());
  testing::TempDir dir;
  const std::string crl = dir.Child("crl.pem");
  ASSERT_TRUE(ca_->WriteCrl(crl).ok());
  TlsOptions tls = server_tls_;
  tls.crl_file = crl;
  StartServer(&tls);
  HttpResult r = HttpGet(server_->port(), "/metrics", ca_->Options(*revoked));
  EXPECT_EQ(r.status, 0) << r.body;
  EXPECT_NE(r.error.find("revoked"), std::string::npos) << r.error;
  EXPECT_EQ(last_peer().common_name, "");
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 200);
}

TEST_F(HttpsServerTest, PlaintextClientGets400FastAndTheServerKeepsServing) {
  StartServer();
  // Exchange reads until the server closes: the answer comes at once, not
  // after request_timeout_ms (not asserted: no timing in tests).
  std::string r =
      Exchange(server_->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  EXPECT_NE(r.find("this port serves HTTPS"), std::string::npos) << r;
  EXPECT_EQ(r.find("txc_up"), std::string::npos) << r;
  // Garbage that is neither TLS nor HTTP: the same refusal.
  r = Exchange(server_->port(), "\x01\x02\x03\x04hello\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 200);
}

TEST_F(HttpsServerTest, SilentClientIsClosedAfterTheTimeout) {
  StartServer();
  EXPECT_EQ(Exchange(server_->port(), ""), "");
  EXPECT_EQ(HttpGet(server_->port(), "/healthz", prometheus_).status, 200);
}

TEST_F(HttpsServerTest, ReloadTlsSwitchesToTheNewFilesForNewConnections) {
  // The server reads its files from paths we overwrite: first this CA's.
  namespace fs = std::filesystem;
  const std::string dir = ca_->dir() + "/live";
  fs::create_directories(dir);
  TlsOptions live;
  live.cert_file = dir + "/server.pem";
  live.key_file = dir + "/server.key";
  live.ca_file = dir + "/ca.pem";
  auto install = [&](const TlsOptions& from) {
    fs::copy_file(from.cert_file, live.cert_file, fs::copy_options::overwrite_existing);
    fs::copy_file(from.key_file, live.key_file, fs::copy_options::overwrite_existing);
    fs::copy_file(from.ca_file, live.ca_file, fs::copy_options::overwrite_existing);
  };
  install(server_tls_);
  StartServer(&live);
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 200);

  // Rotate to the other CA: a server certificate and client CA from it.
  auto other_server = other_ca_->IssueLoopbackServer("server2", "coordinator");
  auto other_prometheus = other_ca_->Issue("prometheus2", "prometheus");
  ASSERT_TRUE(other_server.ok() && other_prometheus.ok());
  install(other_ca_->Options(*other_server));
  // Not yet reloaded: the old credentials serve.
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 200);
  ASSERT_TRUE(server_->ReloadTls().ok());
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", other_ca_->Options(*other_prometheus)).status,
            200);
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", prometheus_).status, 0);

  // A broken file: the reload fails and the current credentials stay.
  std::ofstream(live.key_file, std::ios::trunc) << "not a key\n";
  Status failed = server_->ReloadTls();
  EXPECT_EQ(failed.code(), StatusCode::kInvalidArgument) << failed;
  EXPECT_NE(failed.message().find(live.key_file), std::string::npos) << failed;
  EXPECT_EQ(HttpGet(server_->port(), "/metrics", other_ca_->Options(*other_prometheus)).status,
            200);
}

TEST_F(HttpsServerTest, UnloadableFilesFailStart) {
  TlsOptions bad = server_tls_;
  bad.cert_file = ca_->dir() + "/missing.pem";
  HttpServerOptions o;
  o.tls = bad;
  HttpServer server(o, {});
  Status s = server.Start();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("missing.pem"), std::string::npos) << s;
  EXPECT_EQ(server.port(), 0);
}

TEST(HttpServerStartTest, BusyPortIsUnavailable) {
  HttpServer a(HttpServerOptions{}, {});
  ASSERT_TRUE(a.Start().ok());
  HttpServerOptions o;
  o.port = a.port();
  HttpServer b(o, {});
  Status s = b.Start();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
}

}  // namespace
}  // namespace txc
