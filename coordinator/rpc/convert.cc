#include "coordinator/rpc/convert.h"

#include <utility>

#include "coordinator/core/saga.h"

namespace txc {
namespace {

template <typename Enum>
Result<Enum> EnumFromWire(const char* what, int value, std::initializer_list<Enum> legal) {
  for (Enum e : legal) {
    if (static_cast<int>(e) == value) return e;
  }
  return Status::InvalidArgument(std::string(what) + ": unknown value " + std::to_string(value));
}

}  // namespace

// ---- enums ---------------------------------------------------------------------
// Internal and wire enums have the same numeric values (states.h says so).

wire::TxnKind::type ToWire(TxnKind kind) { return static_cast<wire::TxnKind::type>(kind); }
wire::TxnState::type ToWire(TxnState state) { return static_cast<wire::TxnState::type>(state); }
wire::BranchState::type ToWire(BranchState state) {
  return static_cast<wire::BranchState::type>(state);
}

wire::Outcome::type ToWire(Outcome outcome) {
  switch (outcome) {
    case Outcome::kCommit: return wire::Outcome::OUTCOME_COMMIT;
    case Outcome::kAbort: return wire::Outcome::OUTCOME_ABORT;
    case Outcome::kPending: return wire::Outcome::OUTCOME_PENDING;
  }
  return wire::Outcome::OUTCOME_PENDING;
}

wire::CommitWait::type ToWire(CommitWait wait) {
  switch (wait) {
    case CommitWait::kDecision: return wire::CommitWait::WAIT_DECISION;
    case CommitWait::kCompletion: return wire::CommitWait::WAIT_COMPLETION;
  }
  return wire::CommitWait::WAIT_DECISION;
}

Result<TxnKind> TxnKindFromWire(int value) {
  return EnumFromWire("kind", value, {TxnKind::kTwoPhase, TxnKind::kSaga});
}

Result<TxnState> TxnStateFromWire(int value) {
  return EnumFromWire(
      "state", value,
      {TxnState::kActive, TxnState::kPreparing, TxnState::kCommitting, TxnState::kCommitted,
       TxnState::kAborting, TxnState::kAborted, TxnState::kRunning, TxnState::kSucceeded,
       TxnState::kCompensating, TxnState::kCompensated, TxnState::kParked});
}

Result<BranchState> BranchStateFromWire(int value) {
  return EnumFromWire(
      "branch state", value,
      {BranchState::kRegistered, BranchState::kPrepared, BranchState::kReadOnly,
       BranchState::kBranchCommitted, BranchState::kBranchAborted, BranchState::kPending,
       BranchState::kStepRunning, BranchState::kDone, BranchState::kFailed,
       BranchState::kStepCompensating, BranchState::kStepCompensated, BranchState::kSkipped});
}

Result<Outcome> OutcomeFromWire(int value) {
  switch (value) {
    case wire::Outcome::OUTCOME_COMMIT: return Outcome::kCommit;
    case wire::Outcome::OUTCOME_ABORT: return Outcome::kAbort;
    case wire::Outcome::OUTCOME_PENDING: return Outcome::kPending;
    default: return Status::InvalidArgument("outcome: unknown value " + std::to_string(value));
  }
}

Result<CommitWait> CommitWaitFromWire(int value) {
  switch (value) {
    case wire::CommitWait::WAIT_DECISION: return CommitWait::kDecision;
    case wire::CommitWait::WAIT_COMPLETION: return CommitWait::kCompletion;
    default: return Status::InvalidArgument("wait: unknown value " + std::to_string(value));
  }
}

// ---- 2PC branches ------------------------------------------------------------------

BranchRecord BranchFromWire(const wire::BranchSpec& spec, const std::string& gtid,
                            int32_t ordinal) {
  BranchRecord b;
  b.gtid = gtid;
  b.branch_id = spec.branch_id;
  b.ordinal = ordinal;
  b.endpoint = spec.endpoint;
  b.resource = spec.resource;
  b.payload = spec.payload;
  b.state = BranchState::kRegistered;
  return b;
}

wire::BranchSpec BranchSpecToWire(const BranchRecord& branch) {
  wire::BranchSpec spec;
  spec.__set_branch_id(branch.branch_id);
  spec.__set_endpoint(branch.endpoint);
  spec.__set_resource(branch.resource);
  spec.__set_payload(branch.payload);
  return spec;
}

// ---- Saga steps ----------------------------------------------------------------------

std::vector<BranchRecord> SagaStepsFromWire(const std::vector<wire::SagaStep>& steps,
                                            const std::string& gtid) {
  std::vector<BranchRecord> out;
  out.reserve(steps.size());
  for (size_t i = 0; i < steps.size(); ++i) {
    const wire::SagaStep& s = steps[i];
    BranchRecord b;
    b.gtid = gtid;
    b.branch_id = s.step_id;
    b.ordinal = static_cast<int32_t>(i);
    b.endpoint = s.endpoint;
    b.action = s.action;
    b.compensation = s.compensation;
    b.payload = s.payload;
    b.depends_on = ResolveWireDependsOn(s.depends_on, s.__isset.concurrent && s.concurrent,
                                        i > 0 ? steps[i - 1].step_id : "");
    if (s.__isset.retry_policy) {
      b.max_attempts = s.retry_policy.max_attempts;
      b.initial_backoff_ms = s.retry_policy.initial_backoff_ms;
      b.max_backoff_ms = s.retry_policy.max_backoff_ms;
    } else {
      b.max_attempts = kDefaultSagaMaxAttempts;
      b.initial_backoff_ms = kDefaultSagaInitialBackoffMs;
      b.max_backoff_ms = kDefaultSagaMaxBackoffMs;
    }
    b.state = BranchState::kPending;
    out.push_back(std::move(b));
  }
  return out;
}

wire::SagaStep SagaStepToWire(const BranchRecord& step) {
  wire::SagaStep s;
  s.__set_step_id(step.branch_id);
  s.__set_endpoint(step.endpoint);
  s.__set_action(step.action);
  s.__set_compensation(step.compensation);
  s.__set_payload(step.payload);
  wire::RetryPolicy policy;
  policy.__set_max_attempts(step.max_attempts);
  policy.__set_initial_backoff_ms(step.initial_backoff_ms);
  policy.__set_max_backoff_ms(step.max_backoff_ms);
  s.__set_retry_policy(policy);
  s.__set_depends_on(step.depends_on);
  // Explicit dependencies always; "none" needs concurrent=true except on the first step.
  if (step.depends_on.empty() && step.ordinal > 0) s.__set_concurrent(true);
  return s;
}

// ---- status ------------------------------------------------------------------------------

wire::BranchStatus BranchStatusToWire(const BranchRecord& branch) {
  wire::BranchStatus s;
  s.__set_branch_id(branch.branch_id);
  s.__set_endpoint(branch.endpoint);
  s.__set_resource(branch.resource);
  s.__set_state(ToWire(branch.state));
  s.__set_attempts(branch.attempts);
  s.__set_last_error(branch.last_error);
  s.__set_next_attempt_unix_ms(branch.next_attempt_ms);
  s.__set_action(branch.action);
  s.__set_compensation(branch.compensation);
  s.__set_depends_on(branch.depends_on);
  s.__set_started_unix_ms(branch.started_ms);
  s.__set_finished_unix_ms(branch.finished_ms);
  return s;
}

Result<BranchRecord> BranchStatusFromWire(const wire::BranchStatus& status, const std::string& gtid,
                                          int32_t ordinal) {
  BranchRecord b;
  b.gtid = gtid;
  b.branch_id = status.branch_id;
  b.ordinal = ordinal;
  b.endpoint = status.endpoint;
  b.resource = status.resource;
  TXC_ASSIGN_OR_RETURN(b.state, BranchStateFromWire(WireEnumValue(status.state)));
  b.attempts = status.attempts;
  b.last_error = status.last_error;
  b.next_attempt_ms = status.next_attempt_unix_ms;
  b.action = status.action;
  b.compensation = status.compensation;
  b.depends_on = status.depends_on;
  b.started_ms = status.started_unix_ms;
  b.finished_ms = status.finished_unix_ms;
  return b;
}

wire::TxnStatus TxnStatusToWire(const TxnRecord& txn, const std::vector<BranchRecord>& branches) {
  wire::TxnStatus s;
  s.__set_gtid(txn.gtid);
  s.__set_kind(ToWire(txn.kind));
  s.__set_state(ToWire(txn.state));
  s.__set_created_unix_ms(txn.created_ms);
  s.__set_deadline_unix_ms(txn.deadline_ms);
  s.__set_owner(txn.owner);
  s.__set_epoch(txn.epoch);
  std::vector<wire::BranchStatus> out;
  out.reserve(branches.size());
  for (const BranchRecord& b : branches) out.push_back(BranchStatusToWire(b));
  s.__set_branches(out);
  s.__set_attempts(txn.attempts);
  s.__set_updated_unix_ms(txn.updated_ms);
  s.__set_next_attempt_unix_ms(txn.next_attempt_ms);
  return s;
}

wire::TxnStatus TxnStatusToWire(const TxnView& view) {
  wire::TxnStatus s = TxnStatusToWire(view.txn, view.branches);
  std::vector<wire::AuditRecord> audit;
  for (const AuditRecord& a : view.audit) {
    wire::AuditRecord w;
    w.__set_action(a.action);
    w.__set_who(a.who);
    w.__set_at_unix_ms(a.at_ms);
    w.__set_reason(a.reason);
    w.__set_previous_state(a.previous_state);
    w.__set_new_state(a.new_state);
    w.__set_target(a.target);
    audit.push_back(std::move(w));
  }
  s.__set_audit(std::move(audit));
  return s;
}

Result<TxnFilter> TxnFilterFromWire(const wire::ListTxnsRequest& req) {
  TxnFilter f;
  if (req.__isset.kind) {
    TXC_ASSIGN_OR_RETURN(TxnKind kind, TxnKindFromWire(WireEnumValue(req.kind)));
    f.kind = kind;
  }
  for (const auto& state : req.states) {
    TXC_ASSIGN_OR_RETURN(TxnState s, TxnStateFromWire(WireEnumValue(state)));
    f.states.push_back(s);
  }
  if (req.__isset.owner) f.owner = req.owner;
  f.created_after_ms = req.created_after_unix_ms;
  f.created_before_ms = req.created_before_unix_ms;
  f.updated_after_ms = req.updated_after_unix_ms;
  f.updated_before_ms = req.updated_before_unix_ms;
  if (req.__isset.gtid_prefix) f.gtid_prefix = req.gtid_prefix;
  if (req.__isset.endpoint) f.endpoint = req.endpoint;
  return f;
}

wire::ListTxnsResponse ListTxnsResponseToWire(const TxnPage& page) {
  wire::ListTxnsResponse out;
  std::vector<wire::TxnSummary> rows;
  for (const TxnListRow& row : page.rows) {
    wire::TxnSummary w;
    w.__set_gtid(row.txn.gtid);
    w.__set_kind(ToWire(row.txn.kind));
    w.__set_state(ToWire(row.txn.state));
    w.__set_owner(row.txn.owner);
    w.__set_created_unix_ms(row.txn.created_ms);
    w.__set_updated_unix_ms(row.txn.updated_ms);
    w.__set_attempts(row.txn.attempts);
    w.__set_next_attempt_unix_ms(row.txn.next_attempt_ms);
    w.__set_last_error(row.last_error);
    rows.push_back(std::move(w));
  }
  out.__set_txns(std::move(rows));
  if (!page.next_cursor.empty()) out.__set_next_cursor(page.next_cursor);
  return out;
}

Result<TxnView> TxnViewFromWire(const wire::TxnStatus& status) {
  TxnView view;
  view.txn.gtid = status.gtid;
  TXC_ASSIGN_OR_RETURN(view.txn.kind, TxnKindFromWire(WireEnumValue(status.kind)));
  TXC_ASSIGN_OR_RETURN(view.txn.state, TxnStateFromWire(WireEnumValue(status.state)));
  view.txn.created_ms = status.created_unix_ms;
  view.txn.deadline_ms = status.deadline_unix_ms;
  view.txn.owner = status.owner;
  view.txn.epoch = status.epoch;
  view.txn.attempts = status.attempts;
  view.txn.updated_ms = status.updated_unix_ms;
  view.txn.next_attempt_ms = status.next_attempt_unix_ms;
  for (const auto& w : status.audit) {
    AuditRecord a;
    a.gtid = status.gtid;
    a.action = w.action;
    a.who = w.who;
    a.at_ms = w.at_unix_ms;
    a.reason = w.reason;
    a.previous_state = w.previous_state;
    a.new_state = w.new_state;
    a.target = w.target;
    view.audit.push_back(std::move(a));
  }
  for (size_t i = 0; i < status.branches.size(); ++i) {
    TXC_ASSIGN_OR_RETURN(BranchRecord b, BranchStatusFromWire(status.branches[i], status.gtid,
                                                              static_cast<int32_t>(i)));
    view.branches.push_back(std::move(b));
  }
  return view;
}

// ---- requests and responses ---------------------------------------------------------------

Result<BeginOptions> BeginOptionsFromWire(const wire::BeginRequest& request) {
  BeginOptions options;
  options.timeout_ms = request.timeout_ms;
  if (request.__isset.idempotency_key) options.idempotency_key = request.idempotency_key;
  if (request.__isset.branches) {
    for (size_t i = 0; i < request.branches.size(); ++i) {
      options.branches.push_back(
          BranchFromWire(request.branches[i], /*gtid=*/"", static_cast<int32_t>(i)));
    }
  }
  return options;
}

wire::BeginRequest BeginRequestToWire(const BeginOptions& options) {
  wire::BeginRequest request;
  request.__set_timeout_ms(options.timeout_ms);
  if (!options.idempotency_key.empty()) request.__set_idempotency_key(options.idempotency_key);
  if (!options.branches.empty()) {
    std::vector<wire::BranchSpec> branches;
    for (const BranchRecord& b : options.branches) branches.push_back(BranchSpecToWire(b));
    request.__set_branches(branches);
  }
  return request;
}

Result<SagaSpec> SagaSpecFromWire(const wire::SubmitSagaRequest& request) {
  SagaSpec spec;
  if (request.__isset.gtid) spec.gtid = request.gtid;
  spec.steps = SagaStepsFromWire(request.steps, spec.gtid);
  spec.timeout_ms = request.timeout_ms;
  spec.wait_for_completion = request.wait_for_completion;
  spec.wait_timeout_ms = request.wait_timeout_ms;
  return spec;
}

wire::SubmitSagaRequest SagaSpecToWire(const SagaSpec& spec) {
  wire::SubmitSagaRequest request;
  if (!spec.gtid.empty()) request.__set_gtid(spec.gtid);
  std::vector<wire::SagaStep> steps;
  for (const BranchRecord& b : spec.steps) steps.push_back(SagaStepToWire(b));
  request.__set_steps(steps);
  request.__set_wait_for_completion(spec.wait_for_completion);
  request.__set_wait_timeout_ms(spec.wait_timeout_ms);
  request.__set_timeout_ms(spec.timeout_ms);
  return request;
}

wire::CommitResponse CommitResponseToWire(const TxnRecord& txn) {
  wire::CommitResponse response;
  response.__set_gtid(txn.gtid);
  response.__set_state(ToWire(txn.state));
  response.__set_outcome(ToWire(OutcomeOfState(txn.state)));
  return response;
}

wire::HealthResponse HealthToWire(const HealthInfo& info, const std::string& version) {
  wire::HealthResponse response;
  response.__set_node_id(info.node_id);
  response.__set_version(version);
  response.__set_store(info.store_kind);
  response.__set_serving(info.serving);
  response.__set_epoch(info.epoch);
  response.__set_replicas(info.replicas);
  response.__set_store_healthy(info.store_healthy);
  if (!info.store_healthy) response.__set_store_error(info.store_error);
  return response;
}

// ---- to participants ------------------------------------------------------------------------

wire::TxnContext MakeTxnContext(const TxnRecord& txn, const std::vector<std::string>& coordinators,
                                const std::string& branch_id) {
  wire::TxnContext context;
  context.__set_gtid(txn.gtid);
  context.__set_coordinators(coordinators);
  context.__set_deadline_unix_ms(txn.deadline_ms);
  if (!branch_id.empty()) context.__set_branch_id(branch_id);
  return context;
}

wire::BranchRequest MakeBranchRequest(const TxnRecord& txn, const BranchRecord& branch,
                                      const std::vector<std::string>& coordinators) {
  wire::BranchRequest request;
  request.__set_gtid(txn.gtid);
  request.__set_branch_id(branch.branch_id);
  request.__set_resource(branch.resource);
  request.__set_payload(branch.payload);
  request.__set_context(MakeTxnContext(txn, coordinators, branch.branch_id));
  return request;
}

wire::StepRequest MakeStepRequest(const TxnRecord& txn, const BranchRecord& step,
                                  const std::string& name, int32_t attempt,
                                  const std::vector<std::string>& coordinators) {
  wire::StepRequest request;
  request.__set_gtid(txn.gtid);
  request.__set_step_id(step.branch_id);
  request.__set_name(name);
  request.__set_payload(step.payload);
  request.__set_attempt(attempt);
  request.__set_context(MakeTxnContext(txn, coordinators, step.branch_id));
  return request;
}

// ---- errors -----------------------------------------------------------------------------------

std::string FieldOfMessage(const std::string& message) {
  size_t end = 0;
  while (end < message.size()) {
    const char c = message[end];
    const bool field_char = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '[' || c == ']';
    if (!field_char) break;
    ++end;
  }
  if (end == 0 || end == message.size()) return "";
  if (message[end] != ' ' && message[end] != ':') return "";
  return message.substr(0, end);
}

void ThrowIfError(const Status& status, const std::string& gtid, TxnState current_state,
                  const std::string& owner_endpoint) {
  switch (status.code()) {
    case StatusCode::kOk: return;
    case StatusCode::kInvalidArgument: {
      wire::InvalidArgument e;
      e.__set_message(status.message());
      e.__set_field(FieldOfMessage(status.message()));
      throw e;
    }
    case StatusCode::kNotFound: {
      wire::NotFound e;
      e.__set_message(status.message().empty() ? "unknown transaction " + gtid : status.message());
      e.__set_gtid(gtid);
      throw e;
    }
    case StatusCode::kIllegalTransition:
    case StatusCode::kAlreadyExists: {
      wire::IllegalTransition e;
      e.__set_message(status.message());
      e.__set_gtid(gtid);
      e.__set_current_state(ToWire(current_state));
      throw e;
    }
    case StatusCode::kNotOwner: {
      wire::NotOwner e;
      e.__set_message(status.message());
      e.__set_owner_endpoint(owner_endpoint);
      throw e;
    }
    case StatusCode::kPermissionDenied:
      throw PermissionDeniedToWire(status, CurrentPeerIdentity(), "");
    case StatusCode::kConflict:
    case StatusCode::kUnavailable:
    case StatusCode::kTimeout:
    case StatusCode::kIndeterminate:
    case StatusCode::kInternal:
    case StatusCode::kCancelled: {
      wire::Unavailable e;
      e.__set_message(status.ToString());
      e.__set_retry_after_ms(status.code() == StatusCode::kUnavailable ? 100 : 50);
      throw e;
    }
  }
  wire::Unavailable e;
  e.__set_message(status.ToString());
  e.__set_retry_after_ms(100);
  throw e;
}

wire::PermissionDenied PermissionDeniedToWire(const Status& status, const PeerIdentity& caller,
                                              const std::string& method) {
  wire::PermissionDenied e;
  e.__set_message(status.message());
  e.__set_identity(caller.authenticated ? caller.common_name : "");
  e.__set_method(method);
  e.__set_peer_address(caller.address);
  return e;
}

}  // namespace txc
