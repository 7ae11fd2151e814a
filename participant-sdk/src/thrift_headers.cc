#include "txc/participant/thrift_headers.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <thrift/processor/TMultiplexedProcessor.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TServerSocket.h>
#include <thrift/transport/TSocket.h>
#include <thrift/transport/TVirtualTransport.h>

#include <cstring>
#include <future>

#include "common/backoff.h"
#include "common/log_rate_limiter.h"

namespace txc {
namespace participant {

using apache::thrift::TApplicationException;
using apache::thrift::TConfiguration;
using apache::thrift::protocol::StoredMessageProtocol;
using apache::thrift::protocol::T_BINARY_PROTOCOL;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TCompactProtocol;
using apache::thrift::protocol::TMessageType;
using apache::thrift::protocol::TProtocol;
using apache::thrift::protocol::TProtocolException;
using apache::thrift::transport::THeaderTransport;
using apache::thrift::transport::TSocket;
using apache::thrift::transport::TTransport;
using apache::thrift::transport::TTransportException;

namespace {

// The raw connection under a header transport, with room to put back the four
// size bytes LimitedHeaderTransport peeks at.
class PrefixTransport : public apache::thrift::transport::TVirtualTransport<PrefixTransport> {
 public:
  PrefixTransport(std::shared_ptr<TTransport> inner, std::shared_ptr<TConfiguration> config)
      : TVirtualTransport(std::move(config)), inner_(std::move(inner)) {}

  bool isOpen() const override { return inner_->isOpen(); }
  bool peek() override { return pending_size_ > pending_pos_ || inner_->peek(); }
  void open() override { inner_->open(); }
  void close() override { inner_->close(); }
  const std::string getOrigin() const override { return inner_->getOrigin(); }

  uint32_t read(uint8_t* buf, uint32_t len) {
    if (pending_pos_ < pending_size_) {
      const uint32_t n = std::min(len, pending_size_ - pending_pos_);
      std::memcpy(buf, pending_ + pending_pos_, n);
      pending_pos_ += n;
      return n;
    }
    return inner_->read(buf, len);
  }
  void write(const uint8_t* buf, uint32_t len) { inner_->write(buf, len); }
  void flush() override { inner_->flush(); }

  // Puts back up to 4 bytes just read; the next reads return them first.
  void Unread(const uint8_t* bytes, uint32_t n) {
    std::memcpy(pending_, bytes, n);
    pending_pos_ = 0;
    pending_size_ = n;
  }

 private:
  std::shared_ptr<TTransport> inner_;
  uint8_t pending_[4] = {0, 0, 0, 0};
  uint32_t pending_pos_ = 0;
  uint32_t pending_size_ = 0;
};

// THeaderTransport that refuses a frame larger than our limit before
// buffering it, and resets the consumed-bytes budget after every message.
class LimitedHeaderTransport : public THeaderTransport {
 public:
  LimitedHeaderTransport(std::shared_ptr<PrefixTransport> connection,
                         std::shared_ptr<TConfiguration> config)
      : THeaderTransport(connection, config),
        connection_(std::move(connection)),
        max_frame_bytes_(static_cast<uint32_t>(config->getMaxFrameSize())) {}

  uint32_t readEnd() override {
    const uint32_t bytes = THeaderTransport::readEnd();
    resetConsumedMessageSize();
    return bytes;
  }

 protected:
  bool readFrame() override {
    uint8_t size_bytes[4];
    uint32_t got = 0;
    while (got < sizeof(size_bytes)) {
      const uint32_t n = connection_->read(size_bytes + got, sizeof(size_bytes) - got);
      if (n == 0) {
        if (got == 0) return false;  // EOF between messages
        throw TTransportException(TTransportException::END_OF_FILE, "partial frame header");
      }
      got += n;
    }
    uint32_t size_n;
    std::memcpy(&size_n, size_bytes, sizeof(size_n));
    const uint32_t size = ntohl(size_n);
    const bool unframed_binary =
        (size & TBinaryProtocol::VERSION_MASK) == static_cast<uint32_t>(TBinaryProtocol::VERSION_1);
    const bool unframed_compact =
        static_cast<int8_t>(size >> 24) == static_cast<int8_t>(TCompactProtocol::PROTOCOL_ID) &&
        (static_cast<int8_t>(size >> 16) & TCompactProtocol::VERSION_MASK) ==
            TCompactProtocol::VERSION_N;
    if (!unframed_binary && !unframed_compact && size > max_frame_bytes_) {
      throw TTransportException(TTransportException::CORRUPTED_DATA,
                                "frame of " + std::to_string(size) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(max_frame_bytes_));
    }
    connection_->Unread(size_bytes, sizeof(size_bytes));
    return THeaderTransport::readFrame();
  }

 private:
  std::shared_ptr<PrefixTransport> connection_;
  const uint32_t max_frame_bytes_;
};

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
    : THeaderProtocol(connection, T_BINARY_PROTOCOL), attach_context_(attach_context) {
  // THeaderProtocol made a THeaderTransport of its own without our limits:
  // replace it (it never read or wrote a byte) by a limited one.
  auto config = MakeThriftConfig(max_message_bytes);
  auto limited = std::make_shared<LimitedHeaderTransport>(
      std::make_shared<PrefixTransport>(std::move(connection), config), config);
  trans_ = limited;
  ptrans_ = limited;
  trans_->setProtocolId(T_BINARY_PROTOCOL);
  proto_.reset();  // resetProtocol() keeps a payload protocol of the same id: rebuild it
  resetProtocol();
}

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

std::shared_ptr<TProtocol> TxnHeaderProtocolFactory::getProtocol(
    std::shared_ptr<TTransport> trans) {
  return std::make_shared<TxnHeaderProtocol>(std::move(trans), max_message_bytes_, false);
}

std::shared_ptr<TProtocol> TxnHeaderProtocolFactory::getProtocol(std::shared_ptr<TTransport> in,
                                                                 std::shared_ptr<TTransport>) {
  // The server's transports are both the accepted socket.
  return getProtocol(std::move(in));
}

Result<std::shared_ptr<TxnHeaderProtocol>> OpenTxnHeaderProtocol(const std::string& endpoint,
                                                                 const ConnectOptions& options) {
  TXC_ASSIGN_OR_RETURN(const HostPort hp, ParseEndpoint(endpoint));
  auto socket =
      std::make_shared<TSocket>(hp.host, hp.port, MakeThriftConfig(options.max_message_bytes));
  socket->setConnTimeout(options.connect_timeout_ms);
  socket->setSendTimeout(options.rpc_timeout_ms);
  socket->setRecvTimeout(options.rpc_timeout_ms);
  socket->setNoDelay(true);
  try {
    socket->open();
  } catch (const TTransportException& e) {
    return Status::Unavailable("cannot connect to " + endpoint + ": " + e.what());
  }
  return std::make_shared<TxnHeaderProtocol>(socket, options.max_message_bytes, true);
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
      LOG(WARNING) << "call " << name << " refused: " << message << d.Suffix();
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

TxnHeaderServer::TxnHeaderServer(std::shared_ptr<apache::thrift::TProcessor> processor,
                                 ThriftServerOptions options)
    : processor_(std::move(processor)), options_(std::move(options)) {}

TxnHeaderServer::~TxnHeaderServer() { Stop(); }

namespace {

class ReadySignal : public apache::thrift::server::TServerEventHandler {
 public:
  explicit ReadySignal(std::shared_ptr<std::promise<Status>> ready) : ready_(std::move(ready)) {}
  void preServe() override {
    if (ready_ != nullptr) ready_->set_value(Status::Ok());
    ready_.reset();
  }

 private:
  std::shared_ptr<std::promise<Status>> ready_;
};

}  // namespace

Status TxnHeaderServer::Start() {
  auto socket =
      std::make_shared<apache::thrift::transport::TServerSocket>(options_.host, options_.port);
  if (options_.recv_timeout_ms > 0) socket->setRecvTimeout(options_.recv_timeout_ms);
  server_ = std::make_shared<apache::thrift::server::TThreadedServer>(
      processor_, socket, std::make_shared<apache::thrift::transport::TTransportFactory>(),
      std::make_shared<TxnHeaderProtocolFactory>(options_.max_message_bytes));
  // No output factory: TServerFramework then makes one protocol per connection
  // for both directions, so a reply goes out in the format the client used.
  server_->setOutputProtocolFactory(nullptr);
  server_->setConcurrentClientLimit(options_.max_connections);
  auto ready = std::make_shared<std::promise<Status>>();
  auto ready_future = ready->get_future();
  server_->setServerEventHandler(std::make_shared<ReadySignal>(ready));
  thread_ = std::thread([this, ready] {
    try {
      server_->serve();
    } catch (const std::exception& e) {
      try {
        ready->set_value(Status::Unavailable("cannot listen on " + options_.host + ":" +
                                             std::to_string(options_.port) + ": " + e.what()));
      } catch (const std::future_error&) {
        LOG(ERROR) << "header server on port " << port_ << " stopped: " << e.what();
      }
    }
  });
  Status listening = ready_future.get();
  if (!listening.ok()) {
    thread_.join();
    server_.reset();
    return listening;
  }
  port_ = socket->getPort();
  return Status::Ok();
}

void TxnHeaderServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace participant
}  // namespace txc
