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

TEST(SplitListTest, OtherSeparatorKeepsCommas) {
  EXPECT_EQ(SplitList("h:1,x:2", ':'), (List{"h", "1,x", "2"}));
}

}  // namespace
}  // namespace txc
