#include "common/thrift_util.h"

#include <glog/logging.h>
#include <thrift/TApplicationException.h>
#include <thrift/TOutput.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "common/log_rate_limiter.h"

namespace txc {

using apache::thrift::TConfiguration;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransport;
using apache::thrift::transport::TTransportException;

std::shared_ptr<TConfiguration> MakeThriftConfig(int64_t max_message_bytes) {
  const int limit = static_cast<int>(std::min<int64_t>(max_message_bytes, INT32_MAX));
  // Frame and message limits are the same number: a frame is one message.
  // A copy, not a reference: libthrift does not define the static member, and
  // make_shared's forwarding would odr-use it (a link error in unoptimised /
  // sanitizer builds).
  const int recursion_depth = TConfiguration::DEFAULT_RECURSION_DEPTH;
  return std::make_shared<TConfiguration>(limit, limit, recursion_depth);
}

uint32_t ResettingFramedTransport::readEnd() {
  uint32_t bytes = TFramedTransport::readEnd();
  resetConsumedMessageSize();
  in_message_ = false;
  return bytes;
}

uint32_t ResettingFramedTransport::readSlow(uint8_t* buf, uint32_t len) {
  if (in_message_) {
    throw TTransportException(TTransportException::CORRUPTED_DATA,
                              "malformed message: it runs past the end of its frame");
  }
  const uint32_t got = TFramedTransport::readSlow(buf, len);
  in_message_ = true;
  return got;
}

std::shared_ptr<TTransport> ResettingFramedTransportFactory::getTransport(
    std::shared_ptr<TTransport> trans) {
  return std::make_shared<ResettingFramedTransport>(std::move(trans), config_);
}

namespace {

using apache::thrift::protocol::TBinaryProtocolT;
using apache::thrift::protocol::TMessageType;
using apache::thrift::protocol::TProtocol;
using apache::thrift::protocol::TProtocolException;
using apache::thrift::protocol::TType;

// The type bytes the binary protocol puts on the wire (T_STOP only ends a struct).
bool IsWireType(int8_t type) {
  switch (type) {
    case 2:   // T_BOOL
    case 3:   // T_BYTE
    case 4:   // T_DOUBLE
    case 6:   // T_I16
    case 8:   // T_I32
    case 10:  // T_I64
    case 11:  // T_STRING
    case 12:  // T_STRUCT
    case 13:  // T_MAP
    case 14:  // T_SET
    case 15:  // T_LIST
      return true;
    default: return false;
  }
}

TType CheckedType(int8_t type) {
  if (!IsWireType(type)) {
    throw TProtocolException(TProtocolException::INVALID_DATA,
                             "invalid type byte " + std::to_string(type));
  }
  return static_cast<TType>(type);
}

// TBinaryProtocol that checks every type byte before it becomes a TType (or a
// TMessageType). Thrift 0.17 casts the byte unchecked and then compares the enum,
// which is undefined behaviour for a value outside the enum (UBSan aborts the
// process: "load of value 99, which is not a valid value for type 'TType'"),
// and a bad byte inside a container reached skip() and getMinSerializedSize().
// Invalid bytes now end the message with TProtocolException(INVALID_DATA),
// which the server answers by closing that connection.
class CheckedBinaryProtocol : public TBinaryProtocolT<TTransport> {
 public:
  using Base = TBinaryProtocolT<TTransport>;
  CheckedBinaryProtocol(std::shared_ptr<TTransport> transport, int32_t string_limit,
                        int32_t container_limit)
      : Base(std::move(transport), string_limit, container_limit, /*strict_read=*/false,
             /*strict_write=*/true) {}

  uint32_t readMessageBegin_virt(std::string& name, TMessageType& type, int32_t& seqid) override {
    const uint32_t bytes = Base::readMessageBegin(name, type, seqid);
    // Read back without an enum load: the base stored the byte with a cast.
    std::underlying_type_t<TMessageType> raw;
    static_assert(sizeof(raw) == sizeof(type), "TMessageType layout");
    std::memcpy(&raw, &type, sizeof(raw));
    if (raw < apache::thrift::protocol::T_CALL || raw > apache::thrift::protocol::T_ONEWAY) {
      throw TProtocolException(TProtocolException::INVALID_DATA,
                               "invalid message type " + std::to_string(raw));
    }
    return bytes;
  }

  uint32_t readFieldBegin_virt(std::string& /*name*/, TType& field_type,
                               int16_t& field_id) override {
    int8_t type = 0;
    uint32_t bytes = Base::readByte(type);
    if (type == 0) {
      field_type = apache::thrift::protocol::T_STOP;
      field_id = 0;
      return bytes;
    }
    field_type = CheckedType(type);
    bytes += Base::readI16(field_id);
    return bytes;
  }

  uint32_t readListBegin_virt(TType& elem_type, uint32_t& size) override {
    int8_t type = 0;
    uint32_t bytes = Base::readByte(type);
    elem_type = CheckedType(type);
    bytes += ReadSize(size);
    apache::thrift::protocol::TList list(elem_type, size);
    checkReadBytesAvailable(list);
    return bytes;
  }

  uint32_t readSetBegin_virt(TType& elem_type, uint32_t& size) override {
    int8_t type = 0;
    uint32_t bytes = Base::readByte(type);
    elem_type = CheckedType(type);
    bytes += ReadSize(size);
    apache::thrift::protocol::TSet set(elem_type, size);
    checkReadBytesAvailable(set);
    return bytes;
  }

  uint32_t readMapBegin_virt(TType& key_type, TType& value_type, uint32_t& size) override {
    int8_t key = 0;
    int8_t value = 0;
    uint32_t bytes = Base::readByte(key);
    bytes += Base::readByte(value);
    key_type = CheckedType(key);
    value_type = CheckedType(value);
    bytes += ReadSize(size);
    apache::thrift::protocol::TMap map(key_type, value_type, size);
    checkReadBytesAvailable(map);
    return bytes;
  }

  // The generic skip() reads through the virtual methods above; the base's
  // skip would call its own unchecked readListBegin & co. directly.
  uint32_t skip_virt(TType type) override {
    return apache::thrift::protocol::skip(static_cast<TProtocol&>(*this), type);
  }

 private:
  uint32_t ReadSize(uint32_t& size) {
    int32_t declared = 0;
    const uint32_t bytes = Base::readI32(declared);
    if (declared < 0) throw TProtocolException(TProtocolException::NEGATIVE_SIZE);
    if (container_limit_ > 0 && declared > container_limit_) {
      throw TProtocolException(TProtocolException::SIZE_LIMIT);
    }
    size = static_cast<uint32_t>(declared);
    return bytes;
  }
};

class CheckedBinaryProtocolFactory : public apache::thrift::protocol::TProtocolFactory {
 public:
  CheckedBinaryProtocolFactory(int32_t string_limit, int32_t container_limit)
      : string_limit_(string_limit), container_limit_(container_limit) {}
  std::shared_ptr<TProtocol> getProtocol(std::shared_ptr<TTransport> transport) override {
    return std::make_shared<CheckedBinaryProtocol>(std::move(transport), string_limit_,
                                                   container_limit_);
  }

 private:
  const int32_t string_limit_;
  const int32_t container_limit_;
};

}  // namespace

int32_t StringLimitFor(int64_t max_message_bytes) {
  return static_cast<int32_t>(
      std::max<int64_t>(1, std::min<int64_t>(max_message_bytes, INT32_MAX)));
}

std::shared_ptr<apache::thrift::protocol::TProtocolFactory> MakeProtocolFactory(
    int64_t max_message_bytes) {
  return std::make_shared<CheckedBinaryProtocolFactory>(StringLimitFor(max_message_bytes),
                                                        kMaxContainerElements);
}

std::shared_ptr<apache::thrift::protocol::TProtocol> MakeCheckedBinaryProtocol(
    std::shared_ptr<TTransport> transport, int64_t max_message_bytes) {
  return std::make_shared<CheckedBinaryProtocol>(
      std::move(transport), StringLimitFor(max_message_bytes), kMaxContainerElements);
}

Result<HostPort> ParseEndpoint(const std::string& endpoint) {
  // Checked before any message quotes the text: a refusal must not echo bytes
  // that are not valid UTF-8 (or a megabyte of them) back to the caller.
  if (endpoint.size() > kMaxEndpointBytes) {
    return Status::InvalidArgument("endpoint is longer than " + std::to_string(kMaxEndpointBytes) +
                                   " bytes");
  }
  for (unsigned char c : endpoint) {
    if (c <= 0x20 || c >= 0x7f) {
      return Status::InvalidArgument("endpoint must be printable ASCII without spaces");
    }
  }
  const auto colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= endpoint.size()) {
    return Status::InvalidArgument("endpoint must be host:port, got '" + endpoint + "'");
  }
  const std::string port_text = endpoint.substr(colon + 1);
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (*end != '\0' || port <= 0 || port > 65535) {
    return Status::InvalidArgument("endpoint port must be 1..65535, got '" + endpoint + "'");
  }
  HostPort hp;
  hp.host = endpoint.substr(0, colon);
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']') {
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  }
  hp.port = static_cast<int>(port);
  return hp;
}

namespace {

// A plain-language reading of OpenSSL's reasons a client sees most.
std::string HandshakeHint(const std::string& reason) {
  struct Hint {
    const char* marker;
    const char* text;
  };
  static const Hint kHints[] = {
      {"wrong version number", " (the server does not speak TLS: is it plaintext?)"},
      {"unexpected eof",
       " (the server closed the connection: is it plaintext, or does this host already hold its "
       "max_connections_per_peer connections?)"},
      {"certificate required", " (the server requires a client certificate: set tls_cert/tls_key)"},
      {"unknown ca", " (the server does not trust our certificate's CA)"},
      {"alert certificate revoked", " (the server's CRL lists our certificate: it was revoked)"},
      {"(certificate revoked)", " (tls_crl lists the server's certificate: it was revoked)"},
      {"unable to get certificate CRL", " (tls_crl has no CRL from the server certificate's CA)"},
      {"CRL has expired", " (the CRL in tls_crl is past its nextUpdate: load a current one)"},
      {"certificate expired", " (a certificate has expired)"},
      {"bad certificate", " (the server refused our certificate)"},
      {"certificate verify failed", " (the server certificate does not verify against tls_ca)"},
  };
  for (const Hint& hint : kHints) {
    if (reason.find(hint.marker) != std::string::npos) return hint.text;
  }
  return "";
}

}  // namespace

// Thrift's messages go to glog as WARNINGs. A message repeated within
// kThriftLogIntervalMs (the same text: the same endpoint and error) is logged
// once, and the next one after the interval carries the count ("N more in the
// last Xs"): a participant that is down no longer floods the log with one line
// per connection attempt (~25k a minute under chaos).
constexpr int64_t kThriftLogIntervalMs = 5000;

void RouteThriftLogsToGlog() {
  apache::thrift::GlobalOutput.setOutputFunction([](const char* message) {
    // A participant or replica that is down makes every call attempt print
    // "TSocket::open() connect() <Host: h Port: p>: Connection refused";
    // the message names the endpoint, so it is the key.
    static LogRateLimiter* limiter = new LogRateLimiter(kThriftLogIntervalMs);
    const LogRateLimiter::Decision d = limiter->Admit(message, MonotonicMs());
    if (d.log) LOG(WARNING) << "thrift: " << message << d.Suffix();
  });
}

Result<std::shared_ptr<TSocket>> OpenSocket(const HostPort& endpoint,
                                            const ConnectOptions& options) {
  auto config = MakeThriftConfig(options.max_message_bytes);
  std::shared_ptr<TSocket> socket;
  std::shared_ptr<TlsSocket> tls;
  if (options.tls != nullptr) {
    tls = options.tls->ClientSocket(endpoint.host, endpoint.port, config);
    socket = tls;
  } else {
    socket = std::make_shared<PlainSocket>(endpoint.host, endpoint.port, config);
  }
  socket->setConnTimeout(options.connect_timeout_ms);
  socket->setSendTimeout(options.rpc_timeout_ms);
  socket->setRecvTimeout(options.rpc_timeout_ms);
  socket->setNoDelay(true);
  try {
    socket->open();
  } catch (const TTransportException& e) {
    return Status::Unavailable("cannot connect to " + endpoint.ToString() + ": " + e.what());
  }
  if (tls != nullptr) {
    Status handshake = tls->Handshake();
    if (!handshake.ok()) {
      return Status(handshake.code(), "TLS handshake with " + endpoint.ToString() + " failed: " +
                                          handshake.message() + HandshakeHint(handshake.message()));
    }
  }
  return socket;
}

Result<std::shared_ptr<apache::thrift::protocol::TProtocol>> OpenProtocol(
    const HostPort& endpoint, const ConnectOptions& options,
    std::shared_ptr<TTransport>* transport) {
  TXC_ASSIGN_OR_RETURN(std::shared_ptr<TSocket> socket, OpenSocket(endpoint, options));
  auto framed = std::make_shared<ResettingFramedTransport>(
      std::move(socket), MakeThriftConfig(options.max_message_bytes));
  *transport = framed;
  // The same limits as a server's: a hostile peer's answer cannot exhaust memory.
  return MakeProtocolFactory(options.max_message_bytes)->getProtocol(framed);
}

Status TranslateThriftException(const std::exception& e, const std::string& endpoint) {
  if (dynamic_cast<const apache::thrift::transport::TSSLException*>(&e) != nullptr) {
    // Under TLS 1.3 the server checks our certificate after our handshake
    // finished: its refusal arrives as an alert on the first read.
    return Status::Unavailable("TLS error talking to " + endpoint + ": " + e.what() +
                               HandshakeHint(e.what()));
  }
  if (auto* t = dynamic_cast<const TTransportException*>(&e)) {
    if (t->getType() == TTransportException::TIMED_OUT) {
      return Status::Timeout("call to " + endpoint + " timed out: " + t->what());
    }
    return Status::Unavailable("transport error talking to " + endpoint + ": " + t->what());
  }
  if (dynamic_cast<const apache::thrift::TApplicationException*>(&e)) {
    return Status::Unavailable("application error from " + endpoint + ": " + e.what());
  }
  return Status::Unavailable("protocol error talking to " + endpoint + ": " + e.what());
}

}  // namespace txc
