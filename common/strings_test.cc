#include "common/strings.h"

#include <gtest/gtest.h>

namespace txc {
namespace {

using List = std::vector<std::string>;

TEST(SplitListTest, SkipsEmptyItems) {
  EXPECT_EQ(SplitList("a,b"), (List{"a", "b"}));
  EXPECT_EQ(SplitList(",a,,b,"), (List{"a", "b"}));
  EXPECT_EQ(SplitList(""), List{});
  EXPECT_EQ(SplitList(",,"), List{});
}

TEST(ParseInt64Test, WholeDecimalNumbersOnly) {
  EXPECT_EQ(*ParseInt64("7000"), 7000);
  EXPECT_EQ(*ParseInt64("-12"), -12);
  EXPECT_EQ(*ParseInt64("+3"), 3);
  EXPECT_EQ(*ParseInt64("9223372036854775807"), INT64_MAX);
  for (const char* bad : {"", " 1", "1 ", "1x", "1.5", "-", "+", "x", "9223372036854775808"}) {
    EXPECT_EQ(ParseInt64(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(LogSafeTest, EscapesWhatCouldForgeALogLineAndCutsLongInput) {
  EXPECT_EQ(LogSafe("order-17:b1"), "order-17:b1");
  EXPECT_EQ(LogSafe("x\nE20261202 forged"), "x\\x0aE20261202 forged");
  EXPECT_EQ(LogSafe(std::string("a\0b\r\\", 5)), "a\\x00b\\x0d\\x5c");
  EXPECT_EQ(LogSafe("\xff\x7f"), "\\xff\\x7f");
  const std::string big(1 << 20, 'g');
  EXPECT_EQ(LogSafe(big, 4), "gggg...(1048576 bytes)");
  EXPECT_EQ(LogSafe(big).size(), 160 + std::string("...(1048576 bytes)").size());
}

TEST(SplitListTest, OtherSeparatorKeepsCommas) {
  EXPECT_EQ(SplitList("h:1,x:2", ':'), (List{"h", "1,x", "2"}));
}

}  // namespace
}  // namespace txc
