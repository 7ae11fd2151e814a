#include "coordinator/server/coordinator_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include "common/async_thrift_server.h"
#include "common/auth_policy.h"
#include "common/backoff.h"
#include "common/endpoint_allow_list.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "gen-cpp/Coordinator.h"

namespace txc {
namespace {

std::string Hostname() {
  char name[256] = {0};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

bool IsWildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]";
}

// A port on `host` that was free a moment ago: bind to port 0 and read it back.
Result<int> PickFreePort(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* info = nullptr;
  const int rc = getaddrinfo(IsWildcard(host) ? nullptr : host.c_str(), "0", &hints, &info);
  if (rc != 0) {
    return Status::InvalidArgument("host '" + host + "': " + gai_strerror(rc));
  }
  int port = -1;
  std::string error = "no address";
  for (addrinfo* a = info; a != nullptr && port < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) == 0) {
      port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                         : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    } else {
      error = std::strerror(errno);
    }
    close(fd);
  }
  freeaddrinfo(info);
  if (port <= 0) return Status::Unavailable("cannot find a free port on " + host + ": " + error);
  return port;
}

// Takes an exclusive, non-blocking flock on `path` (created) and writes our
// pid into it; the lock lives as long as the returned descriptor.
// kUnavailable naming the holder when another process has it.
Result<int> LockFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status::Unavailable("cannot open lock file " + path + ": " + std::strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char holder[32] = {0};
    const ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
    close(fd);
    std::string who = n > 0 ? std::string(holder, static_cast<size_t>(n)) : "";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    if (err == EWOULDBLOCK) {
      return Status::Unavailable("another coordinator process" +
                                 (who.empty() ? std::string() : " (pid " + who + ")") +
                                 " already uses this SQLite store (lock " + path +
                                 "); stop it first, or give this one its own --data_dir");
    }
    return Status::Unavailable("cannot lock " + path + ": " + std::strerror(err));
  }
  const std::string pid = std::to_string(getpid()) + "\n";
  if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) < 0) {
    LOG(WARNING) << "cannot write the pid into " << path << ": " << std::strerror(errno);
  }
  return fd;
}

}  // namespace

// Everything that writes under one lease epoch. Torn down (by the destructor)
// when the last call that started on it returned.
struct CoordinatorServer::Incarnation {
  explicit Incarnation(NodeInfo n) : node(std::move(n)) {}
  ~Incarnation() {
    if (sweeper != nullptr) sweeper->Stop();
    if (service != nullptr) {
      service->SetTwoPhaseOps(nullptr);
      service->SetSagaOps(nullptr);
    }
    if (sweeper != nullptr) sweeper->SetSagaOps(nullptr);
    saga.reset();       // in-flight sagas stay in the store; they are resumed later
    sweeper.reset();    // before the 2PC driver it calls
    two_phase.reset();  // finishes queued phase-2 work; unfinished work stays for recovery
    log.reset();        // drains what is queued (nothing once fenced), answering async begins
    service.reset();    // after the log: an async begin's answer runs in the service
  }

  const NodeInfo node;
  // MonotonicMs() until which the lease is certainly ours; the group commit
  // writes nothing past it. 0 once the lease is lost.
  std::atomic<int64_t> lease_valid_until{0};

  // Declared in construction order.
  std::unique_ptr<GroupCommitter> log;
  std::unique_ptr<CoordinatorService> service;
  std::unique_ptr<TwoPhaseDriver> two_phase;
  std::unique_ptr<Sweeper> sweeper;
  std::unique_ptr<SagaDriver> saga;
};

// The incarnation's service, sharing ownership of the whole incarnation: a
// call in flight keeps its drivers and group commit alive until it returns.
std::shared_ptr<CoordinatorService> CoordinatorServer::ServiceOf(
    const std::shared_ptr<Incarnation>& inc) {
  return std::shared_ptr<CoordinatorService>(inc, inc->service.get());
}

CoordinatorServer::CoordinatorServer(CoordinatorServerOptions options)
    : options_(std::move(options)) {}

CoordinatorServer::~CoordinatorServer() { Stop(); }

std::string CoordinatorServer::StoreDescription() const {
  if (store_where_.is_postgres()) return "postgresql";
  return "sqlite:" + store_where_.target;
}

std::shared_ptr<CoordinatorServer::Incarnation> CoordinatorServer::Current() {
  std::lock_guard<std::mutex> lock(incarnation_mu_);
  return current_;
}

namespace {
// The part `member` of an incarnation, nullptr while there is none.
template <typename Inc, typename T>
T* PartOf(const std::shared_ptr<Inc>& inc, std::unique_ptr<T> Inc::*member) {
  return inc ? ((*inc).*member).get() : nullptr;
}
}  // namespace

GroupCommitter* CoordinatorServer::log() { return PartOf(Current(), &Incarnation::log); }
NodeInfo CoordinatorServer::node() {
  auto inc = Current();
  if (inc) return inc->node;
  return NodeInfo{node_id_, endpoint_, 0};
}
CoordinatorService* CoordinatorServer::service() {
  return PartOf(Current(), &Incarnation::service);
}
TwoPhaseDriver* CoordinatorServer::two_phase_driver() {
  return PartOf(Current(), &Incarnation::two_phase);
}
Sweeper* CoordinatorServer::sweeper() { return PartOf(Current(), &Incarnation::sweeper); }
SagaDriver* CoordinatorServer::saga_driver() { return PartOf(Current(), &Incarnation::saga); }

bool TransportSecurityConfigured(const CoordinatorServerOptions& options) {
  return options.tls.enabled();
}

Result<LeaseTiming> ResolveLeaseTiming(const CoordinatorServerOptions& o) {
  if (o.lease_ttl_ms < 100) {
    return Status::InvalidArgument("lease_ttl_ms must be at least 100, got " +
                                   std::to_string(o.lease_ttl_ms));
  }
  if (o.lease_renew_interval_ms < 0 || o.lease_renew_interval_ms >= o.lease_ttl_ms) {
    return Status::InvalidArgument(
        "lease_renew_interval_ms must be 0 (ttl/3) or below lease_ttl_ms");
  }
  LeaseTiming t;
  t.ttl_ms = o.lease_ttl_ms;
  t.renew_interval_ms =
      o.lease_renew_interval_ms > 0 ? o.lease_renew_interval_ms : o.lease_ttl_ms / 3;
  t.margin_ms = o.max_clock_skew_ms == -1 ? o.lease_ttl_ms / 10 : o.max_clock_skew_ms;
  if (t.margin_ms < 0 || t.margin_ms + t.renew_interval_ms >= t.ttl_ms) {
    return Status::InvalidArgument(
        "max_clock_skew_ms must be -1 (lease_ttl_ms / 10) or 0.." +
        std::to_string(t.ttl_ms - t.renew_interval_ms - 1) +
        " (below lease_ttl_ms minus the renew interval, so that a renewal keeps the lease "
        "live), got " +
        std::to_string(o.max_clock_skew_ms));
  }
  return t;
}

Status CheckListenSecurity(const CoordinatorServerOptions& o) {
  if (IsLoopbackHost(o.host) || TransportSecurityConfigured(o)) return Status::Ok();
  if (o.insecure) {
    LOG(WARNING) << "INSECURE: listening on " << (o.host.empty() ? "0.0.0.0" : o.host)
                 << " without TLS (--insecure): anyone who reaches this port can begin, "
                    "commit, roll back and administer transactions and make this coordinator "
                    "connect to the participant endpoints they name";
    return Status::Ok();
  }
  return Status::InvalidArgument(
      "host '" + o.host +
      "' is not a loopback address and TLS is not configured: anyone who reaches the port could "
      "roll back any transaction or run admin actions. Configure TLS, listen on 127.0.0.1, or "
      "pass --insecure (insecure = true) to accept that (docs/security.md)");
}

Status AuthorizeHttpPath(const AuthPolicy& policy, const std::string& path,
                         const PeerIdentity& peer) {
  const bool metrics = path == "/metrics";
  const RoleSet needed = metrics ? (roles::kReader | roles::kAdmin) : roles::kAll;
  const RoleSet held = policy.RolesOf(peer);
  if ((held & needed) != 0) return Status::Ok();
  return Status::PermissionDenied(
      path + " needs " + (metrics ? "the reader or admin role" : "a role (any)") + "; " +
      peer.Describe() + " holds " + RoleSetNames(held) + " (--auth_policy, docs/security.md)");
}

Status CoordinatorServer::ReloadAuthPolicy() {
  if (options_.auth_policy_file.empty() || handler_ == nullptr) return Status::Ok();
  Result<AuthPolicy> policy = AuthPolicy::LoadFile(options_.auth_policy_file);
  if (!policy.ok()) {
    LOG(ERROR) << "auth policy not reloaded, the previous one stays in force: " << policy.status();
    return policy.status();
  }
  LOG(INFO) << "auth policy reloaded from " << options_.auth_policy_file << " (" << policy->rules()
            << " rules)";
  auto shared = std::make_shared<const AuthPolicy>(std::move(policy).value());
  std::atomic_store(&http_policy_, std::shared_ptr<const AuthPolicy>(shared));
  handler_->SetAuthPolicy(std::move(shared));
  return Status::Ok();
}

Status CoordinatorServer::ReloadTls() {
  Status first_failure;
  auto keep_first = [&first_failure](Status s) {
    if (!s.ok() && first_failure.ok()) first_failure = std::move(s);
  };
  if (thrift_ != nullptr && thrift_->tls()) keep_first(thrift_->ReloadTls());
  if (http_ != nullptr && http_->tls()) keep_first(http_->ReloadTls());
  if (options_.participant_tls.enabled()) {
    // Later incarnations read the files anew when they start.
    std::shared_ptr<Incarnation> inc = Current();
    // Both drivers share one participant client: reloading it once is enough.
    if (inc != nullptr) keep_first(inc->two_phase->ReloadTls());
  }
  if (first_failure.ok()) LOG(INFO) << "TLS files reloaded";
  return first_failure;
}

Status CoordinatorServer::Start() {
  CHECK(!started_) << "CoordinatorServer::Start called twice";
  const CoordinatorServerOptions& o = options_;
  if (o.port < 0 || o.port > 65535) {
    return Status::InvalidArgument("port must be 0..65535, got " + std::to_string(o.port));
  }
  if (o.http_port < -1 || o.http_port > 65535) {
    return Status::InvalidArgument("http_port must be -1..65535, got " +
                                   std::to_string(o.http_port));
  }
  if (o.http_probe_port < -1 || o.http_probe_port > 65535) {
    return Status::InvalidArgument("http_probe_port must be -1..65535, got " +
                                   std::to_string(o.http_probe_port));
  }
  {
    Result<LeaseTiming> lease_timing = ResolveLeaseTiming(o);
    if (!lease_timing.ok()) return lease_timing.status();
    lease_margin_ms_ = lease_timing->margin_ms;
  }
  if (o.sweeper.finished_retention_ms < 0) {
    return Status::InvalidArgument(
        "finished_retention_ms must be 0 (keep forever) or positive, got " +
        std::to_string(o.sweeper.finished_retention_ms));
  }
  if (o.sweeper.retention_sweep_interval_ms <= 0) {
    return Status::InvalidArgument("retention_sweep_interval_ms must be positive, got " +
                                   std::to_string(o.sweeper.retention_sweep_interval_ms));
  }
  if (o.max_message_bytes < 1024 || o.max_message_bytes > (int64_t{1} << 30)) {
    return Status::InvalidArgument("max_message_bytes must be between 1 KiB and 1 GiB, got " +
                                   std::to_string(o.max_message_bytes));
  }
  if (!o.advertise_endpoint.empty()) {
    auto hp = ParseEndpoint(o.advertise_endpoint);
    if (!hp.ok()) return Status::InvalidArgument("advertise_endpoint: " + hp.status().message());
  }
  TXC_RETURN_IF_ERROR(CheckListenSecurity(o));
  Result<EndpointAllowList> allow = EndpointAllowList::Parse(o.participant_allow);
  if (!allow.ok()) return allow.status();
  std::shared_ptr<const AuthPolicy> policy;
  if (!o.auth_policy_file.empty()) {
    Result<AuthPolicy> loaded = AuthPolicy::LoadFile(o.auth_policy_file);
    if (!loaded.ok()) return Status::InvalidArgument("auth_policy: " + loaded.status().message());
    policy = std::make_shared<const AuthPolicy>(std::move(loaded).value());
    LOG(INFO) << "authorization: policy " << o.auth_policy_file << " (" << policy->rules()
              << " rules)";
  } else if (!IsLoopbackHost(o.host)) {
    LOG(WARNING) << "no --auth_policy: every caller that can connect may call every method";
  }
  if (allow->empty()) {
    if (!IsLoopbackHost(o.host)) {
      LOG(WARNING) << "no --participant_allow: this coordinator connects to any participant "
                      "endpoint a caller names";
    }
  } else {
    std::string patterns;
    for (const std::string& p : allow->patterns()) patterns += (patterns.empty() ? "" : ", ") + p;
    LOG(INFO) << "participant allow-list: " << patterns;
  }

  // The data directory holds the SQLite file (and is where operators look).
  // Failing to create it is the filesystem's refusal, not a malformed option:
  // kUnavailable (main: exit 1, cannot start), not kInvalidArgument (exit 2).
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) {
    return Status::Unavailable("cannot create data_dir '" + o.data_dir + "': " + ec.message());
  }
  store_location_ = o.store.empty() ? o.data_dir + "/coordinator.db" : o.store;
  Result<StoreLocation> where = ParseStoreLocation(store_location_);
  if (!where.ok()) return where.status();
  store_where_ = *where;
  // One process per SQLite file: a second one would run a second "single
  // node" with the same rows (and take the lease from the first).
  auto fail = [this](Status s) {
    thrift_.reset();
    if (async_handler_ != nullptr) async_handler_->Shutdown();
    async_handler_.reset();
    handler_.reset();
    replica_.reset();
    store_.reset();
    if (data_dir_lock_fd_ >= 0) close(data_dir_lock_fd_);
    data_dir_lock_fd_ = -1;
    return s;
  };
  if (!store_where_.is_postgres()) {
    Result<int> lock = LockFile(store_where_.target + ".lock");
    if (!lock.ok()) return lock.status();
    data_dir_lock_fd_ = *lock;
  }

  // Store, schema.
  StoreOpenOptions store_options;
  store_options.lease_ttl_ms = o.lease_ttl_ms;
  store_options.call_timeout_ms = o.store_call_timeout_ms;
  auto opened = OpenStore(store_location_, store_options);
  if (!opened.ok()) {
    return fail(Status(opened.status().code(), "cannot open store " + StoreDescription() + ": " +
                                                   opened.status().message()));
  }
  store_ = std::move(opened).value();
  Status migrated = store_->Migrate();
  if (!migrated.ok()) {
    return fail(Status(migrated.code(), "cannot migrate store: " + migrated.message()));
  }

  // Who we are.
  if (o.port == 0) {
    Result<int> free_port = PickFreePort(o.host);
    if (!free_port.ok()) return fail(free_port.status());
    port_ = *free_port;
  } else {
    port_ = o.port;
  }
  node_id_ = o.node_id.empty() ? Hostname() + ":" + std::to_string(port_) : o.node_id;
  if (!o.advertise_endpoint.empty()) {
    endpoint_ = o.advertise_endpoint;
  } else {
    endpoint_ = (IsWildcard(o.host) ? Hostname() : o.host) + ":" + std::to_string(port_);
  }

  // Bind before touching the lease: a second copy on a busy port must fail
  // without disturbing the healthy process. Until the first incarnation is
  // installed every call answers Unavailable.
  replica_ = std::make_shared<ReplicaService>(node_id_, store_->Kind());
  handler_ = std::make_shared<CoordinatorHandler>(replica_.get());
  std::atomic_store(&http_policy_, policy);
  handler_->SetAuthPolicy(std::move(policy));
  handler_->SetParticipantAllowList(std::move(allow).value());
  ThriftServerOptions thrift_options;
  thrift_options.host = o.host;
  thrift_options.port = port_;
  thrift_options.max_message_bytes = o.max_message_bytes;
  thrift_options.max_connections_per_peer = o.max_connections_per_peer;
  thrift_options.tls = o.tls;
  if (o.participant_tls.enabled()) {
    // Checked here so that a bad file stops the start, not every participant call.
    auto client_tls = TlsContext::Create(o.participant_tls, TlsRole::kClient);
    if (!client_tls.ok()) {
      return fail(Status::InvalidArgument("participant TLS: " + client_tls.status().message()));
    }
  }
  if (o.rpc_model == CoordinatorServerOptions::RpcModel::kEventLoop) {
    CoordinatorAsyncHandlerOptions async_options;
    // Past the group commit's own bound (it takes a queued write back at
    // write_timeout_ms): only a store call that hangs reaches this.
    async_options.begin_answer_timeout_ms = 2 * o.group_commit.write_timeout_ms;
    async_handler_ = std::make_shared<CoordinatorAsyncHandler>(handler_.get(), async_options);
    thrift_ = std::make_unique<AsyncThriftServer>(
        std::make_shared<wire::CoordinatorAsyncProcessor>(async_handler_), thrift_options);
  } else {
    thrift_ = std::make_unique<ThriftServer>(std::make_shared<wire::CoordinatorProcessor>(handler_),
                                             thrift_options);
  }
  Status listening = thrift_->Start();
  if (!listening.ok()) return fail(listening);

  // The lease: a new epoch fences off everything an earlier incarnation of this
  // node id might still try to write. The lease is ours until `before` + ttl:
  // the store computes its expiry from a clock read after that.
  // A store that is slow or failing over at this moment (a call cut at its
  // deadline, a broken connection) is retried with backoff and jitter for a
  // bounded time instead of ending the start: a replica restarted under load
  // must come back. An indeterminate acquire that did land shows up as our own
  // live lease below and is taken over.
  int64_t before = MonotonicMs();
  auto lease =
      store_->AcquireLease(node_id_, endpoint_, o.lease_ttl_ms, NowUnixMs(), o.lease_takeover);
  {
    const BackoffPolicy retry{100, 2000, 2.0};
    const int64_t give_up_at =
        MonotonicMs() + std::clamp<int64_t>(4 * o.lease_ttl_ms, 10000, 30000);
    for (int attempt = 1; !lease.ok() && MonotonicMs() < give_up_at; ++attempt) {
      const StatusCode code = lease.status().code();
      if (code != StatusCode::kUnavailable && code != StatusCode::kTimeout &&
          code != StatusCode::kIndeterminate) {
        break;
      }
      const int64_t delay = BackoffDelayMs(retry, attempt, RandomUnit());
      LOG(WARNING) << "acquiring the lease of node " << node_id_ << " failed (" << lease.status()
                   << "); retrying in " << delay << " ms";
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      before = MonotonicMs();
      lease =
          store_->AcquireLease(node_id_, endpoint_, o.lease_ttl_ms, NowUnixMs(), o.lease_takeover);
    }
  }
  if (!lease.ok() && lease.status().code() == StatusCode::kAlreadyExists) {
    // A live lease advertised at our own endpoint: we just bound that port, so
    // the process that held it no longer listens there (it crashed or was
    // killed within the last TTL). A restart must not wait for its lease.
    auto leases = store_->ListLeases();
    if (leases.ok()) {
      for (const Lease& l : *leases) {
        if (l.node_id != node_id_ || l.endpoint != endpoint_) continue;
        LOG(WARNING) << "the lease of node " << node_id_ << " (epoch " << l.epoch
                     << ") is still live, but its endpoint " << l.endpoint
                     << " is ours now: its process is gone; taking the lease over";
        before = MonotonicMs();
        lease = store_->AcquireLease(node_id_, endpoint_, o.lease_ttl_ms, NowUnixMs(),
                                     LeaseTakeover::kAlways);
        break;
      }
    }
  }
  if (!lease.ok()) {
    Status why = lease.status();
    if (why.code() == StatusCode::kAlreadyExists) {
      why = Status::AlreadyExists(why.message() +
                                  ": this node is already running; stop it first, give this "
                                  "process its own --node_id, or take the node over on purpose "
                                  "with --replace_node");
    } else {
      why =
          Status(why.code(), "cannot acquire the lease of node " + node_id_ + ": " + why.message());
    }
    replica_->Close();
    thrift_->Stop();
    return fail(why);
  }
  started_ = true;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_stop_ = false;
  }
  auto first = NewIncarnation(NodeInfo{node_id_, endpoint_, lease->epoch}, before + o.lease_ttl_ms);
  {
    std::lock_guard<std::mutex> lock(incarnation_mu_);
    current_ = first;
  }
  replica_->Set(ServiceOf(first));
  CoordinatorMetrics& metrics = CoordinatorMetrics::Get();
  metrics.lease_acquisitions->Inc();
  metrics.lease_epoch->Set(static_cast<double>(lease->epoch));
  metrics.lease_held->Set(1);
  lease_thread_ = std::thread([this] { LeaseLoop(); });
  if (o.metrics_store_refresh_ms > 0) {
    {
      std::lock_guard<std::mutex> lock(store_gauge_mu_);
      store_gauge_stop_ = false;
    }
    store_gauge_thread_ = std::thread([this] { StoreGaugeLoop(); });
  }
  StartHttp();
  LOG(INFO) << "coordinator " << node_id_ << " serving on " << o.host << ":" << port_
            << " (advertised " << endpoint_ << "), store " << StoreDescription() << ", lease epoch "
            << lease->epoch;
  return Status::Ok();
}

std::shared_ptr<CoordinatorServer::Incarnation> CoordinatorServer::NewIncarnation(
    const NodeInfo& node, int64_t lease_valid_until) {
  const CoordinatorServerOptions& o = options_;
  auto inc = std::make_shared<Incarnation>(node);
  inc->lease_valid_until.store(lease_valid_until);
  Incarnation* raw = inc.get();
  GroupCommitOptions group_commit = o.group_commit;
  const int64_t margin = lease_margin_ms_;
  group_commit.may_write = [raw, margin] {
    return LeaseKnownLive(raw->lease_valid_until.load(), MonotonicMs(), margin);
  };
  group_commit.fence_node = node.node_id;
  group_commit.fence_epoch = node.epoch;
  group_commit.on_batch_applied = [](const WriteBatch& batch) {
    CoordinatorMetrics::Get().RecordCommittedBatch(batch);
  };
  group_commit.on_store_transaction = [](size_t batches, double seconds, bool ok) {
    CoordinatorMetrics::Get().RecordStoreTransaction(batches, seconds, ok);
  };
  group_commit.on_overloaded = [] { CoordinatorMetrics::Get().group_commit_overloaded->Inc(); };
  inc->log = std::make_unique<GroupCommitter>(store_.get(), group_commit);
  inc->service = std::make_unique<CoordinatorService>(store_.get(), inc->log.get(), node);
  CoordinatorService* service = inc->service.get();

  // One participant client for both drivers: one set of I/O threads and one
  // per-endpoint limit, whichever protocol the calls belong to.
  std::shared_ptr<AsyncParticipantClient> participants = o.two_phase.participants;
  if (participants == nullptr) {
    AsyncParticipantClientOptions client;
    client.io_threads = std::max(1, o.two_phase.io_threads);
    client.connect_timeout_ms = o.two_phase.connect_timeout_ms;
    client.max_calls_per_endpoint = std::max(1, o.two_phase.max_calls_per_endpoint);
    client.max_batch_calls = std::max(1, o.two_phase.max_batch_calls);
    client.batch_below_us = o.two_phase.batch_below_us;
    client.max_message_bytes = o.max_message_bytes;
    client.tls = o.participant_tls.enabled() ? o.participant_tls : o.two_phase.participant_tls;
    participants = std::make_shared<AsyncParticipantClient>(client);
  }
  TwoPhaseDriverOptions two_phase_options = o.two_phase;
  two_phase_options.participants = participants;
  if (!two_phase_options.coordinator_endpoints) {
    two_phase_options.coordinator_endpoints = [service] { return service->CoordinatorEndpoints(); };
  }
  inc->two_phase =
      std::make_unique<TwoPhaseDriver>(store_.get(), inc->log.get(), node, two_phase_options);
  service->SetTwoPhaseOps(inc->two_phase.get());
  inc->sweeper =
      std::make_unique<Sweeper>(store_.get(), node, inc->two_phase.get(), nullptr, o.sweeper);

  SagaDriverOptions saga_options = o.saga;
  saga_options.participants = participants;
  if (!saga_options.coordinators) {
    saga_options.coordinators = [service] { return service->CoordinatorEndpoints(); };
  }
  if (!saga_options.new_gtid) saga_options.new_gtid = [service] { return service->NewGtid(); };
  if (!saga_options.lease_live) {
    saga_options.lease_live = [raw, margin] {
      return LeaseKnownLive(raw->lease_valid_until.load(), MonotonicMs(), margin);
    };
  }
  inc->saga = std::make_unique<SagaDriver>(store_.get(), inc->log.get(), node, saga_options);
  service->SetSagaOps(inc->saga.get());
  inc->sweeper->SetSagaOps(inc->saga.get());
  inc->sweeper->Start();
  return inc;
}

void CoordinatorServer::Stop() {
  if (!started_) return;
  // The probes go first: a replica shutting down is not ready, and Ready()
  // must not run while the parts below are torn down.
  if (http_ != nullptr) http_->Stop();
  http_.reset();
  if (probe_http_ != nullptr) probe_http_->Stop();
  probe_http_.reset();
  {
    std::lock_guard<std::mutex> lock(store_gauge_mu_);
    store_gauge_stop_ = true;
  }
  store_gauge_cv_.notify_all();
  if (store_gauge_thread_.joinable()) store_gauge_thread_.join();
  started_ = false;
  std::shared_ptr<Incarnation> inc = Current();
  const int64_t last_epoch = inc != nullptr ? inc->node.epoch : 0;
  if (inc != nullptr) {
    inc->service->SetServing(false);
    inc->saga->StopWaiting();  // submitSaga waiting for completion answers now
  }
  // Stop accepting and close connections; calls in flight finish first.
  if (replica_ != nullptr) replica_->Close();  // calls waiting for an incarnation answer now
  if (thrift_ != nullptr) thrift_->Stop();
  // While the lease is still renewed: sagas log the progress that waited,
  // so a restart does not send those actions again.
  if (inc != nullptr) inc->saga->LogAllProgress(options_.saga.progress_log_ms > 0 ? 2000 : 0);
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_stop_ = true;
  }
  lease_cv_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();

  // The incarnation is torn down (drivers stopped, group commit drained) when
  // the last reference goes: no call holds one any more.
  replica_->Set(nullptr);
  {
    std::lock_guard<std::mutex> lock(incarnation_mu_);
    current_.reset();
  }
  inc.reset();
  std::vector<std::thread> retiring;
  {
    std::lock_guard<std::mutex> lock(incarnation_mu_);
    retiring.swap(retiring_);
  }
  for (auto& t : retiring) t.join();

  // Give the lease back (it expires now) so that the node can be started
  // again at once, elsewhere too, and other replicas claim what is left.
  if (last_epoch > 0 && !lease_lost()) {
    Status released = store_->RenewLease(node_id_, last_epoch, 0, NowUnixMs());
    if (!released.ok()) LOG(WARNING) << "could not release the lease: " << released;
  }
  CoordinatorMetrics::Get().lease_held->Set(0);
  CoordinatorMetrics::Get().lease_epoch->Set(0);
  thrift_.reset();
  if (async_handler_ != nullptr) async_handler_->Shutdown();  // see its comment
  async_handler_.reset();
  handler_.reset();
  replica_.reset();
  store_.reset();
  if (data_dir_lock_fd_ >= 0) close(data_dir_lock_fd_);
  data_dir_lock_fd_ = -1;
  LOG(INFO) << "coordinator " << node_id_ << " stopped";
}

bool CoordinatorServer::WaitForLeaseLoss(int64_t timeout_ms, Status* reason) {
  std::unique_lock<std::mutex> lock(lease_mu_);
  lease_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                     [this] { return lease_lost() || lease_stop_; });
  if (!lease_lost()) return false;
  if (reason != nullptr) *reason = lease_loss_reason_;
  return true;
}

bool CoordinatorServer::Stopping() {
  std::lock_guard<std::mutex> lock(lease_mu_);
  return lease_stop_;
}

void CoordinatorServer::Retire(const Status& reason) {
  std::shared_ptr<Incarnation> inc;
  {
    std::lock_guard<std::mutex> lock(incarnation_mu_);
    inc = std::move(current_);
  }
  if (inc == nullptr) return;
  // First nothing more reaches the store, then nothing more is accepted.
  inc->lease_valid_until.store(0);
  inc->log->Fence(reason);
  replica_->Set(nullptr, "lost its lease (" + reason.ToString() + "), acquiring it again");
  inc->service->SetServing(false);
  inc->saga->StopWaiting();
  inc->sweeper->Stop();
  lease_losses_.fetch_add(1, std::memory_order_acq_rel);
  CoordinatorMetrics::Get().lease_losses->Inc();
  CoordinatorMetrics::Get().lease_held->Set(0);
  LOG(ERROR) << "coordinator " << node_id_ << " lost its lease (epoch " << inc->node.epoch
             << "): " << reason << "; its in-flight work is dropped and it writes nothing more "
             << "under this epoch";
  // Drivers finish their queued participant calls (their writes are refused)
  // on another thread, so the lease is acquired again without waiting for them.
  std::lock_guard<std::mutex> lock(incarnation_mu_);
  retiring_.emplace_back([inc = std::move(inc)]() mutable { inc.reset(); });
}

std::shared_ptr<CoordinatorServer::Incarnation> CoordinatorServer::Reacquire(int64_t lost_epoch,
                                                                             Status* for_good) {
  const int64_t ttl = options_.lease_ttl_ms;
  for (int attempt = 1;; ++attempt) {
    const int64_t before = MonotonicMs();
    auto lease =
        store_->AcquireLease(node_id_, endpoint_, ttl, NowUnixMs(), LeaseTakeover::kIfExpired);
    if (lease.ok()) {
      LOG(INFO) << "coordinator " << node_id_ << " acquired its lease again: epoch " << lease->epoch
                << " (was " << lost_epoch << "); serving again";
      return NewIncarnation(NodeInfo{node_id_, endpoint_, lease->epoch}, before + ttl);
    }
    if (lease.status().code() == StatusCode::kAlreadyExists) {
      // Live: our own lost epoch not yet expired by the store's clock (wait), or
      // another process that took this node id on purpose (give way for good).
      auto leases = store_->ListLeases();
      if (leases.ok()) {
        for (const Lease& l : *leases) {
          if (l.node_id == node_id_ && l.epoch > lost_epoch) {
            *for_good = Status::Conflict("node " + node_id_ + " is now run by another process at " +
                                         l.endpoint + " (epoch " + std::to_string(l.epoch) + ")");
            return nullptr;
          }
        }
      }
    }
    const int64_t delay = BackoffDelayMs(options_.lease_reacquire_backoff, attempt);
    LOG(WARNING) << "coordinator " << node_id_ << ": acquiring the lease again (attempt " << attempt
                 << ") failed: " << lease.status() << "; next try in " << delay << " ms";
    std::unique_lock<std::mutex> lock(lease_mu_);
    if (lease_cv_.wait_for(lock, std::chrono::milliseconds(delay),
                           [this] { return lease_stop_; })) {
      return nullptr;
    }
  }
}

Status CoordinatorServer::RenewUntilLost(Incarnation& inc) {
  const int64_t ttl = options_.lease_ttl_ms;
  const int64_t interval =
      options_.lease_renew_interval_ms > 0 ? options_.lease_renew_interval_ms : ttl / 3;
  // The lease is certainly ours until last_renewed + ttl, where last_renewed is
  // taken *before* the renewing call (the store computes the expiry after it).
  int64_t last_renewed = inc.lease_valid_until.load() - ttl;
  int failures = 0;
  int64_t wait_ms = interval;
  BackoffPolicy backoff{std::max<int64_t>(interval / 4, 10), interval, 2.0};
  while (true) {
    {
      std::unique_lock<std::mutex> lock(lease_mu_);
      if (lease_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                             [this] { return lease_stop_; })) {
        return Status::Ok();
      }
    }
    const int64_t attempt_start = MonotonicMs();
    if (attempt_start - last_renewed >= ttl) {
      return Status::Timeout("not renewed for " + std::to_string(attempt_start - last_renewed) +
                             " ms (ttl " + std::to_string(ttl) + " ms)");
    }
    Status renewed = store_->RenewLease(node_id_, inc.node.epoch, ttl, NowUnixMs());
    if (renewed.ok()) {
      // Only ever moves forward, and never revives a lease already given up.
      if (MonotonicMs() - attempt_start < ttl) {
        int64_t expected = inc.lease_valid_until.load();
        while (expected != 0 && expected < attempt_start + ttl &&
               !inc.lease_valid_until.compare_exchange_weak(expected, attempt_start + ttl)) {
        }
        last_renewed = attempt_start;
      }
      CoordinatorMetrics::Get().lease_renewals->Inc();
      if (failures > 0) LOG(INFO) << "lease renewed again after " << failures << " failures";
      failures = 0;
      wait_ms = interval;
      VLOG(2) << "lease of " << node_id_ << " renewed (epoch " << inc.node.epoch << ")";
      continue;
    }
    if (renewed.code() == StatusCode::kConflict || renewed.code() == StatusCode::kNotFound) {
      return renewed;
    }
    ++failures;
    CoordinatorMetrics::Get().lease_renewal_failures->Inc();
    const int64_t left = last_renewed + ttl - MonotonicMs();
    wait_ms = std::max<int64_t>(1, std::min(BackoffDelayMs(backoff, failures), left));
    LOG(WARNING) << "lease renewal failed (" << failures << " in a row, " << left
                 << " ms of lease left): " << renewed;
  }
}

void CoordinatorServer::LeaseLoop() {
  while (true) {
    std::shared_ptr<Incarnation> inc = Current();
    if (inc == nullptr) return;
    const int64_t epoch = inc->node.epoch;
    Status lost = RenewUntilLost(*inc);
    inc.reset();
    if (lost.ok()) return;  // Stop()
    Retire(lost);
    if (options_.on_lease_lost) options_.on_lease_lost(lost);
    // kConflict / kNotFound: another process took this node id on purpose.
    Status for_good;
    if (options_.exit_on_lease_loss) {
      for_good = lost;
    } else if (lost.code() == StatusCode::kConflict || lost.code() == StatusCode::kNotFound) {
      for_good = lost;
    } else {
      std::shared_ptr<Incarnation> next = Reacquire(epoch, &for_good);
      if (next != nullptr) {
        {
          std::lock_guard<std::mutex> lock(incarnation_mu_);
          current_ = next;
        }
        replica_->Set(ServiceOf(next));
        CoordinatorMetrics& metrics = CoordinatorMetrics::Get();
        metrics.lease_acquisitions->Inc();
        metrics.lease_epoch->Set(static_cast<double>(next->node.epoch));
        metrics.lease_held->Set(1);
        continue;
      }
      if (for_good.ok()) return;  // Stop()
    }
    LOG(ERROR) << "coordinator " << node_id_ << " stops for good: " << for_good;
    replica_->Close();
    {
      std::lock_guard<std::mutex> lock(lease_mu_);
      lease_loss_reason_ = for_good;
      lease_lost_.store(true, std::memory_order_release);
    }
    lease_cv_.notify_all();
    return;
  }
}

Status CoordinatorServer::Ready() {
  std::shared_ptr<Incarnation> inc = Current();
  if (inc == nullptr) {
    return Status::Unavailable(lease_lost() ? "lease lost for good"
                                            : "acquiring the lease again after a loss");
  }
  if (!LeaseKnownLive(inc->lease_valid_until.load(), MonotonicMs(), lease_margin_ms_)) {
    return Status::Unavailable("lease (epoch " + std::to_string(inc->node.epoch) +
                               ") not known to be live: renewals are late");
  }
  Status store = store_->HealthCheck();
  if (!store.ok()) return Status::Unavailable("store: " + store.message());
  return Status::Ok();
}

void CoordinatorServer::StartHttp() {
  const CoordinatorServerOptions& o = options_;
  std::string host = o.http_host.empty() ? o.host : o.http_host;
  if (host.empty()) host = "0.0.0.0";
  auto readyz = [this](bool with_reason) {
    return [this, with_reason] {
      Status ready = Ready();
      if (ready.ok()) return HttpResponse{200, "text/plain; charset=utf-8", "ready\n"};
      return HttpResponse{503, "text/plain; charset=utf-8",
                          with_reason ? "not ready: " + ready.message() + "\n" : "not ready\n"};
    };
  };
  auto healthz = [] { return HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}; };
  if (o.http_port != 0) {
    HttpServerOptions http_options;
    http_options.host = host;
    http_options.port = o.http_port < 0 ? 0 : o.http_port;
    http_options.tls = o.tls;
    if (!o.tls.enabled() && !IsLoopbackHost(host)) {
      LOG(WARNING) << "metrics and probes on " << host << " in plaintext: anyone who reaches "
                   << "the port reads /metrics (transaction counts, participant endpoints); "
                      "set --http_host=127.0.0.1 or configure TLS (docs/security.md)";
    }
    if (o.tls.enabled() && !o.auth_policy_file.empty()) {
      http_options.authorize = [this](const std::string& path, const PeerIdentity& peer) {
        const std::shared_ptr<const AuthPolicy> policy = std::atomic_load(&http_policy_);
        return policy == nullptr ? Status::Ok() : AuthorizeHttpPath(*policy, path, peer);
      };
    }
    std::map<std::string, HttpHandler> routes;
    routes["/metrics"] = [] {
      return HttpResponse{200, kPrometheusTextContentType, DefaultMetricsRegistry().Render()};
    };
    routes["/healthz"] = healthz;
    routes["/readyz"] = readyz(/*with_reason=*/true);
    auto http = std::make_unique<HttpServer>(http_options, std::move(routes));
    Status listening = http->Start();
    if (!listening.ok()) {
      LOG(ERROR) << "no /metrics, /healthz, /readyz: " << listening
                 << " (the coordinator serves transactions without them; set --http_port)";
    } else {
      LOG(INFO) << "metrics and probes on " << (o.tls.enabled() ? "https://" : "http://")
                << http_options.host << ":" << http->port() << "/metrics, /healthz, /readyz"
                << (!o.tls.enabled() ? ""
                    : o.auth_policy_file.empty()
                        ? " (TLS as the Thrift port; no --auth_policy: any client that passes "
                          "the handshake)"
                        : " (TLS as the Thrift port; /metrics needs reader or admin)");
      http_ = std::move(http);
    }
  }
  if (o.http_probe_port != 0) {
    HttpServerOptions probe_options;
    probe_options.host = host;
    probe_options.port = o.http_probe_port < 0 ? 0 : o.http_probe_port;
    std::map<std::string, HttpHandler> routes;
    routes["/healthz"] = healthz;
    routes["/readyz"] = readyz(/*with_reason=*/false);
    auto probe = std::make_unique<HttpServer>(probe_options, std::move(routes));
    Status listening = probe->Start();
    if (!listening.ok()) {
      LOG(ERROR) << "no plaintext probe port: " << listening;
    } else {
      LOG(INFO) << "plaintext probes (no authentication) on http://" << probe_options.host << ":"
                << probe->port() << "/healthz, /readyz";
      probe_http_ = std::move(probe);
    }
  }
}

void CoordinatorServer::RefreshStoreGauges() {
  static const std::vector<TxnState> kUnfinishedStates = {
      TxnState::kActive,  TxnState::kPreparing,    TxnState::kCommitting, TxnState::kAborting,
      TxnState::kRunning, TxnState::kCompensating, TxnState::kParked};
  CoordinatorMetrics& metrics = CoordinatorMetrics::Get();
  auto summary = store_->SummarizeStates(kUnfinishedStates);
  if (!summary.ok()) {
    metrics.store_summary_ok->Set(0);
    VLOG(1) << "metrics: cannot read the unfinished transactions: " << summary.status();
    return;
  }
  const int64_t now = NowUnixMs();
  int64_t oldest = now;
  double parked = 0;
  for (TxnState state : kUnfinishedStates) {
    double count = 0;
    for (const StateSummary& s : *summary) {
      if (s.state != state) continue;
      count = static_cast<double>(s.count);
      oldest = std::min(oldest, s.oldest_created_ms);
    }
    const TxnKind kind = IsStateOf(TxnKind::kSaga, state) ? TxnKind::kSaga : TxnKind::kTwoPhase;
    metrics.unfinished->With({KindLabel(kind), StateLabel(state)})->Set(count);
    if (state == TxnState::kParked) parked = count;
  }
  metrics.parked->Set(parked);
  metrics.oldest_unfinished_age->Set(static_cast<double>(std::max<int64_t>(0, now - oldest)) /
                                     1000.0);
  metrics.store_summary_ok->Set(1);
  metrics.store_summary_timestamp->Set(static_cast<double>(now) / 1000.0);
}

void CoordinatorServer::StoreGaugeLoop() {
  while (true) {
    RefreshStoreGauges();
    std::unique_lock<std::mutex> lock(store_gauge_mu_);
    if (store_gauge_cv_.wait_for(lock, std::chrono::milliseconds(options_.metrics_store_refresh_ms),
                                 [this] { return store_gauge_stop_; })) {
      return;
    }
  }
}

}  // namespace txc
