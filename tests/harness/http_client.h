// HttpGet: a blocking HTTP/1.1 GET for tests (Boost.Beast), plaintext or
// HTTPS with a client certificate.
//
//   HttpResult r = testing::HttpGet(port, "/metrics");                // http://127.0.0.1
//   HttpResult s = testing::HttpGet(port, "/metrics", ca->Options(*prometheus));  // https://
//
// With tls.enabled(): verifies the server against tls.ca_file (chain only,
// not the name) and presents tls.cert_file/key_file when set. Never throws.
// Thread-safety: any thread; every call has its own connection.
#pragma once

#include <string>

#include "common/tls.h"

namespace txc {
namespace testing {

struct HttpResult {
  int status = 0;     // 0: no answer
  std::string error;  // why there is no answer: "connect: ...", "handshake: ...", "read: ..."
  std::string body;
};

// GET http(s)://127.0.0.1:port/target, Connection: close, 5 s deadline.
// Bodies up to 64 MiB.
HttpResult HttpGet(int port, const std::string& target, const TlsOptions& tls = {});

}  // namespace testing
}  // namespace txc
