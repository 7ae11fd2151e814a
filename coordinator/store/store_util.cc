#include "coordinator/store/store_util.h"

#include <cstdint>
#include <cstring>

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
    // ASCII runs (ids, endpoints, names) 8 bytes at a time: no byte with the
    // high bit, and no zero byte ((w - 0x01..) & ~w & 0x80.. is non-zero
    // exactly when some byte of w is zero). This check runs on the store's
    // one writer thread for every text field of every write.
    while (i + 8 <= s.size()) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, sizeof(w));
      if ((w & 0x8080808080808080ULL) != 0) break;
      if (((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL) != 0) return false;
      i += 8;
    }
    if (i >= s.size()) break;
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
  for (const auto& u : batch.branch_updates) {
    if (u.endpoint.has_value()) TXC_RETURN_IF_ERROR(text("endpoint", *u.endpoint));
  }
  for (const auto& a : batch.insert_audits) {
    if (a.id.empty() || a.gtid.empty()) {
      return Status::InvalidArgument("insert of an audit record with empty id or gtid");
    }
    TXC_RETURN_IF_ERROR(text("audit id", a.id));
    TXC_RETURN_IF_ERROR(text("audit gtid", a.gtid));
    TXC_RETURN_IF_ERROR(text("audit action", a.action));
    TXC_RETURN_IF_ERROR(text("audit who", a.who));
    TXC_RETURN_IF_ERROR(text("audit previous_state", a.previous_state));
    TXC_RETURN_IF_ERROR(text("audit new_state", a.new_state));
    TXC_RETURN_IF_ERROR(text("audit target", a.target));
  }
  return Status::Ok();
}

int64_t BranchStartedMs(BranchState state, int64_t now_ms) {
  return state == BranchState::kPending ? 0 : now_ms;
}

int64_t BranchFinishedMs(BranchState state, int64_t now_ms) {
  switch (state) {
    case BranchState::kReadOnly:
    case BranchState::kBranchCommitted:
    case BranchState::kBranchAborted:
    case BranchState::kDone:
    case BranchState::kFailed:
    case BranchState::kStepCompensated:
    case BranchState::kSkipped: return now_ms;
    case BranchState::kRegistered:
    case BranchState::kPrepared:
    case BranchState::kPending:
    case BranchState::kStepRunning:
    case BranchState::kStepCompensating: return 0;
  }
  return 0;
}

std::string EncodeListCursor(int64_t created_ms, const std::string& gtid) {
  static const char kHex[] = "0123456789abcdef";
  const std::string raw = std::to_string(created_ms) + ":" + gtid;
  std::string out = "c1";
  for (unsigned char ch : raw) {
    out += kHex[ch >> 4];
    out += kHex[ch & 0xf];
  }
  return out;
}

Status DecodeListCursor(const std::string& cursor, int64_t* created_ms, std::string* gtid) {
  const Status bad = Status::InvalidArgument("cursor: not a cursor this coordinator returned");
  if (cursor.size() < 2 || cursor.compare(0, 2, "c1") != 0 || cursor.size() % 2 != 0) return bad;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string raw;
  for (size_t i = 2; i < cursor.size(); i += 2) {
    int hi = nibble(cursor[i]);
    int lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0) return bad;
    raw += static_cast<char>(hi * 16 + lo);
  }
  size_t colon = raw.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 19 || colon + 1 >= raw.size()) {
    return bad;
  }
  int64_t ms = 0;
  for (size_t i = 0; i < colon; ++i) {
    if (raw[i] < '0' || raw[i] > '9') return bad;
    ms = ms * 10 + (raw[i] - '0');
  }
  *created_ms = ms;
  *gtid = raw.substr(colon + 1);
  if (!IsStorableText(*gtid)) return bad;
  return Status::Ok();
}

Status CheckListLimit(int limit) {
  if (limit < 1 || limit > kMaxListLimit) {
    return Status::InvalidArgument("limit must be in 1.." + std::to_string(kMaxListLimit) +
                                   ", got " + std::to_string(limit));
  }
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
