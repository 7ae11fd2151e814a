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

TEST(SplitListTest, OtherSeparatorKeepsCommas) {
  EXPECT_EQ(SplitList("h:1,x:2", ':'), (List{"h", "1,x", "2"}));
}

}  // namespace
}  // namespace txc
