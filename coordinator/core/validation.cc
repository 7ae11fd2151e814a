#include "coordinator/core/validation.h"

#include "common/thrift_util.h"

namespace txc {
namespace {

bool Printable(const std::string& s, bool allow_space) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
    if (!allow_space && c == ' ') return false;
  }
  return true;
}

}  // namespace

Status ValidateId(const std::string& field, const std::string& id) {
  if (id.empty()) return Status::InvalidArgument(field + " is required");
  if (id.size() > kMaxIdBytes) {
    return Status::InvalidArgument(field + " is longer than " + std::to_string(kMaxIdBytes) +
                                   " bytes");
  }
  if (!Printable(id, /*allow_space=*/false)) {
    return Status::InvalidArgument(field + " must be printable ASCII without spaces");
  }
  return Status::Ok();
}

Status ValidateName(const std::string& field, const std::string& name, bool required) {
  if (required && name.empty()) return Status::InvalidArgument(field + " is required");
  if (name.size() > kMaxNameBytes) {
    return Status::InvalidArgument(field + " is longer than " + std::to_string(kMaxNameBytes) +
                                   " bytes");
  }
  if (!Printable(name, /*allow_space=*/true)) {
    return Status::InvalidArgument(field + " must be printable ASCII");
  }
  return Status::Ok();
}

Status ValidateTimeoutMs(const std::string& field, int64_t timeout_ms) {
  if (timeout_ms < kMinTimeoutMs || timeout_ms > kMaxTimeoutMs) {
    return Status::InvalidArgument(field + " must be between " + std::to_string(kMinTimeoutMs) +
                                   " and " + std::to_string(kMaxTimeoutMs) + " ms, got " +
                                   std::to_string(timeout_ms));
  }
  return Status::Ok();
}

Status ValidateWaitTimeoutMs(const std::string& field, int64_t wait_timeout_ms) {
  if (wait_timeout_ms < 0 || wait_timeout_ms > kMaxTimeoutMs) {
    return Status::InvalidArgument(field + " must be between 0 and " +
                                   std::to_string(kMaxTimeoutMs) + " ms, got " +
                                   std::to_string(wait_timeout_ms));
  }
  return Status::Ok();
}

Status ValidateBranch(const BranchRecord& branch) {
  TXC_RETURN_IF_ERROR(ValidateId("branch.branch_id", branch.branch_id));
  auto endpoint = ParseEndpoint(branch.endpoint);
  if (!endpoint.ok()) {
    return Status::InvalidArgument("branch.endpoint: " + endpoint.status().message());
  }
  TXC_RETURN_IF_ERROR(ValidateName("branch.resource", branch.resource, /*required=*/false));
  if (branch.payload.size() > kMaxPayloadBytes) {
    return Status::InvalidArgument("branch.payload is larger than " +
                                   std::to_string(kMaxPayloadBytes) + " bytes");
  }
  return Status::Ok();
}

}  // namespace txc
