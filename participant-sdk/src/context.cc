#include "txc/participant/context.h"

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <array>

#include "common/thrift_util.h"

namespace txc {
namespace participant {

using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TMemoryBuffer;

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string Base64UrlEncode(const uint8_t* data, size_t size) {
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  const size_t rest = size - i;
  if (rest == 1) {
    const uint32_t v = data[i] << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
  } else if (rest == 2) {
    const uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
  }
  return out;
}

Result<std::string> Base64UrlDecode(const std::string& text) {
  std::array<int, 256> value;
  value.fill(-1);
  for (int i = 0; i < 64; ++i) value[static_cast<uint8_t>(kAlphabet[i])] = i;
  if (text.size() % 4 == 1) return Status::InvalidArgument("txn context: bad base64url length");
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const int v = value[static_cast<uint8_t>(c)];
    if (v < 0) return Status::InvalidArgument("txn context: not base64url");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

thread_local const wire::TxnContext* current_context = nullptr;

}  // namespace

std::string EncodeTxnContext(const wire::TxnContext& context) {
  auto buffer = std::make_shared<TMemoryBuffer>();
  TBinaryProtocol protocol(buffer);
  context.write(&protocol);
  uint8_t* data = nullptr;
  uint32_t size = 0;
  buffer->getBuffer(&data, &size);
  return Base64UrlEncode(data, size);
}

Result<wire::TxnContext> DecodeTxnContext(const std::string& encoded) {
  if (encoded.empty()) return Status::InvalidArgument("txn context: empty");
  if (encoded.size() > kMaxEncodedTxnContext) {
    return Status::InvalidArgument("txn context: longer than " +
                                   std::to_string(kMaxEncodedTxnContext) + " characters");
  }
  TXC_ASSIGN_OR_RETURN(std::string bytes, Base64UrlDecode(encoded));
  auto buffer = std::make_shared<TMemoryBuffer>(
      reinterpret_cast<uint8_t*>(bytes.data()), static_cast<uint32_t>(bytes.size()),
      TMemoryBuffer::OBSERVE, MakeThriftConfig(static_cast<int64_t>(bytes.size()) + 1));
  TBinaryProtocol protocol(buffer);
  wire::TxnContext context;
  try {
    context.read(&protocol);
  } catch (const apache::thrift::TException& e) {
    return Status::InvalidArgument(std::string("txn context: not a TxnContext: ") + e.what());
  }
  if (buffer->available_read() != 0) {
    return Status::InvalidArgument("txn context: trailing bytes");
  }
  if (context.gtid.empty()) return Status::InvalidArgument("txn context: empty gtid");
  return context;
}

ScopedTxnContext::ScopedTxnContext(wire::TxnContext context)
    : context_(std::move(context)), previous_(current_context) {
  current_context = &context_;
}

ScopedTxnContext::~ScopedTxnContext() { current_context = previous_; }

const wire::TxnContext* CurrentTxnContext() { return current_context; }

}  // namespace participant
}  // namespace txc
