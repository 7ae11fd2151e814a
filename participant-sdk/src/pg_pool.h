// Private: a small pool of libpqxx connections and the one place pqxx
// exceptions become a Status.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>

#include "common/status.h"

namespace txc {
namespace participant {
namespace internal {

// Maps a libpqxx (or other) exception to a Status:
//   broken_connection -> kUnavailable, in_doubt_error -> kIndeterminate,
//   serialization/deadlock/lock-not-available -> kUnavailable (retry),
//   anything else -> kInternal.
Status StatusFromException(const std::exception& e, const std::string& what);

// Swallows the server's "there is no transaction in progress" warning that
// ending a pqxx::work after PREPARE TRANSACTION produces; logs other notices at VLOG(2).
class QuietNotices : public pqxx::errorhandler {
 public:
  explicit QuietNotices(pqxx::connection_base& conn) : pqxx::errorhandler(conn) {}
  bool operator()(const char msg[]) noexcept override;
};

// A connection with its notice handler (destroyed before the connection).
struct PgConnection {
  explicit PgConnection(const std::string& conninfo) : conn(conninfo), notices(conn) {}
  pqxx::connection conn;
  QuietNotices notices;
};

// At most max_size connections to conninfo, handed out one per caller.
// Thread-safe.
class PgPool {
 public:
  PgPool(std::string conninfo, size_t max_size, int64_t acquire_timeout_ms = 10000);
  ~PgPool();

  // An idle connection or a new one. kUnavailable when PostgreSQL cannot be
  // reached; kTimeout when max_size connections stayed busy past the timeout.
  Result<std::unique_ptr<PgConnection>> Acquire();
  // Returns a connection. healthy=false drops it (e.g. after broken_connection).
  void Release(std::unique_ptr<PgConnection> conn, bool healthy);
  // Closes idle connections (their server sessions end).
  void DropIdle();

  const std::string& conninfo() const { return conninfo_; }

 private:
  const std::string conninfo_;
  const size_t max_size_;
  const int64_t acquire_timeout_ms_;
  std::mutex mu_;  // guards idle_ and in_use_
  std::condition_variable released_;
  std::deque<std::unique_ptr<PgConnection>> idle_;
  size_t in_use_ = 0;
};

}  // namespace internal
}  // namespace participant
}  // namespace txc
