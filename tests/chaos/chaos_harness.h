// The chaos tests' shared parts: seeded configuration, processes the test
// kills, pauses and restarts on purpose (and notices when one exits by
// itself), the fault loop, and the store audit (stale-epoch writes, changes of
// ownership), and the ChaosTest fixture both chaos tests build on (replicas on
// one store, the audit, client threads, the fault loop and the settling).
//
// Thread-safety: a ManagedProcess, the FaultLoop, the StoreAudit and the
// ChaosTest's methods are used by the test's main thread only (children must
// be started from it: ChildProcess kills them when the starting thread ends).
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/status.h"
#include "tests/harness/pg_cluster.h"
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

// A client of the coordinator replicas `endpoints` with short timeouts, over
// the suite's transport.
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

// The fixture of a chaos test: a seeded configuration, the shared PostgreSQL,
// a temp dir, coordinator replicas sharing one store database, the
// participants the test adds, the store audit, the client threads and the
// fault loop. Methods are called from the test's main thread; stop_ is read
// by the client threads.
class ChaosTest : public ::testing::Test {
 protected:
  // The milliseconds of a run, from the start of the faults (monotonic).
  struct Settling {
    bool settled = false;     // every client ended and the test's check held
    int64_t start_ms = 0;     // monotonic, the faults began
    int64_t healed_ms = 0;    // monotonic, everything was healed
    int64_t settle_ms = 0;    // from the heal until settled (or the timeout)
    int64_t resolve_ms = -1;  // from the heal until the check first held
    int64_t clients_ms = -1;  // from the heal until every client had ended
  };

  // Reads the configuration (faults for TXC_CHAOS_SECONDS, default
  // `default_seconds`) and prints the seed line headed `label`; makes the temp
  // dir, the store database `store_name` and `replicas` coordinator replicas
  // "replica-<i>" on it (not started): `coordinator_bin` with the flags every
  // chaos test gives it, the suite's TLS flags (suite_tls.h), then `extra_flags`.
  void SetUpReplicas(const std::string& label, int64_t default_seconds,
                     const std::string& dir_prefix, const std::string& store_name,
                     const std::string& coordinator_bin, int replicas, int64_t lease_ttl_ms,
                     const std::vector<std::string>& extra_flags);
  // The replicas' endpoints, comma-separated.
  std::string AllReplicas() const;
  // Adds a participant service (not started) on `port`, logging to
  // "<name>.log" in the temp dir; `argv` gets the suite's service TLS flags.
  ManagedProcess* AddParticipant(const std::string& name, int port, std::vector<std::string> argv);
  // Starts the first replica (it applies the store's migrations), installs the
  // audit, then starts the other replicas and the participants.
  void StartAll();
  // On a failure, logs every process's log tail; then stops them all.
  void TearDown() override;

  // Starts `loop(id, endpoints)` on `with_all` threads that know every replica
  // (each starting at another) and `with_one` threads that know one each.
  std::vector<std::thread> StartClients(
      int with_all, int with_one, const std::function<void(int, std::vector<std::string>)>& loop);
  // Runs the fault loop (faults_) over the replicas and participants and heals,
  // sets stop_, and waits up to `timeout_ms` until every client thread ended
  // and `resolved()` holds (asked after each Tick). Joins the clients.
  Settling RunFaultsAndSettle(std::vector<std::thread>* clients, int64_t timeout_ms,
                              const std::function<bool()>& resolved);

  // The lines every chaos test's summary ends with: takeovers and re-claims
  // (StoreAudit::OwnershipChanges), the times after the heal, the faults.
  std::string RecoverySummary(const Settling& run,
                              const std::pair<int64_t, int64_t>& ownership) const;

  // The checks every chaos test ends with: nothing exited by itself, no store
  // write by a stale (node, epoch).
  void ExpectNoUnexpectedExits();
  void ExpectNoStaleWrites(const std::vector<std::string>& stale);

  ChaosConfig config_;
  int64_t lease_ttl_ms_ = 0;
  testing::PgCluster* pg_ = nullptr;
  std::unique_ptr<testing::TempDir> dir_;
  std::string store_db_;
  std::vector<std::string> replica_endpoints_;
  // Flags for one replica only (by index), added after extra_flags; set before
  // SetUpReplicas.
  std::map<int, std::vector<std::string>> replica_flags_;
  std::vector<std::unique_ptr<ManagedProcess>> replicas_;
  std::vector<std::unique_ptr<ManagedProcess>> participants_;
  std::unique_ptr<StoreAudit> audit_;
  std::unique_ptr<FaultLoop> faults_;  // made by RunFaultsAndSettle
  std::atomic<bool> stop_{false};      // the client threads stop when set
};

}  // namespace chaos
}  // namespace txc
