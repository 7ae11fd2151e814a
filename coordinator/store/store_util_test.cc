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

}  // namespace
}  // namespace store_internal
}  // namespace txc
