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
  for (size_t i = 7; i < id.size(); ++i) {
    ASSERT_TRUE((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')) << id;
  }
}

TEST(IdsTest, TimeOrderedIdsSortByMillisecondAndDoNotRepeat) {
  std::set<std::string> seen;
  std::string previous;
  for (int i = 0; i < 10000; ++i) {
    const std::string h = TimeOrderedHex128();
    ASSERT_EQ(h.size(), 32u);
    ASSERT_TRUE(seen.insert(h).second) << h;
    // The first 12 digits are the millisecond: never behind the previous id's
    // (the system clock is not stepped back during the test).
    if (!previous.empty()) {
      ASSERT_GE(h.substr(0, 12), previous.substr(0, 12)) << h;
    }
    previous = h;
  }
  // Ids of one millisecond still differ in their 80 random bits.
  const std::string a = TimeOrderedHex128(), b = TimeOrderedHex128();
  EXPECT_NE(a.substr(12), b.substr(12));
}

}  // namespace
}  // namespace txc
