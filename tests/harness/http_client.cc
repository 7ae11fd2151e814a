#include "tests/harness/http_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <exception>

namespace txc {
namespace testing {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

template <class Stream>
HttpResult Exchange(Stream& stream, const std::string& target) {
  HttpResult out;
  beast::error_code ec;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.keep_alive(false);
  http::write(stream, req, ec);
  if (ec) {
    out.error = "write: " + ec.message();
    return out;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(stream, buffer, parser, ec);
  if (ec) {
    out.error = "read: " + ec.message();
    return out;
  }
  out.status = static_cast<int>(parser.get().result_int());
  out.body = parser.get().body();
  return out;
}

}  // namespace

HttpResult HttpGet(int port, const std::string& target, const TlsOptions& tls) {
  HttpResult out;
  try {
    asio::io_context io;
    const asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"),
                                           static_cast<unsigned short>(port));
    beast::error_code ec;
    if (!tls.enabled()) {
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(5));
      stream.connect(endpoint, ec);
      if (ec) {
        out.error = "connect: " + ec.message();
        return out;
      }
      return Exchange(stream, target);
    }
    ssl::context ctx(ssl::context::tls_client);
    if (!tls.ca_file.empty()) ctx.load_verify_file(tls.ca_file);
    if (!tls.cert_file.empty()) {
      ctx.use_certificate_chain_file(tls.cert_file);
      ctx.use_private_key_file(tls.key_file, ssl::context::pem);
    }
    ctx.set_verify_mode(ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(5));
    beast::get_lowest_layer(stream).connect(endpoint, ec);
    if (ec) {
      out.error = "connect: " + ec.message();
      return out;
    }
    stream.handshake(ssl::stream_base::client, ec);
    if (ec) {
      out.error = "handshake: " + ec.message();
      return out;
    }
    return Exchange(stream, target);
  } catch (const std::exception& e) {
    out.error = e.what();
    return out;
  }
}

}  // namespace testing
}  // namespace txc
