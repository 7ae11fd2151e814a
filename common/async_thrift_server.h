// AsyncThriftServer: an event-loop (Boost.Asio) Thrift server for the framed
// binary wire, serving an asynchronous processor (the Coordinator service's
// cob_style CoordinatorAsyncProcessor). A handler answers by calling its cob
// or exn_cob from any thread, at once inside the call or much later; the
// answer is posted back to the connection's I/O thread and written there. No
// thread sleeps per call waiting for an answer computed elsewhere (what a
// thread-per-connection ThriftServer pays ~15-20 us for; this costs ~1-2 us).
// It replaces ThriftServer on the coordinator's port and keeps its rules
// (common/thrift_server.h):
//
// Wire: 4-byte big-endian frame length, then one binary-protocol message
// (MakeProtocolFactory's string and container limits). A frame length of 0,
// a negative one or one over max_message_bytes, and a malformed message (a
// struct running past its frame, garbage, a reply instead of a call) close
// that one connection at once with a rate-limited WARNING naming the peer;
// the server keeps serving. An unknown method is answered with Thrift's
// TApplicationException (UNKNOWN_METHOD) and the connection goes on.
//
// One call at a time per connection: the next frame is read only once the
// answer to the previous one has been written. Thrift's synchronous clients
// never pipeline, so nothing is lost; a client that does pipeline is served
// in order, one call after the other.
//
// Timeouts (recv_timeout_ms, 0: none): a connection in its TLS handshake,
// waiting for a frame, stopped halfway through one, or not reading its answer
// for that long is closed. The time a call spends with its handler does not
// count.
//
// Limits: at max_connections open connections the server stops accepting
// (further clients wait in the listen queue) until one closes. A peer IP
// holding max_connections_per_peer connections has further ones closed at
// accept, with the same rate-limited WARNING as ThriftServer.
//
// TLS (options.tls.enabled()): every connection runs its handshake first
// (bounded by recv_timeout_ms); a failure closes it with a rate-limited
// WARNING naming the peer and OpenSSL's reason (and a hint when the client
// spoke plaintext). A plaintext server closes a connection whose first bytes
// are a TLS record, saying so. ReloadTls() re-reads the files for
// connections accepted afterwards; open ones keep theirs. No close_notify is
// sent when the server closes a connection: the socket is closed.
//
// Identity: each connection's PeerIdentity (its "ip:port", and under TLS the
// verified client certificate's CN and SANs) is made current
// (SetCurrentPeerIdentity) on the I/O thread before each process() call, so
// a handler reads CurrentPeerIdentity() in the synchronous part of its call;
// a thread that answers later must have copied what it needs.
//
// Threads: io_threads threads named "rpc-io" run the accept loop, every
// connection (each on one thread at a time: a strand per connection when
// io_threads > 1) and the synchronous part of every handler: a handler must
// hand slow or blocking work to a thread of its own and answer from there.
// cob/exn_cob may be called from any thread, also after the connection
// closed or the server stopped (the answer is then dropped); a handler may
// keep a cob past ~AsyncThriftServer.
//
// Handler lifetime: each call's cob keeps the processor, and so the handler,
// alive until the cob is destroyed (the generated cob calls into the
// processor through a raw pointer). The last reference to a handler may
// therefore go on whichever thread destroys the last cob: a handler that
// joins threads of its own in its destructor must have them stopped by its
// owner first (on the owner's thread), and a handler must not keep cobs in
// itself past its life (a cycle through the processor).
//
// Thread-safety: Start/Stop from one owning thread; port(), tls() and
// ReloadTls() from any thread.
#pragma once

#include <thrift/async/TAsyncProcessor.h>

#include <memory>

#include "common/rpc_server.h"
#include "common/status.h"
#include "common/thrift_server.h"

namespace txc {

class AsyncThriftServer : public RpcServer {
 public:
  // options.wire must be ThriftWire::kFramedBinary (Start() answers
  // kInvalidArgument otherwise). io_threads: at least 1.
  AsyncThriftServer(std::shared_ptr<apache::thrift::async::TAsyncProcessor> processor,
                    ThriftServerOptions options, int io_threads = 1);
  ~AsyncThriftServer() override;  // Stop()s
  AsyncThriftServer(const AsyncThriftServer&) = delete;
  AsyncThriftServer& operator=(const AsyncThriftServer&) = delete;

  // Binds, starts the I/O threads and returns once listening. kUnavailable if
  // the port cannot be bound; kInvalidArgument if the TLS files cannot be
  // loaded, for another wire than kFramedBinary, or when already started.
  Status Start() override;
  // Closes the listener and the idle connections at once. A connection whose
  // call is with its handler is closed once that call's answer is written
  // (it reads no further call), or when options.drain_timeout_ms ran out.
  // Then stops and joins the I/O threads. Answers given after that are
  // dropped. Idempotent.
  void Stop() override;

  // The bound port (useful with options.port == 0). Valid after Start().
  int port() const override;
  bool tls() const override;

  // Re-reads the TLS certificate, key, CA and CRL files: connections accepted
  // from now on use them, open ones keep theirs. On failure the current files
  // stay in use and the error is returned. kInvalidArgument without TLS.
  Status ReloadTls() override;

  struct Core;  // public so that the connections in the .cc can name it

 private:
  const std::shared_ptr<Core> core_;
};

}  // namespace txc
