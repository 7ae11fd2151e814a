// Exponential backoff with jitter, shared by every retry loop.
#pragma once

#include <cstdint>

namespace txc {

struct BackoffPolicy {
  int64_t initial_ms = 50;
  int64_t max_ms = 5000;
  double multiplier = 2.0;
};

// Delay before retry number `attempt` (1 = the first retry): the capped
// exponential base initial * multiplier^(attempt-1), with "equal jitter":
// uniformly random in [base/2, base]. Thread-safe.
int64_t BackoffDelayMs(const BackoffPolicy& policy, int attempt);
// The same with the random draw given: `unit` in [0, 1] picks the delay in
// [base/2, base] (pure: for the protocol step functions).
int64_t BackoffDelayMs(const BackoffPolicy& policy, int attempt, double unit);
// A uniform draw in [0, 1] for the overload above (the drivers draw it and pass
// it to the step functions). Thread-safe.
double RandomUnit();

// Wall-clock unix milliseconds (what the store keeps) and a monotonic clock in
// milliseconds (for local waits and timeouts).
int64_t NowUnixMs();
int64_t MonotonicMs();

}  // namespace txc
