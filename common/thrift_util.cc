#include "common/thrift_util.h"

#include <glog/logging.h>
#include <thrift/TApplicationException.h>
#include <thrift/TOutput.h>

#include <algorithm>
#include <cstdlib>

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
  return bytes;
}

std::shared_ptr<TTransport> ResettingFramedTransportFactory::getTransport(
    std::shared_ptr<TTransport> trans) {
  return std::make_shared<ResettingFramedTransport>(std::move(trans), config_);
}

std::shared_ptr<apache::thrift::protocol::TProtocolFactory> MakeProtocolFactory(
    int64_t max_message_bytes) {
  const int32_t string_limit =
      static_cast<int32_t>(std::max<int64_t>(1, std::min<int64_t>(max_message_bytes, INT32_MAX)));
  return std::make_shared<apache::thrift::protocol::TBinaryProtocolFactory>(
      string_limit, kMaxContainerElements, /*strict_read=*/false, /*strict_write=*/true);
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

void RouteThriftLogsToGlog() {
  apache::thrift::GlobalOutput.setOutputFunction(
      [](const char* message) { LOG(WARNING) << "thrift: " << message; });
}

Result<std::shared_ptr<apache::thrift::protocol::TProtocol>> OpenProtocol(
    const HostPort& endpoint, const ConnectOptions& options,
    std::shared_ptr<TTransport>* transport) {
  auto config = MakeThriftConfig(options.max_message_bytes);
  auto socket = std::make_shared<TSocket>(endpoint.host, endpoint.port, config);
  socket->setConnTimeout(options.connect_timeout_ms);
  socket->setSendTimeout(options.rpc_timeout_ms);
  socket->setRecvTimeout(options.rpc_timeout_ms);
  socket->setNoDelay(true);
  auto framed = std::make_shared<ResettingFramedTransport>(socket, config);
  try {
    framed->open();
  } catch (const TTransportException& e) {
    return Status::Unavailable("cannot connect to " + endpoint.ToString() + ": " + e.what());
  }
  *transport = framed;
  // The same limits as a server's: a hostile peer's answer cannot exhaust memory.
  return MakeProtocolFactory(options.max_message_bytes)->getProtocol(framed);
}

Status TranslateThriftException(const std::exception& e, const std::string& endpoint) {
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
