#include "common/backoff.h"

#include <gtest/gtest.h>

namespace txc {
namespace {

TEST(BackoffTest, GrowsExponentiallyWithinJitterBounds) {
  BackoffPolicy policy{100, 10000, 2.0};
  for (int i = 0; i < 200; ++i) {
    int64_t first = BackoffDelayMs(policy, 1);
    EXPECT_GE(first, 50);
    EXPECT_LE(first, 100);
    int64_t fourth = BackoffDelayMs(policy, 4);
    EXPECT_GE(fourth, 400);
    EXPECT_LE(fourth, 800);
  }
}

TEST(BackoffTest, CapsAtMaximum) {
  BackoffPolicy policy{100, 1000, 2.0};
  for (int i = 0; i < 200; ++i) {
    int64_t d = BackoffDelayMs(policy, 50);
    EXPECT_GE(d, 500);
    EXPECT_LE(d, 1000);
  }
}

TEST(BackoffTest, JitterSpreadsRetries) {
  BackoffPolicy policy{1000, 1000, 2.0};
  int64_t lo = 1 << 30, hi = 0;
  for (int i = 0; i < 500; ++i) {
    int64_t d = BackoffDelayMs(policy, 1);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GT(hi - lo, 100) << "delays are not jittered";
}

}  // namespace
}  // namespace txc
