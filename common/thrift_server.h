// ThriftServer: the one way we serve Thrift, for the coordinator, for
// participants and for users' own services. A TThreadedServer (a thread per
// connection: measured fastest here for small calls) with our message limits
// applied to every accepted connection and the long-lived-connection fix (the
// consumed-bytes budget reset per message). A malformed or oversized frame
// closes that one connection; the server keeps serving.
//
// Wire (options.wire):
// * kFramedBinary (the coordinator, participants): framed binary protocol
//   (ResettingFramedTransport + MakeProtocolFactory).
// * kHeader (the SDK's TxnHeaderServer, for headers such as the transaction
//   context): THeader with binary payload, and, detected per connection,
//   plain framed or unframed binary and compact clients, each answered in its
//   own format (LimitedHeaderProtocol, common/header_protocol.h: the same
//   frame, message, string and container limits and the per-message reset).
// TLS, peer identity and the per-peer limit below apply to both.
//
// TLS (options.tls): every accepted connection runs its handshake first, on
// its own thread, bounded by recv_timeout_ms; a failed handshake (no, expired
// or foreign client certificate under mutual TLS; a plaintext client) closes
// that connection with one WARNING line naming the peer and OpenSSL's reason.
// A plaintext server likewise names a client that tries TLS on it. The
// caller's identity (PeerIdentity: address, and under TLS the verified client
// certificate's CN and SANs) is computed once per connection and made current
// for each call (CurrentPeerIdentity()).
//
// Per-peer limit: a peer IP already holding max_connections_per_peer
// connections has further ones closed at accept (rate-limited WARNING naming
// it), so one host cannot take every serving thread.
//
// Thread-safety: Start/Stop from one owning thread; ReloadTls from any thread.
#pragma once

#include <thrift/TProcessor.h>
#include <thrift/server/TThreadedServer.h>

#include <memory>
#include <string>
#include <thread>

#include "common/rpc_server.h"
#include "common/status.h"
#include "common/thrift_util.h"
#include "common/tls.h"

namespace txc {

// What a ThriftServer speaks on its port (see above).
enum class ThriftWire {
  kFramedBinary,  // framed binary protocol only
  kHeader,        // THeader; also framed/unframed binary and compact clients
};

struct ThriftServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0: any free port (see port())
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  int64_t max_connections = 4096;  // further connections wait in the accept queue
  // A connection that sends nothing (idle, or stuck in a half-sent frame or
  // TLS handshake) for this long is closed, so slow or dead clients cannot
  // hold server threads forever. ClientPool drops its idle connections sooner
  // (max_idle_ms). 0: never.
  int recv_timeout_ms = 300000;
  // Connections one peer IP may hold at once; more are closed at accept. 0: no limit.
  int64_t max_connections_per_peer = 512;
  // TLS on this port when tls.enabled() (see common/tls.h); plaintext otherwise.
  TlsOptions tls{};
  ThriftWire wire = ThriftWire::kFramedBinary;
  // AsyncThriftServer::Stop(): how long calls already with their handler get
  // to be answered (and the answer written) before their connections are
  // closed anyway. Idle connections close at once. 0: close everything at once.
  int64_t drain_timeout_ms = 5000;
};

// The peer ("host:port") of the connection whose call this thread is serving
// inside a ThriftServer handler; "unknown" elsewhere.
std::string CurrentThriftPeer();

class ThriftServer : public RpcServer {
 public:
  ThriftServer(std::shared_ptr<apache::thrift::TProcessor> processor, ThriftServerOptions options);
  ~ThriftServer() override;  // Stop()s

  // Binds, starts serving on a background thread and returns once listening.
  // kUnavailable if the port cannot be bound; kInvalidArgument if the TLS
  // files cannot be loaded.
  Status Start() override;
  // Stops accepting, closes connections, joins the serving thread. Idempotent.
  void Stop() override;
  // The bound port (useful with options.port == 0). Valid after Start().
  int port() const override { return port_; }
  bool tls() const override { return tls_ != nullptr; }

  // Re-reads the TLS certificate, key and CA files: connections accepted
  // from now on use them, open ones keep theirs. On failure the current files
  // stay in use and the error is returned. kInvalidArgument without TLS.
  Status ReloadTls() override;

 private:
  std::shared_ptr<apache::thrift::TProcessor> processor_;
  ThriftServerOptions options_;
  std::shared_ptr<TlsContext> tls_;  // null: plaintext
  std::shared_ptr<apache::thrift::server::TThreadedServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace txc
