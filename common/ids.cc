#include "common/ids.h"

#include <pthread.h>
#include <sys/random.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>

namespace txc {
namespace {

void KernelRandomBytes(unsigned char* buf, size_t n) {
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

// Bumped in every forked child: a thread's buffered bytes are then stale (the
// parent may hand out the same ones).
std::atomic<uint64_t> fork_generation{0};
std::once_flag at_fork_once;

// Random bytes from a per-thread buffer of the kernel's CSPRNG output, refilled
// 256 bytes at a time: one getrandom call per ~25 ids instead of one per id
// (a system call per transaction, expensive on this virtualised kernel).
void RandomBytes(unsigned char* buf, size_t n) {
  struct Pool {
    unsigned char bytes[256];
    size_t used = sizeof(bytes);
    uint64_t generation = 0;
  };
  thread_local Pool pool;
  std::call_once(at_fork_once,
                 [] { pthread_atfork(nullptr, nullptr, [] { fork_generation.fetch_add(1); }); });
  const uint64_t generation = fork_generation.load();
  if (pool.generation != generation) {
    pool.used = sizeof(pool.bytes);
    pool.generation = generation;
  }
  if (n > sizeof(pool.bytes)) {
    KernelRandomBytes(buf, n);
    return;
  }
  if (sizeof(pool.bytes) - pool.used < n) {
    KernelRandomBytes(pool.bytes, sizeof(pool.bytes));
    pool.used = 0;
  }
  std::memcpy(buf, pool.bytes + pool.used, n);
  // Handed-out bytes are not kept.
  std::memset(pool.bytes + pool.used, 0, n);
  pool.used += n;
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
