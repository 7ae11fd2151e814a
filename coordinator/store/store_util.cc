#include "coordinator/store/store_util.h"

#include "coordinator/store/txn_store.h"

namespace txc {
namespace store_internal {

const std::vector<TxnState>& AllTxnStates() {
  static const std::vector<TxnState> kAll = {
      TxnState::kActive,       TxnState::kPreparing,   TxnState::kCommitting, TxnState::kCommitted,
      TxnState::kAborting,     TxnState::kAborted,     TxnState::kRunning,    TxnState::kSucceeded,
      TxnState::kCompensating, TxnState::kCompensated, TxnState::kParked};
  return kAll;
}

const std::vector<TxnState>& UnfinishedTxnStates() {
  static const std::vector<TxnState> kUnfinished = [] {
    std::vector<TxnState> v;
    for (TxnState s : AllTxnStates()) {
      if (!IsFinal(s)) v.push_back(s);
    }
    return v;
  }();
  return kUnfinished;
}

const std::vector<TxnState>& FinalTxnStates() {
  static const std::vector<TxnState> kFinal = [] {
    std::vector<TxnState> v;
    for (TxnState s : AllTxnStates()) {
      if (IsFinal(s)) v.push_back(s);
    }
    return v;
  }();
  return kFinal;
}

int64_t StateMask(const std::vector<TxnState>& states) {
  int64_t mask = 0;
  for (TxnState s : states) mask |= int64_t{1} << static_cast<int>(s);
  return mask;
}

int64_t StateMask(const std::vector<BranchState>& states) {
  int64_t mask = 0;
  for (BranchState s : states) mask |= int64_t{1} << static_cast<int>(s);
  return mask;
}

std::string StateList(const std::vector<TxnState>& states) {
  std::string out;
  for (TxnState s : states) {
    if (!out.empty()) out += ",";
    out += std::to_string(static_cast<int>(s));
  }
  return out;
}

std::string EncodeStringList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    out += std::to_string(item.size());
    out += ':';
    out += item;
  }
  return out;
}

Result<std::vector<std::string>> DecodeStringList(const std::string& encoded) {
  std::vector<std::string> items;
  size_t pos = 0;
  while (pos < encoded.size()) {
    size_t colon = encoded.find(':', pos);
    if (colon == std::string::npos || colon == pos || colon - pos > 9) {
      return Status::Internal("malformed stored list");
    }
    size_t len = 0;
    for (size_t i = pos; i < colon; ++i) {
      if (encoded[i] < '0' || encoded[i] > '9') return Status::Internal("malformed stored list");
      len = len * 10 + static_cast<size_t>(encoded[i] - '0');
    }
    if (colon + 1 + len > encoded.size()) return Status::Internal("malformed stored list");
    items.push_back(encoded.substr(colon + 1, len));
    pos = colon + 1 + len;
  }
  return items;
}

bool IsStorableText(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    }
    i += len;
  }
  return true;
}

Status CheckBatch(const WriteBatch& batch) {
  auto text = [](const char* field, const std::string& value) {
    if (IsStorableText(value)) return Status::Ok();
    return Status::InvalidArgument(std::string(field) + " is not valid UTF-8 text without NUL");
  };
  for (const auto& t : batch.insert_txns) {
    if (t.gtid.empty()) return Status::InvalidArgument("insert of a transaction with empty gtid");
    TXC_RETURN_IF_ERROR(text("gtid", t.gtid));
    TXC_RETURN_IF_ERROR(text("owner", t.owner));
    TXC_RETURN_IF_ERROR(text("idempotency_key", t.idempotency_key));
  }
  for (const auto& b : batch.insert_branches) {
    if (b.gtid.empty() || b.branch_id.empty()) {
      return Status::InvalidArgument("insert of a branch with empty gtid or branch_id");
    }
    TXC_RETURN_IF_ERROR(text("gtid", b.gtid));
    TXC_RETURN_IF_ERROR(text("branch_id", b.branch_id));
    TXC_RETURN_IF_ERROR(text("endpoint", b.endpoint));
    TXC_RETURN_IF_ERROR(text("resource", b.resource));
    TXC_RETURN_IF_ERROR(text("action", b.action));
    TXC_RETURN_IF_ERROR(text("compensation", b.compensation));
  }
  for (const auto& u : batch.txn_updates) {
    TXC_RETURN_IF_ERROR(text("gtid", u.gtid));
    TXC_RETURN_IF_ERROR(text("expected_owner", u.expected_owner));
    if (u.owner.has_value()) TXC_RETURN_IF_ERROR(text("owner", *u.owner));
  }
  for (const auto& u : batch.branch_updates) {
    TXC_RETURN_IF_ERROR(text("gtid", u.gtid));
    TXC_RETURN_IF_ERROR(text("branch_id", u.branch_id));
    TXC_RETURN_IF_ERROR(text("expected_owner", u.expected_owner));
  }
  for (const auto& g : batch.delete_txns) TXC_RETURN_IF_ERROR(text("gtid", g));
  return Status::Ok();
}

bool IsRefusal(const Status& s) {
  switch (s.code()) {
    case StatusCode::kConflict:
    case StatusCode::kNotFound:
    case StatusCode::kAlreadyExists:
    case StatusCode::kInvalidArgument: return true;
    default: return false;
  }
}

Status LiveLeaseRefusal(const Lease& live, int64_t now_ms) {
  return Status::AlreadyExists("the lease of node " + live.node_id +
                               " is held by a live process at " + live.endpoint + " (epoch " +
                               std::to_string(live.epoch) + ", expires in " +
                               std::to_string(live.expires_ms - now_ms) + " ms)");
}

}  // namespace store_internal
}  // namespace txc
