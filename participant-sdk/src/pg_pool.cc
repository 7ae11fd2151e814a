#include "pg_pool.h"

#include <glog/logging.h>

#include <chrono>
#include <cstring>

namespace txc {
namespace participant {
namespace internal {

Status StatusFromException(const std::exception& e, const std::string& what) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e)) {
    return Status::Unavailable(what + ": connection to PostgreSQL lost: " + e.what());
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e)) {
    return Status::Indeterminate(what + ": commit outcome unknown: " + e.what());
  }
  if (auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const std::string& state = sql->sqlstate();
    // 40001 serialization_failure, 40P01 deadlock_detected, 55P03 lock_not_available,
    // 57P01 admin_shutdown, 08xxx connection exceptions: transient.
    if (state == "40001" || state == "40P01" || state == "55P03" || state == "57P01" ||
        state.rfind("08", 0) == 0) {
      return Status::Unavailable(what + ": transient PostgreSQL error " + state + ": " + e.what());
    }
    return Status::Internal(what + ": PostgreSQL error " + state + ": " + e.what());
  }
  return Status::Internal(what + ": " + e.what());
}

bool QuietNotices::operator()(const char msg[]) noexcept {
  if (std::strstr(msg, "there is no transaction in progress") == nullptr) {
    VLOG(2) << "postgresql notice: " << msg;
  }
  return false;  // handled: not passed on to older handlers
}

PgPool::PgPool(std::string conninfo, size_t max_size, int64_t acquire_timeout_ms)
    : conninfo_(std::move(conninfo)),
      max_size_(max_size == 0 ? 1 : max_size),
      acquire_timeout_ms_(acquire_timeout_ms) {}

PgPool::~PgPool() = default;

Result<std::unique_ptr<PgConnection>> PgPool::Acquire() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const bool got = released_.wait_for(lock, std::chrono::milliseconds(acquire_timeout_ms_),
                                        [&] { return !idle_.empty() || in_use_ < max_size_; });
    if (!got) return Status::Timeout("all " + std::to_string(max_size_) + " connections busy");
    ++in_use_;
    if (!idle_.empty()) {
      auto conn = std::move(idle_.back());
      idle_.pop_back();
      return conn;
    }
  }
  try {
    return std::make_unique<PgConnection>(conninfo_);
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    --in_use_;
    released_.notify_one();
    return StatusFromException(e, "connect");
  }
}

void PgPool::Release(std::unique_ptr<PgConnection> conn, bool healthy) {
  std::lock_guard<std::mutex> lock(mu_);
  --in_use_;
  if (healthy && conn != nullptr && conn->conn.is_open()) idle_.push_back(std::move(conn));
  released_.notify_one();
}

void PgPool::DropIdle() {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.clear();
}

}  // namespace internal
}  // namespace participant
}  // namespace txc
