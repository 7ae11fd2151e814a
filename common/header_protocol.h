// THeader with our limits, for ThriftServer (ThriftWire::kHeader) and for the
// clients that talk to it (the SDK's TxnHeaderClient).
//
// Thrift 0.17's THeaderTransport reads a whole frame before looking at it
// and checks it only against 1 GiB, counts consumed bytes for the life of the
// connection (the ~100 MiB bug of STACK-NOTES, as TFramedTransport), and
// decodes the payload with stock binary/compact protocols that trust declared
// container sizes. LimitedHeaderProtocol fixes all three:
// * a frame larger than max_message_bytes is refused from its four size bytes,
//   before a byte of it is buffered (unframed binary/compact clients, which
//   THeader also serves, are bounded by the message limit instead);
// * the consumed-bytes budget is reset at the end of every message;
// * a binary payload is read by the same checked protocol as our framed
//   servers (MakeCheckedBinaryProtocol: string/container limits, type bytes
//   checked); a compact payload gets the string and container limits.
//
// A server makes one per connection over the accepted socket (plain or TLS);
// the header transport detects per connection whether the client speaks
// THeader, framed or unframed binary, or compact, and answers in that format.
// Thread-safety: one protocol object per connection, used by one thread.
#pragma once

#include <thrift/protocol/THeaderProtocol.h>

#include <cstdint>
#include <memory>
#include <string>

namespace txc {

class LimitedHeaderProtocol : public apache::thrift::protocol::THeaderProtocol {
 public:
  // Over `connection` (an open or openable raw transport, normally a TSocket);
  // binary payload for what this side writes first.
  LimitedHeaderProtocol(std::shared_ptr<apache::thrift::transport::TTransport> connection,
                        int64_t max_message_bytes);

  // The raw connection under the header transport (the accepted socket on a
  // server).
  const std::shared_ptr<apache::thrift::transport::TTransport>& connection() const {
    return connection_;
  }

  uint32_t readMessageBegin_virt(std::string& name, apache::thrift::protocol::TMessageType& type,
                                 int32_t& seqid) override;

 private:
  // Makes proto_ our checked protocol for the payload format the last frame used.
  void UsePayloadProtocol();

  const std::shared_ptr<apache::thrift::transport::TTransport> connection_;
  const int64_t max_message_bytes_;
};

// Builds LimitedHeaderProtocols for a server. Use it as the input protocol
// factory with a null output factory, so a connection's reply goes out through
// the same header transport (in the format the client used).
class LimitedHeaderProtocolFactory : public apache::thrift::protocol::TProtocolFactory {
 public:
  explicit LimitedHeaderProtocolFactory(int64_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}
  std::shared_ptr<apache::thrift::protocol::TProtocol> getProtocol(
      std::shared_ptr<apache::thrift::transport::TTransport> trans) override;
  // A server's input and output transports are both the accepted socket.
  std::shared_ptr<apache::thrift::protocol::TProtocol> getProtocol(
      std::shared_ptr<apache::thrift::transport::TTransport> in,
      std::shared_ptr<apache::thrift::transport::TTransport> out) override;

 private:
  const int64_t max_message_bytes_;
};

}  // namespace txc
