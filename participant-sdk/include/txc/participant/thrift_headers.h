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
// Inside the handler CurrentTxnContext() is the caller's context (nullptr for
// a call without one); it is cleared when the handler returns or throws. A
// call from a service handler through a TxnHeaderClient passes the context on
// (A -> B -> C). Resources registered with TxnResources (txn_resources.h)
// enlist themselves when used under that context.
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
// Limits: every frame is checked against max_message_bytes before a byte of
// it is buffered (libthrift 0.17's THeaderTransport only checks 1 GiB), the
// message budget is reset per message (the long-lived connection bug of
// STACK-NOTES), and the context header is at most kMaxTxnHeaderBytes.
//
// Thread-safety: a TxnHeaderClient/TxnHeaderProtocol is used by one thread at
// a time (like any generated client). The processor decorator and the server
// are thread-safe (one connection per thread).
#pragma once

#include <thrift/TApplicationException.h>
#include <thrift/TProcessor.h>
#include <thrift/protocol/THeaderProtocol.h>
#include <thrift/server/TThreadedServer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

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

// A THeaderProtocol (binary payload) with our limits over a raw connection
// (normally a TSocket). With attach_context, every message it writes carries
// the calling thread's current context as the kTxnHeaderKey header, and none
// when there is no current context (other headers are left alone). Servers
// use attach_context = false.
class TxnHeaderProtocol : public apache::thrift::protocol::THeaderProtocol {
 public:
  TxnHeaderProtocol(std::shared_ptr<apache::thrift::transport::TTransport> connection,
                    int64_t max_message_bytes, bool attach_context);

  uint32_t writeMessageBegin_virt(const std::string& name,
                                  const apache::thrift::protocol::TMessageType type,
                                  const int32_t seqid) override;

 private:
  const bool attach_context_;
};

// Builds TxnHeaderProtocols (attach_context = false) for a server. Give it to
// a TServer as input protocol factory with a null output factory, so a
// connection's reply goes out through the same header transport (in the
// format the client used).
class TxnHeaderProtocolFactory : public apache::thrift::protocol::TProtocolFactory {
 public:
  explicit TxnHeaderProtocolFactory(int64_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}
  std::shared_ptr<apache::thrift::protocol::TProtocol> getProtocol(
      std::shared_ptr<apache::thrift::transport::TTransport> trans) override;
  std::shared_ptr<apache::thrift::protocol::TProtocol> getProtocol(
      std::shared_ptr<apache::thrift::transport::TTransport> in,
      std::shared_ptr<apache::thrift::transport::TTransport> out) override;

 private:
  const int64_t max_message_bytes_;
};

// Opens a connection and a client-side TxnHeaderProtocol over it.
// kUnavailable if the peer cannot be reached; kInvalidArgument for a bad endpoint.
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

// ThriftServer's twin for the user's own services: a TThreadedServer speaking
// THeader (and, detected per connection, plain framed/unframed binary and
// compact), with our frame and message limits and idle timeout. Pass the
// processor through WrapTxnContextProcessor. Start/Stop from one thread.
class TxnHeaderServer {
 public:
  TxnHeaderServer(std::shared_ptr<apache::thrift::TProcessor> processor,
                  ThriftServerOptions options);
  ~TxnHeaderServer();  // Stop()s
  // kUnavailable if the port cannot be bound.
  Status Start();
  void Stop();  // idempotent
  int port() const { return port_; }

 private:
  std::shared_ptr<apache::thrift::TProcessor> processor_;
  ThriftServerOptions options_;
  std::shared_ptr<apache::thrift::server::TThreadedServer> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace participant
}  // namespace txc
