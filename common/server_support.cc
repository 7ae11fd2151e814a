#include "common/server_support.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/backoff.h"

namespace txc {

LogRateLimiter& ServerLogLimiter() {
  static LogRateLimiter* limiter = new LogRateLimiter(5000);
  return *limiter;
}

std::string PeerIp(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "unknown";
  char text[INET6_ADDRSTRLEN] = {};
  const void* raw =
      addr.ss_family == AF_INET6
          ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr)
          : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&addr)->sin_addr);
  if (inet_ntop(addr.ss_family, raw, text, sizeof(text)) == nullptr) return "unknown";
  return text;
}

std::string NotTlsHint(const std::string& reason) {
  // OpenSSL's reasons for "that was not TLS at all".
  for (const char* marker : {"wrong version number", "http request", "packet length too long",
                             "unknown protocol", "record layer failure"}) {
    if (reason.find(marker) != std::string::npos) {
      return " (the client does not speak TLS: a plaintext client on a TLS port?)";
    }
  }
  return "";
}

bool PeerConnectionCounts::TryAcquire(const std::string& ip) {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t& held = held_[ip];
  if (held >= limit_) return false;
  ++held;
  return true;
}

void PeerConnectionCounts::Release(const std::string& ip) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = held_.find(ip);
  if (it == held_.end()) return;
  if (--it->second <= 0) held_.erase(it);
}

void LogPeerLimitRefusal(const PeerConnectionCounts& counts, const std::string& ip, int port) {
  const auto d = ServerLogLimiter().Admit("peer-limit " + ip, MonotonicMs());
  if (d.log) {
    LOG(WARNING) << "refused a connection from " << ip << " on port " << port
                 << ": that peer already holds " << counts.limit()
                 << " connections (max_connections_per_peer); other peers are served" << d.Suffix();
  }
}

}  // namespace txc
