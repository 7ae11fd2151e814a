// What our servers (ThriftServer, AsyncThriftServer) share about accepted
// connections: the peer's IP, the per-peer connection limit, the rate limiter
// of their per-connection WARNING lines and the hint for a TLS handshake that
// failed because the client does not speak TLS. Internal to common/.
//
// Thread-safety: every function and every PeerConnectionCounts method may be
// called from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/log_rate_limiter.h"

namespace txc {

// Rate limits the servers' per-connection WARNING lines (keyed by peer and
// reason): one line per key every 5 s, with the count of those left out.
LogRateLimiter& ServerLogLimiter();

// The peer IP of an accepted socket descriptor ("unknown" if it cannot be read).
std::string PeerIp(int fd);

// " (the client does not speak TLS: a plaintext client on a TLS port?)" when
// OpenSSL's `reason` for a failed server handshake says the bytes were not
// TLS at all; "" otherwise.
std::string NotTlsHint(const std::string& reason);

// Connections held per peer IP, against max_connections_per_peer.
class PeerConnectionCounts {
 public:
  explicit PeerConnectionCounts(int64_t limit) : limit_(limit) {}
  int64_t limit() const { return limit_; }
  // False (and nothing counted) when `ip` already holds limit() connections.
  bool TryAcquire(const std::string& ip);
  // Gives back one connection of `ip` taken by TryAcquire.
  void Release(const std::string& ip);

 private:
  const int64_t limit_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> held_;  // guarded by mu_; ip -> open connections
};

// The rate-limited WARNING for a connection from `ip` closed at accept on
// `port` because that peer already holds counts.limit() connections.
void LogPeerLimitRefusal(const PeerConnectionCounts& counts, const std::string& ip, int port);

}  // namespace txc
