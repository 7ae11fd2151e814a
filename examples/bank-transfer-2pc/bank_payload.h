// The bank example's branch payload: "debit:<account>:<amount>" or
// "credit:<account>:<amount>". Shared by the bank service, the transfer
// client, the 2PC tests and the bench.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace bank {

struct Operation {
  bool debit = false;
  int32_t account = 0;
  int64_t amount = 0;
};

inline std::string DebitPayload(int32_t account, int64_t amount) {
  return "debit:" + std::to_string(account) + ":" + std::to_string(amount);
}
inline std::string CreditPayload(int32_t account, int64_t amount) {
  return "credit:" + std::to_string(account) + ":" + std::to_string(amount);
}

inline txc::Result<Operation> ParsePayload(const std::string& payload) {
  Operation op;
  size_t first = payload.find(':');
  size_t second = first == std::string::npos ? first : payload.find(':', first + 1);
  if (second == std::string::npos) return txc::Status::InvalidArgument("payload: " + payload);
  const std::string kind = payload.substr(0, first);
  if (kind != "debit" && kind != "credit") {
    return txc::Status::InvalidArgument("payload kind: " + kind);
  }
  op.debit = kind == "debit";
  try {
    op.account = std::stoi(payload.substr(first + 1, second - first - 1));
    op.amount = std::stoll(payload.substr(second + 1));
  } catch (const std::exception&) {
    return txc::Status::InvalidArgument("payload numbers: " + payload);
  }
  if (op.amount <= 0) return txc::Status::InvalidArgument("amount must be positive");
  return op;
}

}  // namespace bank
