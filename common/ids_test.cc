#include "common/ids.h"

#include <gtest/gtest.h>

#include <set>

namespace txc {
namespace {

TEST(IdsTest, RandomHex128IsThirtyTwoHexDigitsAndDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string h = RandomHex128();
    ASSERT_EQ(h.size(), 32u);
    for (char c : h) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
    ASSERT_TRUE(seen.insert(h).second) << h;
  }
}

TEST(IdsTest, IdPrefixKeepsSafeCharactersOnly) {
  EXPECT_EQ(IdPrefix("node-a.1_x"), "node-a.1_x");
  EXPECT_EQ(IdPrefix("node a/b"), "node_a_b");
  EXPECT_EQ(IdPrefix(""), "txc");
  EXPECT_EQ(IdPrefix(std::string(100, 'n')).size(), kMaxIdPrefixBytes);
}

TEST(IdsTest, NewIdIsPrefixDashHex) {
  const std::string id = NewId("node-a");
  EXPECT_EQ(id.rfind("node-a-", 0), 0u);
  EXPECT_EQ(id.size(), 7u + 32u);
}

}  // namespace
}  // namespace txc
