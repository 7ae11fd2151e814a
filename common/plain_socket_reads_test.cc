// How many syscalls a ThriftServer spends reading each request on a
// plaintext connection. The libc wrappers recv(2) and poll(2) are interposed
// in this test binary (libthrift calls them through the PLT, so its calls
// land here too) and count the calls made on the server's side of the
// connection: sockets whose local port is the server's and that have a peer
// (not the listening socket). Its own binary, so that no other test runs
// under the interposed wrappers.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <string>

#include "common/thrift_server.h"
#include "common/tls.h"
#include "gen-cpp/Coordinator.h"
#include "tests/harness/test_certs.h"

namespace {

std::atomic<int> g_server_port{0};  // 0: count nothing
std::atomic<int> g_recv_returns{0};
std::atomic<int> g_polls{0};
std::atomic<int> g_sends{0};
std::atomic<int> g_writes{0};  // write(2): how OpenSSL's socket BIO sends

// A connected TCP socket whose local port is g_server_port. Keeps errno.
bool IsServerConnection(int fd) {
  const int port = g_server_port.load();
  if (port == 0) return false;
  const int saved_errno = errno;
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  bool match = false;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 && addr.ss_family == AF_INET &&
      ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port) == port) {
    len = sizeof(addr);
    match = getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  }
  errno = saved_errno;
  return match;
}

}  // namespace

extern "C" ssize_t recv(int fd, void* buf, size_t len, int flags) {
  using Recv = ssize_t (*)(int, void*, size_t, int);
  static const Recv real = reinterpret_cast<Recv>(dlsym(RTLD_NEXT, "recv"));
  const ssize_t got = real(fd, buf, len, flags);
  // Counted on return: a recv() still blocked for the next request is not.
  if (IsServerConnection(fd)) g_recv_returns.fetch_add(1);
  return got;
}

extern "C" ssize_t send(int fd, const void* buf, size_t len, int flags) {
  using Send = ssize_t (*)(int, const void*, size_t, int);
  static const Send real = reinterpret_cast<Send>(dlsym(RTLD_NEXT, "send"));
  if (IsServerConnection(fd)) g_sends.fetch_add(1);
  return real(fd, buf, len, flags);
}

extern "C" ssize_t write(int fd, const void* buf, size_t len) {
  using Write = ssize_t (*)(int, const void*, size_t);
  static const Write real = reinterpret_cast<Write>(dlsym(RTLD_NEXT, "write"));
  if (IsServerConnection(fd)) g_writes.fetch_add(1);
  return real(fd, buf, len);
}

extern "C" int poll(struct pollfd* fds, nfds_t nfds, int timeout) {
  using Poll = int (*)(struct pollfd*, nfds_t, int);
  static const Poll real = reinterpret_cast<Poll>(dlsym(RTLD_NEXT, "poll"));
  for (nfds_t i = 0; i < nfds; ++i) {
    if (IsServerConnection(fds[i].fd)) {
      g_polls.fetch_add(1);
      break;
    }
  }
  return real(fds, nfds, timeout);
}

namespace txc {
namespace {

using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TMemoryBuffer;
using apache::thrift::transport::TSocket;

class HealthOnly : public wire::CoordinatorNull {
 public:
  void health(wire::HealthResponse& out) override { out.node_id = "n1"; }
};

struct Counts {
  int recvs = 0;
  int polls = 0;
};

// `calls` health calls on one framed binary connection (each request leaves
// the client in one write), after a first call that is not counted.
Counts CountServerReads(ThriftWire wire, int calls) {
  ThriftServerOptions options{"127.0.0.1", 0};
  options.wire = wire;
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      options);
  EXPECT_TRUE(server.Start().ok());
  auto socket = std::make_shared<TSocket>("127.0.0.1", server.port());
  socket->open();
  auto framed = std::make_shared<TFramedTransport>(socket);
  wire::CoordinatorClient client(std::make_shared<TBinaryProtocol>(framed));
  wire::HealthResponse h;
  client.health(h);
  g_recv_returns = 0;
  g_polls = 0;
  g_server_port = server.port();
  for (int i = 0; i < calls; ++i) {
    client.health(h);
    EXPECT_EQ(h.node_id, "n1");
  }
  g_server_port = 0;
  Counts counts{g_recv_returns.load(), g_polls.load()};
  socket->close();
  server.Stop();
  return counts;
}

// A framed request whose size and body arrived together is read with one
// recv(2) and no poll(2): not a poll and a recv for the size, then again for
// the body, as Thrift 0.17's TSocket with an interrupt listener under
// TFramedTransport does.
TEST(PlainSocketReadsTest, FramedServerReadsEachRequestWithOneRecvAndNoPoll) {
  Counts counts = CountServerReads(ThriftWire::kFramedBinary, 20);
  EXPECT_EQ(counts.recvs, 20);
  EXPECT_EQ(counts.polls, 0);
}

// The same for the header server (here answering a framed binary client).
TEST(PlainSocketReadsTest, HeaderServerReadsEachRequestWithOneRecvAndNoPoll) {
  Counts counts = CountServerReads(ThriftWire::kHeader, 20);
  EXPECT_EQ(counts.recvs, 20);
  EXPECT_EQ(counts.polls, 0);
}

// `n` framed health requests, encoded back to back.
std::string HealthRequests(int n) {
  auto memory = std::make_shared<TMemoryBuffer>();
  auto framed = std::make_shared<TFramedTransport>(memory);
  wire::CoordinatorClient encoder(std::make_shared<TBinaryProtocol>(framed));
  for (int i = 0; i < n; ++i) encoder.send_health();
  return memory->getBufferAsString();
}

// A server answering health (framed binary) and one client connection to it,
// whose socket the test may also write raw bytes to.
struct HealthConnection {
  HealthConnection()
      : server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
               ThriftServerOptions{"127.0.0.1", 0}) {
    started = server.Start().ok();
    socket = std::make_shared<TSocket>("127.0.0.1", server.port());
    socket->setRecvTimeout(10000);
    if (started) socket->open();
    client = std::make_unique<wire::CoordinatorClient>(
        std::make_shared<TBinaryProtocol>(std::make_shared<TFramedTransport>(socket)));
  }
  ~HealthConnection() {
    socket->close();
    server.Stop();
  }
  void WriteRaw(const std::string& bytes, size_t from, size_t n) {
    socket->write(reinterpret_cast<const uint8_t*>(bytes.data()) + from, static_cast<uint32_t>(n));
  }

  ThriftServer server;
  bool started = false;
  std::shared_ptr<TSocket> socket;
  std::unique_ptr<wire::CoordinatorClient> client;
};

// A client that sends several requests at once (the coordinator's batches)
// gets the answers in order, in one send(2) of the server: each answer is held
// while the next request is already read.
TEST(PlainSocketReadsTest, PipelinedRequestsAreAnsweredInOrderInOneSend) {
  HealthConnection c;
  ASSERT_TRUE(c.started);
  wire::HealthResponse h;
  c.client->health(h);  // connected and served once: not counted
  const std::string requests = HealthRequests(8);
  g_sends = 0;
  g_recv_returns = 0;
  g_server_port = c.server.port();
  c.WriteRaw(requests, 0, requests.size());
  for (int i = 0; i < 8; ++i) {
    wire::HealthResponse answer;
    c.client->recv_health(answer);
    EXPECT_EQ(answer.node_id, "n1");
  }
  g_server_port = 0;
  EXPECT_EQ(g_recv_returns.load(), 1);
  EXPECT_EQ(g_sends.load(), 1);
}

// An answer is never held for a request that has not fully arrived: the
// server sends it before it waits for the rest.
TEST(PlainSocketReadsTest, AnswerIsNotHeldForAPartlyReceivedRequest) {
  HealthConnection c;
  ASSERT_TRUE(c.started);
  const std::string two = HealthRequests(2);
  const size_t first_and_a_bit = two.size() / 2 + 3;
  c.WriteRaw(two, 0, first_and_a_bit);
  wire::HealthResponse answer;
  c.client->recv_health(answer);  // would time out (an exception) if it were held
  EXPECT_EQ(answer.node_id, "n1");
  c.WriteRaw(two, first_and_a_bit, two.size() - first_and_a_bit);
  c.client->recv_health(answer);
  EXPECT_EQ(answer.node_id, "n1");
}

// The same over TLS: requests that arrive in one TLS record are answered in
// one record, one write(2) of the server.
TEST(PlainSocketReadsTest, PipelinedRequestsOverTlsAreAnsweredInOneWrite) {
  auto ca = testing::TestCa::Create("pipelined-tls-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto server_cert = (*ca)->IssueLoopbackServer("server");
  auto client_cert = (*ca)->Issue("client", "bench");
  ASSERT_TRUE(server_cert.ok() && client_cert.ok());
  ThriftServerOptions options{"127.0.0.1", 0};
  options.tls = (*ca)->Options(*server_cert);
  ThriftServer server(std::make_shared<wire::CoordinatorProcessor>(std::make_shared<HealthOnly>()),
                      options);
  ASSERT_TRUE(server.Start().ok());
  auto tls = TlsContext::Create((*ca)->Options(*client_cert), TlsRole::kClient);
  ASSERT_TRUE(tls.ok()) << tls.status();
  auto socket = (*tls)->ClientSocket("127.0.0.1", server.port(), nullptr);
  socket->setRecvTimeout(10000);
  socket->open();
  wire::CoordinatorClient client(
      std::make_shared<TBinaryProtocol>(std::make_shared<TFramedTransport>(socket)));
  wire::HealthResponse h;
  client.health(h);  // handshake and a first call: not counted
  const std::string requests = HealthRequests(8);
  g_sends = 0;
  g_writes = 0;
  g_server_port = server.port();
  // One SSL_write: the eight requests travel in one TLS record.
  socket->write(reinterpret_cast<const uint8_t*>(requests.data()),
                static_cast<uint32_t>(requests.size()));
  for (int i = 0; i < 8; ++i) {
    wire::HealthResponse answer;
    client.recv_health(answer);
    EXPECT_EQ(answer.node_id, "n1");
  }
  g_server_port = 0;
  EXPECT_EQ(g_sends.load() + g_writes.load(), 1);
  // A single call is still answered at once (nothing held for it).
  client.health(h);
  EXPECT_EQ(h.node_id, "n1");
  socket->close();
  server.Stop();
}

}  // namespace
}  // namespace txc
