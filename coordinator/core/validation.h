// Input validation shared by every entry point. Pure functions; each returns
// kInvalidArgument naming the offending field, so nothing is changed on bad input.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "coordinator/core/records.h"

namespace txc {

constexpr size_t kMaxIdBytes = 128;
constexpr size_t kMaxNameBytes = 256;
constexpr size_t kMaxPayloadBytes = 1024 * 1024;
constexpr int64_t kMinTimeoutMs = 1;
constexpr int64_t kMaxTimeoutMs = 7LL * 24 * 3600 * 1000;  // a week
constexpr int kMaxBranches = 1000;

// 1..kMaxIdBytes printable ASCII without spaces.
Status ValidateId(const std::string& field, const std::string& id);
// 0..kMaxNameBytes printable ASCII (empty allowed when !required).
Status ValidateName(const std::string& field, const std::string& name, bool required);
Status ValidateTimeoutMs(const std::string& field, int64_t timeout_ms);
// How long a call may wait for an outcome: 0 (do not wait) .. kMaxTimeoutMs.
Status ValidateWaitTimeoutMs(const std::string& field, int64_t wait_timeout_ms);
// branch_id, endpoint ("host:port"), resource and payload size of a 2PC branch.
Status ValidateBranch(const BranchRecord& branch);

}  // namespace txc
