#include "coordinator/store/store_util.h"

#include <gtest/gtest.h>

namespace txc {
namespace store_internal {
namespace {

TEST(StoreUtilTest, StringListRoundTripsAnyBytes) {
  std::vector<std::vector<std::string>> cases = {
      {}, {""}, {"a"}, {"step-1", "step-2"}, {std::string("x\0y", 3), "12:34", ":"}};
  for (const auto& items : cases) {
    auto decoded = DecodeStringList(EncodeStringList(items));
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, items);
  }
}

TEST(StoreUtilTest, MalformedListIsAnError) {
  EXPECT_FALSE(DecodeStringList("3:ab").ok());
  EXPECT_FALSE(DecodeStringList("x:ab").ok());
  EXPECT_FALSE(DecodeStringList(":ab").ok());
}

TEST(StoreUtilTest, MasksAndLists) {
  EXPECT_EQ(StateMask(std::vector<TxnState>{}), 0);
  EXPECT_EQ(StateMask({TxnState::kActive, TxnState::kPreparing}), (1 << 1) | (1 << 2));
  EXPECT_EQ(StateMask(std::vector<BranchState>{BranchState::kSkipped}), int64_t{1} << 16);
  EXPECT_EQ(StateList({TxnState::kActive, TxnState::kRunning}), "1,10");
  for (TxnState s : UnfinishedTxnStates()) EXPECT_FALSE(IsFinal(s));
  EXPECT_EQ(UnfinishedTxnStates().size() + 4, AllTxnStates().size());
}

// The byte-by-byte rule, the reference for the word-at-a-time fast path.
bool StorableByBytes(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xe  ? 3
                       : (c >> 3) == 0x1e ? 4
                                          : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += len;
  }
  return true;
}

TEST(StoreUtilTest, StorableTextIsUtf8WithoutNulAtEveryPosition) {
  EXPECT_TRUE(IsStorableText(""));
  EXPECT_TRUE(IsStorableText("127.0.0.1:9090 participant-a"));
  EXPECT_TRUE(IsStorableText("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 and a long ASCII tail"));
  // A NUL, a stray continuation byte, a cut sequence and an invalid lead byte,
  // at every offset of a 40-byte ASCII string (in and across 8-byte words).
  const std::string bad[] = {std::string(1, '\0'), "\x80", "\xc3", "\xff", "\xe2\x82"};
  for (const std::string& b : bad) {
    for (size_t at = 0; at <= 40; ++at) {
      std::string s(40, 'a');
      s.insert(at, b);
      EXPECT_FALSE(IsStorableText(s)) << "at " << at;
      EXPECT_EQ(IsStorableText(s), StorableByBytes(s));
    }
  }
  // Random bytes: the same answer as the byte-by-byte rule.
  uint32_t x = 12345;
  for (int n = 0; n < 20000; ++n) {
    std::string s(static_cast<size_t>(n % 37), 'a');
    for (char& c : s) {
      x = x * 1103515245u + 12345u;
      const uint32_t r = (x >> 16) & 0xff;
      c = static_cast<char>(r < 200 ? 'a' + r % 26 : r);  // mostly ASCII
    }
    ASSERT_EQ(IsStorableText(s), StorableByBytes(s)) << n;
  }
}

}  // namespace
}  // namespace store_internal
}  // namespace txc
