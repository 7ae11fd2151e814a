#include "common/header_protocol.h"

#include <arpa/inet.h>
#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TVirtualTransport.h>

#include <algorithm>
#include <cstring>

#include "common/thrift_util.h"

namespace txc {

using apache::thrift::TApplicationException;
using apache::thrift::TConfiguration;
using apache::thrift::protocol::T_BINARY_PROTOCOL;
using apache::thrift::protocol::T_COMPACT_PROTOCOL;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TCompactProtocol;
using apache::thrift::protocol::TCompactProtocolT;
using apache::thrift::protocol::TMessageType;
using apache::thrift::protocol::TProtocol;
using apache::thrift::transport::THeaderTransport;
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

  // Thrift's framed close() flushes first, and THeaderTransport's flush()
  // writes a frame even with nothing to send: every connection's end put an
  // empty frame on the wire (a server, closing input then output, logged
  // "close failed" twice when its client had gone). Only what was written and
  // not yet flushed is sent before the connection closes.
  void close() override {
    if (getWriteBytes() > 0) flush();
    connection_->close();
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

}  // namespace

LimitedHeaderProtocol::LimitedHeaderProtocol(std::shared_ptr<TTransport> connection,
                                             int64_t max_message_bytes)
    : THeaderProtocol(connection, T_BINARY_PROTOCOL),
      connection_(connection),
      max_message_bytes_(max_message_bytes) {
  // THeaderProtocol made a THeaderTransport of its own without our limits:
  // replace it (it never read or wrote a byte) by a limited one.
  auto config = MakeThriftConfig(max_message_bytes);
  auto limited = std::make_shared<LimitedHeaderTransport>(
      std::make_shared<PrefixTransport>(std::move(connection), config), config);
  trans_ = limited;
  ptrans_ = limited;
  trans_->setProtocolId(T_BINARY_PROTOCOL);
  proto_.reset();
  UsePayloadProtocol();
}

void LimitedHeaderProtocol::UsePayloadProtocol() {
  const uint16_t id = trans_->getProtocolId();
  if (proto_ != nullptr && protoId_ == id) return;
  switch (id) {
    case T_BINARY_PROTOCOL: proto_ = MakeCheckedBinaryProtocol(trans_, max_message_bytes_); break;
    case T_COMPACT_PROTOCOL:
      proto_ = std::make_shared<TCompactProtocolT<THeaderTransport>>(
          trans_, StringLimitFor(max_message_bytes_), kMaxContainerElements);
      break;
    default:
      throw TApplicationException(TApplicationException::INVALID_PROTOCOL,
                                  "unknown protocol " + std::to_string(id));
  }
  // THeaderProtocol::resetProtocol() (on every write) keeps a payload
  // protocol whose id matches: ours stays.
  protoId_ = id;
}

uint32_t LimitedHeaderProtocol::readMessageBegin_virt(std::string& name, TMessageType& type,
                                                      int32_t& seqid) {
  // THeaderProtocol::readMessageBegin with our payload protocols. A payload
  // protocol we do not know throws TApplicationException: the connection ends
  // (the stock code tries to answer it, in a format the peer does not speak).
  trans_->resetProtocol();  // reads the next frame; detects the peer's format
  UsePayloadProtocol();
  return proto_->readMessageBegin(name, type, seqid);
}

std::shared_ptr<TProtocol> LimitedHeaderProtocolFactory::getProtocol(
    std::shared_ptr<TTransport> trans) {
  return std::make_shared<LimitedHeaderProtocol>(std::move(trans), max_message_bytes_);
}

std::shared_ptr<TProtocol> LimitedHeaderProtocolFactory::getProtocol(std::shared_ptr<TTransport> in,
                                                                     std::shared_ptr<TTransport>) {
  return getProtocol(std::move(in));
}

}  // namespace txc
