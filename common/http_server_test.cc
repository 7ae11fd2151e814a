#include "common/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

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
  r = Exchange(server_->port(),
               "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r;
  // Still serving.
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
