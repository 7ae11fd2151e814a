#include "coordinator/driver/ownership.h"

namespace txc {

bool OwnedBy(const TxnRecord& txn, const NodeInfo& node) {
  return txn.owner == node.node_id && txn.epoch == node.epoch;
}

Result<bool> OwnerLeaseLive(TxnStore* store, const std::string& owner, int64_t epoch,
                            int64_t now_ms) {
  TXC_ASSIGN_OR_RETURN(std::vector<Lease> leases, store->ListLeases());
  for (const Lease& lease : leases) {
    if (lease.node_id == owner) return lease.epoch == epoch && lease.expires_ms > now_ms;
  }
  return false;
}

TxnUpdate TakeOverUpdate(const TxnRecord& txn, const NodeInfo& node) {
  TxnUpdate u;
  u.gtid = txn.gtid;
  u.expected_states = {txn.state};
  u.expected_owner = txn.owner;
  u.expected_epoch = txn.epoch;
  u.owner = node.node_id;
  u.epoch = node.epoch;
  return u;
}

}  // namespace txc
