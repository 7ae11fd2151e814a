#include "common/log_rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace txc {
namespace {

TEST(LogRateLimiterTest, FirstOccurrenceIsLoggedThenRepeatsAreCounted) {
  LogRateLimiter limiter(5000);
  auto first = limiter.Admit("127.0.0.1:7101", 1000);
  EXPECT_TRUE(first.log);
  EXPECT_EQ(first.suppressed, 0);
  EXPECT_EQ(first.Suffix(), "");
  for (int i = 1; i <= 99; ++i) EXPECT_FALSE(limiter.Admit("127.0.0.1:7101", 1000 + i * 10).log);
  // The next one after the interval is logged and stands for the 99 before it.
  auto summary = limiter.Admit("127.0.0.1:7101", 6000);
  EXPECT_TRUE(summary.log);
  EXPECT_EQ(summary.suppressed, 99);
  EXPECT_EQ(summary.window_ms, 5000);
  EXPECT_EQ(summary.Suffix(), " (99 more in the last 5.0s)");
  // And the count starts again.
  EXPECT_FALSE(limiter.Admit("127.0.0.1:7101", 6001).log);
  auto next = limiter.Admit("127.0.0.1:7101", 12000);
  EXPECT_TRUE(next.log);
  EXPECT_EQ(next.suppressed, 1);
}

TEST(LogRateLimiterTest, QuietKeyIsLoggedWithoutASummary) {
  LogRateLimiter limiter(1000);
  EXPECT_TRUE(limiter.Admit("a", 0).log);
  auto later = limiter.Admit("a", 60000);
  EXPECT_TRUE(later.log);
  EXPECT_EQ(later.suppressed, 0);
  EXPECT_EQ(later.Suffix(), "");
}

TEST(LogRateLimiterTest, KeysAreIndependent) {
  LogRateLimiter limiter(1000);
  EXPECT_TRUE(limiter.Admit("bank-a", 0).log);
  EXPECT_TRUE(limiter.Admit("bank-b", 1).log);
  EXPECT_FALSE(limiter.Admit("bank-a", 2).log);
  EXPECT_FALSE(limiter.Admit("bank-b", 3).log);
  EXPECT_EQ(limiter.Admit("bank-a", 1000).suppressed, 1);
}

TEST(LogRateLimiterTest, TracksAtMostMaxKeysForgettingTheOldest) {
  LogRateLimiter limiter(1000, 3);
  EXPECT_TRUE(limiter.Admit("a", 0).log);
  EXPECT_TRUE(limiter.Admit("b", 1).log);
  EXPECT_TRUE(limiter.Admit("c", 2).log);
  EXPECT_TRUE(limiter.Admit("d", 3).log);  // forgets "a"
  EXPECT_EQ(limiter.KeysForTests(), 3u);
  EXPECT_FALSE(limiter.Admit("b", 4).log);
  EXPECT_TRUE(limiter.Admit("a", 5).log);  // forgotten: logged as new
}

TEST(LogRateLimiterTest, ConcurrentCallersLogOncePerInterval) {
  LogRateLimiter limiter(1000000);
  std::atomic<int> logged{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (limiter.Admit("x", i).log) logged.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(logged.load(), 1);
  EXPECT_EQ(limiter.Admit("x", 2000000).suppressed, 3999);
}

}  // namespace
}  // namespace txc
