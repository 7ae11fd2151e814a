// Conversions between the wire types (gen-cpp, txc::wire) and the internal
// records (coordinator/store, coordinator/service), both directions.
//
// Wire enums are plain ints on the C++ side: a value outside the declared set
// is kInvalidArgument from the *FromWire functions. Pure functions, thread-safe.
//
// Saga dependencies. On the wire `SagaStep.depends_on` empty means "the
// previous step" unless `concurrent` is true ("no dependency at all"). In a
// BranchRecord `depends_on` is always explicit: the step ids that must be DONE
// first, empty meaning none. SagaStepsFromWire fills in the previous step;
// SagaStepToWire writes the explicit list back (and concurrent=true for a
// non-first step without dependencies), so a round trip keeps the meaning.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "common/peer_identity.h"
#include "common/status.h"
#include "coordinator/core/states.h"
#include "coordinator/core/two_phase.h"
#include "coordinator/service/txn_service.h"
#include "coordinator/store/txn_store.h"
#include "gen-cpp/common_types.h"
#include "gen-cpp/coordinator_types.h"
#include "gen-cpp/participant_types.h"

namespace txc {

// ---- enums -------------------------------------------------------------------
wire::TxnKind::type ToWire(TxnKind kind);
wire::TxnState::type ToWire(TxnState state);
wire::BranchState::type ToWire(BranchState state);
wire::Outcome::type ToWire(Outcome outcome);
wire::CommitWait::type ToWire(CommitWait wait);

// The number a wire enum field holds, read without an enum load: a peer may
// send any i32, and loading an out-of-range value as the enum type is undefined
// behaviour (UBSan flags it). Pass this to the *FromWire functions.
template <typename WireEnum>
int WireEnumValue(const WireEnum& value) {
  std::underlying_type_t<WireEnum> raw;
  static_assert(sizeof(raw) == sizeof(value), "enum representation");
  std::memcpy(&raw, &value, sizeof(raw));
  return static_cast<int>(raw);
}

Result<TxnKind> TxnKindFromWire(int value);
Result<TxnState> TxnStateFromWire(int value);
Result<BranchState> BranchStateFromWire(int value);
Result<Outcome> OutcomeFromWire(int value);
Result<CommitWait> CommitWaitFromWire(int value);

// The outcome of a state: OutcomeOfState in coordinator/core/two_phase.h.

// ---- 2PC branches ----------------------------------------------------------------
// A branch as enlisted: state kRegistered, the given gtid and ordinal. Not validated
// (see coordinator/core/validation.h).
BranchRecord BranchFromWire(const wire::BranchSpec& spec, const std::string& gtid, int32_t ordinal);
wire::BranchSpec BranchSpecToWire(const BranchRecord& branch);

// ---- Saga steps ------------------------------------------------------------------
// Steps in definition order, state kPending, ordinals 0.., explicit depends_on
// (see the header comment), retry fields from retry_policy or its IDL defaults.
std::vector<BranchRecord> SagaStepsFromWire(const std::vector<wire::SagaStep>& steps,
                                            const std::string& gtid);
wire::SagaStep SagaStepToWire(const BranchRecord& step);

// ---- status ----------------------------------------------------------------------
wire::BranchStatus BranchStatusToWire(const BranchRecord& branch);
Result<BranchRecord> BranchStatusFromWire(const wire::BranchStatus& status, const std::string& gtid,
                                          int32_t ordinal);
wire::TxnStatus TxnStatusToWire(const TxnRecord& txn, const std::vector<BranchRecord>& branches);
// The admin API's list: request -> filter (kInvalidArgument for unknown enum
// values), page -> response.
Result<TxnFilter> TxnFilterFromWire(const wire::ListTxnsRequest& req);
wire::ListTxnsResponse ListTxnsResponseToWire(const TxnPage& page);
wire::TxnStatus TxnStatusToWire(const TxnView& view);
Result<TxnView> TxnViewFromWire(const wire::TxnStatus& status);

// ---- requests and responses ---------------------------------------------------------
Result<BeginOptions> BeginOptionsFromWire(const wire::BeginRequest& request);
wire::BeginRequest BeginRequestToWire(const BeginOptions& options);
Result<SagaSpec> SagaSpecFromWire(const wire::SubmitSagaRequest& request);
wire::SubmitSagaRequest SagaSpecToWire(const SagaSpec& spec);
wire::CommitResponse CommitResponseToWire(const TxnRecord& txn);
wire::HealthResponse HealthToWire(const HealthInfo& info, const std::string& version);

// ---- what the coordinator sends to participants ---------------------------------------
// The context propagated with a call; branch_id is set when non-empty.
wire::TxnContext MakeTxnContext(const TxnRecord& txn, const std::vector<std::string>& coordinators,
                                const std::string& branch_id = "");
// prepare / commitOnePhase / commit / abort of one 2PC branch.
wire::BranchRequest MakeBranchRequest(const TxnRecord& txn, const BranchRecord& branch,
                                      const std::vector<std::string>& coordinators);
// action (name = step.action) or compensate (name = step.compensation) of one saga step.
wire::StepRequest MakeStepRequest(const TxnRecord& txn, const BranchRecord& step,
                                  const std::string& name, int32_t attempt,
                                  const std::vector<std::string>& coordinators);

// ---- errors ------------------------------------------------------------------------
// The field an InvalidArgument message names: our validators start messages with
// the field ("timeout_ms must be ...", "branch.endpoint: ..."). "" when none.
std::string FieldOfMessage(const std::string& message);

// Throws the wire exception for a non-OK status, as documented in txn_service.h:
//   kInvalidArgument -> InvalidArgument, kNotFound -> NotFound,
//   kIllegalTransition / kAlreadyExists -> IllegalTransition (current_state),
//   kNotOwner -> NotOwner (owner_endpoint),
//   kPermissionDenied -> PermissionDenied (PermissionDeniedToWire, no method),
//   anything else -> Unavailable.
// Does nothing for OK.
void ThrowIfError(const Status& status, const std::string& gtid,
                  TxnState current_state = TxnState::kActive,
                  const std::string& owner_endpoint = "");

// The wire PermissionDenied for a refused call: the status's message, the
// caller's certificate CN (empty when not authenticated) and address, and the
// method refused.
wire::PermissionDenied PermissionDeniedToWire(const Status& status, const PeerIdentity& caller,
                                              const std::string& method);

}  // namespace txc
