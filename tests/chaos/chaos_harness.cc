#include "tests/chaos/chaos_harness.h"

#include <glog/logging.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <pqxx/pqxx>
#include <sstream>
#include <thread>

#include "common/backoff.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace chaos {

namespace {

constexpr int64_t kStartTimeoutMs = 30000;
constexpr int64_t kStopTimeoutMs = 10000;
constexpr int64_t kTickMs = 50;

std::string Join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

}  // namespace

ChaosConfig ConfigFromEnv(int64_t default_seconds) {
  ChaosConfig c;
  const char* seed = std::getenv("TXC_CHAOS_SEED");
  if (seed != nullptr && *seed != '\0') {
    c.seed = std::strtoull(seed, nullptr, 10);
  } else {
    c.seed =
        (static_cast<uint64_t>(std::random_device{}()) << 20) ^ static_cast<uint64_t>(NowUnixMs());
    c.seed %= 1000000000;
  }
  const char* seconds = std::getenv("TXC_CHAOS_SECONDS");
  c.seconds = seconds != nullptr && *seconds != '\0' ? std::atoll(seconds) : default_seconds;
  if (c.seconds < 1) c.seconds = 1;
  return c;
}

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

Result<std::unique_ptr<participant::CoordinatorClient>> MakeClient(
    std::vector<std::string> endpoints) {
  participant::CoordinatorClientOptions co;
  co.endpoints = std::move(endpoints);
  co.connect_timeout_ms = 500;
  co.rpc_timeout_ms = 3000;
  co.call_deadline_ms = 8000;
  co.max_attempts = 10;
  co.tls = testing::SuiteTls::Get().ClientTls();
  return participant::CoordinatorClient::Create(co);
}

// ---- ManagedProcess ----------------------------------------------------------------

ManagedProcess::ManagedProcess(std::string name, Kind kind, int port, std::vector<std::string> argv,
                               std::string log_path)
    : name_(std::move(name)),
      kind_(kind),
      port_(port),
      argv_(std::move(argv)),
      log_path_(std::move(log_path)) {}

ManagedProcess::~ManagedProcess() {
  if (child_ && paused_) child_->Kill(SIGCONT).IgnoreError();
}

Status ManagedProcess::Start() {
  if (child_) return Status::Ok();
  testing::ChildProcess::Options o;
  o.argv = argv_;
  o.log_path = log_path_;
  TXC_ASSIGN_OR_RETURN(child_, testing::ChildProcess::Start(o));
  paused_ = false;
  testing::WaitUntil([&] { return !child_->IsRunning() || testing::WaitForPort(port_, 100).ok(); },
                     kStartTimeoutMs);
  if (!child_->IsRunning()) {
    auto exit = child_->Wait(0);
    child_.reset();
    return Status::Internal(name_ + " exited while starting (" +
                            (exit.ok() ? exit->ToString() : exit.status().ToString()) + "):\n" +
                            LogTail(3000));
  }
  if (!testing::WaitForPort(port_, 100).ok()) {
    return Status::Timeout(name_ + " does not accept connections:\n" + LogTail(3000));
  }
  return Status::Ok();
}

Status ManagedProcess::Kill() {
  if (!child_) return Status::Ok();
  TXC_RETURN_IF_ERROR(child_->Kill(SIGKILL));
  auto exit = child_->Wait(kStopTimeoutMs);
  if (!exit.ok()) return exit.status();
  child_.reset();
  paused_ = false;
  return Status::Ok();
}

Status ManagedProcess::Pause() {
  if (!child_) return Status::Ok();
  TXC_RETURN_IF_ERROR(child_->Kill(SIGSTOP));
  paused_ = true;
  return Status::Ok();
}

Status ManagedProcess::Resume() {
  if (!child_ || !paused_) return Status::Ok();
  TXC_RETURN_IF_ERROR(child_->Kill(SIGCONT));
  paused_ = false;
  return Status::Ok();
}

std::string ManagedProcess::CheckUnexpectedExit() {
  if (!child_ || child_->IsRunning()) return "";
  auto exit = child_->Wait(0);
  child_.reset();
  paused_ = false;
  return name_ + " exited by itself (" + (exit.ok() ? exit->ToString() : exit.status().ToString()) +
         "); its log ends:\n" + LogTail(1500);
}

std::string ManagedProcess::LogTail(size_t bytes) const {
  std::string all = testing::ReadFileOrEmpty(log_path_);
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

// ---- StoreAudit ------------------------------------------------------------------------

bool FinalState(int state) {
  // COMMITTED, ABORTED, SUCCEEDED, COMPENSATED (coordinator/core/states.h).
  return state == 4 || state == 6 || state == 11 || state == 13;
}

Status StoreAudit::Install() {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::work w(conn);
    w.exec(R"SQL(
CREATE TABLE chaos_stale_writes (
  at_ms bigint NOT NULL, tbl text NOT NULL, op text NOT NULL, gtid text NOT NULL,
  branch_id text, owner text NOT NULL, epoch bigint NOT NULL, lease_epoch bigint NOT NULL,
  state integer NOT NULL);
CREATE TABLE chaos_ownership_changes (
  at_ms bigint NOT NULL, gtid text NOT NULL, old_owner text NOT NULL, old_epoch bigint NOT NULL,
  new_owner text NOT NULL, new_epoch bigint NOT NULL, state integer NOT NULL);

CREATE FUNCTION chaos_audit_txns() RETURNS trigger AS $$
DECLARE current_epoch bigint;
BEGIN
  SELECT epoch INTO current_epoch FROM leases WHERE node_id = NEW.owner;
  IF current_epoch IS NOT NULL AND NEW.epoch < current_epoch THEN
    INSERT INTO chaos_stale_writes VALUES (
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'txns', TG_OP, NEW.gtid, NULL,
      NEW.owner, NEW.epoch, current_epoch, NEW.state);
  END IF;
  IF TG_OP = 'UPDATE' AND (OLD.owner <> NEW.owner OR OLD.epoch <> NEW.epoch) THEN
    INSERT INTO chaos_ownership_changes VALUES (
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint, NEW.gtid, OLD.owner, OLD.epoch,
      NEW.owner, NEW.epoch, NEW.state);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER chaos_audit_txns AFTER INSERT OR UPDATE ON txns
  FOR EACH ROW EXECUTE FUNCTION chaos_audit_txns();

CREATE FUNCTION chaos_audit_branches() RETURNS trigger AS $$
DECLARE txn_owner text; txn_epoch bigint; current_epoch bigint;
BEGIN
  SELECT t.owner, t.epoch, l.epoch INTO txn_owner, txn_epoch, current_epoch
    FROM txns t JOIN leases l ON l.node_id = t.owner WHERE t.gtid = NEW.gtid;
  IF current_epoch IS NOT NULL AND txn_epoch < current_epoch THEN
    INSERT INTO chaos_stale_writes VALUES (
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 'branches', TG_OP, NEW.gtid,
      NEW.branch_id, txn_owner, txn_epoch, current_epoch, NEW.state);
  END IF;
  RETURN NULL;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER chaos_audit_branches AFTER INSERT OR UPDATE ON branches
  FOR EACH ROW EXECUTE FUNCTION chaos_audit_branches();
)SQL");
    w.commit();
  } catch (const std::exception& e) {
    return Status::Internal(std::string("installing the audit triggers: ") + e.what());
  }
  // The audit must be able to fail: a write under epoch 1 of a node whose
  // lease is at epoch 2 is recorded (inside a transaction rolled back).
  try {
    pqxx::connection conn(conninfo_);
    pqxx::work w(conn);
    w.exec(
        "INSERT INTO leases (node_id, endpoint, epoch, expires_ms) "
        "VALUES ('chaos-audit-probe', '127.0.0.1:1', 2, 0);"
        "INSERT INTO txns (gtid, kind, state, owner, epoch, created_ms, updated_ms, deadline_ms, "
        "next_attempt_ms, payload) VALUES ('chaos-audit-probe', 1, 1, 'chaos-audit-probe', 1, 0, "
        "0, 0, 0, ''::bytea);"
        "UPDATE txns SET state = 6 WHERE gtid = 'chaos-audit-probe'");
    const int64_t recorded =
        w.exec1("SELECT count(*) FROM chaos_stale_writes WHERE gtid = 'chaos-audit-probe'")[0]
            .as<int64_t>();
    w.abort();
    if (recorded != 2) {
      return Status::Internal("the stale-write audit recorded " + std::to_string(recorded) +
                              " of 2 stale writes");
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("checking the audit triggers: ") + e.what());
  }
  return Status::Ok();
}

Result<std::vector<std::string>> StoreAudit::StaleWrites() {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    std::vector<std::string> out;
    for (const auto& row :
         n.exec("SELECT tbl, op, gtid, coalesce(branch_id, ''), owner, epoch, lease_epoch, state, "
                "at_ms FROM chaos_stale_writes ORDER BY at_ms")) {
      std::ostringstream line;
      line << row[0].c_str() << " " << row[1].c_str() << " gtid=" << row[2].c_str()
           << (row[3].size() > 0 ? std::string(" branch=") + row[3].c_str() : "") << " by ("
           << row[4].c_str() << ", epoch " << row[5].c_str() << ") while the lease epoch was "
           << row[6].c_str() << ", state " << row[7].c_str() << " at " << row[8].c_str();
      out.push_back(line.str());
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading chaos_stale_writes: ") + e.what());
  }
}

Result<std::pair<int64_t, int64_t>> StoreAudit::OwnershipChanges() {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    auto r = n.exec1(
        "SELECT count(*) FILTER (WHERE new_owner <> old_owner), "
        "count(*) FILTER (WHERE new_owner = old_owner) FROM chaos_ownership_changes");
    return std::make_pair(r[0].as<int64_t>(), r[1].as<int64_t>());
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading chaos_ownership_changes: ") + e.what());
  }
}

Result<std::vector<std::string>> StoreAudit::UnfinishedOwnedBy(const std::string& node) {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    std::vector<std::string> out;
    for (const auto& row : n.exec_params(
             "SELECT gtid FROM txns WHERE owner = $1 AND state NOT IN (4, 6, 11, 13)", node)) {
      out.push_back(row[0].c_str());
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading txns: ") + e.what());
  }
}

Result<std::map<std::string, std::pair<int, std::string>>> StoreAudit::States(
    const std::vector<std::string>& gtids) {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    std::map<std::string, std::pair<int, std::string>> out;
    for (const auto& row :
         n.exec_params("SELECT gtid, state, owner FROM txns WHERE gtid = ANY(string_to_array($1, "
                       "chr(31)))",
                       Join(gtids, std::string(1, '\x1f')))) {
      out[row[0].c_str()] = {row[1].as<int>(), row[2].c_str()};
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading txns: ") + e.what());
  }
}

Result<std::map<std::string, int>> StoreAudit::AllStates() {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    std::map<std::string, int> out;
    for (const auto& row : n.exec("SELECT gtid, state FROM txns")) {
      out[row[0].c_str()] = row[1].as<int>();
    }
    return out;
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading txns: ") + e.what());
  }
}

Result<int64_t> StoreAudit::UnfinishedCount() {
  try {
    pqxx::connection conn(conninfo_);
    pqxx::nontransaction n(conn);
    return n.exec1("SELECT count(*) FROM txns WHERE state NOT IN (4, 6, 11, 13)")[0].as<int64_t>();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("reading txns: ") + e.what());
  }
}

// ---- FaultLoop ---------------------------------------------------------------------------

const char* FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kReplicaKillRestartBeforeTtl: return "replica SIGKILL, restart before TTL";
    case FaultKind::kReplicaKillRestartAfterTtl: return "replica SIGKILL, restart after TTL";
    case FaultKind::kReplicaPauseBeyondTtl: return "replica SIGSTOP beyond TTL, SIGCONT";
    case FaultKind::kParticipantKillRestart: return "participant SIGKILL, restart";
  }
  return "?";
}

FaultLoop::FaultLoop(ChaosConfig config, int64_t lease_ttl_ms,
                     std::vector<ManagedProcess*> replicas,
                     std::vector<ManagedProcess*> participants, StoreAudit* audit)
    : config_(config),
      lease_ttl_ms_(lease_ttl_ms),
      replicas_(std::move(replicas)),
      participants_(std::move(participants)),
      audit_(audit),
      rng_(config.seed) {}

int64_t FaultLoop::Uniform(int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
}

void FaultLoop::Sleep(int64_t ms) {
  const int64_t until = MonotonicMs() + ms;
  while (MonotonicMs() < until) {
    Tick();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::min<int64_t>(kTickMs, until - MonotonicMs() + 1)));
  }
}

void FaultLoop::Tick() {
  std::vector<ManagedProcess*> all = replicas_;
  all.insert(all.end(), participants_.begin(), participants_.end());
  for (ManagedProcess* p : all) {
    std::string exited = p->CheckUnexpectedExit();
    if (exited.empty()) continue;
    LOG(ERROR) << exited;
    unexpected_exits_.push_back(exited);
    Status restarted =
        p->Start();  // keep the system running so the other checks still mean something
    if (!restarted.ok()) LOG(ERROR) << "restarting " << p->name() << ": " << restarted;
  }
  PollProbes();
}

void FaultLoop::PollProbes() {
  for (KillProbe& probe : probes_) {
    if (probe.done) continue;
    if (probe.gtids.empty()) {
      probe.done = true;
      continue;
    }
    auto states = audit_->States(probe.gtids);
    if (!states.ok()) continue;
    bool all_final = true, by_others = true;
    for (const auto& gtid : probe.gtids) {
      auto it = states->find(gtid);
      if (it == states->end()) continue;  // retention removed it: finished
      if (!FinalState(it->second.first)) all_final = false;
      if (it->second.second == probe.node) by_others = false;
    }
    if (all_final) {
      probe.done = true;
      probe.resolved_after_ms = MonotonicMs() - probe.killed_ms;
      probe.resolved_by_others = by_others;
    }
  }
}

void FaultLoop::Run() {
  const int64_t end = MonotonicMs() + config_.seconds * 1000;
  std::vector<FaultKind> kinds = {FaultKind::kReplicaKillRestartBeforeTtl,
                                  FaultKind::kReplicaKillRestartAfterTtl,
                                  FaultKind::kReplicaPauseBeyondTtl};
  if (!participants_.empty()) kinds.push_back(FaultKind::kParticipantKillRestart);
  // Each round takes every kind once, in a seeded random order: even a short
  // run has every kind of fault.
  std::vector<FaultKind> round;
  while (MonotonicMs() < end) {
    Sleep(Uniform(300, 1200));
    if (round.empty()) {
      round = kinds;
      std::shuffle(round.begin(), round.end(), rng_);
    }
    const FaultKind kind = round.back();
    round.pop_back();
    ++faults_[kind];
    if (kind == FaultKind::kParticipantKillRestart) {
      ManagedProcess* p = participants_[Uniform(0, participants_.size() - 1)];
      const int64_t down_ms = Uniform(100, 2000);
      LOG(INFO) << "chaos: SIGKILL " << p->name() << ", restart in " << down_ms << " ms";
      Status s = p->Kill();
      if (!s.ok()) LOG(ERROR) << "chaos: killing " << p->name() << ": " << s;
      Sleep(down_ms);
      s = p->Start();
      if (!s.ok()) LOG(ERROR) << "chaos: restarting " << p->name() << ": " << s;
      continue;
    }
    ManagedProcess* r = replicas_[Uniform(0, replicas_.size() - 1)];
    if (kind == FaultKind::kReplicaPauseBeyondTtl) {
      const int64_t paused_ms = lease_ttl_ms_ + Uniform(300, 2000);
      LOG(INFO) << "chaos: SIGSTOP " << r->name() << " for " << paused_ms << " ms";
      Status s = r->Pause();
      if (!s.ok()) LOG(ERROR) << "chaos: pausing " << r->name() << ": " << s;
      Sleep(paused_ms);
      s = r->Resume();
      if (!s.ok()) LOG(ERROR) << "chaos: resuming " << r->name() << ": " << s;
      continue;
    }
    const bool before_ttl = kind == FaultKind::kReplicaKillRestartBeforeTtl;
    const int64_t down_ms =
        before_ttl ? Uniform(50, lease_ttl_ms_ / 2) : lease_ttl_ms_ + Uniform(1000, 3000);
    LOG(INFO) << "chaos: SIGKILL " << r->name() << ", restart in " << down_ms << " ms";
    Status s = r->Kill();
    if (!s.ok()) LOG(ERROR) << "chaos: killing " << r->name() << ": " << s;
    KillProbe probe;
    probe.node = r->name();
    probe.kind = kind;
    probe.killed_ms = MonotonicMs();
    auto owned = audit_->UnfinishedOwnedBy(r->name());
    if (owned.ok()) probe.gtids = *owned;
    probes_.push_back(probe);
    const size_t index = probes_.size() - 1;
    Sleep(down_ms);
    s = r->Start();
    if (!s.ok()) LOG(ERROR) << "chaos: restarting " << r->name() << ": " << s;
    probes_[index].restarted_ms = MonotonicMs();
  }
}

int64_t FaultLoop::Heal() {
  std::vector<ManagedProcess*> all = replicas_;
  all.insert(all.end(), participants_.begin(), participants_.end());
  for (ManagedProcess* p : all) {
    Status s = p->Resume();
    if (s.ok() && !p->up()) s = p->Start();
    if (!s.ok()) LOG(ERROR) << "chaos: healing " << p->name() << ": " << s;
  }
  return MonotonicMs();
}

std::string FaultLoop::Summary() const {
  std::ostringstream out;
  int total = 0;
  for (const auto& [kind, n] : faults_) total += n;
  out << "faults: " << total;
  for (const auto& [kind, n] : faults_) out << "\n  " << FaultKindName(kind) << ": " << n;
  std::vector<int64_t> after_ttl_by_others, after_ttl_self, before_ttl;
  int unresolved = 0;
  size_t orphaned = 0;
  for (const KillProbe& p : probes_) {
    orphaned += p.gtids.size();
    if (p.gtids.empty()) continue;
    if (!p.done) {
      ++unresolved;
    } else if (p.kind == FaultKind::kReplicaKillRestartBeforeTtl) {
      before_ttl.push_back(p.resolved_after_ms);
    } else if (p.resolved_by_others) {
      after_ttl_by_others.push_back(p.resolved_after_ms);
    } else {
      after_ttl_self.push_back(p.resolved_after_ms);
    }
  }
  out << "\nunfinished transactions owned by a replica when it was SIGKILLed: " << orphaned
      << " over " << probes_.size() << " kills";
  out << "\n  SIGKILL -> all resolved by another replica (restart after TTL): "
      << Distribution(after_ttl_by_others) << " ms";
  out << "\n  SIGKILL -> resolved, some by the restarted replica (after TTL): "
      << Distribution(after_ttl_self) << " ms";
  out << "\n  SIGKILL -> resolved (restart before TTL): " << Distribution(before_ttl) << " ms";
  if (unresolved > 0) out << "\n  kills whose transactions were not all final yet: " << unresolved;
  out << "\nprocesses that exited by themselves: " << unexpected_exits_.size();
  return out.str();
}

std::string Distribution(std::vector<int64_t> ms) {
  if (ms.empty()) return "-";
  std::sort(ms.begin(), ms.end());
  std::ostringstream out;
  out << "n=" << ms.size() << " min " << ms.front() << " / median " << ms[ms.size() / 2]
      << " / max " << ms.back();
  return out.str();
}

// ---- ChaosTest ----------------------------------------------------------------------

void ChaosTest::SetUpReplicas(const std::string& label, int64_t default_seconds,
                              const std::string& dir_prefix, const std::string& store_name,
                              const std::string& coordinator_bin, int replicas,
                              int64_t lease_ttl_ms, const std::vector<std::string>& extra_flags) {
  config_ = ConfigFromEnv(default_seconds);
  std::printf(
      "[chaos] %s: seed %llu, %lld s of faults (replay: TXC_CHAOS_SEED=%llu "
      "TXC_CHAOS_SECONDS=%lld)\n",
      label.c_str(), static_cast<unsigned long long>(config_.seed),
      static_cast<long long>(config_.seconds), static_cast<unsigned long long>(config_.seed),
      static_cast<long long>(config_.seconds));
  std::fflush(stdout);
  RouteThriftLogsToGlog();  // rate-limited, see common/thrift_util.cc
  lease_ttl_ms_ = lease_ttl_ms;
  pg_ = testing::SharedPgCluster();
  dir_ = std::make_unique<testing::TempDir>(dir_prefix);
  store_db_ = pg_->ConnectionString(pg_->CreateUniqueDatabase(store_name));
  std::vector<int> replica_ports;
  for (int i = 0; i < replicas; ++i) replica_ports.push_back(testing::FreeLoopbackPort());
  for (int port : replica_ports) {
    replica_endpoints_.push_back("127.0.0.1:" + std::to_string(port));
  }
  for (int i = 0; i < replicas; ++i) {
    const std::string node = "replica-" + std::to_string(i);
    std::vector<std::string> argv = {coordinator_bin,
                                     "--host=127.0.0.1",
                                     "--port=" + std::to_string(replica_ports[i]),
                                     "--advertise_endpoint=" + replica_endpoints_[i],
                                     "--data_dir=" + dir_->Child(node),
                                     "--store=" + store_db_,
                                     "--node_id=" + node,
                                     "--lease_ttl_ms=" + std::to_string(lease_ttl_ms),
                                     "--sweep_interval_ms=100",
                                     "--verbose=1"};
    testing::SuiteTls::Get().AppendCoordinatorFlags(&argv);
    argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
    if (auto own = replica_flags_.find(i); own != replica_flags_.end()) {
      argv.insert(argv.end(), own->second.begin(), own->second.end());
    }
    replicas_.push_back(std::make_unique<ManagedProcess>(node, ManagedProcess::Kind::kReplica,
                                                         replica_ports[i], std::move(argv),
                                                         dir_->Child(node + ".log")));
  }
}

std::string ChaosTest::AllReplicas() const { return Join(replica_endpoints_, ","); }

ManagedProcess* ChaosTest::AddParticipant(const std::string& name, int port,
                                          std::vector<std::string> argv) {
  testing::SuiteTls::Get().AppendServiceFlags(&argv);
  participants_.push_back(std::make_unique<ManagedProcess>(
      name, ManagedProcess::Kind::kParticipant, port, std::move(argv), dir_->Child(name + ".log")));
  return participants_.back().get();
}

void ChaosTest::StartAll() {
  ASSERT_TRUE(replicas_[0]->Start().ok()) << replicas_[0]->LogTail(3000);
  audit_ = std::make_unique<StoreAudit>(store_db_);
  Status installed = audit_->Install();
  ASSERT_TRUE(installed.ok()) << installed;
  for (size_t i = 1; i < replicas_.size(); ++i) {
    Status s = replicas_[i]->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
  for (auto& p : participants_) {
    Status s = p->Start();
    ASSERT_TRUE(s.ok()) << s;
  }
}

void ChaosTest::TearDown() {
  if (HasFailure()) {
    for (auto& r : replicas_) LOG(ERROR) << r->name() << " log:\n" << r->LogTail(4000);
    for (auto& p : participants_) LOG(ERROR) << p->name() << " log:\n" << p->LogTail(2000);
  }
  participants_.clear();
  replicas_.clear();
}

std::vector<std::thread> ChaosTest::StartClients(
    int with_all, int with_one, const std::function<void(int, std::vector<std::string>)>& loop) {
  const int n = static_cast<int>(replica_endpoints_.size());
  std::vector<std::thread> clients;
  for (int i = 0; i < with_all; ++i) {
    std::vector<std::string> endpoints;  // every replica, each client starting elsewhere
    for (int k = 0; k < n; ++k) endpoints.push_back(replica_endpoints_[(i + k) % n]);
    clients.emplace_back([loop, i, endpoints] { loop(i, endpoints); });
  }
  for (int i = 0; i < with_one; ++i) {
    clients.emplace_back(
        [this, loop, with_all, i, n] { loop(with_all + i, {replica_endpoints_[i % n]}); });
  }
  return clients;
}

ChaosTest::Settling ChaosTest::RunFaultsAndSettle(std::vector<std::thread>* clients,
                                                  int64_t timeout_ms,
                                                  const std::function<bool()>& resolved) {
  std::vector<ManagedProcess*> replicas, participants;
  for (auto& r : replicas_) replicas.push_back(r.get());
  for (auto& p : participants_) participants.push_back(p.get());
  faults_ =
      std::make_unique<FaultLoop>(config_, lease_ttl_ms_, replicas, participants, audit_.get());
  Settling out;
  out.start_ms = MonotonicMs();
  faults_->Run();
  out.healed_ms = faults_->Heal();
  stop_.store(true);

  std::atomic<int> clients_done{0};
  std::thread joiner([&] {
    for (auto& t : *clients) t.join();
    clients_done.store(1);
  });
  out.settled = testing::WaitUntil(
      [&] {
        faults_->Tick();
        // Read whether the clients are done *before* the store: a submit
        // accepted after the store was read (a client's last retry) would
        // otherwise count as settled while its saga still runs.
        const bool clients = clients_done.load() != 0;
        const bool done = resolved();
        if (done && out.resolve_ms < 0) out.resolve_ms = MonotonicMs() - out.healed_ms;
        if (clients && out.clients_ms < 0) out.clients_ms = MonotonicMs() - out.healed_ms;
        return done && clients;
      },
      timeout_ms);
  out.settle_ms = MonotonicMs() - out.healed_ms;
  joiner.join();  // the clients give up after their own retry limit
  return out;
}

std::string ChaosTest::RecoverySummary(const Settling& run,
                                       const std::pair<int64_t, int64_t>& ownership) const {
  char line[256];
  std::snprintf(line, sizeof(line),
                "[chaos] takeovers by another replica: %lld, re-claims by a restarted replica: "
                "%lld; after the heal: all final in %lld ms, clients done in %lld ms\n",
                static_cast<long long>(ownership.first), static_cast<long long>(ownership.second),
                static_cast<long long>(run.resolve_ms), static_cast<long long>(run.clients_ms));
  return line + std::string("[chaos] ") + faults_->Summary() + "\n";
}

void ChaosTest::ExpectNoUnexpectedExits() {
  EXPECT_TRUE(faults_->unexpected_exits().empty())
      << faults_->unexpected_exits().size() << " processes exited by themselves; first:\n"
      << (faults_->unexpected_exits().empty() ? "" : faults_->unexpected_exits()[0]);
}

void ChaosTest::ExpectNoStaleWrites(const std::vector<std::string>& stale) {
  EXPECT_TRUE(stale.empty()) << stale.size() << " store writes by a stale (node, epoch); first: "
                             << (stale.empty() ? "" : stale[0]);
}

}  // namespace chaos
}  // namespace txc
