// Transaction context propagation over an application's own RPCs.
//
// A service that calls another service inside a global transaction passes the
// transaction's wire::TxnContext along: encoded into one compact printable
// string (Thrift binary protocol, then base64url without padding) that fits in
// any string field or header of the application's own Thrift request.
//
// Caller side:
//   txc::wire::BeginResponse begun = ...;              // CoordinatorClient::Begin
//   req.txn_context = txc::participant::EncodeTxnContext(begun.context);
// Callee side:
//   auto ctx = txc::participant::DecodeTxnContext(req.txn_context);
//   if (!ctx.ok()) { ... reject the request ... }
//   txc::participant::ScopedTxnContext scope(*ctx);   // CurrentTxnContext() now returns it
//   ... enlist a branch with ctx->gtid, do the work ...
//
// Thread-safety: Encode/Decode are pure. The "current" context is per thread.
#pragma once

#include <string>

#include "common/status.h"
#include "gen-cpp/common_types.h"

namespace txc {
namespace participant {

// Largest encoded context DecodeTxnContext accepts (characters).
constexpr size_t kMaxEncodedTxnContext = 64 * 1024;

// The context as a base64url string (alphabet A-Z a-z 0-9 - _, no padding).
std::string EncodeTxnContext(const wire::TxnContext& context);

// The inverse of EncodeTxnContext. kInvalidArgument when the text is empty,
// longer than kMaxEncodedTxnContext, not base64url, not a TxnContext, or has an
// empty gtid.
Result<wire::TxnContext> DecodeTxnContext(const std::string& encoded);

// Makes `context` the calling thread's current transaction context for the
// scope's lifetime; scopes nest (the previous one is restored on destruction).
// Not movable: create it on the stack.
class ScopedTxnContext {
 public:
  explicit ScopedTxnContext(wire::TxnContext context);
  ~ScopedTxnContext();
  ScopedTxnContext(const ScopedTxnContext&) = delete;
  ScopedTxnContext& operator=(const ScopedTxnContext&) = delete;

 private:
  wire::TxnContext context_;
  const wire::TxnContext* previous_;
};

// The calling thread's innermost current context, or nullptr outside any
// ScopedTxnContext. The pointer is valid until that scope ends.
const wire::TxnContext* CurrentTxnContext();

}  // namespace participant
}  // namespace txc
