#include "txc/participant/thrift_headers.h"

#include <glog/logging.h>
#include <thrift/processor/TMultiplexedProcessor.h>
#include <thrift/transport/TSocket.h>

#include <cstring>

#include "common/backoff.h"
#include "common/log_rate_limiter.h"
#include "common/peer_identity.h"

namespace txc {
namespace participant {

using apache::thrift::TApplicationException;
using apache::thrift::protocol::StoredMessageProtocol;
using apache::thrift::protocol::TMessageType;
using apache::thrift::protocol::TProtocol;
using apache::thrift::protocol::TProtocolException;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransport;

namespace {

bool ValidEndpointChars(const std::string& s) {
  for (char c : s) {
    if (c <= 0x20 || c > 0x7e) return false;
  }
  return true;
}

}  // namespace

Result<std::string> EncodeTxnHeader(const wire::TxnContext& context) {
  std::string value = std::string(kTxnHeaderVersion) + ";" + EncodeTxnContext(context);
  if (value.size() > kMaxTxnHeaderBytes) {
    return Status::InvalidArgument("txc-ctx: context of gtid " + context.gtid + " encodes to " +
                                   std::to_string(value.size()) + " bytes, more than " +
                                   std::to_string(kMaxTxnHeaderBytes));
  }
  return value;
}

Result<wire::TxnContext> DecodeTxnHeader(const std::string& value, int64_t now_unix_ms) {
  if (value.size() > kMaxTxnHeaderBytes) {
    return Status::InvalidArgument("malformed: header of " + std::to_string(value.size()) +
                                   " bytes, more than " + std::to_string(kMaxTxnHeaderBytes));
  }
  const std::string head = std::string(kTxnHeaderVersion) + ";";
  if (value.compare(0, head.size(), head) != 0) {
    const auto semi = value.find(';');
    return Status::InvalidArgument(
        "malformed: unsupported version '" +
        (semi == std::string::npos || semi > 16 ? std::string("?") : value.substr(0, semi)) +
        "' (this side speaks " + kTxnHeaderVersion + ")");
  }
  auto context = DecodeTxnContext(value.substr(head.size()));
  if (!context.ok()) return Status::InvalidArgument("malformed: " + context.status().message());
  if (context->coordinators.empty()) {
    return Status::InvalidArgument("malformed: no coordinator endpoint");
  }
  for (const auto& endpoint : context->coordinators) {
    if (!ValidEndpointChars(endpoint) || !ParseEndpoint(endpoint).ok()) {
      return Status::InvalidArgument("malformed: bad coordinator endpoint");
    }
  }
  if (context->deadline_unix_ms <= 0) {
    return Status::InvalidArgument("malformed: no deadline");
  }
  if (context->deadline_unix_ms <= now_unix_ms) {
    return Status::Timeout("transaction " + context->gtid + " expired " +
                           std::to_string(now_unix_ms - context->deadline_unix_ms) +
                           " ms ago (deadline " + std::to_string(context->deadline_unix_ms) + ")");
  }
  return context;
}

bool IsTxnContextRefusal(const TApplicationException& e) {
  return std::strncmp(e.what(), kTxnRefusalPrefix, std::strlen(kTxnRefusalPrefix)) == 0;
}

TxnHeaderProtocol::TxnHeaderProtocol(std::shared_ptr<TTransport> connection,
                                     int64_t max_message_bytes, bool attach_context)
    : LimitedHeaderProtocol(std::move(connection), max_message_bytes),
      attach_context_(attach_context) {}

uint32_t TxnHeaderProtocol::writeMessageBegin_virt(const std::string& name, const TMessageType type,
                                                   const int32_t seqid) {
  if (attach_context_) {
    // Written at flush(), after this message: set or removed for every call.
    const wire::TxnContext* context = CurrentTxnContext();
    if (context == nullptr) {
      getWriteHeaders().erase(kTxnHeaderKey);
    } else {
      auto value = EncodeTxnHeader(*context);
      if (!value.ok()) {
        getWriteHeaders().erase(kTxnHeaderKey);
        throw TProtocolException(TProtocolException::SIZE_LIMIT, value.status().message());
      }
      setHeader(kTxnHeaderKey, *value);
    }
  }
  return THeaderProtocol::writeMessageBegin(name, type, seqid);
}

Result<std::shared_ptr<TxnHeaderProtocol>> OpenTxnHeaderProtocol(const std::string& endpoint,
                                                                 const ConnectOptions& options) {
  TXC_ASSIGN_OR_RETURN(const HostPort hp, ParseEndpoint(endpoint));
  TXC_ASSIGN_OR_RETURN(std::shared_ptr<TSocket> socket, OpenSocket(hp, options));
  return std::make_shared<TxnHeaderProtocol>(std::move(socket), options.max_message_bytes, true);
}

bool TxnContextProcessor::process(std::shared_ptr<TProtocol> in, std::shared_ptr<TProtocol> out,
                                  void* connection_context) {
  std::string name;
  TMessageType type;
  int32_t seqid = 0;
  // Reads the frame, and with it the headers.
  in->readMessageBegin(name, type, seqid);
  auto stored = std::make_shared<StoredMessageProtocol>(in, name, type, seqid);
  const std::string* value = nullptr;
  if (auto* header = dynamic_cast<apache::thrift::protocol::THeaderProtocol*>(in.get())) {
    const auto& headers = header->getHeaders();
    auto it = headers.find(kTxnHeaderKey);
    if (it != headers.end()) value = &it->second;
  }
  if (value == nullptr) return inner_->process(stored, out, connection_context);

  auto context = DecodeTxnHeader(*value, NowUnixMs());
  if (!context.ok()) {
    const bool expired = context.status().code() == StatusCode::kTimeout;
    const std::string message = kTxnRefusalPrefix + context.status().message();
    // Keyed by the kind of refusal, so a flood of bad headers stays a few lines.
    static LogRateLimiter limiter(5000);
    if (auto d = limiter.Admit(expired ? "expired" : "malformed", MonotonicMs()); d.log) {
      LOG(WARNING) << "call " << name << " from " << CurrentPeerIdentity().Describe()
                   << " refused: " << message << d.Suffix();
    }
    in->skip(apache::thrift::protocol::T_STRUCT);
    in->readMessageEnd();
    in->getTransport()->readEnd();
    if (type == apache::thrift::protocol::T_ONEWAY) return true;
    TApplicationException refusal(
        expired ? TApplicationException::UNKNOWN : TApplicationException::PROTOCOL_ERROR, message);
    out->writeMessageBegin(name, apache::thrift::protocol::T_EXCEPTION, seqid);
    refusal.write(out.get());
    out->writeMessageEnd();
    out->getTransport()->writeEnd();
    out->getTransport()->flush();
    return true;
  }
  VLOG(2) << "gtid=" << context->gtid << " call " << name << " runs in the propagated context";
  ScopedTxnContext scope(std::move(context).value());
  return inner_->process(stored, out, connection_context);
}

}  // namespace participant
}  // namespace txc
