#include "common/thrift_server.h"

#include <glog/logging.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>
#include <unistd.h>

#include <atomic>
#include <future>

#include "common/backoff.h"
#include "common/header_protocol.h"
#include "common/peer_identity.h"
#include "common/server_support.h"

namespace txc {

using apache::thrift::TConfiguration;
using apache::thrift::protocol::TProtocol;
using apache::thrift::server::TServerEventHandler;
using apache::thrift::server::TThreadedServer;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TServerSocket;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransport;
using apache::thrift::transport::TTransportException;

namespace {

// The listening socket: refuses peers over their connection limit and makes
// each accepted connection a TlsSocket (TLS) or a PlainSocket.
//
// Stopping: TServerFramework::stop() calls interruptChildren(). A TlsSocket
// keeps Thrift's child interrupt socket, polled before every read (TLS is
// left as it was: OpenSSL buffers records itself). A PlainSocket gets
// no interrupt socket, so its reads are one recv(2) each, not a poll(2) and a
// recv(2); interruptChildren() reaches it through interrupter_, which shuts
// down the receive side of every open plaintext connection: an idle one's
// blocked recv() returns end of stream at once, a busy one sends its answer
// and ends at its next read (see ConnectionInterrupter).
class ServerSocket : public TServerSocket {
 public:
  ServerSocket(const std::string& host, int port, std::shared_ptr<TlsContext> tls,
               std::shared_ptr<PeerConnectionCounts> counts, std::shared_ptr<TConfiguration> config)
      : TServerSocket(host, port),
        tls_(std::move(tls)),
        counts_(std::move(counts)),
        config_(std::move(config)) {}

  void interruptChildren() override {
    TServerSocket::interruptChildren();
    interrupter_->Stop();
  }

 protected:
  std::shared_ptr<TSocket> createSocket(THRIFT_SOCKET fd) override {
    std::string ip;
    if (counts_ != nullptr) {
      ip = PeerIp(fd);
      if (!counts_->TryAcquire(ip)) {
        LogPeerLimitRefusal(*counts_, ip, getPort());
        ::close(fd);
        // The accept loop treats CLIENT_DISCONNECT as "next connection".
        throw TTransportException(TTransportException::CLIENT_DISCONNECT,
                                  "per-peer connection limit");
      }
    }
    std::shared_ptr<TSocket> socket;
    if (tls_ != nullptr) {
      std::shared_ptr<THRIFT_SOCKET> interrupt =
          interruptableChildren_ ? pChildInterruptSockReader_ : nullptr;
      socket = tls_->ServerSocket(fd, interrupt, config_);
    } else {
      auto plain = std::make_shared<PlainSocket>(fd, config_);
      plain->set_server_side(true);
      plain->set_interrupter(interrupter_);
      socket = plain;
    }
    if (counts_ == nullptr) return socket;
    // The count is released when the server drops its last reference to the
    // socket (the connection ended and its client object was destroyed).
    auto counts = counts_;
    TSocket* raw = socket.get();
    return std::shared_ptr<TSocket>(raw, [socket, counts, ip](TSocket*) mutable {
      socket.reset();
      counts->Release(ip);
    });
  }

 private:
  std::shared_ptr<TlsContext> tls_;
  std::shared_ptr<PeerConnectionCounts> counts_;
  std::shared_ptr<TConfiguration> config_;
  // Ends the reads of the plaintext connections at stop (see above).
  const std::shared_ptr<ConnectionInterrupter> interrupter_ =
      std::make_shared<ConnectionInterrupter>();
};

// The accepted socket under a server protocol (our framed transport over
// it, or a header protocol's connection).
TSocket* SocketOf(const std::shared_ptr<TProtocol>& protocol) {
  if (protocol == nullptr) return nullptr;
  if (auto* header = dynamic_cast<LimitedHeaderProtocol*>(protocol.get())) {
    return dynamic_cast<TSocket*>(header->connection().get());
  }
  std::shared_ptr<TTransport> transport = protocol->getTransport();
  if (auto* framed = dynamic_cast<TFramedTransport*>(transport.get())) {
    transport = framed->getUnderlyingTransport();
  }
  return dynamic_cast<TSocket*>(transport.get());
}

// One per connection: who the peer is, computed once when it connected.
struct ConnectionContext {
  PeerIdentity identity;
};

// Tells Start() that serve() is listening (or that it failed to); on each new
// connection runs the TLS handshake and records the peer's identity, made
// current for each of its calls.
class ServerEvents : public TServerEventHandler {
 public:
  ServerEvents(std::shared_ptr<std::promise<Status>> ready, int port_hint)
      : ready_(std::move(ready)), port_hint_(port_hint) {}
  void set_port(int port) { port_hint_.store(port); }

  void preServe() override {
    if (ready_ != nullptr) ready_->set_value(Status::Ok());
    ready_.reset();
  }

  void* createContext(std::shared_ptr<TProtocol> input, std::shared_ptr<TProtocol>) override {
    auto* context = new ConnectionContext();
    TSocket* socket = SocketOf(input);
    if (socket == nullptr) return context;
    try {
      context->identity.address =
          socket->getPeerAddress() + ":" + std::to_string(socket->getPeerPort());
    } catch (const std::exception&) {
      context->identity.address = "unknown";
    }
    auto* tls = dynamic_cast<TlsSocket*>(socket);
    if (tls == nullptr) return context;
    Status handshake = tls->Handshake();
    if (!handshake.ok()) {
      // The connection is closed; its first read ends the serving loop quietly.
      const auto d = ServerLogLimiter().Admit(
          "tls " + socket->getPeerAddress() + " " + handshake.message(), MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "TLS handshake with " << context->identity.address << " on port "
                     << port_hint_.load() << " failed, connection closed: " << handshake.message()
                     << NotTlsHint(handshake.message()) << d.Suffix();
      }
      return context;
    }
    if (tls->peer_verified()) {
      context->identity.authenticated = true;
      context->identity.common_name = tls->peer_common_name();
      context->identity.sans = tls->peer_sans();
      VLOG(1) << "TLS connection from " << context->identity.Describe();
    }
    return context;
  }

  void deleteContext(void* context, std::shared_ptr<TProtocol>,
                     std::shared_ptr<TProtocol>) override {
    delete static_cast<ConnectionContext*>(context);
  }

  void processContext(void* context, std::shared_ptr<TTransport>) override {
    if (context == nullptr) {
      SetCurrentPeerIdentity(PeerIdentity{});
      return;
    }
    SetCurrentPeerIdentity(static_cast<ConnectionContext*>(context)->identity);
  }

 private:
  std::shared_ptr<std::promise<Status>> ready_;
  std::atomic<int> port_hint_;
};

}  // namespace

std::string CurrentThriftPeer() { return CurrentPeerIdentity().address; }

ThriftServer::ThriftServer(std::shared_ptr<apache::thrift::TProcessor> processor,
                           ThriftServerOptions options)
    : processor_(std::move(processor)), options_(std::move(options)) {}

ThriftServer::~ThriftServer() { Stop(); }

Status ThriftServer::Start() {
  if (options_.tls.enabled()) {
    auto tls = TlsContext::Create(options_.tls, TlsRole::kServer);
    if (!tls.ok()) return tls.status();
    tls_ = std::move(tls).value();
  }
  auto config = MakeThriftConfig(options_.max_message_bytes);
  std::shared_ptr<PeerConnectionCounts> counts;
  if (options_.max_connections_per_peer > 0) {
    counts = std::make_shared<PeerConnectionCounts>(options_.max_connections_per_peer);
  }
  auto socket = std::make_shared<ServerSocket>(options_.host, options_.port, tls_, counts, config);
  if (options_.recv_timeout_ms > 0) socket->setRecvTimeout(options_.recv_timeout_ms);
  if (options_.wire == ThriftWire::kHeader) {
    // The header protocol frames by itself, over the raw socket.
    server_ = std::make_shared<TThreadedServer>(
        processor_, socket, std::make_shared<apache::thrift::transport::TTransportFactory>(),
        std::make_shared<LimitedHeaderProtocolFactory>(options_.max_message_bytes));
    // No output factory: TServerFramework then makes one protocol per
    // connection for both directions, so a reply goes out through the same
    // header transport, in the format the client used.
    server_->setOutputProtocolFactory(nullptr);
  } else {
    server_ = std::make_shared<TThreadedServer>(
        processor_, socket, std::make_shared<ResettingFramedTransportFactory>(config),
        MakeProtocolFactory(options_.max_message_bytes));
  }
  server_->setConcurrentClientLimit(options_.max_connections);
  auto ready = std::make_shared<std::promise<Status>>();
  auto ready_future = ready->get_future();
  auto events = std::make_shared<ServerEvents>(ready, options_.port);
  server_->setServerEventHandler(events);
  thread_ = std::thread([this, ready] {
    try {
      server_->serve();
    } catch (const std::exception& e) {
      // Before preServe() this is a bind failure, reported by Start().
      try {
        ready->set_value(Status::Unavailable("cannot listen on " + options_.host + ":" +
                                             std::to_string(options_.port) + ": " + e.what()));
      } catch (const std::future_error&) {
        LOG(ERROR) << "thrift server on port " << port_ << " stopped: " << e.what();
      }
    }
  });
  Status listening = ready_future.get();
  if (!listening.ok()) {
    thread_.join();
    server_.reset();
    return listening;
  }
  port_ = socket->getPort();
  events->set_port(port_);
  if (tls_ != nullptr) {
    LOG(INFO) << "thrift server on " << options_.host << ":" << port_
              << " uses TLS: " << tls_->Describe();
  }
  return Status::Ok();
}

Status ThriftServer::ReloadTls() {
  if (tls_ == nullptr) return Status::InvalidArgument("this server does not use TLS");
  Status reloaded = tls_->Reload();
  if (!reloaded.ok()) {
    LOG(ERROR) << "TLS reload for port " << port_
               << " failed, keeping the current certificate: " << reloaded;
    return reloaded;
  }
  LOG(INFO) << "TLS files reloaded for port " << port_ << ": " << tls_->Describe();
  return Status::Ok();
}

void ThriftServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace txc
