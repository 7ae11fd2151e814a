#include "common/ids.h"

#include <sys/random.h>

#include <random>

namespace txc {
namespace {

void RandomBytes(unsigned char* buf, size_t n) {
  size_t filled = 0;
  while (filled < n) {
    const ssize_t got = getrandom(buf + filled, n - filled, 0);
    if (got <= 0) break;
    filled += static_cast<size_t>(got);
  }
  if (filled < n) {
    // getrandom is unavailable (very old kernel): fall back to random_device.
    thread_local std::random_device device;
    for (; filled < n; ++filled) buf[filled] = static_cast<unsigned char>(device());
  }
}

}  // namespace

std::string RandomHex128() {
  unsigned char bits[16];
  RandomBytes(bits, sizeof(bits));
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(2 * sizeof(bits), '0');
  for (size_t i = 0; i < sizeof(bits); ++i) {
    hex[2 * i] = kDigits[bits[i] >> 4];
    hex[2 * i + 1] = kDigits[bits[i] & 0xf];
  }
  return hex;
}

std::string IdPrefix(const std::string& name) {
  std::string out;
  for (char c : name) {
    if (out.size() >= kMaxIdPrefixBytes) break;
    const bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-' || c == '_';
    out.push_back(safe ? c : '_');
  }
  return out.empty() ? "txc" : out;
}

std::string NewId(const std::string& prefix) { return prefix + "-" + RandomHex128(); }

}  // namespace txc
