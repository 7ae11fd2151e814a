#include "common/backoff.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>

namespace txc {

namespace {

int64_t BaseDelayMs(const BackoffPolicy& policy, int attempt) {
  const double exponent = std::max(0, attempt - 1);
  const double raw = static_cast<double>(policy.initial_ms) * std::pow(policy.multiplier, exponent);
  return std::max<int64_t>(1, static_cast<int64_t>(std::min<double>(raw, policy.max_ms)));
}

}  // namespace

int64_t BackoffDelayMs(const BackoffPolicy& policy, int attempt) {
  return BackoffDelayMs(policy, attempt, RandomUnit());
}

double RandomUnit() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

int64_t BackoffDelayMs(const BackoffPolicy& policy, int attempt, double unit) {
  const int64_t base = BaseDelayMs(policy, attempt);
  const double u = std::min(1.0, std::max(0.0, unit));
  return base / 2 + static_cast<int64_t>(u * static_cast<double>(base - base / 2));
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t MonotonicMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace txc
