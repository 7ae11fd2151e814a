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

// Checks that `data` is a well-formed binary-protocol struct whose type bytes
// are all valid, before Thrift reads it: Thrift casts an unchecked byte to its
// TType enum, which is undefined behaviour for garbage input.
class BinaryStructChecker {
 public:
  BinaryStructChecker(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool Check() { return Struct(0) && p_ == end_; }

 private:
  static bool ValidType(uint8_t t) {
    switch (t) {
      case 2:
      case 3:
      case 4:
      case 6:
      case 8:
      case 10:
      case 11:
      case 12:
      case 13:
      case 14:
      case 15: return true;
      default: return false;
    }
  }
  bool Take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) return false;
    p_ += n;
    return true;
  }
  bool Byte(uint8_t* out) {
    if (p_ >= end_) return false;
    *out = *p_++;
    return true;
  }
  bool Length(uint32_t* out) {
    if (end_ - p_ < 4) return false;
    *out = (uint32_t{p_[0]} << 24) | (uint32_t{p_[1]} << 16) | (uint32_t{p_[2]} << 8) | p_[3];
    p_ += 4;
    return *out <= static_cast<uint32_t>(end_ - p_);  // never more elements than bytes left
  }
  bool Value(uint8_t type, int depth) {
    if (depth > 16) return false;
    uint8_t k = 0, v = 0;
    uint32_t n = 0;
    switch (type) {
      case 2:
      case 3: return Take(1);
      case 6: return Take(2);
      case 8: return Take(4);
      case 4:
      case 10: return Take(8);
      case 11: return Length(&n) && Take(n);
      case 12: return Struct(depth + 1);
      case 13:
        if (!Byte(&k) || !Byte(&v) || !ValidType(k) || !ValidType(v) || !Length(&n)) return false;
        for (uint32_t i = 0; i < n; ++i) {
          if (!Value(k, depth + 1) || !Value(v, depth + 1)) return false;
        }
        return true;
      case 14:
      case 15:
        if (!Byte(&v) || !ValidType(v) || !Length(&n)) return false;
        for (uint32_t i = 0; i < n; ++i) {
          if (!Value(v, depth + 1)) return false;
        }
        return true;
      default: return false;
    }
  }
  bool Struct(int depth) {
    while (true) {
      uint8_t type = 0;
      if (!Byte(&type)) return false;
      if (type == 0) return true;  // T_STOP
      if (!ValidType(type) || !Take(2) || !Value(type, depth)) return false;
    }
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

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
  if (!BinaryStructChecker(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()).Check()) {
    return Status::InvalidArgument("txn context: not a Thrift binary struct");
  }
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
