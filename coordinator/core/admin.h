// Operator actions (the admin API) as pure decisions: given a transaction and
// its branches as read from the store, each function returns the WriteBatch
// that carries the action out -- every update conditional on the states read
// and fenced by the transaction's (owner, epoch), plus one AuditRecord -- or
// an empty batch when the transaction is already where the action would take
// it (idempotent), or a typed error when the action is illegal (nothing to
// write). The caller logs the batch (re-reading and planning again on
// kConflict) and then has the transaction's driver pick it up.
//
//   retry    2PC COMMITTING/ABORTING, saga RUNNING/COMPENSATING/PARKED:
//            due now, attempts reset (PARKED -> COMPENSATING)
//   cancel   saga RUNNING -> COMPENSATING (PENDING steps SKIPPED, or RUNNING
//            and compensated when the saga logs its progress lazily); already
//            COMPENSATING, PARKED or COMPENSATED: nothing to do; SUCCEEDED: illegal
//   resolve  saga step (saga COMPENSATING/PARKED) -> STEP_COMPENSATED by hand;
//            2PC branch -> BRANCH_COMMITTED under a COMMIT decision,
//            BRANCH_ABORTED under an ABORT decision (never the other: no mixed
//            outcomes); then the transaction is due now
//   rebind   every branch of an unfinished transaction at endpoint A -> B
//
// Errors: kIllegalTransition (the state does not allow it), kNotFound (no
// such branch), kInvalidArgument (a malformed request).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/records.h"

namespace txc {

// Who acts, why and when; audit_id is the new audit record's id.
struct AdminActor {
  std::string who;
  std::string reason;
  int64_t now_ms = 0;
  std::string audit_id;
};

Result<WriteBatch> PlanRetryNow(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                                const AdminActor& actor);
Result<WriteBatch> PlanCancelSaga(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                                  const AdminActor& actor);
// resolved: kStepCompensated (saga), kBranchCommitted or kBranchAborted (2PC).
Result<WriteBatch> PlanResolve(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                               const std::string& branch_id, BranchState resolved,
                               const AdminActor& actor);
Result<WriteBatch> PlanRebind(const TxnRecord& txn, const std::vector<BranchRecord>& branches,
                              const std::string& from_endpoint, const std::string& to_endpoint,
                              const AdminActor& actor);

// The longest reason accepted (bytes).
constexpr size_t kMaxAdminReasonBytes = 4096;

}  // namespace txc
