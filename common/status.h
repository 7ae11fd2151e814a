// Status and Result<T>: how errors travel inside the project.
//
// libpqxx, sqlite and Thrift report errors by exceptions; those stop at the
// boundary where we call them and become a Status here. Every function that can
// fail returns a [[nodiscard]] Status or Result<T>, so an ignored error is a
// compiler warning (-Werror makes it an error).
#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <variant>

namespace txc {

enum class StatusCode {
  kOk = 0,
  kNotFound,           // unknown id
  kAlreadyExists,      // insert of a key that exists with different content
  kConflict,           // a conditional write's condition (state, owner, epoch) did not hold
  kIllegalTransition,  // the protocol forbids this edge
  kInvalidArgument,    // malformed input; nothing changed
  kNotOwner,           // another replica drives this transaction
  kUnavailable,        // store or peer unreachable; safe to retry
  kTimeout,            // a wait ran out
  kIndeterminate,      // a commit whose outcome the store could not report: re-read
  kInternal,           // a bug or an unexpected library error
  kCancelled,          // the caller withdrew the work before it ran (nothing was sent)
  kPermissionDenied,   // the caller's identity may not do this (policy); nothing changed
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
  static Status AlreadyExists(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }
  static Status Conflict(std::string m) { return {StatusCode::kConflict, std::move(m)}; }
  static Status IllegalTransition(std::string m) {
    return {StatusCode::kIllegalTransition, std::move(m)};
  }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status NotOwner(std::string m) { return {StatusCode::kNotOwner, std::move(m)}; }
  static Status Unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
  static Status Timeout(std::string m) { return {StatusCode::kTimeout, std::move(m)}; }
  static Status Indeterminate(std::string m) { return {StatusCode::kIndeterminate, std::move(m)}; }
  static Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
  static Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
  static Status PermissionDenied(std::string m) {
    return {StatusCode::kPermissionDenied, std::move(m)};
  }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Marks a status as deliberately ignored (e.g. a best-effort cleanup).
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.ToString(); }

// A value or the Status explaining why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace txc

#define TXC_CONCAT_INNER(a, b) a##b
#define TXC_CONCAT(a, b) TXC_CONCAT_INNER(a, b)

// Returns the status from the enclosing function if it is not OK.
#define TXC_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::txc::Status _txc_status = (expr);        \
    if (!_txc_status.ok()) return _txc_status; \
  } while (0)

// `TXC_ASSIGN_OR_RETURN(auto x, F());` declares x from a Result or returns its status.
#define TXC_ASSIGN_OR_RETURN(lhs, expr) \
  TXC_ASSIGN_OR_RETURN_IMPL(TXC_CONCAT(_txc_result_, __LINE__), lhs, expr)
#define TXC_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
