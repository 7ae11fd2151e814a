#include "txc/participant/participant_server.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <limits>

#include "common/auth_policy.h"
#include "common/endpoint_allow_list.h"
#include "common/log_rate_limiter.h"
#include "common/peer_identity.h"
#include "common/strings.h"
#include "gen-cpp/Participant.h"

namespace txc {
namespace participant {

namespace {

BranchContext ToBranchContext(const wire::BranchRequest& req) {
  BranchContext ctx;
  ctx.gtid = req.gtid;
  ctx.branch_id = req.branch_id;
  ctx.resource = req.resource;
  ctx.payload = req.payload;
  ctx.deadline_unix_ms = req.context.deadline_unix_ms;
  ctx.coordinators = req.context.coordinators;
  return ctx;
}

StepContext ToStepContext(const wire::StepRequest& req) {
  StepContext ctx;
  ctx.gtid = req.gtid;
  ctx.step_id = req.step_id;
  ctx.name = req.name;
  ctx.payload = req.payload;
  ctx.attempt = req.attempt;
  ctx.deadline_unix_ms = req.context.deadline_unix_ms;
  ctx.coordinators = req.context.coordinators;
  return ctx;
}

wire::StepResult ToWire(const StepResult& r) {
  wire::StepResult out;
  switch (r.outcome) {
    case StepOutcome::kSuccess: out.outcome = wire::StepOutcome::SUCCESS; break;
    case StepOutcome::kFailure: out.outcome = wire::StepOutcome::FAILURE; break;
    case StepOutcome::kRetryLater: out.outcome = wire::StepOutcome::RETRY_LATER; break;
  }
  out.message = r.message;
  return out;
}

wire::Unavailable MakeUnavailable(const std::string& message) {
  wire::Unavailable u;
  u.message = message;
  u.retry_after_ms = 0;
  return u;
}

// The wire::Participant handler: validates, converts, calls the hooks,
// converts back. Shared by every connection thread.
class Handler : public wire::ParticipantIf {
 public:
  Handler(std::shared_ptr<Participant> participant, std::shared_ptr<BarrierStore> barrier,
          std::vector<std::string> allowed_coordinator_identities, ParticipantServer* server)
      : participant_(std::move(participant)),
        barrier_(std::move(barrier)),
        allowed_identities_(std::move(allowed_coordinator_identities)),
        server_(server) {}

  wire::Vote::type prepare(const wire::BranchRequest& req) override {
    Admit("prepare", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    Vote vote = Vote::kAbort;
    try {
      vote = participant_->Prepare(ToBranchContext(req));
    } catch (const std::exception& e) {
      LOG(ERROR) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id)
                 << " prepare hook threw, voting abort: " << e.what();
      vote = Vote::kAbort;
    }
    VLOG(1) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id)
            << " prepare -> " << VoteName(vote);
    switch (vote) {
      case Vote::kPrepared: return wire::Vote::VOTE_PREPARED;
      case Vote::kReadOnly: return wire::Vote::VOTE_READ_ONLY;
      case Vote::kAbort: return wire::Vote::VOTE_ABORT;
    }
    return wire::Vote::VOTE_ABORT;
  }

  wire::Outcome::type commitOnePhase(const wire::BranchRequest& req) override {
    Admit("commitOnePhase", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    Outcome outcome = Outcome::kPending;
    std::string error;
    try {
      outcome = participant_->CommitOnePhase(ToBranchContext(req));
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty() || outcome == Outcome::kPending) {
      if (error.empty()) error = "CommitOnePhase hook answered PENDING";
      LOG(ERROR) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id)
                 << " one-phase commit failed, coordinator will retry: " << error;
      throw MakeUnavailable("commitOnePhase failed: " + error);
    }
    VLOG(1) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id)
            << " one-phase commit -> " << OutcomeName(outcome);
    return outcome == Outcome::kCommit ? wire::Outcome::OUTCOME_COMMIT
                                       : wire::Outcome::OUTCOME_ABORT;
  }

  void commit(const wire::BranchRequest& req) override {
    Admit("commit", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    PhaseTwo(req, true);
  }

  void abort(const wire::BranchRequest& req) override {
    Admit("abort", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    PhaseTwo(req, false);
  }

  void action(wire::StepResult& out, const wire::StepRequest& req) override {
    Admit("action", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    out = ToWire(RunStep(req, false));
  }

  void compensate(wire::StepResult& out, const wire::StepRequest& req) override {
    Admit("compensate", req.gtid);
    server_->NoteCoordinators(req.context.coordinators);
    out = ToWire(RunStep(req, true));
  }

 private:
  // Throws PermissionDenied unless the caller may call this participant:
  // anyone when allowed_coordinator_identities is empty, else an authenticated peer one
  // of whose certificate names matches a pattern. Checked before anything of
  // the request is used (the coordinator endpoints in its context included).
  void Admit(const char* method, const std::string& gtid) {
    if (allowed_identities_.empty()) return;
    const PeerIdentity& caller = CurrentPeerIdentity();
    if (IdentityMatchesAny(allowed_identities_, caller)) return;
    static LogRateLimiter limiter(10000);
    const std::string who = caller.Describe();
    // Keyed by CN or peer host (not its ephemeral port): reconnecting does
    // not defeat the limit.
    const std::string key = caller.authenticated
                                ? "CN=" + caller.common_name
                                : caller.address.substr(0, caller.address.rfind(':'));
    if (auto d = limiter.Admit(key, MonotonicMs()); d.log) {
      LOG(WARNING) << "permission denied: " << method << " gtid=" << LogSafe(gtid) << " by " << who
                   << ": not an allowed coordinator identity" << d.Suffix();
    }
    wire::PermissionDenied e;
    e.__set_message(std::string(method) + ": permission denied for " + who +
                    ": this participant accepts calls from allowed coordinator identities only" +
                    (caller.authenticated ? "" : " (no verified client certificate)"));
    e.__set_identity(caller.authenticated ? caller.common_name : "");
    e.__set_method(method);
    e.__set_peer_address(caller.address);
    throw e;
  }

  void PhaseTwo(const wire::BranchRequest& req, bool commit) {
    const char* what = commit ? "commit" : "abort";
    std::string error;
    try {
      if (commit) {
        participant_->Commit(ToBranchContext(req));
      } else {
        participant_->Abort(ToBranchContext(req));
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    if (!error.empty()) {
      LOG(ERROR) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id) << " "
                 << what << " hook failed, coordinator will retry: " << error;
      throw MakeUnavailable(std::string(what) + " failed: " + error);
    }
    VLOG(1) << "gtid=" << LogSafe(req.gtid) << " branch=" << LogSafe(req.branch_id) << " " << what
            << " done";
  }

  StepResult RunStep(const wire::StepRequest& req, bool compensate) {
    const char* what = compensate ? "compensate" : "action";
    StepContext ctx = ToStepContext(req);
    auto hook = [&](const StepContext& c) {
      return compensate ? participant_->Compensate(c) : participant_->Action(c);
    };
    StepResult result;
    if (barrier_ != nullptr) {
      Result<StepResult> r =
          compensate ? barrier_->Compensate(ctx, hook) : barrier_->Action(ctx, hook);
      if (r.ok()) {
        result = *r;
      } else {
        LOG(ERROR) << "gtid=" << LogSafe(req.gtid) << " step=" << LogSafe(req.step_id) << " "
                   << what << " under barrier failed, answering retry later: " << r.status();
        result = StepResult::RetryLater(r.status().ToString());
      }
    } else {
      try {
        result = hook(ctx);
      } catch (const std::exception& e) {
        LOG(ERROR) << "gtid=" << LogSafe(req.gtid) << " step=" << LogSafe(req.step_id) << " "
                   << what << " hook threw, answering retry later: " << e.what();
        result = StepResult::RetryLater(std::string(what) + " threw: " + e.what());
      }
    }
    VLOG(1) << "gtid=" << LogSafe(req.gtid) << " step=" << LogSafe(req.step_id) << " " << what
            << " '" << LogSafe(req.name) << "' attempt " << req.attempt << " -> "
            << StepOutcomeName(result.outcome)
            << (result.message.empty() ? "" : ": " + result.message);
    return result;
  }

  std::shared_ptr<Participant> participant_;
  std::shared_ptr<BarrierStore> barrier_;
  const std::vector<std::string> allowed_identities_;  // identity patterns; empty: anyone
  ParticipantServer* server_;
};

// Whether the participant port is served over TLS.
bool TlsConfigured(const ParticipantServerOptions& options) { return options.tls.enabled(); }

std::string PendingKey(const PreparedBranch& b) { return b.gtid + '\0' + b.branch_id; }

constexpr int64_t kNever = std::numeric_limits<int64_t>::max() / 2;

}  // namespace

ParticipantServer::ParticipantServer(std::shared_ptr<Participant> participant,
                                     ParticipantServerOptions options)
    : participant_(std::move(participant)), options_(std::move(options)) {}

ParticipantServer::~ParticipantServer() { Stop(); }

std::shared_ptr<wire::ParticipantIf> ParticipantServer::HandlerForTests() {
  return std::make_shared<Handler>(participant_, options_.barrier,
                                   options_.allowed_coordinator_identities, this);
}

Status ParticipantServer::Start() {
  if (!options_.coordinators.empty()) {
    CoordinatorClientOptions copts = options_.coordinator_client;
    copts.endpoints = options_.coordinators;
    TXC_ASSIGN_OR_RETURN(auto client, CoordinatorClient::Create(copts));
    std::lock_guard<std::mutex> lock(mu_);
    client_ = std::move(client);
    has_client_.store(true, std::memory_order_release);
  }
  if (!IsLoopbackHost(options_.host) && !TlsConfigured(options_)) {
    LOG(WARNING) << "participant server listens on " << options_.host
                 << " without TLS: anyone who reaches it can call its hooks"
                 << (options_.allowed_coordinator_identities.empty()
                         ? ""
                         : " (allowed_coordinator_identities needs TLS client certificates: every "
                           "plaintext call is refused)");
  }
  auto handler = HandlerForTests();
  ThriftServerOptions sopts;
  sopts.host = options_.host;
  sopts.port = options_.port;
  sopts.max_message_bytes = options_.max_message_bytes;
  sopts.tls = options_.tls;
  sopts.max_connections_per_peer = options_.max_connections_per_peer;
  server_ =
      std::make_unique<ThriftServer>(std::make_shared<wire::ParticipantProcessor>(handler), sopts);
  Status s = server_->Start();
  if (!s.ok()) {
    server_.reset();
    return s;
  }
  VLOG(1) << "participant server listening on " << endpoint();
  if (options_.run_recovery) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = false;
      next_scan_ms_ = 0;
    }
    recovery_thread_ = std::thread([this] { RecoveryLoop(); });
  }
  return Status::Ok();
}

void ParticipantServer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (recovery_thread_.joinable()) recovery_thread_.join();
  if (server_ != nullptr) {
    server_->Stop();
    server_.reset();
  }
}

int ParticipantServer::port() const { return server_ == nullptr ? 0 : server_->port(); }

std::string ParticipantServer::endpoint() const {
  std::string host = options_.advertise_host;
  if (host.empty()) {
    host = options_.host == "0.0.0.0" || options_.host.empty() ? "127.0.0.1" : options_.host;
  }
  return host + ":" + std::to_string(port());
}

RecoveryStats ParticipantServer::recovery_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RecoveryStats s = stats_;
  s.unresolved = static_cast<int64_t>(pending_.size());
  return s;
}

bool ParticipantServer::WaitForRecovery(int64_t timeout_ms) const {
  std::unique_lock<std::mutex> lock(mu_);
  return changed_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                           [&] { return stats_.scans > 0 && pending_.empty(); });
}

std::shared_ptr<CoordinatorClient> ParticipantServer::coordinator_client() const {
  std::lock_guard<std::mutex> lock(mu_);
  return client_;
}

Status ParticipantServer::ReloadTls() {
  Status result;
  if (server_ != nullptr && server_->tls()) result = server_->ReloadTls();
  std::shared_ptr<CoordinatorClient> client = coordinator_client();
  if (client != nullptr && options_.coordinator_client.tls.enabled()) {
    Status reloaded = client->ReloadTls();
    if (result.ok()) result = reloaded;
  }
  return result;
}

void ParticipantServer::NoteCoordinators(const std::vector<std::string>& endpoints) {
  if (endpoints.empty() || has_client_.load(std::memory_order_acquire)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (client_ != nullptr) return;
    CoordinatorClientOptions copts = options_.coordinator_client;
    copts.endpoints = endpoints;
    auto client = CoordinatorClient::Create(copts);
    if (!client.ok()) {
      LOG(WARNING) << "ignoring coordinator endpoints from a request: " << client.status();
      return;
    }
    client_ = std::move(client).value();
    has_client_.store(true, std::memory_order_release);
    VLOG(1) << "recovery: coordinator endpoints learned from a request";
  }
  changed_.notify_all();
}

void ParticipantServer::RecoveryLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    int64_t now = MonotonicMs();
    if (now >= next_scan_ms_) {
      lock.unlock();
      std::vector<PreparedBranch> branches;
      std::string error;
      try {
        branches = participant_->Recover();
      } catch (const std::exception& e) {
        error = e.what();
      }
      lock.lock();
      now = MonotonicMs();
      if (error.empty()) {
        ++stats_.scans;
        scan_attempts_ = 0;
        next_scan_ms_ = options_.recovery_rescan_interval_ms > 0
                            ? now + options_.recovery_rescan_interval_ms
                            : kNever;
        for (auto& b : branches) {
          const std::string key = PendingKey(b);
          if (pending_.count(key) != 0) continue;
          VLOG(1) << "gtid=" << b.gtid << " branch=" << b.branch_id
                  << " recovery: found prepared, asking the coordinator";
          pending_[key] = Pending{std::move(b), 0, now};
        }
      } else {
        ++scan_attempts_;
        next_scan_ms_ = now + BackoffDelayMs(options_.recovery_backoff, scan_attempts_);
        LOG(ERROR) << "recovery: Recover() hook failed (attempt " << scan_attempts_
                   << "), retrying: " << error;
      }
      changed_.notify_all();
      continue;
    }
    // Resolve due branches, one at a time, without holding the lock.
    std::shared_ptr<CoordinatorClient> client = client_;
    std::vector<Pending> due;
    if (client != nullptr) {
      for (auto& [key, p] : pending_) {
        if (p.next_attempt_ms <= now) due.push_back(p);
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (const Pending& p : due) {
        const PreparedBranch& b = p.branch;
        BranchContext ctx;
        ctx.gtid = b.gtid;
        ctx.branch_id = b.branch_id;
        ctx.resource = b.resource;
        ctx.coordinators = client->endpoints();
        bool resolved = false;
        bool got_answer = false;
        std::string why;
        Result<Outcome> outcome = client->QueryOutcome(b.gtid, b.branch_id);
        if (outcome.ok()) {
          got_answer = true;
          if (*outcome == Outcome::kPending) {
            why = "coordinator says PENDING";
          } else {
            try {
              if (*outcome == Outcome::kCommit) {
                participant_->Commit(ctx);
              } else {
                participant_->Abort(ctx);
              }
              resolved = true;
            } catch (const std::exception& e) {
              why = std::string(*outcome == Outcome::kCommit ? "Commit" : "Abort") +
                    " hook failed: " + e.what();
            }
          }
        } else {
          why = "coordinator unreachable: " + outcome.status().ToString();
        }
        lock.lock();
        if (got_answer) ++stats_.queries;
        auto it = pending_.find(PendingKey(b));
        if (it != pending_.end()) {
          if (resolved) {
            const bool commit = *outcome == Outcome::kCommit;
            ++(commit ? stats_.committed : stats_.aborted);
            VLOG(1) << "gtid=" << b.gtid << " branch=" << b.branch_id
                    << " recovery: " << (commit ? "committed" : "aborted")
                    << " as the coordinator decided";
            pending_.erase(it);
          } else {
            ++stats_.retries;
            ++it->second.attempts;
            const int64_t delay = BackoffDelayMs(options_.recovery_backoff, it->second.attempts);
            it->second.next_attempt_ms = MonotonicMs() + delay;
            if (got_answer && *outcome == Outcome::kPending) {
              VLOG(1) << "gtid=" << b.gtid << " branch=" << b.branch_id
                      << " recovery: outcome pending, asking again in " << delay << " ms";
            } else {
              LOG(ERROR) << "gtid=" << b.gtid << " branch=" << b.branch_id
                         << " recovery: unresolved (" << why << "), asking again in " << delay
                         << " ms";
            }
          }
        }
        changed_.notify_all();
        const bool stop = stopping_;
        lock.unlock();
        if (stop) break;
      }
      lock.lock();
      continue;
    }
    int64_t wake = next_scan_ms_;
    if (client != nullptr) {
      for (const auto& [key, p] : pending_) wake = std::min(wake, p.next_attempt_ms);
    }
    const int64_t wait_ms = std::max<int64_t>(1, std::min<int64_t>(wake - now, 60000));
    changed_.wait_for(lock, std::chrono::milliseconds(wait_ms));
  }
}

}  // namespace participant
}  // namespace txc
