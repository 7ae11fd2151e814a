#include "coordinator/core/saga.h"

#include <cstdio>
#include <map>
#include <utility>

#include "common/thrift_util.h"
#include "coordinator/core/validation.h"

namespace txc {
namespace {

// Legal saga edges, as drawn in saga.h.
bool SagaEdge(TxnState from, TxnState to) {
  switch (from) {
    case TxnState::kRunning: return to == TxnState::kSucceeded || to == TxnState::kCompensating;
    case TxnState::kCompensating: return to == TxnState::kCompensated || to == TxnState::kParked;
    case TxnState::kParked: return to == TxnState::kCompensating || to == TxnState::kCompensated;
    case TxnState::kSucceeded:
    case TxnState::kCompensated:
    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kCommitted:
    case TxnState::kAborting:
    case TxnState::kAborted: return false;
  }
  return false;
}

bool IsSagaState(TxnState s) { return IsStateOf(TxnKind::kSaga, s); }

// Legal step edges, as drawn in saga.h.
bool StepEdge(BranchState from, BranchState to) {
  switch (from) {
    case BranchState::kPending:
      return to == BranchState::kStepRunning || to == BranchState::kSkipped;
    case BranchState::kStepRunning:
      return to == BranchState::kDone || to == BranchState::kFailed ||
             to == BranchState::kStepCompensating;
    case BranchState::kDone:
    case BranchState::kFailed: return to == BranchState::kStepCompensating;
    case BranchState::kStepCompensating: return to == BranchState::kStepCompensated;
    case BranchState::kStepCompensated:
    case BranchState::kSkipped:
    case BranchState::kRegistered:
    case BranchState::kPrepared:
    case BranchState::kReadOnly:
    case BranchState::kBranchCommitted:
    case BranchState::kBranchAborted: return false;
  }
  return false;
}

bool IsStepState(BranchState s) { return IsStateOf(TxnKind::kSaga, s); }

// True if `to` can be reached from `from` along legal edges (the graphs are tiny).
template <typename S, typename EdgeFn>
bool Reachable(S from, S to, EdgeFn edge, const std::vector<S>& all) {
  std::vector<S> frontier{from};
  std::set<S> seen{from};
  while (!frontier.empty()) {
    S s = frontier.back();
    frontier.pop_back();
    if (s == to) return true;
    for (S n : all) {
      if (edge(s, n) && seen.insert(n).second) frontier.push_back(n);
    }
  }
  return false;
}

const std::vector<TxnState>& AllSagaStates() {
  static const std::vector<TxnState> kAll = {TxnState::kRunning, TxnState::kSucceeded,
                                             TxnState::kCompensating, TxnState::kCompensated,
                                             TxnState::kParked};
  return kAll;
}

const std::vector<BranchState>& AllStepStates() {
  static const std::vector<BranchState> kAll = {
      BranchState::kPending, BranchState::kStepRunning,      BranchState::kDone,
      BranchState::kFailed,  BranchState::kStepCompensating, BranchState::kStepCompensated,
      BranchState::kSkipped};
  return kAll;
}

void Fnv(uint64_t* h, const std::string& bytes) {
  // Length first so that field boundaries are part of the hash.
  uint64_t n = bytes.size();
  for (int i = 0; i < 8; ++i) {
    *h ^= (n >> (8 * i)) & 0xff;
    *h *= 1099511628211ULL;
  }
  for (unsigned char c : bytes) {
    *h ^= c;
    *h *= 1099511628211ULL;
  }
}

bool NeedsCompensation(BranchState s) {
  return s == BranchState::kStepRunning || s == BranchState::kDone || s == BranchState::kFailed ||
         s == BranchState::kStepCompensating;
}

bool NeverRanOrCompensated(BranchState s) {
  return s == BranchState::kStepCompensated || s == BranchState::kSkipped ||
         s == BranchState::kPending;
}

}  // namespace

Result<Transition> SagaTransition(TxnState current, TxnState target) {
  if (!IsSagaState(current) || !IsSagaState(target)) {
    return Status::IllegalTransition(std::string("not a saga state: ") + TxnStateName(current) +
                                     " -> " + TxnStateName(target));
  }
  if (SagaEdge(current, target)) return Transition::kApply;
  if (current == target || Reachable(target, current, SagaEdge, AllSagaStates())) {
    return Transition::kNoOp;
  }
  return Status::IllegalTransition(std::string("saga cannot go from ") + TxnStateName(current) +
                                   " to " + TxnStateName(target));
}

Result<Transition> StepTransition(BranchState current, BranchState target) {
  if (!IsStepState(current) || !IsStepState(target)) {
    return Status::IllegalTransition(std::string("not a saga step state: ") +
                                     BranchStateName(current) + " -> " + BranchStateName(target));
  }
  if (StepEdge(current, target)) return Transition::kApply;
  if (current == target || Reachable(target, current, StepEdge, AllStepStates())) {
    return Transition::kNoOp;
  }
  return Status::IllegalTransition(std::string("saga step cannot go from ") +
                                   BranchStateName(current) + " to " + BranchStateName(target));
}

std::vector<std::string> ResolveWireDependsOn(const std::vector<std::string>& explicit_depends_on,
                                              bool concurrent,
                                              const std::string& previous_step_id) {
  if (!explicit_depends_on.empty()) return explicit_depends_on;
  if (concurrent || previous_step_id.empty()) return {};
  return {previous_step_id};
}

Status ValidateSagaDefinition(const std::vector<BranchRecord>& steps) {
  if (steps.empty()) return Status::InvalidArgument("steps: a saga needs at least one step");
  if (steps.size() > static_cast<size_t>(kMaxBranches)) {
    return Status::InvalidArgument("steps: more than " + std::to_string(kMaxBranches) + " steps");
  }
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < steps.size(); ++i) {
    const BranchRecord& s = steps[i];
    const std::string f = "steps[" + std::to_string(i) + "]";
    TXC_RETURN_IF_ERROR(ValidateId(f + ".step_id", s.branch_id));
    if (!index.emplace(s.branch_id, i).second) {
      return Status::InvalidArgument(f + ".step_id: duplicate step id '" + s.branch_id + "'");
    }
    auto endpoint = ParseEndpoint(s.endpoint);
    if (!endpoint.ok()) {
      return Status::InvalidArgument(f + ".endpoint: " + endpoint.status().message());
    }
    TXC_RETURN_IF_ERROR(ValidateName(f + ".action", s.action, /*required=*/true));
    TXC_RETURN_IF_ERROR(ValidateName(f + ".compensation", s.compensation, /*required=*/true));
    if (s.payload.size() > kMaxPayloadBytes) {
      return Status::InvalidArgument(f + ".payload is larger than " +
                                     std::to_string(kMaxPayloadBytes) + " bytes");
    }
    std::set<std::string> deps;
    for (const std::string& d : s.depends_on) {
      // Checked first: the refusal below quotes `d` back to the client.
      TXC_RETURN_IF_ERROR(ValidateId(f + ".depends_on", d));
      auto it = index.find(d);
      if (it == index.end() || it->second >= i) {
        return Status::InvalidArgument(f + ".depends_on: '" + d +
                                       "' is not an earlier step (dependencies point backwards)");
      }
      if (!deps.insert(d).second) {
        return Status::InvalidArgument(f + ".depends_on: '" + d + "' listed twice");
      }
    }
    if (s.max_attempts < 1 || s.max_attempts > kMaxSagaAttempts) {
      return Status::InvalidArgument(f + ".retry_policy.max_attempts must be 1.." +
                                     std::to_string(kMaxSagaAttempts));
    }
    if (s.initial_backoff_ms < 1 || s.initial_backoff_ms > kMaxSagaBackoffMs) {
      return Status::InvalidArgument(f + ".retry_policy.initial_backoff_ms must be 1.." +
                                     std::to_string(kMaxSagaBackoffMs));
    }
    if (s.max_backoff_ms < s.initial_backoff_ms || s.max_backoff_ms > kMaxSagaBackoffMs) {
      return Status::InvalidArgument(f +
                                     ".retry_policy.max_backoff_ms must be initial_backoff_ms.." +
                                     std::to_string(kMaxSagaBackoffMs));
    }
  }
  return Status::Ok();
}

Status ValidateSagaSubmission(const std::string& gtid, int64_t timeout_ms, int64_t wait_timeout_ms,
                              const std::vector<BranchRecord>& steps) {
  if (!gtid.empty()) TXC_RETURN_IF_ERROR(ValidateId("gtid", gtid));
  TXC_RETURN_IF_ERROR(ValidateTimeoutMs("timeout_ms", timeout_ms));
  TXC_RETURN_IF_ERROR(ValidateWaitTimeoutMs("wait_timeout_ms", wait_timeout_ms));
  return ValidateSagaDefinition(steps);
}

std::string SagaFingerprint(const std::vector<BranchRecord>& steps) {
  uint64_t a = 14695981039346656037ULL;  // FNV-1a offset basis
  uint64_t b = 0x6c62272e07bb0142ULL;    // a second, independent start
  auto add = [&](const std::string& s) {
    Fnv(&a, s);
    Fnv(&b, s);
  };
  add(std::to_string(steps.size()));
  for (const BranchRecord& s : steps) {
    add(s.branch_id);
    add(s.endpoint);
    add(s.action);
    add(s.compensation);
    add(s.payload);
    add(std::to_string(s.depends_on.size()));
    for (const std::string& d : s.depends_on) add(d);
    add(std::to_string(s.max_attempts) + "/" + std::to_string(s.initial_backoff_ms) + "/" +
        std::to_string(s.max_backoff_ms));
  }
  char buf[64];
  std::snprintf(buf, sizeof(buf), "saga1:%016llx%016llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b));
  return buf;
}

const char* const kMayHaveRunNote =
    "its action may have been sent before the log said so: compensated";

BranchState SettledPendingStep(bool may_have_run) {
  return may_have_run ? BranchState::kStepRunning : BranchState::kSkipped;
}

Result<SagaPlan> PlanSaga(TxnState state, const std::vector<BranchRecord>& steps,
                          const std::set<std::string>& in_flight, int64_t now_ms,
                          int64_t deadline_ms, const SagaPlanOptions& options) {
  SagaPlan plan;
  plan.next_state = state;
  std::map<std::string, BranchState> effective;
  for (const BranchRecord& s : steps) {
    if (!IsStepState(s.state)) {
      return Status::IllegalTransition("step " + s.branch_id + " is in non-saga state " +
                                       BranchStateName(s.state));
    }
    effective[s.branch_id] = s.state;
  }
  auto flying = [&](const BranchRecord& s) { return in_flight.count(s.branch_id) > 0; };

  // Which steps to compensate now, over `effective` states.
  auto plan_compensation = [&]() {
    std::map<std::string, std::vector<std::string>> dependents;
    for (const BranchRecord& s : steps) {
      for (const std::string& d : s.depends_on) dependents[d].push_back(s.branch_id);
    }
    bool pending_work = false;
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      const BranchRecord& s = *it;
      const BranchState st = effective[s.branch_id];
      if (!NeedsCompensation(st)) continue;
      pending_work = true;
      if (flying(s)) continue;
      bool ready = true;
      for (const std::string& t : dependents[s.branch_id]) {
        if (!NeverRanOrCompensated(effective[t])) ready = false;
      }
      if (ready) plan.compensate.push_back(s.branch_id);
    }
    if (!pending_work) {
      plan.next_state = TxnState::kCompensated;
      plan.finished = true;
    } else if (plan.compensate.empty()) {
      plan.waiting = true;
    }
  };

  // The saga compensates: its kPending steps will never run. Skipped, or,
  // if they may have run before (a resumed run), compensated.
  auto settle_pending = [&]() {
    for (const BranchRecord& s : steps) {
      if (s.state != BranchState::kPending) continue;
      const BranchState settled = SettledPendingStep(options.pending_may_have_run);
      (settled == BranchState::kSkipped ? plan.skip : plan.unknown).push_back(s.branch_id);
      effective[s.branch_id] = settled;
    }
  };

  switch (state) {
    case TxnState::kSucceeded:
    case TxnState::kCompensated: plan.finished = true; return plan;

    case TxnState::kRunning: {
      bool any_failed = deadline_ms > 0 && now_ms > deadline_ms;
      bool all_done = true;
      for (const BranchRecord& s : steps) {
        switch (s.state) {
          case BranchState::kFailed: any_failed = true; break;
          case BranchState::kStepRunning:
            if (!flying(s) && s.attempts >= s.max_attempts) {
              plan.fail.push_back(s.branch_id);
              effective[s.branch_id] = BranchState::kFailed;
              any_failed = true;
            }
            break;
          case BranchState::kPending:
          case BranchState::kDone: break;
          case BranchState::kStepCompensating:
          case BranchState::kStepCompensated:
          case BranchState::kSkipped:
          case BranchState::kRegistered:
          case BranchState::kPrepared:
          case BranchState::kReadOnly:
          case BranchState::kBranchCommitted:
          case BranchState::kBranchAborted:
            return Status::IllegalTransition("step " + s.branch_id + " is " +
                                             BranchStateName(s.state) + " in a RUNNING saga");
        }
        if (s.state != BranchState::kDone) all_done = false;
      }
      if (any_failed) {
        plan.next_state = TxnState::kCompensating;
        settle_pending();
        plan_compensation();
        return plan;
      }
      if (all_done) {
        plan.next_state = TxnState::kSucceeded;
        plan.finished = true;
        return plan;
      }
      for (const BranchRecord& s : steps) {
        if (s.state == BranchState::kPending) {
          bool ready = true;
          for (const std::string& d : s.depends_on) {
            auto it = effective.find(d);
            if (it == effective.end() || it->second != BranchState::kDone) ready = false;
          }
          if (ready) plan.start.push_back(s.branch_id);
        } else if (s.state == BranchState::kStepRunning && !flying(s)) {
          plan.resend.push_back(s.branch_id);
        }
      }
      plan.waiting = plan.start.empty() && plan.resend.empty();
      return plan;
    }

    case TxnState::kCompensating:
    case TxnState::kParked: {
      // Cannot be logged so (settled with the switch), but harmless.
      settle_pending();
      if (state == TxnState::kCompensating) {
        for (const BranchRecord& s : steps) {
          if (s.state == BranchState::kStepCompensating && !flying(s) &&
              s.attempts >= options.park_after_attempts) {
            plan.next_state = TxnState::kParked;
          }
        }
        if (plan.next_state == TxnState::kParked) return plan;  // the sweeper takes over
      }
      plan_compensation();
      return plan;
    }

    case TxnState::kActive:
    case TxnState::kPreparing:
    case TxnState::kCommitting:
    case TxnState::kCommitted:
    case TxnState::kAborting:
    case TxnState::kAborted: break;
  }
  return Status::IllegalTransition(std::string("not a saga state: ") + TxnStateName(state));
}

}  // namespace txc
