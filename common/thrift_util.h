// Thrift plumbing shared by the coordinator and the participant SDK: message
// limits, a framed transport that survives long-lived connections, endpoint
// parsing, and a pool of client connections with timeouts.
//
// Thrift 0.17 facts this relies on (see shared/STACK-NOTES.md):
// * TFramedTransport counts bytes consumed against maxMessageSize for the life
//   of the connection and never resets the budget, so a connection dies after
//   ~100 MiB. ResettingFramedTransport resets it at the end of every message.
// * Stock server transport factories ignore TConfiguration: ours applies it.
// * Generated clients do not check sequence ids: after any transport error the
//   connection is discarded, never reused.
#pragma once

#include <thrift/TApplicationException.h>
#include <thrift/TConfiguration.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/backoff.h"
#include "common/status.h"
#include "common/tls.h"

namespace txc {

constexpr int64_t kDefaultMaxMessageBytes = 16 * 1024 * 1024;

// Limits applied to every connection we read from.
std::shared_ptr<apache::thrift::TConfiguration> MakeThriftConfig(int64_t max_message_bytes);

// TFramedTransport whose consumed-bytes budget is per message, not per connection.
class ResettingFramedTransport : public apache::thrift::transport::TFramedTransport {
 public:
  ResettingFramedTransport(std::shared_ptr<apache::thrift::transport::TTransport> transport,
                           std::shared_ptr<apache::thrift::TConfiguration> config)
      : TFramedTransport(std::move(transport), std::move(config)) {}
  uint32_t readEnd() override;

 protected:
  // A message is one frame: a read past the end of the frame a message began
  // in (a struct without its STOP, a length past the frame) is malformed
  // (TTransportException CORRUPTED_DATA), never completed from the next frame.
  uint32_t readSlow(uint8_t* buf, uint32_t len) override;

 private:
  bool in_message_ = false;  // a frame was read and its message's readEnd() not seen yet
};

class ResettingFramedTransportFactory : public apache::thrift::transport::TTransportFactory {
 public:
  explicit ResettingFramedTransportFactory(std::shared_ptr<apache::thrift::TConfiguration> config)
      : config_(std::move(config)) {}
  std::shared_ptr<apache::thrift::transport::TTransport> getTransport(
      std::shared_ptr<apache::thrift::transport::TTransport> trans) override;

 private:
  std::shared_ptr<apache::thrift::TConfiguration> config_;
};

// Most elements one container (list/set/map) on the wire may declare.
constexpr int32_t kMaxContainerElements = 64 * 1024;

// Binary protocol factory with explicit string and container limits. Thrift
// 0.17 checks a declared size against the bytes left in the message only with
// a minimum element size, which is 0 for a struct: a 20-byte message declaring
// a list of 2^31-1 structs made the reader resize a vector to that and die with
// std::bad_alloc, and a declared 2 GiB string was allocated before the read
// failed. Strings are capped at the message size, containers at
// kMaxContainerElements (well above every list the IDL allows). Every type byte
// (field, container element, message type) is checked before Thrift turns it
// into an enum: an out-of-range byte is TProtocolException(INVALID_DATA), not
// undefined behaviour (see thrift_util.cc).
std::shared_ptr<apache::thrift::protocol::TProtocolFactory> MakeProtocolFactory(
    int64_t max_message_bytes = kDefaultMaxMessageBytes);

// One protocol of that factory's kind over `transport` (the THeader server
// reads binary payloads with it: common/header_protocol.h).
std::shared_ptr<apache::thrift::protocol::TProtocol> MakeCheckedBinaryProtocol(
    std::shared_ptr<apache::thrift::transport::TTransport> transport, int64_t max_message_bytes);

// The string limit MakeProtocolFactory applies for max_message_bytes.
int32_t StringLimitFor(int64_t max_message_bytes);

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

constexpr size_t kMaxEndpointBytes = 256;

// Parses "host:port" (host non-empty, port 1..65535; at most kMaxEndpointBytes
// of printable ASCII without spaces).
Result<HostPort> ParseEndpoint(const std::string& endpoint);

// Sends Thrift's own diagnostics to glog instead of stderr.
void RouteThriftLogsToGlog();

struct ConnectOptions {
  int connect_timeout_ms = 1000;
  int rpc_timeout_ms = 5000;  // send and receive timeout of every call
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  // A pooled connection idle longer than this is closed instead of reused:
  // servers close idle connections (ThriftServerOptions::recv_timeout_ms), and
  // a reused connection the peer already closed would fail the call.
  int64_t max_idle_ms = 60000;
  // TLS client credentials (TlsContext::Create(options, TlsRole::kClient));
  // null: plaintext. The handshake runs when the connection opens, so a
  // refused certificate or a server that does not speak TLS fails there.
  std::shared_ptr<TlsContext> tls{};
};

// An open framed binary connection with a generated client on top.
template <typename Client>
struct ThriftConnection {
  std::shared_ptr<apache::thrift::transport::TTransport> transport;
  std::unique_ptr<Client> client;
  int64_t idle_since_ms = 0;  // MonotonicMs() when it was last returned to a pool
};

// Opens a connection; kUnavailable if the peer cannot be reached.
template <typename Client>
Result<std::unique_ptr<ThriftConnection<Client>>> OpenConnection(const HostPort& endpoint,
                                                                 const ConnectOptions& options);

// A pool of idle connections per endpoint. Call() borrows a connection (or
// opens one), runs `fn(client)`, and returns the connection to the pool when
// fn returned normally. A Thrift transport/protocol exception discards the
// connection (its replies can no longer be trusted) and is returned as
// kUnavailable; user-declared Thrift exceptions propagate to the caller's fn.
// Thread-safe; a borrowed connection is used by one thread at a time.
template <typename Client>
class ClientPool {
 public:
  explicit ClientPool(ConnectOptions options, size_t max_idle_per_endpoint = 64)
      : options_(options), max_idle_(max_idle_per_endpoint) {}

  Status Call(const std::string& endpoint, const std::function<void(Client&)>& fn);

  // Drops every idle connection (e.g. after a peer restarted).
  void Clear();

 private:
  using Conn = ThriftConnection<Client>;
  ConnectOptions options_;
  size_t max_idle_;
  std::mutex mu_;  // guards idle_
  std::map<std::string, std::deque<std::unique_ptr<Conn>>> idle_;
};

// Opens a TCP connection (PlainSocket) or, with options.tls, a TLS one whose
// handshake has run (TlsSocket), with the options' timeouts. kUnavailable (or
// kTimeout) naming the endpoint, with a hint for the usual TLS refusals.
Result<std::shared_ptr<apache::thrift::transport::TSocket>> OpenSocket(
    const HostPort& endpoint, const ConnectOptions& options);

// ---- implementation of the templates ----------------------------------------

Result<std::shared_ptr<apache::thrift::protocol::TProtocol>> OpenProtocol(
    const HostPort& endpoint, const ConnectOptions& options,
    std::shared_ptr<apache::thrift::transport::TTransport>* transport);

template <typename Client>
Result<std::unique_ptr<ThriftConnection<Client>>> OpenConnection(const HostPort& endpoint,
                                                                 const ConnectOptions& options) {
  auto conn = std::make_unique<ThriftConnection<Client>>();
  auto protocol = OpenProtocol(endpoint, options, &conn->transport);
  if (!protocol.ok()) return protocol.status();
  conn->client = std::make_unique<Client>(*protocol);
  return conn;
}

Status TranslateThriftException(const std::exception& e, const std::string& endpoint);

template <typename Client>
Status ClientPool<Client>::Call(const std::string& endpoint,
                                const std::function<void(Client&)>& fn) {
  std::unique_ptr<Conn> conn;
  std::deque<std::unique_ptr<Conn>> expired;  // closed outside the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[endpoint];
    const int64_t now = MonotonicMs();
    // Oldest first: connections idle too long are dropped, not reused.
    while (!idle.empty() && now - idle.front()->idle_since_ms > options_.max_idle_ms) {
      expired.push_back(std::move(idle.front()));
      idle.pop_front();
    }
    if (!idle.empty()) {
      conn = std::move(idle.back());
      idle.pop_back();
    }
  }
  for (auto& old : expired) {
    try {
      old->transport->close();
    } catch (...) {
    }
  }
  if (!conn) {
    auto hp = ParseEndpoint(endpoint);
    if (!hp.ok()) return hp.status();
    auto opened = OpenConnection<Client>(*hp, options_);
    if (!opened.ok()) return opened.status();
    conn = std::move(opened).value();
  }
  try {
    fn(*conn->client);
  } catch (const apache::thrift::TException& e) {
    // Transport, protocol and application exceptions: the connection is suspect.
    // User-declared exceptions derive from TException too, so re-throw those.
    if (dynamic_cast<const apache::thrift::transport::TTransportException*>(&e) ||
        dynamic_cast<const apache::thrift::protocol::TProtocolException*>(&e) ||
        dynamic_cast<const apache::thrift::TApplicationException*>(&e)) {
      try {
        conn->transport->close();
      } catch (...) {
      }
      return TranslateThriftException(e, endpoint);
    }
    throw;
  }
  conn->idle_since_ms = MonotonicMs();
  std::lock_guard<std::mutex> lock(mu_);
  auto& idle = idle_[endpoint];
  if (idle.size() < max_idle_) idle.push_back(std::move(conn));
  return Status::Ok();
}

template <typename Client>
void ClientPool<Client>::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.clear();
}

}  // namespace txc
