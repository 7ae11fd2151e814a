#include "common/log_rate_limiter.h"

#include <cstdio>

namespace txc {

std::string LogRateLimiter::Decision::Suffix() const {
  if (suppressed <= 0) return "";
  char buf[96];
  std::snprintf(buf, sizeof(buf), " (%lld more in the last %.1fs)",
                static_cast<long long>(suppressed), static_cast<double>(window_ms) / 1000.0);
  return buf;
}

LogRateLimiter::LogRateLimiter(int64_t interval_ms, size_t max_keys)
    : interval_ms_(interval_ms), max_keys_(max_keys < 1 ? 1 : max_keys) {}

LogRateLimiter::Decision LogRateLimiter::Admit(const std::string& key, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  Decision d;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= max_keys_) {
      auto oldest = entries_.begin();
      for (auto e = entries_.begin(); e != entries_.end(); ++e) {
        if (e->second.last_logged_ms < oldest->second.last_logged_ms) oldest = e;
      }
      entries_.erase(oldest);
    }
    entries_[key] = Entry{now_ms, 0};
    d.log = true;
    return d;
  }
  Entry& e = it->second;
  if (now_ms - e.last_logged_ms < interval_ms_) {
    ++e.suppressed;
    return d;
  }
  d.log = true;
  d.suppressed = e.suppressed;
  d.window_ms = now_ms - e.last_logged_ms;
  e.last_logged_ms = now_ms;
  e.suppressed = 0;
  return d;
}

size_t LogRateLimiter::KeysForTests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace txc
