// HttpServer: a small read-only HTTP/1.1 server (Boost.Beast over Boost.Asio,
// header-only in Boost 1.74) for /metrics and the probes. Not for anything
// that changes state.
//
//   HttpServer server(options, {{"/healthz", [] { return HttpResponse{200, "text/plain", "ok\n"};
//   }}}); TXC_RETURN_IF_ERROR(server.Start());   // binds; server.port() is the bound port
//   ...
//   server.Stop();
//
// Requests: GET and HEAD of a registered path (a query string is ignored);
// another method answers 405 with "Allow: GET, HEAD" (with or without a
// body), an unknown path 404, a GET or HEAD with a body 400, a request Beast
// cannot parse 400 and one whose header is larger than max_header_bytes 413
// (after a body or an error the connection is closed). Keep-alive is honoured.
//
// Limits: at most max_connections connections at once (more are closed right
// after accept); every read and write has request_timeout_ms, after which
// the connection is closed (a client that sends nothing, or reads nothing,
// cannot hold it).
//
// Threads: one thread of its own runs the accept loop, every connection and
// the handlers, so a slow client or handler delays other HTTP clients only,
// never the caller's other work. Handlers must be quick and must not block
// (no store or network calls): they read what others computed.
//
// HTTPS (options.tls.enabled()): the same port serves TLS 1.2+ with the
// certificate and key of options.tls, Boost.Asio's ssl::stream under Beast.
// With tls.require_client_cert (mutual TLS), a client that presents no
// certificate, or one that does not chain to tls.ca_file (or expired), fails
// the TLS handshake; that is logged (rate-limited) with the peer's address,
// OpenSSL's reason and the refused certificate's subject. A client that sends
// plaintext HTTP to the HTTPS port gets a plaintext 400 saying so and the
// connection is closed. The verified certificate's CN and SANs are the
// caller's PeerIdentity; options.authorize decides per path (403 with the
// reason as the body, logged with the identity). ReloadTls() re-reads the
// files for new connections (SIGHUP in the coordinator). The limits below
// hold for the TLS handshake too (request_timeout_ms bounds it).
//
// Thread-safety: Start/Stop from one owning thread; port(), tls() and
// ReloadTls() from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/peer_identity.h"
#include "common/status.h"
#include "common/tls.h"

namespace txc {

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // address to listen on
  int port = 0;                    // 0: any free port (see HttpServer::port())
  int max_connections = 64;
  int64_t request_timeout_ms = 10000;
  size_t max_header_bytes = 8192;
  // HTTPS when tls.enabled() (see the file comment; common/tls.h for the
  // options: cert_file/key_file required, ca_file for client certificates).
  TlsOptions tls{};
  // When set, asked before the handler of every GET/HEAD of a registered path
  // with the caller's identity (unauthenticated on a plaintext port); a non-OK
  // status is answered 403 with its message. Runs on the server's thread:
  // must be quick and must not block.
  std::function<Status(const std::string& path, const PeerIdentity& peer)> authorize;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse()>;

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, std::map<std::string, HttpHandler> routes);
  ~HttpServer();  // Stop()s
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. kUnavailable when the address cannot be bound,
  // kInvalidArgument for a host that is not an IP address or TLS files that
  // cannot be loaded (the message names the file and OpenSSL's reason).
  Status Start();
  // Closes the listener and every connection and joins the thread. Idempotent.
  void Stop();

  // Re-reads the TLS files: connections accepted afterwards use them, open
  // ones keep theirs. On failure (kInvalidArgument naming the file) the
  // current credentials stay. OK and nothing done when TLS is off.
  Status ReloadTls();

  int port() const { return port_; }
  bool tls() const;

  struct Impl;  // public so that the connection sessions in the .cc can reach it

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace txc
