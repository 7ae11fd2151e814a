// LogRateLimiter: keeps a repeated log line from flooding the log. Per key
// (e.g. an endpoint, or the message itself), the first occurrence is logged;
// later ones within `interval_ms` are only counted, and the next occurrence
// after the interval is logged with the count it stands for ("N more in the
// last Xs"). A key that stays quiet costs nothing; a burst that stops inside an
// interval is summarised on its next occurrence.
//
//   static LogRateLimiter limiter(5000);
//   if (auto d = limiter.Admit(endpoint, MonotonicMs()); d.log) {
//     LOG(WARNING) << "cannot reach " << endpoint << ": " << error << d.Suffix();
//   }
//
// Memory is bounded: at most `max_keys` keys are tracked; when a new key comes
// past that, the least recently logged key is forgotten (its next occurrence is
// logged as a first one).
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace txc {

class LogRateLimiter {
 public:
  struct Decision {
    bool log = false;        // log this occurrence
    int64_t suppressed = 0;  // occurrences not logged since the last logged one
    int64_t window_ms = 0;   // time since the last logged one (when suppressed > 0)
    // " (N more in the last Xs)" when suppressed > 0, else "".
    std::string Suffix() const;
  };

  explicit LogRateLimiter(int64_t interval_ms, size_t max_keys = 1024);

  // Decides about one occurrence of `key` at `now_ms` (any monotonic clock).
  Decision Admit(const std::string& key, int64_t now_ms);

  // Keys currently tracked (tests).
  size_t KeysForTests() const;

 private:
  struct Entry {
    int64_t last_logged_ms = 0;
    int64_t suppressed = 0;
  };

  const int64_t interval_ms_;
  const size_t max_keys_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // guarded by mu_
};

}  // namespace txc
