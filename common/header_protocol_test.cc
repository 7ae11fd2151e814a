#include "common/header_protocol.h"

#include <gtest/gtest.h>
#include <thrift/transport/TBufferTransports.h>

#include <memory>

namespace txc {
namespace {

using apache::thrift::protocol::T_CALL;
using apache::thrift::transport::TMemoryBuffer;

// Closing a connection sends nothing: Thrift's framed close() flushes first,
// and THeaderTransport's flush() writes a frame even with nothing to send, so
// every header connection's end used to put an empty frame on the wire (a
// server logged "TConnectedClient output close failed: Broken pipe" whenever
// the client had already gone, or "write on non-open socket" closing its
// output after its input).
TEST(LimitedHeaderProtocolTest, CloseSendsNothing) {
  auto wire = std::make_shared<TMemoryBuffer>();
  LimitedHeaderProtocol protocol(wire, 1 << 20);
  protocol.getTransport()->close();
  EXPECT_EQ(wire->available_read(), 0u);
}

TEST(LimitedHeaderProtocolTest, CloseAfterAMessageSendsOnlyTheMessage) {
  auto wire = std::make_shared<TMemoryBuffer>();
  LimitedHeaderProtocol protocol(wire, 1 << 20);
  protocol.writeMessageBegin("ping", T_CALL, 7);
  protocol.writeStructBegin("args");
  protocol.writeFieldStop();
  protocol.writeStructEnd();
  protocol.writeMessageEnd();
  protocol.getTransport()->writeEnd();
  protocol.getTransport()->flush();
  const uint32_t sent = wire->available_read();
  EXPECT_GT(sent, 0u);
  protocol.getTransport()->close();
  protocol.getTransport()->close();  // a server closes its input, then its output: the same one
  EXPECT_EQ(wire->available_read(), sent);
}

}  // namespace
}  // namespace txc
