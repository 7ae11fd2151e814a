#include "common/tls.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "common/backoff.h"
#include "common/log_rate_limiter.h"

namespace txc {

using apache::thrift::TConfiguration;
using apache::thrift::transport::SSLContext;
using apache::thrift::transport::TSSLException;
using apache::thrift::transport::TSSLSocket;
using apache::thrift::transport::TSSLSocketFactory;
using apache::thrift::transport::TTransportException;

namespace {

// One line per peer and reason every few seconds: a client retrying with the
// wrong protocol or certificate must not flood the log.
LogRateLimiter& TlsLogLimiter() {
  static LogRateLimiter* limiter = new LogRateLimiter(5000);
  return *limiter;
}

// Thrift's TSSLSocketFactory cleans OpenSSL up when its last factory dies;
// manual mode (set before the first factory exists) turns that off.
// OpenSSL writes to sockets with write(2), not send(MSG_NOSIGNAL): a
// close_notify to a peer that already left would kill the process with
// SIGPIPE, so a process using TLS ignores SIGPIPE (unless it set a handler).
void InitOpenSslOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
    TSSLSocketFactory::setManualOpenSSLInitialization(true);
    apache::thrift::transport::initializeOpenSSL();
  });
}

std::string Asn1ToUtf8(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0 || utf8 == nullptr) return "";
  std::string out(reinterpret_cast<char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

std::string CommonName(X509* cert) {
  const X509_NAME* subject = X509_get_subject_name(cert);
  if (subject == nullptr) return "";
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  const X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, index);
  if (entry == nullptr) return "";
  return Asn1ToUtf8(X509_NAME_ENTRY_get_data(entry));
}

// DNS, URI and email subject alternative names, in certificate order.
std::vector<std::string> SubjectAltNames(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name == nullptr) continue;
    switch (name->type) {
      case GEN_DNS:
      case GEN_URI:
      case GEN_EMAIL: {
        const ASN1_IA5STRING* text = name->d.ia5;
        out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                         static_cast<size_t>(ASN1_STRING_length(text)));
        break;
      }
      default: break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

bool IsIpLiteral(const std::string& name) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

std::string DescribeNames(const std::string& cn, const std::vector<std::string>& sans) {
  std::string out = "CN=" + cn;
  if (!sans.empty()) {
    out += ", SANs:";
    for (const auto& san : sans) out += " " + san;
  }
  return out;
}

std::string OpenSslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

// ---- TlsOptions ----------------------------------------------------------------

Status TlsOptions::ValidateForServer() const {
  if (cert_file.empty() || key_file.empty()) {
    return Status::InvalidArgument("TLS server needs a certificate and a key (tls_cert, tls_key)");
  }
  if (require_client_cert && ca_file.empty()) {
    return Status::InvalidArgument(
        "mutual TLS (tls_require_client_cert) needs a CA bundle to verify clients (tls_ca)");
  }
  if (!crl_file.empty() && ca_file.empty()) {
    return Status::InvalidArgument(
        "a CRL (tls_crl) needs the CA bundle that verifies client certificates (tls_ca)");
  }
  if (crl_check_chain && crl_file.empty()) {
    return Status::InvalidArgument("checking the chain against CRLs (tls_crl_chain) needs tls_crl");
  }
  return Status::Ok();
}

Status TlsOptions::ValidateForClient() const {
  if (ca_file.empty()) {
    return Status::InvalidArgument("TLS client needs a CA bundle to verify servers (tls_ca)");
  }
  if (cert_file.empty() != key_file.empty()) {
    return Status::InvalidArgument(
        "TLS client certificate and key go together (tls_cert, tls_key)");
  }
  if (crl_check_chain && crl_file.empty()) {
    return Status::InvalidArgument("checking the chain against CRLs (tls_crl_chain) needs tls_crl");
  }
  return Status::Ok();
}

// ---- CRL -----------------------------------------------------------------------

Status LoadCrlFile(SSL_CTX* ctx, const std::string& crl_file, bool check_chain) {
  ERR_clear_error();
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(crl_file.c_str(), "r"), BIO_free);
  if (bio == nullptr) {
    const std::string reason = OpenSslErrors();
    return Status::InvalidArgument("cannot read CRL file " + crl_file + ": " + reason);
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int loaded = 0;
  while (X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr)) {
    std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> holder(crl, X509_CRL_free);
    const ASN1_TIME* next_update = X509_CRL_get0_nextUpdate(crl);
    if (next_update != nullptr && X509_cmp_current_time(next_update) < 0) {
      LOG(WARNING) << "CRL " << loaded + 1 << " in " << crl_file
                   << " is past its nextUpdate: every certificate of its CA is refused until a "
                      "current CRL is loaded";
    }
    if (X509_STORE_add_crl(store, crl) != 1) {
      const std::string reason = OpenSslErrors();
      return Status::InvalidArgument("cannot use a CRL of " + crl_file + ": " + reason);
    }
    ++loaded;
  }
  // The loop ends on "no more PEM blocks" (expected) or on a broken one.
  const unsigned long last = ERR_peek_last_error();
  if (loaded > 0 && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
  } else if (loaded == 0 || last != 0) {
    const std::string reason =
        loaded == 0 ? "no PEM CRL (BEGIN X509 CRL) in it: " + OpenSslErrors() : OpenSslErrors();
    return Status::InvalidArgument("cannot load CRL file " + crl_file + ": " + reason);
  }
  const unsigned long flags =
      X509_V_FLAG_CRL_CHECK | (check_chain ? X509_V_FLAG_CRL_CHECK_ALL : 0UL);
  if (X509_STORE_set_flags(store, flags) != 1) {
    return Status::Internal("cannot turn on the CRL check: " + OpenSslErrors());
  }
  return Status::Ok();
}

// ---- TlsSocket -----------------------------------------------------------------

TlsSocket::TlsSocket(std::shared_ptr<SSLContext> ctx, THRIFT_SOCKET fd,
                     std::shared_ptr<THRIFT_SOCKET> interrupt_listener,
                     std::shared_ptr<TConfiguration> config)
    : TSSLSocket(std::move(ctx), fd, std::move(interrupt_listener), std::move(config)) {
  server(true);
}

TlsSocket::TlsSocket(std::shared_ptr<SSLContext> ctx, const std::string& host, int port,
                     std::shared_ptr<TConfiguration> config, std::string verify_name)
    : TSSLSocket(std::move(ctx), host, port, std::move(config)),
      verify_name_(std::move(verify_name)) {
  server(false);
}

Status TlsSocket::Handshake() {
  if (handshake_failed_) return Status::Unavailable(handshake_error_);
  try {
    initializeHandshake();
    return Status::Ok();
  } catch (const TTransportException& e) {
    handshake_failed_ = true;
    handshake_error_ = e.what();
    // "certificate verify failed" alone does not say why: add the reason
    // (revoked, no CRL, expired, unknown issuer ...).
    if (ssl_ != nullptr) {
      const long verify = SSL_get_verify_result(ssl_);
      if (verify != X509_V_OK) {
        handshake_error_ += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
      }
    }
    ERR_clear_error();
    // No SSL_shutdown after a failed handshake: OpenSSL already sent its alert.
    if (ssl_ != nullptr) {
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    TSocket::close();
    if (e.getType() == TTransportException::TIMED_OUT) {
      return Status::Timeout("TLS handshake timed out");
    }
    return Status::Unavailable(handshake_error_);
  }
}

bool TlsSocket::RequestBytesBuffered() const {
  return server() && ssl_ != nullptr && SSL_pending(ssl_) > 0;
}

void TlsSocket::SendHeld() {
  if (held_.empty()) return;
  std::string out;
  out.swap(held_);
  WriteNow(reinterpret_cast<const uint8_t*>(out.data()), static_cast<uint32_t>(out.size()));
}

bool TlsSocket::peek() {
  if (RequestBytesBuffered()) return true;
  SendHeld();  // TSSLSocket::peek may wait for the peer
  return TSSLSocket::peek();
}

uint32_t TlsSocket::read(uint8_t* buf, uint32_t len) {
  if (handshake_failed_) {
    throw TTransportException(TTransportException::END_OF_FILE,
                              "TLS handshake failed: " + handshake_error_);
  }
  if (!RequestBytesBuffered()) SendHeld();  // the read may wait for the peer
  try {
    return TSSLSocket::read(buf, len);
  } catch (const TTransportException& e) {
    broken_ = true;
    // A peer that closed TCP without a TLS close_notify (a killed process):
    // an end of stream like any other, not an error for the server's log.
    if (std::strstr(e.what(), "unexpected eof") != nullptr) {
      throw TTransportException(TTransportException::END_OF_FILE, e.what());
    }
    throw;
  }
}

void TlsSocket::write(const uint8_t* buf, uint32_t len) {
  if (RequestBytesBuffered()) {
    // More requests are already here: their answers go out with this one.
    held_.append(reinterpret_cast<const char*>(buf), len);
    return;
  }
  if (held_.empty()) {
    WriteNow(buf, len);
    return;
  }
  held_.append(reinterpret_cast<const char*>(buf), len);
  SendHeld();
}

void TlsSocket::WriteNow(const uint8_t* buf, uint32_t len) {
  try {
    TSSLSocket::write(buf, len);
  } catch (const TTransportException& e) {
    broken_ = true;
    const std::string alert = server() ? "" : PendingAlert();
    if (alert.empty()) throw;
    throw TSSLException(std::string(e.what()) + "; the server refused the connection: " + alert);
  }
}

void TlsSocket::flush() {
  try {
    TSSLSocket::flush();
  } catch (const TTransportException&) {
    broken_ = true;
    throw;
  }
}

std::string TlsSocket::PendingAlert() {
  if (ssl_ == nullptr) return "";
  ERR_clear_error();
  uint8_t byte = 0;
  // The descriptor is non-blocking since the handshake: this only looks at
  // what already arrived.
  const int rc = SSL_read(ssl_, &byte, 1);
  if (rc > 0 || SSL_get_error(ssl_, rc) != SSL_ERROR_SSL) {
    ERR_clear_error();
    return "";
  }
  return OpenSslErrors();
}

void TlsSocket::close() {
  if (!held_.empty() && !broken_ && ssl_ != nullptr && !SSL_in_init(ssl_)) {
    try {
      SendHeld();
    } catch (const TTransportException&) {
      // The peer is gone: the answers held for it are dropped with it.
    }
  }
  held_.clear();
  if (ssl_ != nullptr && (broken_ || SSL_in_init(ssl_))) {
    // A failed connection: nobody listens for our close_notify, and OpenSSL
    // refuses a shutdown mid-handshake. Free it without one (and without
    // Thrift logging "SSL_shutdown: Broken pipe").
    SSL_free(ssl_);
    ssl_ = nullptr;
  } else if (ssl_ != nullptr && (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0) {
    SSL_set_quiet_shutdown(ssl_, 1);  // the peer already closed
  }
  TSSLSocket::close();
}

void TlsSocket::authorize() {
  TSSLSocket::authorize();  // the chain verified; a required certificate is present
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (cert == nullptr) {
    if (!server()) throw TSSLException("the server presented no certificate");
    return;  // client certificate optional and absent: not authenticated
  }
  std::unique_ptr<X509, decltype(&X509_free)> holder(cert, X509_free);
  peer_common_name_ = CommonName(cert);
  peer_sans_ = SubjectAltNames(cert);
  if (!server()) {
    const bool match =
        IsIpLiteral(verify_name_)
            ? X509_check_ip_asc(cert, verify_name_.c_str(), 0) == 1
            : X509_check_host(cert, verify_name_.data(), verify_name_.size(), 0, nullptr) == 1;
    if (!match) {
      throw TSSLException("the server certificate (" +
                          DescribeNames(peer_common_name_, peer_sans_) + ") is not valid for '" +
                          verify_name_ + "'");
    }
  }
  peer_verified_ = (SSL_get_verify_mode(ssl_) & SSL_VERIFY_PEER) != 0 &&
                   SSL_get_verify_result(ssl_) == X509_V_OK;
}

// ---- PlainSocket ---------------------------------------------------------------

bool LooksLikeTlsRecord(const uint8_t* data, uint32_t len) {
  // TLS record types 20..23 (change_cipher_spec, alert, handshake,
  // application_data), then the major version 3. As the first byte of a
  // Thrift frame size it would announce a frame of at least 335 MB, which no
  // configuration of ours accepts.
  if (len == 0 || data[0] < 0x14 || data[0] > 0x17) return false;
  return len < 2 || data[1] == 0x03;
}

void ConnectionInterrupter::Track(THRIFT_SOCKET fd) {
  std::lock_guard<std::mutex> lock(mu_);
  fds_.insert(fd);
  // Accepted while the server stopped: its first read ends at once.
  if (stopped()) ::shutdown(fd, SHUT_RD);
}

void ConnectionInterrupter::CloseTracked(THRIFT_SOCKET fd, const std::function<void()>& close) {
  std::lock_guard<std::mutex> lock(mu_);
  fds_.erase(fd);
  close();
}

void ConnectionInterrupter::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_.store(true, std::memory_order_release);
  // SHUT_RD only: a blocked recv() returns 0 (end of stream), and a handler
  // still running can send its answer, as under Thrift's interrupt.
  for (THRIFT_SOCKET fd : fds_) ::shutdown(fd, SHUT_RD);
}

PlainSocket::~PlainSocket() {
  // ~TSocket would close without untracking (no virtual dispatch there).
  close();
}

void PlainSocket::set_interrupter(std::shared_ptr<ConnectionInterrupter> interrupter) {
  interrupter_ = std::move(interrupter);
  if (interrupter_ != nullptr && socket_ != THRIFT_INVALID_SOCKET) interrupter_->Track(socket_);
}

void PlainSocket::close() {
  if (!held_.empty() && socket_ != THRIFT_INVALID_SOCKET) {
    try {
      SendHeld();
    } catch (const TTransportException&) {
      // The peer is gone: nothing to deliver the held answers to.
    }
  }
  held_.clear();
  buffer_pos_ = buffer_end_ = 0;
  if (interrupter_ != nullptr && socket_ != THRIFT_INVALID_SOCKET) {
    interrupter_->CloseTracked(socket_, [this] { TSocket::close(); });
    return;
  }
  TSocket::close();
}

bool PlainSocket::peek() {
  if (buffer_pos_ < buffer_end_) return true;
  SendHeld();  // TSocket::peek may wait for the peer
  return TSocket::peek();
}

void PlainSocket::write(const uint8_t* buf, uint32_t len) {
  if (server_side_ && buffer_pos_ < buffer_end_) {
    // More requests are already here: their answers go out with this one.
    held_.append(reinterpret_cast<const char*>(buf), len);
    return;
  }
  if (held_.empty()) {
    TSocket::write(buf, len);
    return;
  }
  held_.append(reinterpret_cast<const char*>(buf), len);
  SendHeld();
}

void PlainSocket::SendHeld() {
  if (held_.empty()) return;
  std::string out;
  out.swap(held_);
  TSocket::write(reinterpret_cast<const uint8_t*>(out.data()), static_cast<uint32_t>(out.size()));
}

bool PlainSocket::hasPendingDataToRead() {
  return buffer_pos_ < buffer_end_ || TSocket::hasPendingDataToRead();
}

uint32_t PlainSocket::read(uint8_t* buf, uint32_t len) {
  if (len == 0) return 0;
  if (buffer_pos_ < buffer_end_) {
    const uint32_t n = std::min(len, buffer_end_ - buffer_pos_);
    std::memcpy(buf, buffer_.get() + buffer_pos_, n);
    buffer_pos_ += n;
    return n;
  }
  SendHeld();  // the kernel read may wait for the peer, who waits for these
  if (interrupter_ != nullptr && interrupter_->stopped()) {
    throw TTransportException(TTransportException::INTERRUPTED, "Interrupted");
  }
  if (len >= kReadBufferBytes) return ReadFromKernel(buf, len);
  if (buffer_ == nullptr) buffer_ = std::make_unique<uint8_t[]>(kReadBufferBytes);
  const uint32_t got = ReadFromKernel(buffer_.get(), kReadBufferBytes);
  const uint32_t n = std::min(len, got);
  std::memcpy(buf, buffer_.get(), n);
  buffer_pos_ = n;
  buffer_end_ = got;
  return n;
}

uint32_t PlainSocket::ReadFromKernel(uint8_t* buf, uint32_t len) {
  const uint32_t n = TSocket::read(buf, len);
  if (first_read_done_) return n;
  first_read_done_ = true;
  if (n > 0 && LooksLikeTlsRecord(buf, n)) {
    if (server_side_) {
      const std::string peer = getPeerHost();
      const auto d = TlsLogLimiter().Admit("plaintext-port " + peer, MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "refused " << getPeerAddress() << ":" << getPeerPort()
                     << ": it started a TLS handshake but this port is plaintext (no tls_cert "
                        "configured); connection closed"
                     << d.Suffix();
      }
      throw TTransportException(TTransportException::END_OF_FILE, "TLS client on a plaintext port");
    }
    throw TTransportException(TTransportException::CORRUPTED_DATA,
                              "the server answered with TLS: it requires TLS and this client is "
                              "not configured for it (set the TLS options: tls_ca, tls_cert, "
                              "tls_key)");
  }
  if (n == 0 && !server_side_) {
    throw TTransportException(TTransportException::END_OF_FILE,
                              "the server closed the connection without answering the first "
                              "call (does it require TLS? this client is plaintext; or does "
                              "this host already hold the server's max_connections_per_peer "
                              "connections?)");
  }
  return n;
}

bool VerifiedPeerNames(SSL* ssl, std::string* common_name, std::vector<std::string>* sans) {
  if (ssl == nullptr || (SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) == 0 ||
      SSL_get_verify_result(ssl) != X509_V_OK) {
    return false;
  }
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return false;
  std::unique_ptr<X509, decltype(&X509_free)> holder(cert, X509_free);
  *common_name = CommonName(cert);
  *sans = SubjectAltNames(cert);
  return true;
}

// ---- TlsContext ----------------------------------------------------------------

// Owns one SSL_CTX through Thrift's factory (which also counts OpenSSL users).
class TlsContext::Factory : public TSSLSocketFactory {
 public:
  Factory() : TSSLSocketFactory(apache::thrift::transport::SSLTLS) {}
  std::shared_ptr<SSLContext> ssl_context() const { return ctx_; }
};

Result<std::shared_ptr<TlsContext::Factory>> TlsContext::Load(const TlsOptions& options,
                                                              TlsRole role) {
  Status valid =
      role == TlsRole::kServer ? options.ValidateForServer() : options.ValidateForClient();
  if (!valid.ok()) return valid;
  InitOpenSslOnce();
  std::shared_ptr<Factory> factory;
  std::string step;
  try {
    step = "creating the TLS context";
    factory = std::make_shared<Factory>();
    SSL_CTX* ctx = factory->ssl_context()->get();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
      return Status::Internal("cannot require TLS 1.2: " + OpenSslErrors());
    }
    if (!options.cert_file.empty()) {
      step = "loading certificate " + options.cert_file;
      factory->loadCertificate(options.cert_file.c_str());
      step = "loading key " + options.key_file;
      factory->loadPrivateKey(options.key_file.c_str());
      if (SSL_CTX_check_private_key(ctx) != 1) {
        return Status::InvalidArgument("key " + options.key_file + " does not match certificate " +
                                       options.cert_file + ": " + OpenSslErrors());
      }
    }
    if (!options.ca_file.empty()) {
      step = "loading CA bundle " + options.ca_file;
      factory->loadTrustedCertificates(options.ca_file.c_str());
    }
    if (!options.crl_file.empty()) {
      Status crl = LoadCrlFile(ctx, options.crl_file, options.crl_check_chain);
      if (!crl.ok()) return crl;
    }
    int mode = SSL_VERIFY_PEER;  // a client always verifies the server
    if (role == TlsRole::kServer) {
      if (options.require_client_cert) {
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
      } else if (options.ca_file.empty()) {
        mode = SSL_VERIFY_NONE;
      }
      // Tells clients which CAs we accept (helps them pick a certificate).
      if (!options.ca_file.empty()) {
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(options.ca_file.c_str());
        if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
      }
    }
    SSL_CTX_set_verify(ctx, mode, nullptr);
    if (role == TlsRole::kServer) {
      // No TLS 1.3 session tickets: nobody resumes sessions here, and tickets
      // arriving on an idle pooled connection look like unasked-for bytes to
      // clients that check whether a connection is still usable.
      SSL_CTX_set_num_tickets(ctx, 0);
    }
    factory->server(role == TlsRole::kServer);
  } catch (const TTransportException& e) {
    ERR_clear_error();
    return Status::InvalidArgument(step + ": " + e.what());
  }
  return factory;
}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const TlsOptions& options, TlsRole role) {
  auto factory = Load(options, role);
  if (!factory.ok()) return factory.status();
  std::shared_ptr<TlsContext> context(new TlsContext(options, role));
  context->factory_ = std::move(factory).value();
  return context;
}

TlsContext::~TlsContext() = default;

Status TlsContext::Reload() {
  auto factory = Load(options_, role_);
  if (!factory.ok()) return factory.status();
  std::lock_guard<std::mutex> lock(mu_);
  factory_ = std::move(factory).value();
  return Status::Ok();
}

std::shared_ptr<TlsSocket> TlsContext::ServerSocket(
    THRIFT_SOCKET fd, std::shared_ptr<THRIFT_SOCKET> interrupt_listener,
    std::shared_ptr<TConfiguration> config) {
  std::shared_ptr<SSLContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ctx = factory_->ssl_context();
  }
  return std::make_shared<TlsSocket>(std::move(ctx), fd, std::move(interrupt_listener),
                                     std::move(config));
}

std::shared_ptr<TlsSocket> TlsContext::ClientSocket(const std::string& host, int port,
                                                    std::shared_ptr<TConfiguration> config) {
  std::shared_ptr<SSLContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ctx = factory_->ssl_context();
  }
  return std::make_shared<TlsSocket>(std::move(ctx), host, port, std::move(config),
                                     options_.server_name.empty() ? host : options_.server_name);
}

std::string TlsContext::Describe() const {
  std::shared_ptr<SSLContext> ctx;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ctx = factory_->ssl_context();
  }
  return DescribeTlsCredentials(ctx->get(), options_, role_);
}

std::string DescribeTlsCredentials(SSL_CTX* ctx, const TlsOptions& options, TlsRole role) {
  X509* cert = SSL_CTX_get0_certificate(ctx);
  std::string out = options.cert_file.empty() ? "no certificate" : "";
  if (cert != nullptr) {
    out = DescribeNames(CommonName(cert), SubjectAltNames(cert));
    BIO* bio = BIO_new(BIO_s_mem());
    if (bio != nullptr && ASN1_TIME_print(bio, X509_get0_notAfter(cert)) == 1) {
      char* data = nullptr;
      const long n = BIO_get_mem_data(bio, &data);
      out += ", expires " + std::string(data, static_cast<size_t>(n));
    }
    BIO_free(bio);
  }
  if (!options.ca_file.empty()) out += ", CA bundle " + options.ca_file;
  if (!options.crl_file.empty()) {
    out += ", CRL " + options.crl_file + (options.crl_check_chain ? " (whole chain)" : "");
  }
  if (role == TlsRole::kServer) {
    out += options.require_client_cert ? ", client certificates required"
                                       : ", client certificates optional";
  }
  return out;
}

}  // namespace txc
