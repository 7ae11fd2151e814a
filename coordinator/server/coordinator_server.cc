#include "coordinator/server/coordinator_server.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "common/backoff.h"
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

bool IsPostgresLocation(const std::string& location) {
  return location.rfind("postgresql://", 0) == 0 || location.rfind("postgres://", 0) == 0 ||
         location.find('=') != std::string::npos;
}

}  // namespace

CoordinatorServer::CoordinatorServer(CoordinatorServerOptions options)
    : options_(std::move(options)) {}

CoordinatorServer::~CoordinatorServer() { Stop(); }

std::string CoordinatorServer::StoreDescription() const {
  if (IsPostgresLocation(store_location_)) return "postgresql";
  return "sqlite:" + store_location_;
}

Status CoordinatorServer::Start() {
  CHECK(!started_) << "CoordinatorServer::Start called twice";
  const CoordinatorServerOptions& o = options_;
  if (o.port < 0 || o.port > 65535) {
    return Status::InvalidArgument("port must be 0..65535, got " + std::to_string(o.port));
  }
  if (o.lease_ttl_ms < 100) {
    return Status::InvalidArgument("lease_ttl_ms must be at least 100, got " +
                                   std::to_string(o.lease_ttl_ms));
  }
  if (o.lease_renew_interval_ms < 0 || o.lease_renew_interval_ms >= o.lease_ttl_ms) {
    return Status::InvalidArgument(
        "lease_renew_interval_ms must be 0 (ttl/3) or below lease_ttl_ms");
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

  // The data directory holds the SQLite file (and is where operators look).
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) {
    return Status::InvalidArgument("cannot create data_dir '" + o.data_dir + "': " + ec.message());
  }
  store_location_ = o.store.empty() ? o.data_dir + "/coordinator.db" : o.store;

  // Store, schema.
  auto opened = OpenStore(store_location_);
  if (!opened.ok()) {
    return Status(opened.status().code(),
                  "cannot open store " + StoreDescription() + ": " + opened.status().message());
  }
  store_ = std::move(opened).value();
  Status migrated = store_->Migrate();
  if (!migrated.ok()) {
    store_.reset();
    return Status(migrated.code(), "cannot migrate store: " + migrated.message());
  }

  // Who we are.
  if (o.port == 0) {
    Result<int> free_port = PickFreePort(o.host);
    if (!free_port.ok()) {
      store_.reset();
      return free_port.status();
    }
    port_ = *free_port;
  } else {
    port_ = o.port;
  }
  node_.node_id = o.node_id.empty() ? Hostname() + ":" + std::to_string(port_) : o.node_id;
  if (!o.advertise_endpoint.empty()) {
    node_.endpoint = o.advertise_endpoint;
  } else {
    node_.endpoint = (IsWildcard(o.host) ? Hostname() : o.host) + ":" + std::to_string(port_);
  }

  // The lease: a new epoch fences off everything an earlier incarnation of this
  // node id might still try to write.
  auto lease = store_->AcquireLease(node_.node_id, node_.endpoint, o.lease_ttl_ms, NowUnixMs());
  const int64_t acquired_mono = MonotonicMs();
  if (!lease.ok()) {
    store_.reset();
    return Status(lease.status().code(), "cannot acquire the lease of node " + node_.node_id +
                                             ": " + lease.status().message());
  }
  node_.epoch = lease->epoch;
  started_ = true;
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_stop_ = false;
  }
  log_ = std::make_unique<GroupCommitter>(store_.get(), o.group_commit);
  service_ = std::make_unique<CoordinatorService>(store_.get(), log_.get(), node_);
  lease_thread_ = std::thread([this, acquired_mono] { LeaseLoop(acquired_mono); });

  // ==== 2PC engineer: create the TwoPhaseDriver here and plug it in with
  //      service_->SetTwoPhaseOps(...); start the recovery Sweeper here. ====
  {
    TwoPhaseDriverOptions two_phase_options = o.two_phase;
    if (!two_phase_options.coordinator_endpoints) {
      CoordinatorService* service = service_.get();
      two_phase_options.coordinator_endpoints = [service] {
        return service->CoordinatorEndpoints();
      };
    }
    two_phase_ =
        std::make_unique<TwoPhaseDriver>(store_.get(), log_.get(), node_, two_phase_options);
    service_->SetTwoPhaseOps(two_phase_.get());
    sweeper_ = std::make_unique<Sweeper>(store_.get(), node_, two_phase_.get(), nullptr, o.sweeper);
    sweeper_->Start();
  }

  // ==== Saga engineer: create the SagaDriver here and plug it in with
  //      service_->SetSagaOps(...). ====
  {
    SagaDriverOptions saga_options = o.saga;
    CoordinatorService* service = service_.get();
    if (!saga_options.coordinators) {
      saga_options.coordinators = [service] { return service->CoordinatorEndpoints(); };
    }
    if (!saga_options.new_gtid) saga_options.new_gtid = [service] { return service->NewGtid(); };
    saga_ = std::make_unique<SagaDriver>(store_.get(), log_.get(), node_, saga_options);
    service_->SetSagaOps(saga_.get());
    sweeper_->SetSagaOps(saga_.get());
  }

  handler_ = std::make_shared<CoordinatorHandler>(service_.get());
  ThriftServerOptions thrift_options;
  thrift_options.host = o.host;
  thrift_options.port = port_;
  thrift_options.max_message_bytes = o.max_message_bytes;
  thrift_ = std::make_unique<ThriftServer>(std::make_shared<wire::CoordinatorProcessor>(handler_),
                                           thrift_options);
  Status listening = thrift_->Start();
  if (!listening.ok()) {
    Stop();
    return listening;
  }
  LOG(INFO) << "coordinator " << node_.node_id << " serving on " << o.host << ":" << port_
            << " (advertised " << node_.endpoint << "), store " << StoreDescription()
            << ", lease epoch " << node_.epoch;
  return Status::Ok();
}

void CoordinatorServer::Stop() {
  if (!started_) return;
  started_ = false;
  if (service_ != nullptr) service_->SetServing(false);
  // Stop accepting and close connections; calls in flight finish first.
  if (saga_ != nullptr) saga_->StopWaiting();  // submitSaga waiting for completion answers now
  if (thrift_ != nullptr) thrift_->Stop();

  // ==== 2PC engineer: stop the Sweeper and the TwoPhaseDriver here (before the
  //      group commit drains). ====
  if (sweeper_ != nullptr) sweeper_->Stop();
  if (service_ != nullptr) service_->SetTwoPhaseOps(nullptr);
  two_phase_.reset();  // finishes queued phase-2 work; unfinished work stays for recovery
  // ==== Saga engineer: stop the SagaDriver here. ====
  if (service_ != nullptr) service_->SetSagaOps(nullptr);
  if (sweeper_ != nullptr) sweeper_->SetSagaOps(nullptr);
  saga_.reset();  // in-flight sagas stay in the store; the next start resumes them

  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_stop_ = true;
  }
  lease_cv_.notify_all();
  if (lease_thread_.joinable()) lease_thread_.join();

  log_.reset();  // drains what is queued
  thrift_.reset();
  handler_.reset();
  service_.reset();
  store_.reset();
  LOG(INFO) << "coordinator " << node_.node_id << " stopped";
}

bool CoordinatorServer::WaitForLeaseLoss(int64_t timeout_ms, Status* reason) {
  std::unique_lock<std::mutex> lock(lease_mu_);
  lease_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                     [this] { return lease_lost() || lease_stop_; });
  if (!lease_lost()) return false;
  if (reason != nullptr) *reason = lease_loss_reason_;
  return true;
}

void CoordinatorServer::LoseLease(const Status& reason) {
  LOG(ERROR) << "coordinator " << node_.node_id << " lost its lease (epoch " << node_.epoch
             << "): " << reason << "; it stops serving and writes nothing more";
  service_->SetServing(false);
  // The callback runs before waiters are woken, so that whoever sees
  // lease_lost() also sees its effects.
  if (options_.on_lease_lost) options_.on_lease_lost(reason);
  {
    std::lock_guard<std::mutex> lock(lease_mu_);
    lease_loss_reason_ = reason;
    lease_lost_.store(true, std::memory_order_release);
  }
  lease_cv_.notify_all();
}

void CoordinatorServer::LeaseLoop(int64_t acquired_mono_ms) {
  const int64_t ttl = options_.lease_ttl_ms;
  const int64_t interval =
      options_.lease_renew_interval_ms > 0 ? options_.lease_renew_interval_ms : ttl / 3;
  // The lease is certainly ours until last_renewed + ttl, where last_renewed is
  // taken *before* the renewing call (the store computes the expiry after it).
  int64_t last_renewed = acquired_mono_ms;
  int failures = 0;
  int64_t wait_ms = interval;
  BackoffPolicy backoff{std::max<int64_t>(interval / 4, 10), interval, 2.0};
  while (true) {
    {
      std::unique_lock<std::mutex> lock(lease_mu_);
      if (lease_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms),
                             [this] { return lease_stop_; })) {
        return;
      }
    }
    const int64_t attempt_start = MonotonicMs();
    if (attempt_start - last_renewed >= ttl) {
      LoseLease(Status::Timeout("not renewed for " + std::to_string(attempt_start - last_renewed) +
                                " ms (ttl " + std::to_string(ttl) + " ms)"));
      return;
    }
    Status renewed = store_->RenewLease(node_.node_id, node_.epoch, ttl, NowUnixMs());
    if (renewed.ok()) {
      last_renewed = attempt_start;
      if (failures > 0) LOG(INFO) << "lease renewed again after " << failures << " failures";
      failures = 0;
      wait_ms = interval;
      VLOG(2) << "lease of " << node_.node_id << " renewed (epoch " << node_.epoch << ")";
      continue;
    }
    if (renewed.code() == StatusCode::kConflict || renewed.code() == StatusCode::kNotFound) {
      LoseLease(renewed);
      return;
    }
    ++failures;
    const int64_t left = last_renewed + ttl - MonotonicMs();
    wait_ms = std::max<int64_t>(1, std::min(BackoffDelayMs(backoff, failures), left));
    LOG(WARNING) << "lease renewal failed (" << failures << " in a row, " << left
                 << " ms of lease left): " << renewed;
  }
}

}  // namespace txc
