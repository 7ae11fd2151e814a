#include "common/http_server.h"

#include <glog/logging.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>

#include "common/backoff.h"
#include "common/log_rate_limiter.h"
#include "common/tls_asio.h"

namespace txc {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::string PeerAddress(const tcp::socket& socket) {
  beast::error_code ec;
  auto ep = socket.remote_endpoint(ec);
  if (ec) return "?";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

std::string PeerHost(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

struct HttpServer::Impl {
  Impl(HttpServerOptions o, std::map<std::string, HttpHandler> r)
      : options(std::move(o)), routes(std::move(r)), acceptor(io) {}

  // Declared so that io (whose queue holds the sessions until it is
  // destroyed) goes before everything a session's destructor touches.
  const HttpServerOptions options;
  const std::map<std::string, HttpHandler> routes;
  std::atomic<int> connections{0};  // open connections (ConnectionSlot)
  std::atomic<int64_t> refused{0};  // connections closed at once (over max_connections)
  // One line per peer and reason every few seconds for refused callers.
  LogRateLimiter refusal_log{5000};
  mutable std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls_context;  // guarded by tls_mu; nullptr: plaintext
  asio::io_context io;
  tcp::acceptor acceptor;
  std::thread thread;

  std::shared_ptr<ssl::context> CurrentTlsContext() const {
    std::lock_guard<std::mutex> lock(tls_mu);
    return tls_context;
  }
  void Accept();
  http::response<http::string_body> Answer(const http::request<http::empty_body>& req,
                                           const PeerIdentity& peer);
};

namespace {

// One of the server's max_connections, held by every stage of a connection
// (TLS detection, then the session) and given back when the last one ends.
class ConnectionSlot {
 public:
  explicit ConnectionSlot(HttpServer::Impl* server) : server_(server) {}
  ~ConnectionSlot() { server_->connections.fetch_sub(1, std::memory_order_relaxed); }
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;

 private:
  HttpServer::Impl* const server_;
};

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection: (TLS handshake,) read a request, answer it, repeat while
// keep-alive. Stream is beast::tcp_stream (plaintext) or TlsStream.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  // `buffer` holds what was read before (the bytes TLS detection looked at);
  // `tls_context` keeps the context of a TLS stream alive with it.
  template <class... StreamArgs>
  Session(HttpServer::Impl* server, std::shared_ptr<ConnectionSlot> slot, PeerIdentity peer,
          beast::flat_buffer buffer, std::shared_ptr<ssl::context> tls_context,
          StreamArgs&&... stream_args)
      : tls_context_(std::move(tls_context)),
        stream_(std::forward<StreamArgs>(stream_args)...),
        server_(server),
        slot_(std::move(slot)),
        peer_(std::move(peer)),
        buffer_(std::move(buffer)) {}

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(0);
    Lowest().expires_after(Timeout());
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

  // TLS: runs the handshake over what detection buffered, then serves.
  void Handshake() {
    static_assert(kTls, "Handshake() is for TLS sessions");
    // Remembers why a presented certificate failed (the handshake error alone
    // says "certificate verify failed"). The stream is ours: `this` outlives it.
    stream_.set_verify_callback([this](bool preverified, ssl::verify_context& vc) {
      if (!preverified && refused_certificate_.empty()) {
        X509_STORE_CTX* store = vc.native_handle();
        X509* cert = X509_STORE_CTX_get_current_cert(store);
        char subject[256] = "?";
        if (cert != nullptr)
          X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
        refused_certificate_ = std::string(subject) + ": " +
                               X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
      }
      return preverified;
    });
    Lowest().expires_after(Timeout());
    stream_.async_handshake(
        ssl::stream_base::server, buffer_.data(),
        [self = this->shared_from_this()](beast::error_code ec, std::size_t used) {
          self->buffer_.consume(used);
          self->OnHandshake(ec);
        });
  }

  // Plaintext on the HTTPS port: reads the request (so that closing after
  // the answer does not reset the connection under it), answers 400 saying
  // so, closes.
  void RefusePlaintext() {
    refuse_plaintext_ = true;
    Read();
  }

 private:
  std::chrono::milliseconds Timeout() const {
    return std::chrono::milliseconds(server_->options.request_timeout_ms);
  }
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void OnHandshake(beast::error_code ec) {
    if (ec) {
      std::string reason = ec.message();
      if (!refused_certificate_.empty()) reason += " (certificate " + refused_certificate_ + ")";
      const auto d = server_->refusal_log.Admit("tls " + PeerHost(peer_.address) + " " + reason,
                                                MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "http: refused " << peer_.address << ": TLS handshake failed: " << reason
                     << d.Suffix();
      }
      CloseSocket();
      return;
    }
    if constexpr (kTls) {
      peer_.authenticated =
          VerifiedPeerNames(stream_.native_handle(), &peer_.common_name, &peer_.sans);
    }
    handshake_done_ = true;
    VLOG(1) << "http: TLS connection from " << peer_.Describe();
    Read();
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof || ec == ssl::error::stream_truncated) {
      Close();
      return;
    }
    if (refuse_plaintext_) {
      Reply(
          Plain(http::status::bad_request,
                "this port serves HTTPS (TLS with client certificates): use https://\n", 11, false),
          /*close=*/true);
      return;
    }
    if (ec == http::error::body_limit) {
      // A body, which no route takes. Beast reports it once the request line
      // and every field are parsed (for a Content-Length, before it marks the
      // header done), so the method says whether it is the problem (405 with
      // Allow, as for the same request without a body) or the body itself
      // (400). The body is not read: answer and close.
      const http::request<http::empty_body>& req = parser_->get();
      if (req.method() != http::verb::get && req.method() != http::verb::head) {
        Reply(server_->Answer(req, peer_), /*close=*/true);
      } else {
        Reply(Plain(http::status::bad_request,
                    "bad request: " + std::string(req.method_string()) + " takes no body\n",
                    req.version(), false),
              /*close=*/true);
      }
      return;
    }
    if (ec) {
      // Malformed or a header too large: answer and close.
      const bool too_large = ec == http::error::header_limit;
      VLOG(1) << "http: bad request from " << peer_.address << ": " << ec.message();
      Reply(Plain(too_large ? http::status::payload_too_large : http::status::bad_request,
                  std::string(too_large ? "request too large" : "bad request") + ": " +
                      ec.message() + "\n",
                  11, false),
            /*close=*/true);
      return;
    }
    const http::request<http::empty_body>& req = parser_->get();
    auto res = server_->Answer(req, peer_);
    Reply(std::move(res), !req.keep_alive());
  }

  static http::response<http::string_body> Plain(http::status status, std::string body,
                                                 unsigned version, bool keep_alive) {
    http::response<http::string_body> res{status, version};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = std::move(body);
    res.keep_alive(keep_alive);
    res.prepare_payload();
    return res;
  }

  void Reply(http::response<http::string_body> res, bool close) {
    if (close) res.keep_alive(false);
    res_ = std::make_shared<http::response<http::string_body>>(std::move(res));
    Lowest().expires_after(Timeout());
    http::async_write(stream_, *res_,
                      [self = this->shared_from_this(), close](beast::error_code ec, std::size_t) {
                        self->res_.reset();
                        if (ec || close) {
                          self->Close();
                          return;
                        }
                        self->Read();
                      });
  }

  // TLS: a close_notify first (bounded by the timeout), then the socket.
  void Close() {
    if constexpr (kTls) {
      if (handshake_done_ && !shutting_down_ && Lowest().socket().is_open()) {
        shutting_down_ = true;
        Lowest().expires_after(Timeout());
        stream_.async_shutdown(
            [self = this->shared_from_this()](beast::error_code) { self->CloseSocket(); });
        return;
      }
    }
    CloseSocket();
  }

  void CloseSocket() {
    beast::error_code ignored;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    Lowest().socket().close(ignored);
  }

  const std::shared_ptr<ssl::context> tls_context_;  // before stream_, which refers to it
  Stream stream_;
  HttpServer::Impl* const server_;
  const std::shared_ptr<ConnectionSlot> slot_;
  PeerIdentity peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> res_;
  bool handshake_done_ = false;
  bool shutting_down_ = false;
  bool refuse_plaintext_ = false;    // plaintext on an HTTPS port: every request gets a 400
  std::string refused_certificate_;  // TLS: subject and reason of a certificate that failed
};

// The first stage of a connection on an HTTPS port: looks at the first bytes
// (Beast's detect_ssl) and hands the connection to a TLS session, or to a
// plaintext one that only says "use https".
class TlsDetector : public std::enable_shared_from_this<TlsDetector> {
 public:
  TlsDetector(HttpServer::Impl* server, std::shared_ptr<ConnectionSlot> slot, tcp::socket socket,
              std::shared_ptr<ssl::context> tls_context)
      : server_(server),
        slot_(std::move(slot)),
        stream_(std::move(socket)),
        tls_context_(std::move(tls_context)) {}

  void Run() {
    stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
    beast::async_detect_ssl(stream_, buffer_,
                            [self = shared_from_this()](beast::error_code ec, bool is_tls) {
                              self->OnDetect(ec, is_tls);
                            });
  }

 private:
  void OnDetect(beast::error_code ec, bool is_tls) {
    PeerIdentity peer;
    peer.address = PeerAddress(stream_.socket());
    if (ec) {  // closed or silent before a first byte
      VLOG(1) << "http: " << peer.address << " sent nothing usable: " << ec.message();
      beast::error_code ignored;
      stream_.socket().close(ignored);
      return;
    }
    if (!is_tls) {
      const auto d =
          server_->refusal_log.Admit("plaintext " + PeerHost(peer.address), MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "http: refused " << peer.address
                     << ": plaintext HTTP on the HTTPS port (answered 400)" << d.Suffix();
      }
      std::make_shared<Session<beast::tcp_stream>>(server_, std::move(slot_), std::move(peer),
                                                   std::move(buffer_), nullptr, std::move(stream_))
          ->RefusePlaintext();
      return;
    }
    ssl::context& ctx = *tls_context_;
    std::make_shared<Session<TlsStream>>(server_, std::move(slot_), std::move(peer),
                                         std::move(buffer_), std::move(tls_context_),
                                         std::move(stream_), ctx)
        ->Handshake();
  }

  HttpServer::Impl* const server_;
  std::shared_ptr<ConnectionSlot> slot_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<ssl::context> tls_context_;
};

}  // namespace

http::response<http::string_body> HttpServer::Impl::Answer(
    const http::request<http::empty_body>& req, const PeerIdentity& peer) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  std::string target(req.target());
  const size_t query = target.find('?');
  if (query != std::string::npos) target.resize(query);
  auto route = routes.find(target);
  Status allowed;
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.body() = "method not allowed\n";
  } else if (route == routes.end()) {
    res.result(http::status::not_found);
    res.body() = "not found\n";
  } else if (options.authorize && !(allowed = options.authorize(target, peer)).ok()) {
    const auto d = refusal_log.Admit("403 " + peer.Describe() + " " + target, MonotonicMs());
    if (d.log) {
      LOG(WARNING) << "http: refused " << req.method_string() << " " << target << " to "
                   << peer.Describe() << ": " << allowed.message() << d.Suffix();
    }
    res.result(http::status::forbidden);
    res.body() = "forbidden: " + allowed.message() + "\n";
  } else {
    HttpResponse answer = route->second();
    res.result(static_cast<unsigned>(answer.status));
    res.set(http::field::content_type, answer.content_type);
    res.body() = std::move(answer.body);
  }
  res.prepare_payload();  // Content-Length of the body, also for HEAD
  if (req.method() == http::verb::head) res.body().clear();
  return res;
}

void HttpServer::Impl::Accept() {
  acceptor.async_accept(asio::make_strand(io), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;  // Stop()
    if (!ec) {
      if (connections.fetch_add(1, std::memory_order_relaxed) >= options.max_connections) {
        connections.fetch_sub(1, std::memory_order_relaxed);
        if (refused.fetch_add(1, std::memory_order_relaxed) % 100 == 0) {
          LOG(WARNING) << "http: more than " << options.max_connections
                       << " connections; closing new ones";
        }
        beast::error_code ignored;
        socket.close(ignored);
      } else {
        auto slot = std::make_shared<ConnectionSlot>(this);
        if (std::shared_ptr<ssl::context> tls = CurrentTlsContext()) {
          std::make_shared<TlsDetector>(this, std::move(slot), std::move(socket), std::move(tls))
              ->Run();
        } else {
          PeerIdentity peer;
          peer.address = PeerAddress(socket);
          std::make_shared<Session<beast::tcp_stream>>(this, std::move(slot), std::move(peer),
                                                       beast::flat_buffer(), nullptr,
                                                       std::move(socket))
              ->Read();
        }
      }
    } else {
      LOG(WARNING) << "http: accept failed: " << ec.message();
    }
    Accept();
  });
}

HttpServer::HttpServer(HttpServerOptions options, std::map<std::string, HttpHandler> routes)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(routes))) {}

HttpServer::~HttpServer() { Stop(); }

bool HttpServer::tls() const { return impl_->options.tls.enabled(); }

Status HttpServer::ReloadTls() {
  if (!tls()) return Status::Ok();
  auto ctx = MakeAsioServerContext(impl_->options.tls);
  if (!ctx.ok()) return ctx.status();
  std::lock_guard<std::mutex> lock(impl_->tls_mu);
  impl_->tls_context = std::move(ctx).value();
  return Status::Ok();
}

Status HttpServer::Start() {
  const HttpServerOptions& o = impl_->options;
  if (o.port < 0 || o.port > 65535) {
    return Status::InvalidArgument("http port must be 0..65535, got " + std::to_string(o.port));
  }
  if (o.tls.enabled()) {
    auto ctx = MakeAsioServerContext(o.tls);
    if (!ctx.ok()) return ctx.status();
    std::lock_guard<std::mutex> lock(impl_->tls_mu);
    impl_->tls_context = std::move(ctx).value();
  }
  beast::error_code ec;
  tcp::resolver resolver(impl_->io);
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Status::InvalidArgument("http host '" + o.host + "': " + ec.message());
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    beast::error_code ignored;
    a.close(ignored);
    return Status::Unavailable("cannot listen for HTTP on " + o.host + ":" +
                               std::to_string(o.port) + ": " + ec.message());
  }
  port_ = a.local_endpoint().port();
  impl_->Accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
  pthread_setname_np(impl_->thread.native_handle(), "http");
  return Status::Ok();
}

void HttpServer::Stop() {
  if (!impl_->thread.joinable()) return;
  // Everything (acceptor, sessions' sockets) belongs to the io thread: stop
  // the loop; pending handlers are destroyed with the io_context's queue.
  impl_->io.stop();
  impl_->thread.join();
  beast::error_code ignored;
  impl_->acceptor.close(ignored);
}

}  // namespace txc
