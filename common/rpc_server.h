// RpcServer: what owners need of a Thrift server, whichever model serves the
// port: ThriftServer (a thread per connection, synchronous handlers) or
// AsyncThriftServer (an event loop, handlers that answer asynchronously).
#pragma once

#include "common/status.h"

namespace txc {

class RpcServer {
 public:
  virtual ~RpcServer() = default;
  // Binds, starts serving and returns once listening.
  virtual Status Start() = 0;
  // Stops accepting, closes connections, joins the server's threads. Idempotent.
  virtual void Stop() = 0;
  // The bound port, valid after Start().
  virtual int port() const = 0;
  virtual bool tls() const = 0;
  // Re-reads the TLS files for new connections; kInvalidArgument without TLS.
  virtual Status ReloadTls() = 0;
};

}  // namespace txc
