// The chaos tests' shared parts: seeded configuration, processes the test
// kills, pauses and restarts on purpose (and notices when one exits by
// itself), the fault loop, and the store audit (stale-epoch writes, changes of
// ownership).
//
// Thread-safety: a ManagedProcess, the FaultLoop and the StoreAudit are used
// by the test's main thread only (children must be started from it:
// ChildProcess kills them when the starting thread ends).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "tests/harness/process.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace chaos {

// TXC_CHAOS_SECONDS (default `default_seconds`) of faults, TXC_CHAOS_SEED
// (default: random). Printed on every run so a failure can be replayed.
struct ChaosConfig {
  uint64_t seed = 0;
  int64_t seconds = 0;
};
ChaosConfig ConfigFromEnv(int64_t default_seconds);

void SleepMs(int64_t ms);

// A child the test starts, faults and restarts, always from the main thread.
class ManagedProcess {
 public:
  enum class Kind { kReplica, kParticipant };

  ManagedProcess(std::string name, Kind kind, int port, std::vector<std::string> argv,
                 std::string log_path);
  ~ManagedProcess();

  const std::string& name() const { return name_; }
  Kind kind() const { return kind_; }
  int port() const { return port_; }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  bool up() const { return child_ != nullptr; }
  bool paused() const { return paused_; }

  // Starts it and waits (30 s) until it accepts connections on its port.
  Status Start();
  // SIGKILL, and waits until it is gone.
  Status Kill();
  // SIGSTOP / SIGCONT.
  Status Pause();
  Status Resume();
  // When it should run but has exited by itself: a description (exit status,
  // log tail), and it is marked down. Empty otherwise.
  std::string CheckUnexpectedExit();
  std::string LogTail(size_t bytes) const;

 private:
  const std::string name_;
  const Kind kind_;
  const int port_;
  const std::vector<std::string> argv_;
  const std::string log_path_;
  std::unique_ptr<testing::ChildProcess> child_;
  bool paused_ = false;
};

// The faults the loop injects, one at a time.
enum class FaultKind {
  kReplicaKillRestartBeforeTtl,  // SIGKILL a replica, restart it within its lease TTL
  kReplicaKillRestartAfterTtl,   // SIGKILL a replica, restart it after its lease expired
  kReplicaPauseBeyondTtl,        // SIGSTOP a replica for longer than the TTL, then SIGCONT
  kParticipantKillRestart,       // SIGKILL a participant service, restart it
};
const char* FaultKindName(FaultKind kind);

// What happened to the transactions a killed replica owned.
struct KillProbe {
  std::string node;
  FaultKind kind;
  int64_t killed_ms = 0;           // monotonic
  int64_t restarted_ms = 0;        // monotonic; 0 while down
  std::vector<std::string> gtids;  // unfinished and owned by it when it died
  bool done = false;
  int64_t resolved_after_ms = -1;   // all final, counted from the kill
  bool resolved_by_others = false;  // none of them finished under its own name
};

// Reads the shared PostgreSQL store the replicas use.
class StoreAudit {
 public:
  explicit StoreAudit(std::string conninfo) : conninfo_(std::move(conninfo)) {}

  // Creates chaos_stale_writes (every committed INSERT/UPDATE of txns whose
  // NEW.epoch is below the current lease epoch of NEW.owner, and every branch
  // write of such a transaction) and chaos_ownership_changes (every change of
  // a txns row's (owner, epoch)), with their triggers. Run after the
  // migrations (after the first replica started). Checks, in a transaction it
  // rolls back, that a stale write is indeed recorded.
  Status Install();
  // Rows of chaos_stale_writes, one line each.
  Result<std::vector<std::string>> StaleWrites();
  // {takeovers by another node, re-claims by the same node under a new epoch}.
  Result<std::pair<int64_t, int64_t>> OwnershipChanges();
  // Unfinished transactions owned by node.
  Result<std::vector<std::string>> UnfinishedOwnedBy(const std::string& node);
  // For each gtid: {state, owner}.
  Result<std::map<std::string, std::pair<int, std::string>>> States(
      const std::vector<std::string>& gtids);
  // gtid -> state of every transaction.
  Result<std::map<std::string, int>> AllStates();
  // Transactions not in a final state.
  Result<int64_t> UnfinishedCount();

 private:
  const std::string conninfo_;
};

bool FinalState(int state);

// Injects seeded random faults into `replicas` and `participants` for
// `seconds`, one at a time with a short gap, restarts whatever exits by itself
// (recording it), and measures how long a killed replica's transactions take
// to be resolved.
class FaultLoop {
 public:
  FaultLoop(ChaosConfig config, int64_t lease_ttl_ms, std::vector<ManagedProcess*> replicas,
            std::vector<ManagedProcess*> participants, StoreAudit* audit);

  // Runs the faults; returns when the time is up (the last fault healed).
  void Run();
  // Resumes and restarts everything; returns the monotonic time it finished.
  int64_t Heal();
  // One tick of bookkeeping: unexpected exits, kill probes. Also called while
  // waiting after the heal.
  void Tick();

  const std::map<FaultKind, int>& faults() const { return faults_; }
  const std::vector<std::string>& unexpected_exits() const { return unexpected_exits_; }
  const std::vector<KillProbe>& probes() const { return probes_; }
  std::string Summary() const;

 private:
  void Sleep(int64_t ms);  // ticking
  void PollProbes();
  int64_t Uniform(int64_t lo, int64_t hi);

  const ChaosConfig config_;
  const int64_t lease_ttl_ms_;
  std::vector<ManagedProcess*> replicas_;
  std::vector<ManagedProcess*> participants_;
  StoreAudit* audit_;
  std::mt19937_64 rng_;
  std::map<FaultKind, int> faults_;
  std::vector<std::string> unexpected_exits_;
  std::vector<KillProbe> probes_;
};

// A client of the coordinator replicas `endpoints` with short timeouts.
Result<std::unique_ptr<participant::CoordinatorClient>> MakeClient(
    std::vector<std::string> endpoints);

// What a client saw while asking for one answer again and again.
struct CallTrace {
  int not_owner_answers = 0;  // calls that ended in kNotOwner
  StatusCode last_code = StatusCode::kOk;
  std::string last_error;
};

// Whether asking again may give an answer (not a final refusal).
inline bool Retryable(StatusCode code) {
  return code != StatusCode::kInvalidArgument && code != StatusCode::kNotFound &&
         code != StatusCode::kIllegalTransition;
}

// Calls `call` (returning a Result) until it answers, fails for good, or
// `for_ms` passed, with backoff and jitter; records failures in `trace`.
template <typename Call>
auto RetryUntilAnswered(CallTrace* trace, int64_t for_ms, Call call) -> decltype(call()) {
  const int64_t deadline = MonotonicMs() + for_ms;
  for (int attempt = 1;; ++attempt) {
    auto r = call();
    if (r.ok()) return r;
    trace->last_code = r.status().code();
    trace->last_error = r.status().ToString();
    if (trace->last_code == StatusCode::kNotOwner) ++trace->not_owner_answers;
    if (!Retryable(trace->last_code) || MonotonicMs() > deadline) return r;
    SleepMs(BackoffDelayMs(BackoffPolicy{50, 1000, 2.0}, attempt));
  }
}

// min / median / max of a list of milliseconds, "-" when empty.
std::string Distribution(std::vector<int64_t> ms);

}  // namespace chaos
}  // namespace txc
