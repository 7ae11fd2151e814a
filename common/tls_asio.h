// TLS for our Boost.Asio servers (HttpServer, AsyncThriftServer): the server
// context built by the rules of common/tls.h (TLS 1.2 or newer; the client
// CA list sent; client certificates verified against ca_file, required with
// require_client_cert; revocation from crl_file, the whole chain with
// crl_check_chain), for boost::asio::ssl::stream.
//
// Thread-safety: MakeAsioServerContext may be called from any thread; a
// context is immutable once made and may be shared by many streams.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "common/status.h"
#include "common/tls.h"

namespace txc {

// Loads `tls` (cert_file, key_file, ca_file, crl_file) into a new server
// context. kInvalidArgument when an option is missing or a file cannot be
// loaded (the message names the file and OpenSSL's reason), or when the key
// does not match the certificate.
Result<std::shared_ptr<boost::asio::ssl::context>> MakeAsioServerContext(const TlsOptions& tls);

}  // namespace txc
