#include "coordinator/driver/async_participant_client.h"

#include <arpa/inet.h>
#include <glog/logging.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <sys/socket.h>
#include <thrift/TApplicationException.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/backoff.h"
#include "common/thrift_util.h"
#include "coordinator/metrics/coordinator_metrics.h"
#include "gen-cpp/Participant.h"

namespace txc {

namespace asio = boost::asio;
using apache::thrift::TApplicationException;
using apache::thrift::TException;
using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::protocol::TMessageType;
using apache::thrift::protocol::TProtocol;
using apache::thrift::transport::TMemoryBuffer;
using asio::ip::tcp;

namespace {

enum class Method { kPrepare, kCommitOnePhase, kCommit, kAbort, kAction, kCompensate };

// The metrics label (CoordinatorMetrics::RecordParticipantCall).
const char* MetricName(Method m) {
  switch (m) {
    case Method::kPrepare: return "prepare";
    case Method::kCommitOnePhase: return "commit_one_phase";
    case Method::kCommit: return "commit";
    case Method::kAbort: return "abort";
    case Method::kAction: return "action";
    case Method::kCompensate: return "compensate";
  }
  return "unknown";
}

// The Thrift method name (idl/participant.thrift), checked in every reply.
const char* WireName(Method m) {
  switch (m) {
    case Method::kPrepare: return "prepare";
    case Method::kCommitOnePhase: return "commitOnePhase";
    case Method::kCommit: return "commit";
    case Method::kAbort: return "abort";
    case Method::kAction: return "action";
    case Method::kCompensate: return "compensate";
  }
  return "unknown";
}

// Finishing calls settle work already decided; the others start work.
bool IsFinishing(Method m) {
  switch (m) {
    case Method::kCommit:
    case Method::kAbort:
    case Method::kCompensate: return true;
    case Method::kPrepare:
    case Method::kCommitOnePhase:
    case Method::kAction: return false;
  }
  return false;
}

// The generated client writes every request with sequence id 0 and one call
// at a time runs on a connection, so every reply must carry 0 too.
constexpr int32_t kSeqId = 0;

// The TLS client context for participants (same rules as common/tls.h: TLS
// 1.2+, the server verified against the CA bundle and the CRL if any, our
// certificate if any).
Result<std::shared_ptr<asio::ssl::context>> MakeTlsContext(const TlsOptions& tls) {
  Status valid = tls.ValidateForClient();
  if (!valid.ok()) return valid;
  std::string step;
  try {
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
    if (SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION) != 1) {
      return Status::Internal("cannot require TLS 1.2 for participant calls");
    }
    step = "loading CA bundle " + tls.ca_file;
    ctx->load_verify_file(tls.ca_file);
    if (!tls.cert_file.empty()) {
      step = "loading certificate " + tls.cert_file;
      ctx->use_certificate_chain_file(tls.cert_file);
      step = "loading key " + tls.key_file;
      ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem);
      if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
        return Status::InvalidArgument("key " + tls.key_file + " does not match certificate " +
                                       tls.cert_file);
      }
    }
    if (!tls.crl_file.empty()) {
      // Every handshake checks the participant's certificate against it.
      Status crl = LoadCrlFile(ctx->native_handle(), tls.crl_file, tls.crl_check_chain);
      if (!crl.ok()) return Status::InvalidArgument("participant TLS: " + crl.message());
    }
    ctx->set_verify_mode(asio::ssl::verify_peer);
    return ctx;
  } catch (const boost::system::system_error& e) {
    return Status::InvalidArgument("participant TLS: " + step + ": " + e.what());
  }
}

bool IsIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// As ParticipantClient's ToWire (coordinator/driver/participant_client.cc).
wire::BranchRequest ToBranchRequest(const ParticipantCall& call) {
  wire::BranchRequest req;
  req.gtid = call.gtid;
  req.branch_id = call.branch_id;
  req.resource = call.resource;
  req.payload = call.payload;
  req.context.gtid = call.gtid;
  req.context.coordinators = call.coordinators;
  req.context.deadline_unix_ms = call.deadline_ms;
  req.context.__set_branch_id(call.branch_id);
  return req;
}

// As the saga driver's action/compensate request (coordinator/driver/saga_driver.cc).
wire::StepRequest ToStepRequest(const ParticipantCall& call) {
  wire::StepRequest req;
  req.__set_gtid(call.gtid);
  req.__set_step_id(call.branch_id);
  req.__set_name(call.name);
  req.__set_payload(call.payload);
  req.__set_attempt(call.attempt);
  wire::TxnContext ctx;
  ctx.__set_gtid(call.gtid);
  ctx.__set_coordinators(call.coordinators);
  ctx.__set_deadline_unix_ms(call.deadline_ms);
  ctx.__set_branch_id(call.branch_id);
  req.__set_context(ctx);
  return req;
}

// Replies are read in one go when they fit; a connection (and a thread's
// request encoder) keeps a larger buffer only up to kKeepReadBufferBytes.
constexpr size_t kReadChunkBytes = 4096;
constexpr size_t kKeepReadBufferBytes = 64 * 1024;
// An idle connection is peeked for a close by the peer once it has been idle
// this long.
constexpr int64_t kPeekIdleAfterMs = 20;

// Encodes requests with the generated client's send_* into memory; one per
// thread, reused.
struct RequestEncoder {
  std::shared_ptr<TMemoryBuffer> buffer = std::make_shared<TMemoryBuffer>();
  wire::ParticipantClient client{std::make_shared<TBinaryProtocol>(buffer)};
};

// The request as a frame: 4-byte big-endian length, then the message.
std::string EncodeFrame(Method method, const ParticipantCall& call) {
  thread_local std::unique_ptr<RequestEncoder> encoder_holder;
  if (encoder_holder == nullptr) encoder_holder = std::make_unique<RequestEncoder>();
  RequestEncoder& encoder = *encoder_holder;
  encoder.buffer->resetBuffer();
  switch (method) {
    case Method::kPrepare: encoder.client.send_prepare(ToBranchRequest(call)); break;
    case Method::kCommitOnePhase: encoder.client.send_commitOnePhase(ToBranchRequest(call)); break;
    case Method::kCommit: encoder.client.send_commit(ToBranchRequest(call)); break;
    case Method::kAbort: encoder.client.send_abort(ToBranchRequest(call)); break;
    case Method::kAction: encoder.client.send_action(ToStepRequest(call)); break;
    case Method::kCompensate: encoder.client.send_compensate(ToStepRequest(call)); break;
  }
  uint8_t* data = nullptr;
  uint32_t size = 0;
  encoder.buffer->getBuffer(&data, &size);
  std::string frame(4 + static_cast<size_t>(size), '\0');
  frame[0] = static_cast<char>((size >> 24) & 0xff);
  frame[1] = static_cast<char>((size >> 16) & 0xff);
  frame[2] = static_cast<char>((size >> 8) & 0xff);
  frame[3] = static_cast<char>(size & 0xff);
  if (size > 0) std::memcpy(&frame[4], data, size);
  if (size > kKeepReadBufferBytes) {
    encoder_holder.reset();  // one large request: do not keep its memory
  } else {
    encoder.buffer->resetBuffer();
  }
  return frame;
}

BranchVote FromWire(wire::Vote::type vote) {
  switch (vote) {
    case wire::Vote::VOTE_PREPARED: return BranchVote::kPrepared;
    case wire::Vote::VOTE_READ_ONLY: return BranchVote::kReadOnly;
    case wire::Vote::VOTE_ABORT: return BranchVote::kAbort;
  }
  return BranchVote::kAbort;  // an unknown vote is a no
}

Outcome FromWire(wire::Outcome::type outcome) {
  switch (outcome) {
    case wire::Outcome::OUTCOME_COMMIT: return Outcome::kCommit;
    case wire::Outcome::OUTCOME_ABORT: return Outcome::kAbort;
    case wire::Outcome::OUTCOME_PENDING: return Outcome::kPending;
  }
  return Outcome::kPending;  // unknown: ask again
}

StepAnswer FromWire(const wire::StepResult& result) {
  StepAnswer answer;
  answer.message = result.message;
  switch (result.outcome) {
    case wire::StepOutcome::SUCCESS: answer.outcome = StepOutcome::kSuccess; break;
    case wire::StepOutcome::FAILURE: answer.outcome = StepOutcome::kFailure; break;
    case wire::StepOutcome::RETRY_LATER: answer.outcome = StepOutcome::kRetryLater; break;
    default:
      answer.outcome = StepOutcome::kRetryLater;
      break;  // unknown: transient, as the saga driver
  }
  return answer;
}

struct NoValue {};  // the "result" of commit and abort

}  // namespace

// How a call moves (all I/O of one connection runs on that connection's strand):
//
//   Submit ──► queued (prepare-class or finishing queue of its endpoint)
//                │ Pump: a slot is free
//                ▼
//   still_wanted()? ── false ──► kCancelled (slot freed, nothing sent)
//                │ true
//                ▼
//   idle connection? ── no ──► resolve/connect (connect timer) ──┐
//                │ yes                                           │
//                ▼                                               ▼
//              Send: write frame, call timer ──► read 4-byte length ──► read body ──► decode
//                                                                                       │
//   any transport error / connect timeout ──► close socket, kUnavailable ───────────────┤
//   call timer fires ──────────────────────► close socket, kTimeout ───────────────────┤
//                                                                                       ▼
//                      Complete: claim (exactly once), free the slot, reuse or close
//                      the connection, Pump the endpoint, run the callback
//
// The destructor claims every queued and outstanding call instead (kUnavailable).
class AsyncParticipantClient::Impl {
 public:
  explicit Impl(AsyncParticipantClientOptions options);
  ~Impl();

  template <typename T>
  void Call(Method method, ParticipantCall call, std::function<T(wire::ParticipantClient&)> receive,
            std::function<void(Result<T>)> done);
  void After(int64_t delay_ms, std::function<void()> fn);
  size_t PendingCalls() const;
  Status ReloadTls();

 private:
  struct Endpoint;

  // One call, shared by the queue, its connection's handlers and the destructor.
  struct CallState {
    Method method = Method::kPrepare;
    ParticipantCall call;
    std::string frame;             // the encoded request
    Status early_error;            // not OK: completed with it when its turn comes, not sent
    Endpoint* endpoint = nullptr;  // set by Submit; endpoints live as long as the client
    // The one completion: whoever exchanges it to true completes the call.
    std::atomic<bool> claimed{false};
    // Started when the call is sent; only the I/O path touches it (Asio orders
    // the handlers of one call), the destructor never does.
    std::optional<ParticipantCallTimer> timer;

    virtual ~CallState() = default;
    bool Claim() { return !claimed.exchange(true); }
    // Deliver, but a callback that throws (they must not) is logged and does
    // not stop the caller's loop (Pump, shutdown) from completing the others.
    void SafeDeliver(const Status& status) {
      try {
        Deliver(status);
      } catch (const std::exception& e) {
        LOG(ERROR) << "gtid=" << call.gtid << " branch=" << call.branch_id
                   << ": participant call callback threw: " << e.what();
      } catch (...) {
        LOG(ERROR) << "gtid=" << call.gtid << " branch=" << call.branch_id
                   << ": participant call callback threw";
      }
    }
    bool Claimed() const { return claimed.load(); }
    // Reads the reply with `client` (its input protocol over the reply body);
    // stores the value. Throws what the generated recv_* throws.
    virtual void Decode(wire::ParticipantClient& client) = 0;
    // Runs the caller's callback: the decoded value when `status` is OK.
    virtual void Deliver(const Status& status) = 0;
  };

  template <typename T>
  struct TypedCall : CallState {
    std::function<T(wire::ParticipantClient&)> receive;
    std::function<void(Result<T>)> done;
    std::optional<T> value;

    void Decode(wire::ParticipantClient& client) override { value = receive(client); }
    void Deliver(const Status& status) override {
      if (status.ok() && value.has_value()) {
        done(std::move(*value));
      } else if (status.ok()) {
        done(Status::Internal("participant reply was not decoded"));
      } else {
        done(status);
      }
    }
  };

  // One TCP connection. Between calls it sits in its endpoint's idle list
  // (owned by nobody else); during a call only handlers on `strand` touch it.
  struct Conn {
    Conn(asio::io_context& io,
         const std::shared_ptr<apache::thrift::protocol::TProtocolFactory>& protocol_factory)
        : strand(asio::make_strand(io)),
          socket(strand),
          timer(strand),
          reply(std::make_shared<TMemoryBuffer>()),
          reply_protocol(protocol_factory->getProtocol(reply)),
          decoder(reply_protocol) {}

    asio::strand<asio::io_context::executor_type> strand;
    tcp::socket socket;
    // With TLS: the session over `socket` and the context it was made from.
    std::shared_ptr<asio::ssl::context> tls_context;
    std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
    asio::steady_timer timer;                 // connect timeout, then each call's timeout
    std::unique_ptr<tcp::resolver> resolver;  // only for host names
    std::shared_ptr<CallState> current;       // the call on this connection, if any
    std::vector<uint8_t> in;                  // the reply: 4-byte length, then body
    size_t reply_bytes = 0;                   // the body's length
    int64_t idle_since_ms = 0;                // guarded by mu_ while in an idle list
    // Reply decoding: the generated client reading `reply` (set to the body in `in`).
    std::shared_ptr<TMemoryBuffer> reply;
    std::shared_ptr<TProtocol> reply_protocol;
    wire::ParticipantClient decoder;
  };

  struct Endpoint {
    Endpoint(std::string n, Result<HostPort> a) : name(std::move(n)), address(std::move(a)) {}
    const std::string name;
    const Result<HostPort> address;  // parsed once
    // Guarded by mu_:
    std::deque<std::shared_ptr<CallState>> prepare_queue;    // prepare, commitOnePhase, action
    std::deque<std::shared_ptr<CallState>> finishing_queue;  // commit, abort, compensate
    bool finishing_next = false;  // whose turn it is when both queues wait
    int active = 0;               // calls taken from the queues and not released
    std::unordered_set<std::shared_ptr<CallState>> in_flight;  // those calls
    std::deque<std::shared_ptr<Conn>> idle;                    // oldest first
  };

  void Submit(std::shared_ptr<CallState> call);
  // Starts queued calls of `ep` while it has free slots. Any thread; no lock held.
  void Pump(Endpoint& ep);
  std::shared_ptr<CallState> PopNextLocked(Endpoint& ep);
  void StartOnNewConnection(const std::shared_ptr<CallState>& call);
  // The rest run on the connection's strand.
  void Connect(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call);
  // TLS: the handshake on a new connection, then Send.
  void Handshake(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call);
  void Send(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call);
  void ReadReply(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call);
  void OnFirstBytes(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call,
                    size_t received);
  void OnBody(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call);
  // Ends the call with a transport-level failure: closes the connection.
  void Fail(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call,
            Status status);
  // The single completion path of a call that was sent (or whose connect was
  // tried): claims it, frees its slot, returns or closes the connection, starts
  // the next queued call and runs the callback. No-op when already claimed.
  void Complete(const std::shared_ptr<Conn>& conn, const std::shared_ptr<CallState>& call,
                Status status, bool keep_connection);
  // Frees the call's slot; `conn` (may be null) goes back to the idle list.
  void Release(const std::shared_ptr<CallState>& call, std::shared_ptr<Conn> conn);
  static void Close(Conn& conn);
  // Reads and writes go through the TLS session when the connection has one.
  template <typename Buffer, typename Handler>
  static void AsyncWrite(Conn& conn, const Buffer& buffer, Handler&& handler) {
    if (conn.tls != nullptr) {
      asio::async_write(*conn.tls, buffer, std::forward<Handler>(handler));
    } else {
      asio::async_write(conn.socket, buffer, std::forward<Handler>(handler));
    }
  }
  template <typename Buffer, typename Condition, typename Handler>
  static void AsyncRead(Conn& conn, const Buffer& buffer, Condition condition, Handler&& handler) {
    if (conn.tls != nullptr) {
      asio::async_read(*conn.tls, buffer, condition, std::forward<Handler>(handler));
    } else {
      asio::async_read(conn.socket, buffer, condition, std::forward<Handler>(handler));
    }
  }
  // Asks the call's still_wanted (true when it has none, or when it throws).
  static bool StillWanted(const CallState& call);
  // True when an idle connection can still be used: the peer has not closed
  // it and nothing unexpected arrived on it.
  static bool StillUsable(Conn& conn);

  const AsyncParticipantClientOptions options_;
  const std::shared_ptr<apache::thrift::protocol::TProtocolFactory> protocol_factory_;

  // Declared first so it is destroyed last: connections held by abandoned
  // handlers are destroyed with it.
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;

  // TLS to participants: the context new connections use (null: plaintext),
  // replaced whole by ReloadTls; tls_error_ is why it could not be made.
  mutable std::mutex tls_mu_;
  std::shared_ptr<asio::ssl::context> tls_context_;  // guarded by tls_mu_
  Status tls_error_;                                 // guarded by tls_mu_

  // Set once, by the destructor; read without mu_ by After's timers.
  std::atomic<bool> stopping_{false};

  // mu_ guards endpoints_' queues, slots and idle lists, and pending_. It is a
  // leaf lock: no callback, still_wanted, socket operation or log line runs
  // under it.
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::unique_ptr<Endpoint>> endpoints_;
  size_t pending_ = 0;  // queued + active over all endpoints
};

AsyncParticipantClient::Impl::Impl(AsyncParticipantClientOptions options)
    : options_([&] {
        options.io_threads = std::max(1, options.io_threads);
        options.max_calls_per_endpoint = std::max(1, options.max_calls_per_endpoint);
        options.connect_timeout_ms = std::max(1, options.connect_timeout_ms);
        options.max_message_bytes = std::max<int64_t>(64, options.max_message_bytes);
        return options;
      }()),
      protocol_factory_(MakeProtocolFactory(options_.max_message_bytes)),
      io_(options_.io_threads) {
  if (options_.tls.enabled()) {
    auto ctx = MakeTlsContext(options_.tls);
    if (ctx.ok()) {
      tls_context_ = std::move(ctx).value();
    } else {
      tls_error_ = ctx.status();
      LOG(ERROR) << "participant calls cannot use TLS, every call will fail: " << tls_error_;
    }
  }
  work_.emplace(asio::make_work_guard(io_));
  for (int i = 0; i < options_.io_threads; ++i) {
    threads_.emplace_back([this] {
      for (;;) {
        try {
          io_.run();
          return;
        } catch (const std::exception& e) {
          // A callback threw (they must not): the call is complete; keep serving.
          LOG(ERROR) << "participant client: a callback threw: " << e.what();
        }
      }
    });
    pthread_setname_np(threads_.back().native_handle(), "participant-io");
  }
}

AsyncParticipantClient::Impl::~Impl() {
  for (const auto& t : threads_) {
    // Joining our own thread would hang forever: fail loudly instead.
    LOG_IF(FATAL, t.get_id() == std::this_thread::get_id())
        << "AsyncParticipantClient destroyed from one of its own callbacks";
  }
  std::vector<std::shared_ptr<CallState>> calls;
  std::vector<std::shared_ptr<Conn>> idle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [name, ep] : endpoints_) {
      for (auto& c : ep->prepare_queue) calls.push_back(std::move(c));
      for (auto& c : ep->finishing_queue) calls.push_back(std::move(c));
      for (const auto& c : ep->in_flight) calls.push_back(c);
      ep->in_flight.clear();  // their handlers find them claimed and stop
      for (auto& c : ep->idle) idle.push_back(std::move(c));
      ep->prepare_queue.clear();
      ep->finishing_queue.clear();
      ep->idle.clear();
    }
  }
  VLOG(1) << "participant client shutting down: " << calls.size() << " calls completed unanswered";
  for (const auto& call : calls) {
    if (call->Claim()) call->SafeDeliver(Status::Unavailable("participant client shutting down"));
  }
  work_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  for (auto& conn : idle) Close(*conn);
  // Handlers never run now; the connections they hold go with io_.
}

template <typename T>
void AsyncParticipantClient::Impl::Call(Method method, ParticipantCall call,
                                        std::function<T(wire::ParticipantClient&)> receive,
                                        std::function<void(Result<T>)> done) {
  auto state = std::make_shared<TypedCall<T>>();
  state->method = method;
  state->receive = std::move(receive);
  state->done = std::move(done);
  state->call = std::move(call);
  state->call.timeout_ms = std::max(1, state->call.timeout_ms);
  try {
    state->frame = EncodeFrame(method, state->call);
  } catch (const std::exception& e) {
    // Not expected (it writes to memory); completed from the queue like any call.
    state->early_error = Status::Internal("cannot encode " + std::string(WireName(method)) +
                                          " request: " + e.what());
  }
  Submit(std::move(state));
}

void AsyncParticipantClient::Impl::Submit(std::shared_ptr<CallState> call) {
  Endpoint* ep = nullptr;
  bool start = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      auto it = endpoints_.find(call->call.endpoint);
      if (it == endpoints_.end()) {
        it = endpoints_
                 .emplace(call->call.endpoint,
                          std::make_unique<Endpoint>(call->call.endpoint,
                                                     ParseEndpoint(call->call.endpoint)))
                 .first;
      }
      ep = it->second.get();
      call->endpoint = ep;
      (IsFinishing(call->method) ? ep->finishing_queue : ep->prepare_queue).push_back(call);
      ++pending_;
      start = ep->active < options_.max_calls_per_endpoint;
    }
  }
  if (ep == nullptr) {
    if (call->Claim()) call->SafeDeliver(Status::Unavailable("participant client shutting down"));
    return;
  }
  VLOG(2) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
          << WireName(call->method) << " to " << call->call.endpoint << " queued";
  // Pumped on an I/O thread: still_wanted and any early completion run there.
  if (start) asio::post(io_, [this, ep] { Pump(*ep); });
}

std::shared_ptr<AsyncParticipantClient::Impl::CallState>
AsyncParticipantClient::Impl::PopNextLocked(Endpoint& ep) {
  const bool prepare_waits = !ep.prepare_queue.empty();
  const bool finishing_waits = !ep.finishing_queue.empty();
  if (!prepare_waits && !finishing_waits) return nullptr;
  // Alternate while both wait; a lone queue is served and the other kind gets
  // the next turn.
  const bool take_finishing = finishing_waits && (!prepare_waits || ep.finishing_next);
  auto& queue = take_finishing ? ep.finishing_queue : ep.prepare_queue;
  std::shared_ptr<CallState> call = std::move(queue.front());
  queue.pop_front();
  ep.finishing_next = !take_finishing;
  return call;
}

void AsyncParticipantClient::Impl::Pump(Endpoint& ep) {
  for (;;) {
    std::shared_ptr<CallState> call;
    std::shared_ptr<Conn> conn;
    std::vector<std::shared_ptr<Conn>> expired;
    int64_t idle_ms = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || ep.active >= options_.max_calls_per_endpoint) return;
      call = PopNextLocked(ep);
      if (call == nullptr) return;
      ++ep.active;
      ep.in_flight.insert(call);
      const int64_t now = MonotonicMs();
      while (!ep.idle.empty() && now - ep.idle.front()->idle_since_ms > options_.max_idle_ms) {
        expired.push_back(std::move(ep.idle.front()));
        ep.idle.pop_front();
      }
      if (!ep.idle.empty()) {
        conn = std::move(ep.idle.back());  // the most recently used: least likely closed
        ep.idle.pop_back();
        idle_ms = now - conn->idle_since_ms;
      }
    }
    // Idle connections have no operation pending: any thread may close them.
    for (auto& old : expired) Close(*old);
    // A connection back from a call moments ago is used without the peek (a
    // system call per participant call under load, expensive on this
    // virtualised kernel); a peer that closed it in that moment fails this
    // one call as unavailable, like a peer that closes it after the peek.
    if (conn != nullptr && idle_ms >= kPeekIdleAfterMs && !StillUsable(*conn)) {
      VLOG(2) << "idle connection to " << ep.name << " was closed by the peer; opening another";
      Close(*conn);
      conn.reset();
    }
    if (!StillWanted(*call)) {
      VLOG(1) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
              << WireName(call->method) << " to " << ep.name << " no longer wanted: not sent";
      Release(call, std::move(conn));
      if (call->Claim()) call->SafeDeliver(Status::Cancelled("no longer wanted: not sent"));
      continue;
    }
    Status unsendable = call->early_error;
    if (unsendable.ok() && !ep.address.ok()) unsendable = ep.address.status();
    if (!unsendable.ok()) {
      Release(call, std::move(conn));
      if (call->Claim()) call->SafeDeliver(unsendable);
      continue;
    }
    VLOG(2) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << ep.name << " sending";
    call->timer.emplace(MetricName(call->method), call->call.endpoint);
    if (conn != nullptr) {
      asio::dispatch(conn->strand, [this, conn, call] { Send(conn, call); });
    } else {
      StartOnNewConnection(call);
    }
  }
}

void AsyncParticipantClient::Impl::StartOnNewConnection(const std::shared_ptr<CallState>& call) {
  auto conn = std::make_shared<Conn>(io_, protocol_factory_);
  asio::dispatch(conn->strand, [this, conn, call] { Connect(conn, call); });
}

void AsyncParticipantClient::Impl::Connect(const std::shared_ptr<Conn>& conn,
                                           const std::shared_ptr<CallState>& call) {
  if (call->Claimed()) return;  // the destructor completed it
  conn->current = call;
  if (options_.tls.enabled()) {
    Status error;
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      conn->tls_context = tls_context_;
      error = tls_error_;
    }
    if (conn->tls_context == nullptr) {
      Fail(conn, call, Status::Unavailable("participant TLS is misconfigured: " + error.message()));
      return;
    }
  }
  const HostPort& address = call->endpoint->address.value();
  conn->timer.expires_after(std::chrono::milliseconds(options_.connect_timeout_ms));
  conn->timer.async_wait([this, conn, call](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || call->Claimed()) return;
    Fail(conn, call,
         Status::Unavailable("connect to participant " + call->call.endpoint + " timed out after " +
                             std::to_string(options_.connect_timeout_ms) + " ms"));
  });
  auto on_connected = [this, conn, call](const boost::system::error_code& ec) {
    if (call->Claimed()) return;
    if (ec) {
      Fail(conn, call,
           Status::Unavailable("cannot connect to participant " + call->call.endpoint + ": " +
                               ec.message()));
      return;
    }
    boost::system::error_code ignored;
    conn->socket.set_option(tcp::no_delay(true), ignored);
    if (conn->tls_context != nullptr) {
      Handshake(conn, call);
    } else {
      Send(conn, call);
    }
  };
  boost::system::error_code parse_error;
  const asio::ip::address ip = asio::ip::make_address(address.host, parse_error);
  if (!parse_error) {
    conn->socket.async_connect(tcp::endpoint(ip, static_cast<uint16_t>(address.port)),
                               std::move(on_connected));
    return;
  }
  // A host name: Asio resolves on its own internal thread.
  conn->resolver = std::make_unique<tcp::resolver>(conn->strand);
  conn->resolver->async_resolve(
      address.host, std::to_string(address.port),
      [this, conn, call, on_connected = std::move(on_connected)](
          const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
        if (call->Claimed()) return;
        if (ec) {
          Fail(conn, call,
               Status::Unavailable("cannot resolve participant " + call->call.endpoint + ": " +
                                   ec.message()));
          return;
        }
        asio::async_connect(conn->socket, results,
                            [on_connected](const boost::system::error_code& connect_ec,
                                           const tcp::endpoint&) { on_connected(connect_ec); });
      });
}

void AsyncParticipantClient::Impl::Handshake(const std::shared_ptr<Conn>& conn,
                                             const std::shared_ptr<CallState>& call) {
  conn->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(conn->socket, *conn->tls_context);
  SSL* ssl = conn->tls->native_handle();
  const std::string& host = call->endpoint->address.value().host;
  const std::string& name = options_.tls.server_name.empty() ? host : options_.tls.server_name;
  // OpenSSL checks the name during the handshake: an IP literal against the
  // certificate's IP SANs, a host name against its DNS SANs (RFC 6125).
  bool name_set = false;
  if (IsIpLiteral(name)) {
    name_set = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    name_set = SSL_set1_host(ssl, name.c_str()) == 1;
  }
  if (!name_set) {
    Fail(conn, call,
         Status::Unavailable("participant TLS: cannot check the name '" + name + "' of " +
                             call->call.endpoint));
    return;
  }
  // The connect timer (connect_timeout_ms) still runs: it bounds the handshake too.
  conn->tls->async_handshake(
      asio::ssl::stream_base::client,
      [this, conn, call, name](const boost::system::error_code& ec) {
        if (call->Claimed()) return;
        if (ec) {
          std::string reason = ec.message();
          if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof) {
            reason +=
                " (the participant closed the connection in the handshake: does it serve TLS?)";
          }
          const long verify = SSL_get_verify_result(conn->tls->native_handle());
          if (verify != X509_V_OK) {
            reason += std::string(": ") + X509_verify_cert_error_string(verify);
            if (verify == X509_V_ERR_HOSTNAME_MISMATCH ||
                verify == X509_V_ERR_IP_ADDRESS_MISMATCH) {
              reason += " (the certificate does not name '" + name + "')";
            }
          }
          Fail(conn, call,
               Status::Unavailable("TLS handshake with participant " + call->call.endpoint +
                                   " failed: " + reason));
          return;
        }
        Send(conn, call);
      });
}

void AsyncParticipantClient::Impl::Send(const std::shared_ptr<Conn>& conn,
                                        const std::shared_ptr<CallState>& call) {
  if (call->Claimed()) {  // the destructor completed it
    Close(*conn);
    return;
  }
  conn->current = call;
  conn->timer.expires_after(std::chrono::milliseconds(call->call.timeout_ms));
  conn->timer.async_wait([this, conn, call](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || call->Claimed()) return;
    // The reply may still come: this connection can no longer be trusted.
    Fail(conn, call,
         Status::Timeout(std::string(WireName(call->method)) + " to participant " +
                         call->call.endpoint + " timed out after " +
                         std::to_string(call->call.timeout_ms) + " ms"));
  });
  AsyncWrite(*conn, asio::buffer(call->frame),
             [this, conn, call](const boost::system::error_code& ec, size_t) {
               if (call->Claimed()) return;
               if (ec) {
                 Fail(conn, call,
                      Status::Unavailable("cannot send to participant " + call->call.endpoint +
                                          ": " + ec.message()));
                 return;
               }
               ReadReply(conn, call);
             });
}

void AsyncParticipantClient::Impl::ReadReply(const std::shared_ptr<Conn>& conn,
                                             const std::shared_ptr<CallState>& call) {
  // One read usually brings the whole reply (length and body).
  if (conn->in.size() < kReadChunkBytes) conn->in.resize(kReadChunkBytes);
  AsyncRead(*conn, asio::buffer(conn->in), asio::transfer_at_least(4),
            [this, conn, call](const boost::system::error_code& ec, size_t n) {
              if (call->Claimed()) return;
              if (ec) {
                Fail(conn, call,
                     Status::Unavailable("no reply from participant " + call->call.endpoint + ": " +
                                         ec.message()));
                return;
              }
              OnFirstBytes(conn, call, n);
            });
}

void AsyncParticipantClient::Impl::OnFirstBytes(const std::shared_ptr<Conn>& conn,
                                                const std::shared_ptr<CallState>& call,
                                                size_t received) {
  const uint8_t* h = conn->in.data();
  const uint32_t raw = (static_cast<uint32_t>(h[0]) << 24) | (static_cast<uint32_t>(h[1]) << 16) |
                       (static_cast<uint32_t>(h[2]) << 8) | static_cast<uint32_t>(h[3]);
  const int64_t size = static_cast<int32_t>(raw);
  if (size <= 0 || size > options_.max_message_bytes) {
    Fail(conn, call,
         Status::Unavailable("reply frame of " + std::to_string(size) + " bytes from participant " +
                             call->call.endpoint + " (limit " +
                             std::to_string(options_.max_message_bytes) + ")"));
    return;
  }
  conn->reply_bytes = static_cast<size_t>(size);
  const size_t total = 4 + conn->reply_bytes;
  if (received > total) {
    // One call at a time: nothing may follow the reply.
    Fail(conn, call,
         Status::Unavailable("participant " + call->call.endpoint + " sent " +
                             std::to_string(received - total) + " bytes after its reply"));
    return;
  }
  if (received == total) {
    OnBody(conn, call);
    return;
  }
  if (conn->in.size() < total) conn->in.resize(total);
  AsyncRead(*conn, asio::buffer(conn->in.data() + received, total - received), asio::transfer_all(),
            [this, conn, call](const boost::system::error_code& ec, size_t) {
              if (call->Claimed()) return;
              if (ec) {
                Fail(conn, call,
                     Status::Unavailable("reply from participant " + call->call.endpoint +
                                         " cut short: " + ec.message()));
                return;
              }
              OnBody(conn, call);
            });
}

void AsyncParticipantClient::Impl::OnBody(const std::shared_ptr<Conn>& conn,
                                          const std::shared_ptr<CallState>& call) {
  const std::string& endpoint = call->call.endpoint;
  Status status;
  bool keep = true;
  try {
    uint8_t* body = conn->in.data() + 4;
    const auto size = static_cast<uint32_t>(conn->reply_bytes);
    // The generated recv_* does not check the method name or the sequence id
    // (it reads the body of any reply as its own): check the header first.
    conn->reply->resetBuffer(body, size, TMemoryBuffer::OBSERVE);
    std::string name;
    TMessageType type = apache::thrift::protocol::T_REPLY;
    int32_t seqid = -1;
    conn->reply_protocol->readMessageBegin(name, type, seqid);
    if (name != WireName(call->method) || seqid != kSeqId ||
        (type != apache::thrift::protocol::T_REPLY &&
         type != apache::thrift::protocol::T_EXCEPTION)) {
      status =
          Status::Unavailable("unexpected reply from participant " + endpoint + ": '" +
                              name.substr(0, 64) + "' type " + std::to_string(type) + " seqid " +
                              std::to_string(seqid) + " to " + WireName(call->method));
      keep = false;
    } else {
      conn->reply->resetBuffer(body, size, TMemoryBuffer::OBSERVE);
      call->Decode(conn->decoder);
    }
  } catch (const wire::Unavailable& e) {
    // A declared exception: a well-formed reply, the connection is fine.
    status = Status::Unavailable("participant " + endpoint + " unavailable: " + e.message);
  } catch (const wire::PermissionDenied& e) {
    // Declared too. Retried like Unavailable: the participant's list of allowed
    // coordinator identities (or this coordinator's certificate) must change.
    status = Status::Unavailable("participant " + endpoint +
                                 " refused this coordinator (PermissionDenied): " + e.message);
  } catch (const TException& e) {
    // TApplicationException (the handler failed), TProtocolException (malformed).
    status = TranslateThriftException(e, endpoint);
    keep = false;
  } catch (const std::exception& e) {
    status = Status::Unavailable("participant " + endpoint + ": " + e.what());
    keep = false;
  }
  if (conn->in.size() > kKeepReadBufferBytes) {  // one large reply: do not keep its memory
    conn->in.resize(kReadChunkBytes);
    conn->in.shrink_to_fit();
  }
  Complete(conn, call, std::move(status), keep);
}

void AsyncParticipantClient::Impl::Fail(const std::shared_ptr<Conn>& conn,
                                        const std::shared_ptr<CallState>& call, Status status) {
  if (status.code() == StatusCode::kUnavailable) {
    LogParticipantConnectionError(call->call.endpoint, status);
  }
  Complete(conn, call, std::move(status), false);
}

void AsyncParticipantClient::Impl::Complete(const std::shared_ptr<Conn>& conn,
                                            const std::shared_ptr<CallState>& call, Status status,
                                            bool keep_connection) {
  if (!call->Claim()) return;  // the destructor completed it
  if (conn != nullptr) {
    conn->current.reset();
    conn->timer.cancel();
    if (!keep_connection) Close(*conn);
  }
  if (call->timer.has_value()) status = call->timer->Done(std::move(status));
  if (!status.ok()) {
    VLOG(1) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << call->call.endpoint << ": " << status;
  } else {
    VLOG(2) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << call->call.endpoint << " answered";
  }
  Release(call, keep_connection ? conn : nullptr);
  // The next call goes out before this one's callback runs.
  Pump(*call->endpoint);
  call->SafeDeliver(status);
}

void AsyncParticipantClient::Impl::Release(const std::shared_ptr<CallState>& call,
                                           std::shared_ptr<Conn> conn) {
  Endpoint& ep = *call->endpoint;
  std::shared_ptr<Conn> drop;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ep.in_flight.erase(call) == 1) {  // else the destructor took it
      --ep.active;
      --pending_;
    }
    if (conn != nullptr) {
      if (!stopping_ && ep.idle.size() < options_.max_idle_per_endpoint) {
        conn->idle_since_ms = MonotonicMs();
        ep.idle.push_back(std::move(conn));
      } else {
        drop = std::move(conn);
      }
    }
  }
  if (drop != nullptr) Close(*drop);
}

void AsyncParticipantClient::Impl::Close(Conn& conn) {
  // No TLS close_notify: it would need another round trip; the participant
  // sees the end of the TCP stream (an ordinary end of connection for it).
  boost::system::error_code ignored;
  if (conn.resolver != nullptr) conn.resolver->cancel();
  conn.socket.shutdown(tcp::socket::shutdown_both, ignored);
  conn.socket.close(ignored);
}

bool AsyncParticipantClient::Impl::StillWanted(const CallState& call) {
  if (!call.call.still_wanted) return true;
  try {
    return call.call.still_wanted();
  } catch (const std::exception& e) {
    LOG(ERROR) << "gtid=" << call.call.gtid << " branch=" << call.call.branch_id
               << ": still_wanted threw (sending anyway): " << e.what();
  } catch (...) {
    LOG(ERROR) << "gtid=" << call.call.gtid << " branch=" << call.call.branch_id
               << ": still_wanted threw (sending anyway)";
  }
  return true;
}

bool AsyncParticipantClient::Impl::StillUsable(Conn& conn) {
  if (!conn.socket.is_open()) return false;
  char byte = 0;
  const ssize_t n = ::recv(conn.socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  // 0: the peer closed it; > 0: bytes nobody asked for; EAGAIN: alive and quiet.
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void AsyncParticipantClient::Impl::After(int64_t delay_ms, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(
      io_, std::chrono::milliseconds(std::max<int64_t>(0, delay_ms)));
  timer->async_wait([this, timer, fn = std::move(fn)](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    fn();
  });
}

Status AsyncParticipantClient::Impl::ReloadTls() {
  if (!options_.tls.enabled()) return Status::InvalidArgument("participant calls do not use TLS");
  auto ctx = MakeTlsContext(options_.tls);
  if (!ctx.ok()) {
    LOG(ERROR) << "participant TLS reload failed, keeping the current files: " << ctx.status();
    return ctx.status();
  }
  std::lock_guard<std::mutex> lock(tls_mu_);
  tls_context_ = std::move(ctx).value();
  tls_error_ = Status::Ok();
  return Status::Ok();
}

size_t AsyncParticipantClient::Impl::PendingCalls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

// ---- the public face ---------------------------------------------------------

AsyncParticipantClient::AsyncParticipantClient(AsyncParticipantClientOptions options)
    : impl_(std::make_unique<Impl>(options)) {}

AsyncParticipantClient::~AsyncParticipantClient() = default;

void AsyncParticipantClient::Prepare(ParticipantCall call,
                                     std::function<void(Result<BranchVote>)> done) {
  impl_->Call<BranchVote>(
      Method::kPrepare, std::move(call),
      [](wire::ParticipantClient& c) { return FromWire(c.recv_prepare()); }, std::move(done));
}

void AsyncParticipantClient::CommitOnePhase(ParticipantCall call,
                                            std::function<void(Result<Outcome>)> done) {
  impl_->Call<Outcome>(
      Method::kCommitOnePhase, std::move(call),
      [](wire::ParticipantClient& c) { return FromWire(c.recv_commitOnePhase()); },
      std::move(done));
}

void AsyncParticipantClient::Commit(ParticipantCall call, std::function<void(Status)> done) {
  impl_->Call<NoValue>(
      Method::kCommit, std::move(call),
      [](wire::ParticipantClient& c) {
        c.recv_commit();
        return NoValue{};
      },
      [done = std::move(done)](Result<NoValue> r) { done(r.status()); });
}

void AsyncParticipantClient::Abort(ParticipantCall call, std::function<void(Status)> done) {
  impl_->Call<NoValue>(
      Method::kAbort, std::move(call),
      [](wire::ParticipantClient& c) {
        c.recv_abort();
        return NoValue{};
      },
      [done = std::move(done)](Result<NoValue> r) { done(r.status()); });
}

void AsyncParticipantClient::Action(ParticipantCall call,
                                    std::function<void(Result<StepAnswer>)> done) {
  impl_->Call<StepAnswer>(
      Method::kAction, std::move(call),
      [](wire::ParticipantClient& c) {
        wire::StepResult result;
        c.recv_action(result);
        return FromWire(result);
      },
      std::move(done));
}

void AsyncParticipantClient::Compensate(ParticipantCall call,
                                        std::function<void(Result<StepAnswer>)> done) {
  impl_->Call<StepAnswer>(
      Method::kCompensate, std::move(call),
      [](wire::ParticipantClient& c) {
        wire::StepResult result;
        c.recv_compensate(result);
        return FromWire(result);
      },
      std::move(done));
}

void AsyncParticipantClient::After(int64_t delay_ms, std::function<void()> fn) {
  impl_->After(delay_ms, std::move(fn));
}

size_t AsyncParticipantClient::PendingCalls() const { return impl_->PendingCalls(); }

Status AsyncParticipantClient::ReloadTls() { return impl_->ReloadTls(); }

}  // namespace txc
