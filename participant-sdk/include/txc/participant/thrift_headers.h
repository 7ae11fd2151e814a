// Transaction context in Thrift headers: a service joins global transactions
// without a single transaction field in its own IDL.
//
// The context (gtid, coordinator replicas, deadline, the caller's branch if
// any) travels as one THeader key/value pair on every call made inside a
// ScopedTxnContext (context.h):
//
//   txc-ctx: v1;<EncodeTxnContext(context)>      (~150 bytes for 3 replicas)
//
// Caller side: wrap the generated client of your own service.
//   auto inv = TxnHeaderClient<InventoryClient>::Open("10.0.0.5:7601");
//   {
//     ScopedTxnContext scope(begun.context);
//     (*inv)->reserve(reply, req);   // carries the header
//   }
//   (*inv)->available("apple");      // outside a context: carries nothing
//
// Callee side: decorate your generated processor and serve it with THeader.
//   TxnHeaderServer server(WrapTxnContextProcessor(
//       std::make_shared<InventoryProcessor>(handler)), options);
//   server.Start();
// Inside the handler CurrentTxnContext() is the caller's context (nullptr for
// a call without one); it is cleared when the handler returns or throws. A
// call from a service handler through a TxnHeaderClient passes the context on
// (A -> B -> C). Resources registered with TxnResources (txn_resources.h)
// enlist themselves when used under that context.
//
// TLS (mutual TLS recommended between services): TxnHeaderServer is a
// ThriftServer (common/thrift_server.h) speaking THeader, so it takes the same
// options as the coordinator's and the participants' ports:
//   ThriftServerOptions options;
//   options.tls = TlsOptions{"inventory.pem", "inventory.key", "ca.pem"};  // + crl_file
//   TxnHeaderServer server(WrapTxnContextProcessor(...), options);
//   ... server.ReloadTls();          // e.g. on SIGHUP: re-reads the files
// A client without a certificate from ca.pem (or a revoked one, with a CRL)
// is refused during the handshake: Open() fails, or under TLS 1.3 its first
// call throws TTransportException naming the reason ("certificate required",
// "certificate revoked"); a plaintext client's first call fails likewise. In
// the handler, CurrentPeerIdentity()
// (common/peer_identity.h) is the caller's verified certificate (CN, SANs)
// for authorization. options.max_connections_per_peer bounds the connections
// one peer IP may hold. The client side takes a TLS context in its
// ConnectOptions, loaded once and shared by every connection:
//   auto tls = TlsContext::Create(TlsOptions{"shop.pem", "shop.key", "ca.pem"},
//                                 TlsRole::kClient);           // check tls.ok()
//   ConnectOptions co;
//   co.tls = *tls;                                  // null: plaintext
//   auto inv = TxnHeaderClient<InventoryClient>::Open("inventory.internal:7601", co);
// The client verifies the server's certificate and its name (the host
// dialled, or TlsOptions::server_name), and presents its own certificate.
//
// Refusals (the handler is not reached; the caller's generated client throws
// TApplicationException, connection stays usable):
//   malformed header (bad version, not base64url, not a TxnContext, empty
//   gtid, no coordinator, bad endpoint, deadline <= 0, longer than
//   kMaxTxnHeaderBytes)  -> PROTOCOL_ERROR  "txc-ctx refused: malformed: ..."
//   deadline passed      -> UNKNOWN         "txc-ctx refused: transaction <gtid> expired ..."
// IsTxnContextRefusal() tells these apart from other application errors.
//
// The header server also serves clients that send no headers at all -- plain
// framed binary, framed compact, unframed binary/compact (THeader detects the
// format per connection and answers in it) -- so existing clients, including
// stock-compiler clients in other languages, keep working unchanged. Their
// calls run without a context.
//
// Limits (both sides, common/header_protocol.h): every frame is checked
// against max_message_bytes before a byte of it is buffered (libthrift 0.17's
// THeaderTransport only checks 1 GiB), the message budget is reset per
// message (the long-lived connection bug of STACK-NOTES), payloads are read
// with string and container limits, and the context header is at most
// kMaxTxnHeaderBytes.
//
// Thread-safety: a TxnHeaderClient/TxnHeaderProtocol is used by one thread at
// a time (like any generated client). The processor decorator and the server
// are thread-safe (one connection per thread).
#pragma once

#include <thrift/TApplicationException.h>
#include <thrift/TProcessor.h>
#include <thrift/protocol/THeaderProtocol.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/header_protocol.h"
#include "common/status.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "gen-cpp/common_types.h"
#include "txc/participant/context.h"

namespace txc {
namespace participant {

// The THeader key the context travels under, and its value's version tag.
constexpr char kTxnHeaderKey[] = "txc-ctx";
constexpr char kTxnHeaderVersion[] = "v1";
// Largest header value accepted or sent (bytes). A context with three
// replicas takes ~150; libthrift 0.17's THeaderTransport refuses to write
// headers that do not fit its small transform buffer (~1 KiB for a small
// message), so the limit stays well below that.
constexpr size_t kMaxTxnHeaderBytes = 512;
// Prefix of every refusal message.
constexpr char kTxnRefusalPrefix[] = "txc-ctx refused: ";

// "v1;" + EncodeTxnContext(context). kInvalidArgument when longer than
// kMaxTxnHeaderBytes.
Result<std::string> EncodeTxnHeader(const wire::TxnContext& context);

// Parses and validates a header value: kInvalidArgument when malformed (see
// the list above), kTimeout when the deadline is at or before now_unix_ms.
Result<wire::TxnContext> DecodeTxnHeader(const std::string& value, int64_t now_unix_ms);

// Whether `e` is a header refusal of a TxnContextProcessor.
bool IsTxnContextRefusal(const apache::thrift::TApplicationException& e);

// A THeaderProtocol (binary payload) with our limits (LimitedHeaderProtocol)
// over a raw connection (normally a TSocket or TLS socket). With
// attach_context, every message it writes carries the calling thread's
// current context as the kTxnHeaderKey header, and none when there is no
// current context (other headers are left alone).
class TxnHeaderProtocol : public LimitedHeaderProtocol {
 public:
  TxnHeaderProtocol(std::shared_ptr<apache::thrift::transport::TTransport> connection,
                    int64_t max_message_bytes, bool attach_context);

  uint32_t writeMessageBegin_virt(const std::string& name,
                                  const apache::thrift::protocol::TMessageType type,
                                  const int32_t seqid) override;

 private:
  const bool attach_context_;
};

// Opens a connection (TLS when options.tls is set: the handshake runs here)
// and a client-side TxnHeaderProtocol over it. kUnavailable if the peer cannot
// be reached or refuses the handshake (the message says why);
// kInvalidArgument for a bad endpoint.
Result<std::shared_ptr<TxnHeaderProtocol>> OpenTxnHeaderProtocol(const std::string& endpoint,
                                                                 const ConnectOptions& options);

// A generated client of the user's own service over a TxnHeaderProtocol.
// After any Thrift transport/protocol exception, Close() and open a new one
// (generated clients do not check sequence ids).
template <typename Client>
class TxnHeaderClient {
 public:
  static Result<std::unique_ptr<TxnHeaderClient>> Open(const std::string& endpoint,
                                                       const ConnectOptions& options = {}) {
    auto protocol = OpenTxnHeaderProtocol(endpoint, options);
    if (!protocol.ok()) return protocol.status();
    return std::unique_ptr<TxnHeaderClient>(new TxnHeaderClient(std::move(protocol).value()));
  }
  ~TxnHeaderClient() { Close(); }

  Client& client() { return client_; }
  Client* operator->() { return &client_; }
  const std::shared_ptr<TxnHeaderProtocol>& protocol() const { return protocol_; }
  void Close() {
    try {
      protocol_->getTransport()->close();
    } catch (const std::exception&) {
    }
  }

 private:
  explicit TxnHeaderClient(std::shared_ptr<TxnHeaderProtocol> protocol)
      : protocol_(std::move(protocol)), client_(protocol_) {}
  std::shared_ptr<TxnHeaderProtocol> protocol_;
  Client client_;
};

// The processor decorator: reads the message's headers, validates the
// context, makes it current for the inner processor's (the handler's) call and
// clears it afterwards, exceptions included. Refuses as listed above.
class TxnContextProcessor : public apache::thrift::TProcessor {
 public:
  explicit TxnContextProcessor(std::shared_ptr<apache::thrift::TProcessor> inner)
      : inner_(std::move(inner)) {}
  bool process(std::shared_ptr<apache::thrift::protocol::TProtocol> in,
               std::shared_ptr<apache::thrift::protocol::TProtocol> out,
               void* connection_context) override;

 private:
  std::shared_ptr<apache::thrift::TProcessor> inner_;
};

inline std::shared_ptr<TxnContextProcessor> WrapTxnContextProcessor(
    std::shared_ptr<apache::thrift::TProcessor> inner) {
  return std::make_shared<TxnContextProcessor>(std::move(inner));
}

// The user's own service on a ThriftServer in THeader mode
// (ThriftWire::kHeader): THeader and, detected per connection, plain
// framed/unframed binary and compact clients; our frame and message limits
// and idle timeout; TLS / mutual TLS, the caller's PeerIdentity and the
// per-peer connection limit from `options` as on every ThriftServer. Pass the
// processor through WrapTxnContextProcessor. Start() returns kUnavailable if
// the port cannot be bound, kInvalidArgument if the TLS files cannot be
// loaded. Start/Stop from one thread; ReloadTls from any.
class TxnHeaderServer : public ThriftServer {
 public:
  TxnHeaderServer(std::shared_ptr<apache::thrift::TProcessor> processor,
                  ThriftServerOptions options)
      : ThriftServer(std::move(processor), HeaderWire(std::move(options))) {}

 private:
  static ThriftServerOptions HeaderWire(ThriftServerOptions options) {
    options.wire = ThriftWire::kHeader;
    return options;
  }
};

}  // namespace participant
}  // namespace txc
