#include "common/thrift_util.h"

#include <gtest/gtest.h>
#include <thrift/protocol/TProtocolException.h>
#include <thrift/transport/TBufferTransports.h>

#include <cstring>
#include <functional>

namespace txc {
namespace {

TEST(ParseEndpointTest, AcceptsHostPort) {
  auto hp = ParseEndpoint("127.0.0.1:7400");
  ASSERT_TRUE(hp.ok()) << hp.status();
  EXPECT_EQ(hp->host, "127.0.0.1");
  EXPECT_EQ(hp->port, 7400);
  auto v6 = ParseEndpoint("[::1]:80");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
}

TEST(ParseEndpointTest, RejectsMalformed) {
  for (const char* bad : {"", "host", "host:", ":80", "h:0", "h:65536", "h:12x"}) {
    auto hp = ParseEndpoint(bad);
    EXPECT_FALSE(hp.ok()) << bad;
    EXPECT_EQ(hp.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

// Bytes a store cannot keep as text (NUL, invalid UTF-8) and control characters
// are refused here, and the refusal does not quote them.
TEST(ParseEndpointTest, RejectsNonPrintableAndLongWithoutEchoingThem) {
  const std::string bad[] = {
      std::string("h\0st:80", 7),   "h\xff:80", "\xc3\xa9:80", "h\n:80", "a b:80", "h:8\t0",
      std::string(300, 'h') + ":80"};
  for (const std::string& endpoint : bad) {
    auto hp = ParseEndpoint(endpoint);
    ASSERT_FALSE(hp.ok()) << endpoint;
    EXPECT_EQ(hp.status().code(), StatusCode::kInvalidArgument);
    for (unsigned char c : hp.status().message()) {
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << hp.status().message();
    }
    EXPECT_LT(hp.status().message().size(), 200u);
  }
}

TEST(ClientPoolTest, UnreachablePeerIsUnavailable) {
  struct NoClient {
    explicit NoClient(std::shared_ptr<apache::thrift::protocol::TProtocol>) {}
  };
  ClientPool<NoClient> pool(ConnectOptions{200, 200, kDefaultMaxMessageBytes});
  bool called = false;
  // Port 1 on loopback: nothing listens there.
  Status s = pool.Call("127.0.0.1:1", [&](NoClient&) { called = true; });
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_FALSE(called);
}

// A few bytes that declare a huge container or string must be refused by the
// size limits before anything is allocated (Thrift's own check lets a list of
// 2^31-1 structs through: their minimum size is 0 bytes).
TEST(MakeProtocolFactoryTest, RefusesHugeDeclaredSizes) {
  using apache::thrift::protocol::TProtocolException;
  using apache::thrift::protocol::TType;
  auto read_with = [](const std::string& bytes, auto&& read) {
    auto buffer = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
    buffer->write(reinterpret_cast<const uint8_t*>(bytes.data()),
                  static_cast<uint32_t>(bytes.size()));
    auto protocol = MakeProtocolFactory()->getProtocol(buffer);
    try {
      read(*protocol);
    } catch (const TProtocolException& e) {
      return e.getType();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not a size limit: " << e.what();
    }
    return TProtocolException::UNKNOWN;
  };
  // list header: element type (struct = 12), then the size, big-endian.
  const std::string huge_list = std::string("\x0c\x7f\xff\xff\xff", 5);
  EXPECT_EQ(read_with(huge_list,
                      [](auto& p) {
                        TType type;
                        uint32_t size = 0;
                        p.readListBegin(type, size);
                      }),
            TProtocolException::SIZE_LIMIT);
  const std::string over_limit_list = std::string("\x0c\x00\x01\x00\x01", 5);  // 65537
  EXPECT_EQ(read_with(over_limit_list,
                      [](auto& p) {
                        TType type;
                        uint32_t size = 0;
                        p.readListBegin(type, size);
                      }),
            TProtocolException::SIZE_LIMIT);
  // A string one byte longer than the largest message.
  uint32_t big = static_cast<uint32_t>(kDefaultMaxMessageBytes + 1);
  const char string_header[4] = {static_cast<char>(big >> 24), static_cast<char>(big >> 16),
                                 static_cast<char>(big >> 8), static_cast<char>(big)};
  EXPECT_EQ(read_with(std::string(string_header, 4),
                      [](auto& p) {
                        std::string s;
                        p.readString(s);
                      }),
            TProtocolException::SIZE_LIMIT);
  // Within the limits a list reads normally.
  const std::string small_list = std::string("\x0b\x00\x00\x00\x02", 5);
  EXPECT_EQ(read_with(small_list,
                      [](auto& p) {
                        TType type;
                        uint32_t size = 0;
                        p.readListBegin(type, size);
                        EXPECT_EQ(size, 2u);
                        throw TProtocolException(TProtocolException::UNKNOWN, "read");
                      }),
            TProtocolException::UNKNOWN);
}

// Type bytes outside the binary protocol's types are refused before they become
// a TType/TMessageType (an enum load of such a value is undefined behaviour that
// UBSan aborts on; unchecked Thrift 0.17 just returns them).
TEST(MakeProtocolFactoryTest, RefusesInvalidTypeBytes) {
  using apache::thrift::protocol::TMessageType;
  using apache::thrift::protocol::TProtocol;
  using apache::thrift::protocol::TProtocolException;
  using apache::thrift::protocol::TType;
  auto error_of = [](const std::string& bytes, const std::function<void(TProtocol&)>& read) {
    auto buffer = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
    buffer->write(reinterpret_cast<const uint8_t*>(bytes.data()),
                  static_cast<uint32_t>(bytes.size()));
    auto protocol = MakeProtocolFactory()->getProtocol(buffer);
    try {
      read(*protocol);
    } catch (const TProtocolException& e) {
      return static_cast<int>(e.getType());
    } catch (const std::exception& e) {
      return -1;
    }
    return 0;
  };
  const int kInvalid = TProtocolException::INVALID_DATA;
  std::string name;
  TType t1, t2;
  int16_t id = 0;
  uint32_t size = 0;
  int32_t seqid = 0;
  for (char bad : {'\x63', '\x7f', '\xff', '\x01', '\x05', '\x10', '\x11'}) {
    const std::string tail = std::string("\x00\x01\x00\x00\x00\x01\x00\x00", 8);
    EXPECT_EQ(
        error_of(std::string(1, bad) + tail, [&](TProtocol& p) { p.readFieldBegin(name, t1, id); }),
        kInvalid)
        << int(bad);
    EXPECT_EQ(
        error_of(std::string(1, bad) + tail, [&](TProtocol& p) { p.readListBegin(t1, size); }),
        kInvalid);
    EXPECT_EQ(error_of(std::string(1, bad) + tail, [&](TProtocol& p) { p.readSetBegin(t1, size); }),
              kInvalid);
    EXPECT_EQ(error_of(std::string("\x0b", 1) + std::string(1, bad) + tail,
                       [&](TProtocol& p) { p.readMapBegin(t1, t2, size); }),
              kInvalid);
    // A struct holding a field of that type: skip() must refuse it too.
    EXPECT_EQ(error_of(std::string(1, bad) + tail,
                       [&](TProtocol& p) { p.skip(apache::thrift::protocol::T_STRUCT); }),
              kInvalid);
    // A list of such elements inside a struct being skipped.
    EXPECT_EQ(error_of(std::string("\x0f\x00\x01", 3) + std::string(1, bad) + tail,
                       [&](TProtocol& p) { p.skip(apache::thrift::protocol::T_STRUCT); }),
              kInvalid);
  }
  // Message type byte 99 (strict header 0x8001 00 63), name "x", seqid 1.
  TMessageType message_type;
  EXPECT_EQ(error_of(std::string("\x80\x01\x00\x63\x00\x00\x00\x01x\x00\x00\x00\x01", 13),
                     [&](TProtocol& p) { p.readMessageBegin(name, message_type, seqid); }),
            kInvalid);
  // Valid bytes still read: field i32 #7, a list of 2 strings, a call message.
  EXPECT_EQ(error_of(std::string("\x08\x00\x07", 3),
                     [&](TProtocol& p) {
                       p.readFieldBegin(name, t1, id);
                       EXPECT_EQ(t1, apache::thrift::protocol::T_I32);
                       EXPECT_EQ(id, 7);
                     }),
            0);
  EXPECT_EQ(error_of(std::string("\x00", 1),
                     [&](TProtocol& p) {
                       p.readFieldBegin(name, t1, id);
                       EXPECT_EQ(t1, apache::thrift::protocol::T_STOP);
                     }),
            0);
  EXPECT_EQ(error_of(std::string("\x80\x01\x00\x01\x00\x00\x00\x01x\x00\x00\x00\x01", 13),
                     [&](TProtocol& p) {
                       p.readMessageBegin(name, message_type, seqid);
                       EXPECT_EQ(message_type, apache::thrift::protocol::T_CALL);
                       EXPECT_EQ(name, "x");
                     }),
            0);
}

}  // namespace
}  // namespace txc
