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
#include <climits>
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

// Each request written on a connection gets the next sequence id (the
// generated client writes 0); its reply must carry it back.
// Sets it in an encoded request frame: 4-byte length, then a strict binary
// message (version and type, name length, name, sequence id).
void SetSeqId(std::string& frame, int32_t seqid) {
  if (frame.size() < 12) return;
  const auto* p = reinterpret_cast<const uint8_t*>(frame.data());
  const uint32_t name_len = (static_cast<uint32_t>(p[8]) << 24) |
                            (static_cast<uint32_t>(p[9]) << 16) |
                            (static_cast<uint32_t>(p[10]) << 8) | static_cast<uint32_t>(p[11]);
  const size_t at = 12 + static_cast<size_t>(name_len);
  if (at + 4 > frame.size()) return;
  const auto id = static_cast<uint32_t>(seqid);
  frame[at] = static_cast<char>((id >> 24) & 0xff);
  frame[at + 1] = static_cast<char>((id >> 16) & 0xff);
  frame[at + 2] = static_cast<char>((id >> 8) & 0xff);
  frame[at + 3] = static_cast<char>(id & 0xff);
}

int64_t MonotonicUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Answered calls an endpoint needs before its latency decides on batching.
constexpr int64_t kLatencySamplesBeforeBatching = 8;

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
//   Assign: the endpoint batches (fast replies) and a connection is gathering
//           a batch? ── yes ──► joins that batch
//                │ no
//                ▼
//   idle connection, or a new one (resolve/connect, TLS handshake, connect timer)
//                │ (batching: it gathers the calls assigned until it is written)
//                ▼
//   Flush: every call of the batch written in one write, one timer for the batch
//                ▼
//   read replies: each frame is the next call's reply (its own sequence id) ──► decode
//                │                                                               │
//   any transport error / connect timeout ──► close socket, every call of the    │
//                                             batch kUnavailable ────────────────┤
//   the batch's timer fires ──────────────► close socket, the unanswered kTimeout┤
//                                                                                ▼
//                      CompleteCall: claim (exactly once), free the slot, Pump the
//                      endpoint, run the callback; the connection goes back to the
//                      idle list once every call of its batch is answered
//
// Batching: a participant that answers fast gets the calls that become ready
// together (a group commit's decisions, a wave of prepares) in one write on one
// connection, and sends its answers back together (the participant server
// holds answers while more requests are already read: common/tls.h
// PlainSocket). One send and one receive serve several calls on each side.
// A participant serves one connection's calls one after another, so batching
// is only used while the endpoint's recent reply latency is under
// batch_below_us; a slow participant gets one call per connection, as
// without batching.
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
    std::string frame;             // the encoded request (its sequence id set when written)
    Status early_error;            // not OK: completed with it when its turn comes, not sent
    Endpoint* endpoint = nullptr;  // set by Submit; endpoints live as long as the client
    // The one completion: whoever exchanges it to true completes the call.
    std::atomic<bool> claimed{false};
    // Set when written, read by the reply's handler (same strand).
    int32_t seqid = 0;
    int64_t sent_us = 0;
    // Started when the call is given a connection; only the I/O path touches
    // it (Asio orders the handlers of one connection), the destructor never does.
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

  using CallPtr = std::shared_ptr<CallState>;

  // One TCP connection. Between batches it sits in its endpoint's idle list
  // (owned by nobody else); while it carries a batch only handlers on
  // `strand` touch its I/O state.
  struct Conn {
    Conn(asio::io_context& io,
         const std::shared_ptr<apache::thrift::protocol::TProtocolFactory>& protocol_factory,
         Endpoint* ep)
        : endpoint(ep),
          strand(asio::make_strand(io)),
          socket(strand),
          timer(strand),
          reply(std::make_shared<TMemoryBuffer>()),
          reply_protocol(protocol_factory->getProtocol(reply)),
          decoder(reply_protocol) {}

    Endpoint* const endpoint;
    asio::strand<asio::io_context::executor_type> strand;
    tcp::socket socket;
    // With TLS: the session over `socket` and the context it was made from.
    std::shared_ptr<asio::ssl::context> tls_context;
    std::unique_ptr<asio::ssl::stream<tcp::socket&>> tls;
    asio::steady_timer timer;                 // connect timeout, then the batch's timeout
    std::unique_ptr<tcp::resolver> resolver;  // only for host names
    // Guarded by mu_: the calls given to this connection and not yet written.
    std::vector<CallPtr> batch;
    // Strand only:
    std::deque<CallPtr> outstanding;  // written, reply not yet read; in the order written
    uint64_t generation = 0;          // one per written batch (stale timer handlers)
    bool ready = false;               // connected (and the TLS handshake done)
    bool failed = false;              // closed after an error: never reused
    int32_t last_seqid = 0;
    std::string out;          // the frames being written
    std::vector<uint8_t> in;  // received bytes not yet decoded: [0, in_end)
    size_t in_end = 0;
    int64_t idle_since_ms = 0;  // guarded by mu_ while in an idle list
    // Reply decoding: the generated client reading `reply` (set to a body in `in`).
    std::shared_ptr<TMemoryBuffer> reply;
    std::shared_ptr<TProtocol> reply_protocol;
    wire::ParticipantClient decoder;
  };
  using ConnPtr = std::shared_ptr<Conn>;

  struct Endpoint {
    Endpoint(std::string n, Result<HostPort> a) : name(std::move(n)), address(std::move(a)) {}
    const std::string name;
    const Result<HostPort> address;  // parsed once
    // Guarded by mu_:
    std::deque<CallPtr> prepare_queue;      // prepare, commitOnePhase, action
    std::deque<CallPtr> finishing_queue;    // commit, abort, compensate
    bool finishing_next = false;            // whose turn it is when both queues wait
    int active = 0;                         // calls taken from the queues and not released
    std::unordered_set<CallPtr> in_flight;  // those calls
    std::deque<ConnPtr> idle;               // oldest first
    ConnPtr gathering;                      // a connection whose batch more calls may join
    double latency_us = 0;                  // moving average of answered calls' reply latency
    int64_t latency_samples = 0;
  };

  void Submit(CallPtr call);
  // Starts queued calls of `ep` while it has free slots. Any thread; no lock held.
  void Pump(Endpoint& ep);
  CallPtr PopNextLocked(Endpoint& ep);
  // Gives a call that may be sent a connection (joining a gathering batch, an
  // idle connection, or a new one).
  void Assign(Endpoint& ep, const CallPtr& call);
  bool BatchingLocked(const Endpoint& ep) const;
  // The rest run on the connection's strand.
  void Connect(const ConnPtr& conn);
  // TLS: the handshake on a new connection, then Flush.
  void Handshake(const ConnPtr& conn);
  // Writes the connection's batch and starts reading the replies.
  void Flush(const ConnPtr& conn);
  void ReadReplies(const ConnPtr& conn);
  // Decodes every complete reply received; reads on while calls wait.
  void OnBytes(const ConnPtr& conn);
  // Decodes one reply body for `call`; false when the connection cannot be
  // trusted after it.
  bool DecodeReply(const ConnPtr& conn, CallState& call, uint8_t* body, uint32_t size,
                   Status* status);
  // Closes the connection and completes every call it carries (written or
  // not) with `why(call)`.
  void FailConn(const ConnPtr& conn, const std::function<Status(const CallState&)>& why);
  // The same status for every call the connection carries.
  void FailConn(const ConnPtr& conn, const Status& status) {
    FailConn(conn, [&](const CallState&) { return status; });
  }
  // The single completion path of a call: claims it, frees its slot, starts
  // the next queued call and runs the callback. No-op when already claimed.
  void CompleteCall(const CallPtr& call, Status status);
  // Frees the call's slot (and records its latency when answered).
  void Release(const CallPtr& call, int64_t latency_us = -1);
  // A connection whose batch is fully answered: back to the idle list.
  void ReturnToIdle(const ConnPtr& conn);
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

  // mu_ guards endpoints_' queues, slots, idle lists, gathering batches and
  // latencies, and pending_. It is a leaf lock: no callback, still_wanted,
  // socket operation or log line runs under it.
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
    CallPtr call;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_ || ep.active >= options_.max_calls_per_endpoint) return;
      call = PopNextLocked(ep);
      if (call == nullptr) return;
      ++ep.active;
      ep.in_flight.insert(call);
    }
    if (!StillWanted(*call)) {
      VLOG(1) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
              << WireName(call->method) << " to " << ep.name << " no longer wanted: not sent";
      Release(call);
      if (call->Claim()) call->SafeDeliver(Status::Cancelled("no longer wanted: not sent"));
      continue;
    }
    Status unsendable = call->early_error;
    if (unsendable.ok() && !ep.address.ok()) unsendable = ep.address.status();
    if (!unsendable.ok()) {
      Release(call);
      if (call->Claim()) call->SafeDeliver(unsendable);
      continue;
    }
    VLOG(2) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << ep.name << " sending";
    call->timer.emplace(MetricName(call->method), call->call.endpoint);
    Assign(ep, call);
  }
}

bool AsyncParticipantClient::Impl::BatchingLocked(const Endpoint& ep) const {
  return options_.max_batch_calls > 1 && ep.latency_samples >= kLatencySamplesBeforeBatching &&
         ep.latency_us <= static_cast<double>(options_.batch_below_us);
}

void AsyncParticipantClient::Impl::Assign(Endpoint& ep, const CallPtr& call) {
  ConnPtr conn;
  std::vector<ConnPtr> expired;
  int64_t idle_ms = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;  // the destructor completed the call (it was in flight)
    if (ep.gathering != nullptr && BatchingLocked(ep) &&
        ep.gathering->batch.size() < static_cast<size_t>(options_.max_batch_calls)) {
      ep.gathering->batch.push_back(call);
      return;  // written with the batch it joined
    }
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
  // A connection back from a batch moments ago is used without the peek (a
  // system call per participant call under load, expensive on this
  // virtualised kernel); a peer that closed it in that moment fails this
  // batch as unavailable, like a peer that closes it after the peek.
  if (conn != nullptr && idle_ms >= kPeekIdleAfterMs && !StillUsable(*conn)) {
    VLOG(2) << "idle connection to " << ep.name << " was closed by the peer; opening another";
    Close(*conn);
    conn.reset();
  }
  const bool fresh = conn == nullptr;
  if (fresh) conn = std::make_shared<Conn>(io_, protocol_factory_, &ep);
  {
    std::lock_guard<std::mutex> lock(mu_);
    conn->batch.push_back(call);
    // Calls assigned before it is written join it (posted below: the pumps
    // already queued on the I/O threads run first).
    if (BatchingLocked(ep)) ep.gathering = conn;
  }
  if (fresh) {
    asio::post(conn->strand, [this, conn] { Connect(conn); });
  } else {
    asio::post(conn->strand, [this, conn] { Flush(conn); });
  }
}

void AsyncParticipantClient::Impl::Connect(const ConnPtr& conn) {
  const Endpoint& ep = *conn->endpoint;
  if (options_.tls.enabled()) {
    Status error;
    {
      std::lock_guard<std::mutex> lock(tls_mu_);
      conn->tls_context = tls_context_;
      error = tls_error_;
    }
    if (conn->tls_context == nullptr) {
      const Status status =
          Status::Unavailable("participant TLS is misconfigured: " + error.message());
      FailConn(conn, status);
      return;
    }
  }
  const HostPort& address = ep.address.value();
  conn->timer.expires_after(std::chrono::milliseconds(options_.connect_timeout_ms));
  conn->timer.async_wait([this, conn](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || conn->ready || conn->failed) return;
    const Status status =
        Status::Unavailable("connect to participant " + conn->endpoint->name + " timed out after " +
                            std::to_string(options_.connect_timeout_ms) + " ms");
    FailConn(conn, status);
  });
  auto on_connected = [this, conn](const boost::system::error_code& ec) {
    if (conn->failed) return;
    if (ec) {
      const Status status = Status::Unavailable("cannot connect to participant " +
                                                conn->endpoint->name + ": " + ec.message());
      FailConn(conn, status);
      return;
    }
    boost::system::error_code ignored;
    conn->socket.set_option(tcp::no_delay(true), ignored);
    if (conn->tls_context != nullptr) {
      Handshake(conn);
    } else {
      conn->ready = true;
      Flush(conn);
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
      [this, conn, on_connected = std::move(on_connected)](
          const boost::system::error_code& ec, const tcp::resolver::results_type& results) {
        if (conn->failed) return;
        if (ec) {
          const Status status = Status::Unavailable("cannot resolve participant " +
                                                    conn->endpoint->name + ": " + ec.message());
          FailConn(conn, status);
          return;
        }
        asio::async_connect(conn->socket, results,
                            [on_connected](const boost::system::error_code& connect_ec,
                                           const tcp::endpoint&) { on_connected(connect_ec); });
      });
}

void AsyncParticipantClient::Impl::Handshake(const ConnPtr& conn) {
  conn->tls = std::make_unique<asio::ssl::stream<tcp::socket&>>(conn->socket, *conn->tls_context);
  SSL* ssl = conn->tls->native_handle();
  const std::string& endpoint = conn->endpoint->name;
  const std::string& host = conn->endpoint->address.value().host;
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
    const Status status =
        Status::Unavailable("participant TLS: cannot check the name '" + name + "' of " + endpoint);
    FailConn(conn, status);
    return;
  }
  // The connect timer (connect_timeout_ms) still runs: it bounds the handshake too.
  conn->tls->async_handshake(
      asio::ssl::stream_base::client,
      [this, conn, name, &endpoint](const boost::system::error_code& ec) {
        if (conn->failed) return;
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
          const Status status = Status::Unavailable("TLS handshake with participant " + endpoint +
                                                    " failed: " + reason);
          FailConn(conn, status);
          return;
        }
        conn->ready = true;
        Flush(conn);
      });
}

void AsyncParticipantClient::Impl::Flush(const ConnPtr& conn) {
  std::vector<CallPtr> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls.swap(conn->batch);
    if (conn->endpoint->gathering == conn) conn->endpoint->gathering.reset();
  }
  // The destructor completed (claimed) calls while they waited here.
  calls.erase(
      std::remove_if(calls.begin(), calls.end(), [](const CallPtr& c) { return c->Claimed(); }),
      calls.end());
  if (conn->failed) {
    // Joined after the connection failed (FailConn took the batch before).
    for (const auto& call : calls) {
      CompleteCall(call, Status::Unavailable("connection to participant " + conn->endpoint->name +
                                             " failed"));
    }
    return;
  }
  if (calls.empty()) {
    Close(*conn);
    return;
  }
  const int64_t now_us = MonotonicUs();
  int timeout_ms = calls.front()->call.timeout_ms;
  conn->out.clear();
  for (const auto& call : calls) {
    conn->last_seqid = conn->last_seqid == INT32_MAX ? 1 : conn->last_seqid + 1;
    call->seqid = conn->last_seqid;
    SetSeqId(call->frame, call->seqid);
    conn->out += call->frame;
    call->sent_us = now_us;
    timeout_ms = std::min(timeout_ms, call->call.timeout_ms);
    conn->outstanding.push_back(call);
  }
  const uint64_t generation = ++conn->generation;
  conn->timer.expires_after(std::chrono::milliseconds(timeout_ms));
  conn->timer.async_wait([this, conn, generation, timeout_ms](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || conn->failed || generation != conn->generation ||
        conn->outstanding.empty()) {
      return;
    }
    // A reply may still come: this connection can no longer be trusted.
    FailConn(conn, [&](const CallState& call) {
      return Status::Timeout(std::string(WireName(call.method)) + " to participant " +
                             call.call.endpoint + " timed out after " + std::to_string(timeout_ms) +
                             " ms");
    });
  });
  AsyncWrite(
      *conn, asio::buffer(conn->out), [this, conn](const boost::system::error_code& ec, size_t) {
        if (conn->failed) return;
        if (ec) {
          const Status status = Status::Unavailable("cannot send to participant " +
                                                    conn->endpoint->name + ": " + ec.message());
          FailConn(conn, status);
          return;
        }
        if (conn->out.size() > kKeepReadBufferBytes) {
          std::string().swap(conn->out);  // one large request: do not keep its memory
        }
        ReadReplies(conn);
      });
}

void AsyncParticipantClient::Impl::ReadReplies(const ConnPtr& conn) {
  // One read usually brings every reply that is ready.
  if (conn->in.size() < conn->in_end + kReadChunkBytes) {
    conn->in.resize(conn->in_end + kReadChunkBytes);
  }
  AsyncRead(*conn, asio::buffer(conn->in.data() + conn->in_end, conn->in.size() - conn->in_end),
            asio::transfer_at_least(1),
            [this, conn](const boost::system::error_code& ec, size_t n) {
              if (conn->failed) return;
              if (ec) {
                const Status status = Status::Unavailable(
                    "no reply from participant " + conn->endpoint->name + ": " + ec.message());
                FailConn(conn, status);
                return;
              }
              conn->in_end += n;
              OnBytes(conn);
            });
}

void AsyncParticipantClient::Impl::OnBytes(const ConnPtr& conn) {
  const std::string& endpoint = conn->endpoint->name;
  size_t pos = 0;
  while (!conn->outstanding.empty() && conn->in_end - pos >= 4) {
    const uint8_t* h = conn->in.data() + pos;
    const uint32_t raw = (static_cast<uint32_t>(h[0]) << 24) | (static_cast<uint32_t>(h[1]) << 16) |
                         (static_cast<uint32_t>(h[2]) << 8) | static_cast<uint32_t>(h[3]);
    const int64_t size = static_cast<int32_t>(raw);
    if (size <= 0 || size > options_.max_message_bytes) {
      const Status status = Status::Unavailable("reply frame of " + std::to_string(size) +
                                                " bytes from participant " + endpoint + " (limit " +
                                                std::to_string(options_.max_message_bytes) + ")");
      FailConn(conn, status);
      return;
    }
    const size_t total = 4 + static_cast<size_t>(size);
    if (conn->in_end - pos < total) {
      if (conn->in.size() < pos + total) conn->in.resize(pos + total);
      break;  // the rest of this reply is still coming
    }
    CallPtr call = std::move(conn->outstanding.front());
    conn->outstanding.pop_front();
    Status status;
    const bool keep =
        DecodeReply(conn, *call, conn->in.data() + pos + 4, static_cast<uint32_t>(size), &status);
    pos += total;
    if (!keep) {
      CompleteCall(call, std::move(status));
      FailConn(conn, [&](const CallState&) {
        return Status::Unavailable("connection to participant " + endpoint +
                                   " closed after a malformed reply to an earlier call");
      });
      return;
    }
    CompleteCall(call, std::move(status));
    if (conn->failed) return;  // a callback cannot reach it, but stay safe
  }
  if (pos > 0) {
    std::memmove(conn->in.data(), conn->in.data() + pos, conn->in_end - pos);
    conn->in_end -= pos;
  }
  if (!conn->outstanding.empty()) {
    ReadReplies(conn);
    return;
  }
  if (conn->in_end > 0) {
    // Every call is answered: nothing may follow the replies.
    VLOG(1) << "participant " << endpoint << " sent " << conn->in_end
            << " bytes after its replies; connection closed";
    conn->failed = true;
    conn->timer.cancel();
    Close(*conn);
    return;
  }
  conn->timer.cancel();
  if (conn->in.size() > kKeepReadBufferBytes) {  // one large reply: do not keep its memory
    conn->in.resize(kReadChunkBytes);
    conn->in.shrink_to_fit();
  }
  ReturnToIdle(conn);
}

bool AsyncParticipantClient::Impl::DecodeReply(const ConnPtr& conn, CallState& call, uint8_t* body,
                                               uint32_t size, Status* status) {
  const std::string& endpoint = call.call.endpoint;
  try {
    // The generated recv_* does not check the method name or the sequence id
    // (it reads the body of any reply as its own): check the header first.
    conn->reply->resetBuffer(body, size, TMemoryBuffer::OBSERVE);
    std::string name;
    TMessageType type = apache::thrift::protocol::T_REPLY;
    int32_t seqid = -1;
    conn->reply_protocol->readMessageBegin(name, type, seqid);
    if (name != WireName(call.method) || seqid != call.seqid ||
        (type != apache::thrift::protocol::T_REPLY &&
         type != apache::thrift::protocol::T_EXCEPTION)) {
      *status = Status::Unavailable("unexpected reply from participant " + endpoint + ": '" +
                                    name.substr(0, 64) + "' type " + std::to_string(type) +
                                    " seqid " + std::to_string(seqid) + " to " +
                                    WireName(call.method) + " seqid " + std::to_string(call.seqid));
      return false;
    }
    conn->reply->resetBuffer(body, size, TMemoryBuffer::OBSERVE);
    call.Decode(conn->decoder);
    return true;
  } catch (const wire::Unavailable& e) {
    // A declared exception: a well-formed reply, the connection is fine.
    *status = Status::Unavailable("participant " + endpoint + " unavailable: " + e.message);
    return true;
  } catch (const wire::PermissionDenied& e) {
    // Declared too. Retried like Unavailable: the participant's list of allowed
    // coordinator identities (or this coordinator's certificate) must change.
    *status = Status::Unavailable("participant " + endpoint +
                                  " refused this coordinator (PermissionDenied): " + e.message);
    return true;
  } catch (const TException& e) {
    // TApplicationException (the handler failed), TProtocolException (malformed).
    *status = TranslateThriftException(e, endpoint);
  } catch (const std::exception& e) {
    *status = Status::Unavailable("participant " + endpoint + ": " + e.what());
  }
  return false;
}

void AsyncParticipantClient::Impl::FailConn(const ConnPtr& conn,
                                            const std::function<Status(const CallState&)>& why) {
  std::vector<CallPtr> calls;
  {
    std::lock_guard<std::mutex> lock(mu_);
    calls.swap(conn->batch);
    if (conn->endpoint->gathering == conn) conn->endpoint->gathering.reset();
  }
  conn->failed = true;
  conn->timer.cancel();
  Close(*conn);
  calls.insert(calls.begin(), std::make_move_iterator(conn->outstanding.begin()),
               std::make_move_iterator(conn->outstanding.end()));
  conn->outstanding.clear();
  bool logged = false;
  for (const auto& call : calls) {
    if (call->Claimed()) continue;
    Status status = why(*call);
    if (!logged && status.code() == StatusCode::kUnavailable) {
      LogParticipantConnectionError(call->call.endpoint, status);
      logged = true;  // one line per connection, not per call
    }
    CompleteCall(call, std::move(status));
  }
}

void AsyncParticipantClient::Impl::CompleteCall(const CallPtr& call, Status status) {
  if (!call->Claim()) return;  // the destructor completed it
  if (call->timer.has_value()) status = call->timer->Done(std::move(status));
  if (!status.ok()) {
    VLOG(1) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << call->call.endpoint << ": " << status;
  } else {
    VLOG(2) << "gtid=" << call->call.gtid << " branch=" << call->call.branch_id << " "
            << WireName(call->method) << " to " << call->call.endpoint << " answered";
  }
  // A reply (any, even a declared error) measures how fast the participant answers;
  // a timeout counts as its own length.
  int64_t latency_us = -1;
  if (call->sent_us > 0 && (status.ok() || status.code() == StatusCode::kTimeout ||
                            status.code() == StatusCode::kUnavailable)) {
    latency_us = std::max<int64_t>(0, MonotonicUs() - call->sent_us);
  }
  Release(call, latency_us);
  // The next call goes out before this one's callback runs.
  Pump(*call->endpoint);
  call->SafeDeliver(status);
}

void AsyncParticipantClient::Impl::Release(const CallPtr& call, int64_t latency_us) {
  Endpoint& ep = *call->endpoint;
  std::lock_guard<std::mutex> lock(mu_);
  if (ep.in_flight.erase(call) == 1) {  // else the destructor took it
    --ep.active;
    --pending_;
  }
  if (latency_us >= 0) {
    // Exponential moving average over about the last eight calls.
    ep.latency_us = ep.latency_samples == 0
                        ? static_cast<double>(latency_us)
                        : ep.latency_us + (static_cast<double>(latency_us) - ep.latency_us) / 8;
    ++ep.latency_samples;
  }
}

void AsyncParticipantClient::Impl::ReturnToIdle(const ConnPtr& conn) {
  Endpoint& ep = *conn->endpoint;
  bool drop = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_ && ep.idle.size() < options_.max_idle_per_endpoint) {
      conn->idle_since_ms = MonotonicMs();
      ep.idle.push_back(conn);
    } else {
      drop = true;
    }
  }
  if (drop) Close(*conn);
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
