#include "common/ids.h"

#include <sys/random.h>

#include <chrono>
#include <cstdint>
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

std::string Hex(const unsigned char* bits, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    hex[2 * i] = kDigits[bits[i] >> 4];
    hex[2 * i + 1] = kDigits[bits[i] & 0xf];
  }
  return hex;
}

}  // namespace

std::string RandomHex128() {
  unsigned char bits[16];
  RandomBytes(bits, sizeof(bits));
  return Hex(bits, sizeof(bits));
}

std::string TimeOrderedHex128() {
  unsigned char bits[16];
  const uint64_t ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                std::chrono::system_clock::now().time_since_epoch())
                                                .count());
  for (int i = 0; i < 6; ++i) bits[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  RandomBytes(bits + 6, sizeof(bits) - 6);
  return Hex(bits, sizeof(bits));
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

std::string NewId(const std::string& prefix) { return prefix + "-" + TimeOrderedHex128(); }

}  // namespace txc
