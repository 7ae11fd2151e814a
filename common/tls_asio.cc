#include "common/tls_asio.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>

namespace txc {

namespace ssl = boost::asio::ssl;

Result<std::shared_ptr<ssl::context>> MakeAsioServerContext(const TlsOptions& tls) {
  Status valid = tls.ValidateForServer();
  if (!valid.ok()) return valid;
  std::string step = "creating the TLS context";
  try {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    SSL_CTX* native = ctx->native_handle();
    if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) {
      return Status::Internal("cannot require TLS 1.2");
    }
    step = "loading certificate " + tls.cert_file;
    ctx->use_certificate_chain_file(tls.cert_file);
    step = "loading key " + tls.key_file;
    ctx->use_private_key_file(tls.key_file, ssl::context::pem);
    if (SSL_CTX_check_private_key(native) != 1) {
      return Status::InvalidArgument("key " + tls.key_file + " does not match certificate " +
                                     tls.cert_file);
    }
    ssl::verify_mode mode = ssl::verify_none;
    if (!tls.ca_file.empty()) {
      step = "loading CA bundle " + tls.ca_file;
      ctx->load_verify_file(tls.ca_file);
      // Tells clients which CAs we accept (helps them pick a certificate).
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tls.ca_file.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(native, names);
      mode = ssl::verify_peer;
    }
    if (!tls.crl_file.empty()) {
      Status crl = LoadCrlFile(native, tls.crl_file, tls.crl_check_chain);
      if (!crl.ok()) return crl;
    }
    if (tls.require_client_cert) mode = ssl::verify_peer | ssl::verify_fail_if_no_peer_cert;
    ctx->set_verify_mode(mode);
    SSL_CTX_set_num_tickets(native, 0);  // nobody resumes sessions here
    return ctx;
  } catch (const boost::system::system_error& e) {
    return Status::InvalidArgument("TLS: " + step + ": " + e.what());
  }
}

}  // namespace txc
