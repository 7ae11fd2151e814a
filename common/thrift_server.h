// ThriftServer: the one way we serve Thrift, for the coordinator and for
// participants. A TThreadedServer (a thread per connection: measured fastest
// here for small calls) with framed binary protocol, our message limits applied
// to every accepted connection, and the long-lived-connection fix of
// ResettingFramedTransport. A malformed or oversized frame closes that one
// connection; the server keeps serving.
//
// Thread-safety: Start/Stop from one owning thread.
#pragma once

#include <thrift/TProcessor.h>
#include <thrift/server/TThreadedServer.h>

#include <memory>
#include <string>
#include <thread>

#include "common/status.h"
#include "common/thrift_util.h"

namespace txc {

struct ThriftServerOptions {
  std::string host = "0.0.0.0";
  int port = 0;  // 0: any free port (see port())
  int64_t max_message_bytes = kDefaultMaxMessageBytes;
  int64_t max_connections = 4096;  // further connections wait in the accept queue
  // A connection that sends nothing (idle, or stuck in a half-sent frame) for
  // this long is closed, so slow or dead clients cannot hold server threads
  // forever. ClientPool drops its idle connections sooner (max_idle_ms). 0: never.
  int recv_timeout_ms = 300000;
};

// The peer ("host:port") of the connection whose call this thread is serving
// inside a ThriftServer handler; "unknown" elsewhere.
std::string CurrentThriftPeer();

class ThriftServer {
 public:
  ThriftServer(std::shared_ptr<apache::thrift::TProcessor> processor, ThriftServerOptions options);
  ~ThriftServer();  // Stop()s

  // Binds, starts serving on a background thread and returns once listening.
  // kUnavailable if the port cannot be bound.
  Status Start();
  // Stops accepting, closes connections, joins the serving thread. Idempotent.
  void Stop();
  // The bound port (useful with options.port == 0). Valid after Start().
  int port() const { return port_; }

 private:
  std::shared_ptr<apache::thrift::TProcessor> processor_;
  ThriftServerOptions options_;
  std::shared_ptr<apache::thrift::server::TThreadedServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace txc
