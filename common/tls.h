// TLS for our Thrift connections (server and client), over Thrift 0.17's
// TSSLSocket / TSSLSocketFactory and OpenSSL 3. TLS 1.2 is the oldest version
// either side accepts.
//
//   TlsOptions tls{"server.pem", "server.key", "ca.pem"};   // mutual TLS
//   auto server_ctx = TlsContext::Create(tls, TlsRole::kServer);
//   ThriftServerOptions options; options.tls = tls;          // ThriftServer builds its own
//
// Who checks what:
// * Server: presents cert_file/key_file; with require_client_cert (mutual
//   TLS) refuses a client without a certificate chaining to ca_file (also an
//   expired one) during the handshake. Without require_client_cert but with a
//   ca_file, a client certificate is optional but verified when presented.
// * Client: verifies the server certificate against ca_file and then its
//   name: the host it connected to (or TlsOptions::server_name) must match a
//   DNS SAN (RFC 6125 wildcards allowed; the CN only when there is no DNS SAN)
//   or, for an IP literal, an IP SAN. OpenSSL's X509_check_host /
//   X509_check_ip_asc do the matching. Presents cert_file/key_file when set.
//
// Revocation (crl_file, either side): a PEM file of certificate revocation
// lists, one per CA of ca_file whose certificates this side accepts. Every
// handshake checks the peer's own certificate against it
// (X509_V_FLAG_CRL_CHECK): a revoked certificate is refused ("certificate
// revoked"), and so is one whose issuer has no CRL in the file ("unable to get
// certificate CRL") or when that CRL is past its nextUpdate ("CRL has
// expired"): without a current CRL nothing from that CA gets through, so
// publish new CRLs before the old ones expire. By default only the peer's own
// certificate is checked; with crl_check_chain every certificate of its chain
// is (X509_V_FLAG_CRL_CHECK_ALL: an intermediate CA revoked by its issuer
// refuses everything it signed), and the file must then hold a current CRL of
// every CA in the chain, the root's included.
//
// Rotation: TlsContext::Reload() re-reads the files (CRL included) into a
// fresh SSL_CTX; connections accepted or opened afterwards use it, open ones
// keep theirs (a connection made before a certificate was revoked stays up
// until it closes). A failed reload (missing file, key not matching, a CRL
// file without a CRL) keeps the previous credentials and returns the error.
//
// OpenSSL global state: TSSLSocketFactory initialises OpenSSL when the first
// factory is made and, by default, *cleans it up* (EVP_cleanup, ERR_free_strings,
// ...) when the last one is destroyed, which would break every other TLS user
// in the process (the coordinator's Boost.Asio participant client) and any
// factory made later (a reload). We switch that to manual mode once per
// process and never clean up (OpenSSL 3 needs no cleanup).
#pragma once

#include <thrift/transport/TSSLSocket.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace txc {

struct TlsOptions {
  std::string cert_file{};  // PEM certificate (chain) this side presents
  std::string key_file{};   // PEM private key of cert_file
  std::string ca_file{};    // PEM CA bundle that verifies the other side
  // Server only: the client must present a certificate that chains to
  // ca_file (mutual TLS). Without it, a presented certificate is still
  // verified (and becomes the caller's identity) when ca_file is set.
  bool require_client_cert = true;
  // Client only: the name the server certificate must carry; empty: the host
  // of the endpoint connected to (an IP literal is matched against IP SANs).
  std::string server_name{};
  // PEM certificate revocation list(s) for the CAs of ca_file; empty: no
  // revocation check. Needs ca_file (see "Revocation" above).
  std::string crl_file{};
  // Check the whole chain against crl_file, not only the peer's certificate
  // (see "Revocation" above). Needs crl_file.
  bool crl_check_chain = false;

  // TLS is on when any file is configured.
  bool enabled() const { return !cert_file.empty() || !key_file.empty() || !ca_file.empty(); }
  // kInvalidArgument naming what is missing for that role (a server needs a
  // certificate and key, and a CA bundle for mutual TLS; a client needs a CA
  // bundle, and a key exactly when it has a certificate; a CRL needs a CA
  // bundle).
  Status ValidateForServer() const;
  Status ValidateForClient() const;
};

enum class TlsRole { kServer, kClient };

// A TLS socket that can run its handshake eagerly, remembers a failed one,
// and records the peer certificate it verified. Made by TlsContext.
class TlsSocket : public apache::thrift::transport::TSSLSocket {
 public:
  // Server side, over an accepted descriptor.
  TlsSocket(std::shared_ptr<apache::thrift::transport::SSLContext> ctx, THRIFT_SOCKET fd,
            std::shared_ptr<THRIFT_SOCKET> interrupt_listener,
            std::shared_ptr<apache::thrift::TConfiguration> config);
  // Client side; `verify_name` is the name the server certificate must match.
  TlsSocket(std::shared_ptr<apache::thrift::transport::SSLContext> ctx, const std::string& host,
            int port, std::shared_ptr<apache::thrift::TConfiguration> config,
            std::string verify_name);

  // Runs the handshake now (it otherwise runs on the first read or write),
  // bounded by the receive/send timeouts. On failure the connection is closed,
  // later reads report END_OF_FILE, and the OpenSSL reason is returned
  // (kUnavailable, or kTimeout).
  Status Handshake();

  // After a successful handshake: whether the peer presented a certificate we
  // verified, and its subject CN and DNS/URI/email SANs.
  bool peer_verified() const { return peer_verified_; }
  const std::string& peer_common_name() const { return peer_common_name_; }
  const std::vector<std::string>& peer_sans() const { return peer_sans_; }

  // Reads and writes remember a failed connection, so close() does not try
  // a TLS shutdown on it. A failed write reads the alert the server may
  // have sent first: under TLS 1.3 a refused client certificate is reported
  // after our handshake finished, and our first request hits the closed
  // connection ("Broken pipe") while the reason waits in the receive buffer.
  //
  // Server side, answers to pipelined requests go out together, as on
  // PlainSocket: a write made while decrypted request bytes are still unread
  // (the client sent several calls in one TLS record) is held, and what is
  // held goes out as one TLS record with the write that finds nothing left
  // unread, before any read or peek that may need the kernel, and at close().
  uint32_t read(uint8_t* buf, uint32_t len) override;
  void write(const uint8_t* buf, uint32_t len) override;
  void flush() override;
  bool peek() override;
  void close() override;

 protected:
  // After the chain verified: the client checks the server's name; both
  // sides record the peer certificate's names.
  void authorize() override;

 private:
  std::string verify_name_;  // client: the expected server name
  std::string PendingAlert();
  // TSSLSocket::write, remembering a failure (and, client side, the alert).
  void WriteNow(const uint8_t* buf, uint32_t len);
  // Writes what write() held; a no-op when nothing is held.
  void SendHeld();
  // Server side: decrypted bytes are waiting, so a read will not block.
  bool RequestBytesBuffered() const;

  std::string held_;  // server side: answers written while request bytes were unread

  bool handshake_failed_ = false;
  bool broken_ = false;  // a read or write failed: close without a TLS shutdown
  std::string handshake_error_;
  bool peer_verified_ = false;
  std::string peer_common_name_;
  std::vector<std::string> peer_sans_;
};

// Ends the blocked reads of a server's plaintext connections when the server
// stops. Thrift's way (TServerSocket::interruptChildren) makes every read
// poll(2) the socket and an interrupt socket first: two syscalls per read
// where one recv(2) would do, and syscalls are what a call costs most here.
// Instead each connection's descriptor is tracked, and Stop() shuts down the
// receive side of every one: a blocked recv() returns end of stream at once
// and a thread busy in a handler still sends its answer, then finds
// stopped() at its next read. Thread-safe.
class ConnectionInterrupter {
 public:
  // Tracks an accepted descriptor; after Stop() it is shut down at once.
  void Track(THRIFT_SOCKET fd);
  // Untracks `fd` and runs `close` (which closes it) under the lock, so that
  // Stop() never shuts down a descriptor number the kernel reused.
  void CloseTracked(THRIFT_SOCKET fd, const std::function<void()>& close);
  // stopped() from now on; shutdown(SHUT_RD) of every tracked descriptor.
  void Stop();
  bool stopped() const { return stopped_.load(std::memory_order_acquire); }

 private:
  std::atomic<bool> stopped_{false};
  std::mutex mu_;
  std::unordered_set<THRIFT_SOCKET> fds_;  // guarded by mu_
};

// A plain TCP socket that recognises the other protocol: the first bytes a
// peer sends being a TLS record (a ClientHello reaching a plaintext server, or
// a TLS alert answering a plaintext client) end the connection with a
// TTransportException that says so, instead of a confusing frame-size error.
//
// Server side, answers to pipelined requests go out together: a write made
// while requests already received are still unread (the client sent several
// calls at once) is held, and what is held goes out in one send(2) with the
// write that finds nothing left unread, before any read that needs the
// kernel, and at close(). A request-reply server therefore never waits for
// input while an answer of its own is held.
//
// Reads are buffered: one recv(2) of up to kReadBufferBytes serves the frame
// size and the frame that follow it (TFramedTransport and THeaderTransport
// read them separately); a read of at least that much goes straight to the
// caller. A server connection is made without Thrift's interrupt listener
// (no poll(2) per read) and with a ConnectionInterrupter instead: once it
// stopped, a read that needs the kernel throws INTERRUPTED, as Thrift's
// interrupt does. The receive timeout stays SO_RCVTIMEO (setRecvTimeout):
// TIMED_OUT as before. One thread at a time, like any TSocket.
class PlainSocket : public apache::thrift::transport::TSocket {
 public:
  static constexpr uint32_t kReadBufferBytes = 16 * 1024;

  using TSocket::TSocket;
  ~PlainSocket() override;
  // The connection is a server's (the message names the client) or a
  // client's (the message tells it the server wants TLS).
  void set_server_side(bool server_side) { server_side_ = server_side; }
  // Server side, before the first read: tracks this descriptor in
  // `interrupter` until close().
  void set_interrupter(std::shared_ptr<ConnectionInterrupter> interrupter);

  uint32_t read(uint8_t* buf, uint32_t len) override;
  void write(const uint8_t* buf, uint32_t len) override;
  bool peek() override;
  bool hasPendingDataToRead() override;
  void close() override;

 private:
  // Sends what write() held (server side); a no-op when nothing is held.
  void SendHeld();

  // TSocket::read into `buf`, then the check of the connection's first bytes.
  uint32_t ReadFromKernel(uint8_t* buf, uint32_t len);

  bool server_side_ = false;
  bool first_read_done_ = false;
  std::shared_ptr<ConnectionInterrupter> interrupter_;
  std::unique_ptr<uint8_t[]> buffer_;  // kReadBufferBytes, allocated at the first read
  uint32_t buffer_pos_ = 0;            // next unread byte of buffer_
  uint32_t buffer_end_ = 0;            // end of the received bytes in buffer_
  std::string held_;                   // answers written while requests were still unread
};

// Loads every CRL in the PEM file `crl_file` into `ctx`'s certificate store
// and turns on the check of the peer's certificate against them
// (X509_V_FLAG_CRL_CHECK). kInvalidArgument naming the file when it cannot be
// read or holds no CRL. Logs a WARNING for a CRL already past its nextUpdate
// (every certificate of that CA is then refused). Used by TlsContext and by
// the coordinator's participant client (Boost.Asio, same OpenSSL).
Status LoadCrlFile(SSL_CTX* ctx, const std::string& crl_file, bool check_chain = false);

// True when `data` (the first bytes a peer sent) starts like a TLS record.
bool LooksLikeTlsRecord(const uint8_t* data, uint32_t len);

// After a completed handshake on `ssl`: true when the peer presented a
// certificate that verified (SSL_VERIFY_PEER on and X509_V_OK); then
// *common_name and *sans hold its subject CN and DNS/URI/email SANs. For
// servers that run their own TLS stream (the HTTP port, Boost.Asio).
bool VerifiedPeerNames(SSL* ssl, std::string* common_name, std::vector<std::string>* sans);

// "subject CN=..., expires ..., CA bundle ..." of the credentials loaded into
// `ctx` from `options` for `role`: TlsContext::Describe() and the Boost.Asio
// servers' start-up and reload logs.
std::string DescribeTlsCredentials(SSL_CTX* ctx, const TlsOptions& options, TlsRole role);

// The loaded credentials of one side (server or client), swappable by
// Reload(). Thread-safe: sockets may be made from any thread while another
// reloads.
class TlsContext {
 public:
  // Loads the files; kInvalidArgument when an option is missing or a file
  // cannot be loaded (the message names the file and OpenSSL's reason).
  static Result<std::shared_ptr<TlsContext>> Create(const TlsOptions& options, TlsRole role);
  ~TlsContext();

  // Re-reads the files named in the options. New sockets use the new
  // credentials; on failure the current ones stay and the error is returned.
  Status Reload();

  // A server socket over an accepted descriptor (the handshake has not run yet).
  std::shared_ptr<TlsSocket> ServerSocket(THRIFT_SOCKET fd,
                                          std::shared_ptr<THRIFT_SOCKET> interrupt_listener,
                                          std::shared_ptr<apache::thrift::TConfiguration> config);
  // An unopened client socket to host:port.
  std::shared_ptr<TlsSocket> ClientSocket(const std::string& host, int port,
                                          std::shared_ptr<apache::thrift::TConfiguration> config);

  const TlsOptions& options() const { return options_; }
  TlsRole role() const { return role_; }
  // "subject CN=..., expires ..." of the loaded certificate, for start-up logs.
  std::string Describe() const;

 private:
  class Factory;
  TlsContext(TlsOptions options, TlsRole role) : options_(std::move(options)), role_(role) {}
  static Result<std::shared_ptr<Factory>> Load(const TlsOptions& options, TlsRole role);

  const TlsOptions options_;
  const TlsRole role_;
  mutable std::mutex mu_;
  std::shared_ptr<Factory> factory_;  // guarded by mu_; replaced whole by Reload()
};

}  // namespace txc
