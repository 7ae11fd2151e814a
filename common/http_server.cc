#include "common/http_server.h"

#include <glog/logging.h>
#include <pthread.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>
#include <thread>

namespace txc {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::Impl {
  Impl(HttpServerOptions o, std::map<std::string, HttpHandler> r)
      : options(std::move(o)), routes(std::move(r)), acceptor(io) {}

  // Declared so that io (whose queue holds the sessions until it is
  // destroyed) goes before everything a session's destructor touches.
  const HttpServerOptions options;
  const std::map<std::string, HttpHandler> routes;
  std::atomic<int> connections{0};  // open sessions
  std::atomic<int64_t> refused{0};  // connections closed at once (over max_connections)
  asio::io_context io;
  tcp::acceptor acceptor;
  std::thread thread;

  void Accept();
  http::response<http::string_body> Answer(const http::request<http::empty_body>& req) const;
};

namespace {

// One connection: read a request, answer it, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl* server)
      : stream_(std::move(socket)), server_(server) {}
  ~Session() { server_->connections.fetch_sub(1, std::memory_order_relaxed); }

  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(0);
    stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->OnRead(ec); });
  }

 private:
  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      Close();
      return;
    }
    if (ec) {
      // Malformed, too large, or a body we do not take: answer and close.
      const bool too_large = ec == http::error::header_limit || ec == http::error::body_limit;
      VLOG(1) << "http: bad request from " << Peer() << ": " << ec.message();
      Reply(Plain(too_large ? http::status::payload_too_large : http::status::bad_request,
                  std::string(too_large ? "request too large" : "bad request") + ": " +
                      ec.message() + "\n",
                  11, false),
            /*close=*/true);
      return;
    }
    const http::request<http::empty_body>& req = parser_->get();
    auto res = server_->Answer(req);
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
    stream_.expires_after(std::chrono::milliseconds(server_->options.request_timeout_ms));
    http::async_write(stream_, *res_,
                      [self = shared_from_this(), close](beast::error_code ec, std::size_t) {
                        self->res_.reset();
                        if (ec || close) {
                          self->Close();
                          return;
                        }
                        self->Read();
                      });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  std::string Peer() {
    beast::error_code ec;
    auto ep = stream_.socket().remote_endpoint(ec);
    if (ec) return "?";
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  beast::tcp_stream stream_;
  HttpServer::Impl* const server_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> res_;
};

}  // namespace

http::response<http::string_body> HttpServer::Impl::Answer(
    const http::request<http::empty_body>& req) const {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(req.keep_alive());
  std::string target(req.target());
  const size_t query = target.find('?');
  if (query != std::string::npos) target.resize(query);
  auto route = routes.find(target);
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "method not allowed\n";
  } else if (route == routes.end()) {
    res.result(http::status::not_found);
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "not found\n";
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
        std::make_shared<Session>(std::move(socket), this)->Read();
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

Status HttpServer::Start() {
  const HttpServerOptions& o = impl_->options;
  if (o.port < 0 || o.port > 65535) {
    return Status::InvalidArgument("http port must be 0..65535, got " + std::to_string(o.port));
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
