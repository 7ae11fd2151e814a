#include "txc/participant/coordinator_client.h"

#include <glog/logging.h>

#include <chrono>
#include <thread>

#include "common/ids.h"

namespace txc {
namespace participant {

namespace {

std::string RandomKey() { return NewId("sdk"); }

// How one attempt ended, beyond its Status.
enum class AttemptEnd {
  kDone,         // an answer (success or a final typed error)
  kRetry,        // retry on the next replica after backoff
  kRetryAt,      // retry at a named owner endpoint
  kUnsafeRetry,  // failed after the request was sent: retry only if retry-safe
};

// Raises the receive timeout of the connection under `client` for one call
// (a commit that waits for completion answers only after its wait), and puts
// the pool's timeout back afterwards.
class RecvTimeoutScope {
 public:
  RecvTimeoutScope(wire::CoordinatorClient& client, int64_t call_ms, int default_ms)
      : default_ms_(default_ms) {
    if (call_ms <= default_ms) return;
    auto framed = std::dynamic_pointer_cast<apache::thrift::transport::TFramedTransport>(
        client.getInputProtocol()->getTransport());
    if (framed != nullptr) {
      socket_ = std::dynamic_pointer_cast<apache::thrift::transport::TSocket>(
          framed->getUnderlyingTransport());
    }
    if (socket_ != nullptr) socket_->setRecvTimeout(static_cast<int>(call_ms));
  }
  ~RecvTimeoutScope() {
    if (socket_ != nullptr) socket_->setRecvTimeout(default_ms_);
  }

 private:
  const int default_ms_;
  std::shared_ptr<apache::thrift::transport::TSocket> socket_;
};

// Margin over a server-side wait before the client gives up on the reply.
constexpr int64_t kWaitMarginMs = 2000;

}  // namespace

Result<std::unique_ptr<CoordinatorClient>> CoordinatorClient::Create(
    CoordinatorClientOptions options) {
  if (options.endpoints.empty()) {
    return Status::InvalidArgument("coordinator client: no coordinator endpoints");
  }
  for (const auto& e : options.endpoints) {
    auto hp = ParseEndpoint(e);
    if (!hp.ok()) return hp.status();
  }
  if (options.max_attempts < 1) options.max_attempts = 1;
  std::shared_ptr<TlsContext> tls;
  if (options.tls.enabled()) {
    auto made = TlsContext::Create(options.tls, TlsRole::kClient);
    if (!made.ok()) {
      return Status::InvalidArgument("coordinator client TLS: " + made.status().message());
    }
    tls = std::move(made).value();
  }
  return std::unique_ptr<CoordinatorClient>(new CoordinatorClient(std::move(options), tls));
}

CoordinatorClient::CoordinatorClient(CoordinatorClientOptions options,
                                     std::shared_ptr<TlsContext> tls)
    : options_(std::move(options)), tls_(std::move(tls)), pool_([this] {
        ConnectOptions o;
        o.connect_timeout_ms = options_.connect_timeout_ms;
        o.rpc_timeout_ms = options_.rpc_timeout_ms;
        o.max_message_bytes = options_.max_message_bytes;
        o.tls = tls_;
        return o;
      }()) {}

Status CoordinatorClient::ReloadTls() {
  if (tls_ == nullptr) return Status::InvalidArgument("the coordinator client does not use TLS");
  return tls_->Reload();
}

Status CoordinatorClient::Invoke(const char* what, const std::string& gtid, bool retry_safe,
                                 const std::function<void(wire::CoordinatorClient&)>& fn,
                                 int64_t call_timeout_ms) {
  const size_t n = options_.endpoints.size();
  const int64_t deadline = MonotonicMs() + options_.call_deadline_ms;
  size_t index = preferred_.load(std::memory_order_relaxed) % n;
  std::string owner_endpoint;  // set by NotOwner: the next attempt goes there
  int min_delay_ms = 0;        // from Unavailable.retry_after_ms
  Status last;
  for (int attempt = 1; attempt <= options_.max_attempts; ++attempt) {
    const std::string endpoint =
        owner_endpoint.empty() ? options_.endpoints[index] : owner_endpoint;
    owner_endpoint.clear();
    bool sent = false;
    AttemptEnd end = AttemptEnd::kDone;
    try {
      last = pool_.Call(endpoint, [&](wire::CoordinatorClient& client) {
        sent = true;
        RecvTimeoutScope timeout(client, call_timeout_ms, options_.rpc_timeout_ms);
        fn(client);
      });
      if (last.ok()) {
        if (endpoint == options_.endpoints[index])
          preferred_.store(index, std::memory_order_relaxed);
        return last;
      }
      end = sent ? AttemptEnd::kUnsafeRetry : AttemptEnd::kRetry;
    } catch (const wire::NotFound& e) {
      return Status::NotFound(e.message);
    } catch (const wire::IllegalTransition& e) {
      return Status::IllegalTransition(e.message);
    } catch (const wire::InvalidArgument& e) {
      return Status::InvalidArgument(e.message +
                                     (e.field.empty() ? "" : " (field " + e.field + ")"));
    } catch (const wire::NotOwner& e) {
      last = Status::NotOwner(e.message + " (owner " + e.owner_endpoint + ")");
      if (!e.owner_endpoint.empty() && e.owner_endpoint != endpoint &&
          ParseEndpoint(e.owner_endpoint).ok()) {
        owner_endpoint = e.owner_endpoint;
        end = AttemptEnd::kRetryAt;
      } else {
        end = AttemptEnd::kRetry;
      }
    } catch (const wire::Unavailable& e) {
      last = Status::Unavailable(e.message);
      min_delay_ms = std::max(0, e.retry_after_ms);
      end = AttemptEnd::kRetry;
    }
    if (end == AttemptEnd::kUnsafeRetry && !retry_safe) {
      LOG(ERROR) << "coordinator " << what << " gtid=" << gtid << " at " << endpoint
                 << " failed after the request was sent (not retry-safe): " << last;
      return last;
    }
    if (attempt == options_.max_attempts) break;
    VLOG(1) << "coordinator " << what << " gtid=" << gtid << " attempt " << attempt << " at "
            << endpoint << ": " << last << "; retrying";
    if (end != AttemptEnd::kRetryAt) {
      index = (index + 1) % n;
      // A full round over every replica failed: back off before the next one.
      const bool round_done = attempt % static_cast<int>(n) == 0;
      int64_t delay =
          round_done ? BackoffDelayMs(options_.backoff, attempt / static_cast<int>(n)) : 0;
      delay = std::max<int64_t>(delay, min_delay_ms);
      min_delay_ms = 0;
      if (MonotonicMs() + delay >= deadline) break;
      if (delay > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
    if (MonotonicMs() >= deadline) break;
  }
  LOG(ERROR) << "coordinator " << what << " gtid=" << gtid << " gave up: " << last;
  return last;
}

Result<wire::BeginResponse> CoordinatorClient::Begin(wire::BeginRequest request) {
  if (!request.__isset.idempotency_key && options_.auto_idempotency_key) {
    request.__set_idempotency_key(RandomKey());
  }
  const bool retry_safe = request.__isset.idempotency_key;
  wire::BeginResponse response;
  TXC_RETURN_IF_ERROR(Invoke("beginTxn", "", retry_safe,
                             [&](wire::CoordinatorClient& c) { c.beginTxn(response, request); }));
  VLOG(1) << "gtid=" << response.gtid << " begun";
  return response;
}

Status CoordinatorClient::Enlist(const wire::EnlistRequest& request) {
  return Invoke("enlist", request.gtid, true,
                [&](wire::CoordinatorClient& c) { c.enlist(request); });
}

Result<wire::CommitResponse> CoordinatorClient::Commit(const wire::CommitRequest& request) {
  wire::CommitResponse response;
  const int64_t timeout = request.wait == wire::CommitWait::WAIT_COMPLETION
                              ? request.wait_timeout_ms + kWaitMarginMs
                              : 0;
  TXC_RETURN_IF_ERROR(Invoke(
      "commit", request.gtid, true,
      [&](wire::CoordinatorClient& c) { c.commit(response, request); }, timeout));
  return response;
}

Result<wire::CommitResponse> CoordinatorClient::Rollback(const std::string& gtid) {
  wire::CommitResponse response;
  TXC_RETURN_IF_ERROR(Invoke("rollback", gtid, true,
                             [&](wire::CoordinatorClient& c) { c.rollback(response, gtid); }));
  return response;
}

Result<wire::TxnStatus> CoordinatorClient::GetStatus(const std::string& gtid) {
  wire::TxnStatus response;
  TXC_RETURN_IF_ERROR(
      Invoke("status", gtid, true, [&](wire::CoordinatorClient& c) { c.status(response, gtid); }));
  return response;
}

Result<wire::SubmitSagaResponse> CoordinatorClient::SubmitSaga(
    const wire::SubmitSagaRequest& request) {
  wire::SubmitSagaResponse response;
  const bool retry_safe = request.__isset.gtid && !request.gtid.empty();
  const int64_t timeout = request.wait_for_completion ? request.wait_timeout_ms + kWaitMarginMs : 0;
  TXC_RETURN_IF_ERROR(Invoke(
      "submitSaga", request.gtid, retry_safe,
      [&](wire::CoordinatorClient& c) { c.submitSaga(response, request); }, timeout));
  return response;
}

Result<Outcome> CoordinatorClient::QueryOutcome(const std::string& gtid,
                                                const std::string& branch_id) {
  wire::Outcome::type outcome = wire::Outcome::OUTCOME_PENDING;
  TXC_RETURN_IF_ERROR(Invoke("queryOutcome", gtid, true, [&](wire::CoordinatorClient& c) {
    outcome = c.queryOutcome(gtid, branch_id);
  }));
  switch (outcome) {
    case wire::Outcome::OUTCOME_COMMIT: return Outcome::kCommit;
    case wire::Outcome::OUTCOME_ABORT: return Outcome::kAbort;
    case wire::Outcome::OUTCOME_PENDING: return Outcome::kPending;
  }
  return Status::Internal("queryOutcome: unknown outcome " + std::to_string(outcome));
}

Result<wire::HealthResponse> CoordinatorClient::Health() {
  wire::HealthResponse response;
  TXC_RETURN_IF_ERROR(
      Invoke("health", "", true, [&](wire::CoordinatorClient& c) { c.health(response); }));
  return response;
}

Result<wire::HealthResponse> CoordinatorClient::HealthOf(const std::string& endpoint) {
  TXC_RETURN_IF_ERROR(ParseEndpoint(endpoint).status());
  wire::HealthResponse response;
  TXC_RETURN_IF_ERROR(
      pool_.Call(endpoint, [&](wire::CoordinatorClient& c) { c.health(response); }));
  return response;
}

}  // namespace participant
}  // namespace txc
