#include "common/thrift_server.h"

#include <glog/logging.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>

#include <future>

#include "common/peer_identity.h"

namespace txc {

using apache::thrift::server::TServerEventHandler;
using apache::thrift::server::TThreadedServer;
using apache::thrift::transport::TServerSocket;

namespace {

// Tells Start() that serve() is listening (or that it failed to), and records
// each call's peer for CurrentThriftPeer().
class ReadySignal : public TServerEventHandler {
 public:
  explicit ReadySignal(std::shared_ptr<std::promise<Status>> ready) : ready_(std::move(ready)) {}
  void preServe() override {
    if (ready_ != nullptr) ready_->set_value(Status::Ok());
    ready_.reset();
  }
  void processContext(void*,
                      std::shared_ptr<apache::thrift::transport::TTransport> transport) override {
    PeerIdentity identity;
    auto* socket = dynamic_cast<apache::thrift::transport::TSocket*>(transport.get());
    if (socket != nullptr) {
      try {
        identity.address = socket->getPeerAddress() + ":" + std::to_string(socket->getPeerPort());
      } catch (const std::exception&) {
        identity.address = "unknown";
      }
    }
    SetCurrentPeerIdentity(std::move(identity));
  }

 private:
  std::shared_ptr<std::promise<Status>> ready_;
};

}  // namespace

std::string CurrentThriftPeer() { return CurrentPeerIdentity().address; }

ThriftServer::ThriftServer(std::shared_ptr<apache::thrift::TProcessor> processor,
                           ThriftServerOptions options)
    : processor_(std::move(processor)), options_(std::move(options)) {}

ThriftServer::~ThriftServer() { Stop(); }

Status ThriftServer::Start() {
  auto config = MakeThriftConfig(options_.max_message_bytes);
  auto socket = std::make_shared<TServerSocket>(options_.host, options_.port);
  if (options_.recv_timeout_ms > 0) socket->setRecvTimeout(options_.recv_timeout_ms);
  auto transport_factory = std::make_shared<ResettingFramedTransportFactory>(config);
  server_ = std::make_shared<TThreadedServer>(processor_, socket, transport_factory,
                                              MakeProtocolFactory(options_.max_message_bytes));
  server_->setConcurrentClientLimit(options_.max_connections);
  auto ready = std::make_shared<std::promise<Status>>();
  auto ready_future = ready->get_future();
  server_->setServerEventHandler(std::make_shared<ReadySignal>(ready));
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
  return Status::Ok();
}

void ThriftServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace txc
