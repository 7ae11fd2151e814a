#include "common/async_thrift_server.h"

#include <glog/logging.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <thrift/protocol/TProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
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
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "common/backoff.h"
#include "common/peer_identity.h"
#include "common/server_support.h"
#include "common/tls.h"
#include "common/tls_asio.h"

namespace txc {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using apache::thrift::TConfiguration;
using apache::thrift::protocol::TProtocol;
using apache::thrift::protocol::TProtocolFactory;
using apache::thrift::transport::TMemoryBuffer;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kFrameHeaderBytes = 4;
// One read of up to this much usually brings a whole small frame with its header.
constexpr size_t kReadBufferBytes = 16 * 1024;

// What the Core needs of a connection of either kind.
class ConnectionBase {
 public:
  virtual ~ConnectionBase() = default;
  // Closes the connection. Stop() calls it while no I/O thread runs.
  virtual void CloseForStop() = 0;
  // The server drains (Stop() with I/O threads running; any thread): closes
  // the connection unless a call is with its handler or being answered.
  virtual void BeginDrain() = 0;
};

// One call: its frame's bytes, the protocols over them and the processor.
// Shared by the connection and the cob the processor hands to the handler, so
// it lives until the cob is gone, whatever happened to the connection or the
// server: the generated cob holds raw pointers to the processor and to the
// output protocol, and writes through them when called.
struct Call {
  Call(uint32_t size, std::shared_ptr<apache::thrift::async::TAsyncProcessor> processor,
       const std::shared_ptr<TConfiguration>& config,
       const std::shared_ptr<TProtocolFactory>& protocols)
      : processor(std::move(processor)),
        body(new uint8_t[size]),
        body_size(size),
        input(std::make_shared<TMemoryBuffer>(body.get(), size, TMemoryBuffer::OBSERVE, config)),
        output(std::make_shared<TMemoryBuffer>(config)),
        in(protocols->getProtocol(input)),
        out(protocols->getProtocol(output)) {
    // Room for the answer's frame length, filled in when it is written.
    const uint8_t placeholder[kFrameHeaderBytes] = {};
    output->write(placeholder, kFrameHeaderBytes);
  }

  // True for the first of the cob and a process() exception only: a call
  // ends once.
  bool TryFinish() { return !finished.exchange(true, std::memory_order_acq_rel); }

  const std::shared_ptr<apache::thrift::async::TAsyncProcessor> processor;
  const std::unique_ptr<uint8_t[]> body;  // the frame, after its length
  const uint32_t body_size;
  const std::shared_ptr<TMemoryBuffer> input;   // reads body
  const std::shared_ptr<TMemoryBuffer> output;  // the answer's frame length, then its message
  const std::shared_ptr<TProtocol> in;
  const std::shared_ptr<TProtocol> out;
  std::atomic<bool> finished{false};
};

}  // namespace

struct AsyncThriftServer::Core : std::enable_shared_from_this<AsyncThriftServer::Core> {
  Core(std::shared_ptr<apache::thrift::async::TAsyncProcessor> p, ThriftServerOptions o,
       int threads)
      : processor(std::move(p)),
        options(std::move(o)),
        io_threads(threads < 1 ? 1 : threads),
        config(MakeThriftConfig(options.max_message_bytes)),
        protocols(MakeProtocolFactory(options.max_message_bytes)),
        acceptor(asio::make_strand(io)),
        accept_retry(acceptor.get_executor()) {
    if (options.max_connections_per_peer > 0) {
      peer_counts = std::make_shared<PeerConnectionCounts>(options.max_connections_per_peer);
    }
  }

  std::shared_ptr<ssl::context> CurrentTlsContext() const {
    std::lock_guard<std::mutex> lock(tls_mu);
    return tls_context;
  }

  // Runs on the acceptor's strand.
  void Accept();
  void OnAccept(const boost::system::error_code& ec, tcp::socket socket);
  // Registers a new connection from `peer_ip` (counted against its per-peer
  // limit already); false (the server is stopping) drops it.
  bool Register(const std::shared_ptr<ConnectionBase>& connection, const std::string& peer_ip);
  // A connection closed: gives back its place (and its peer's) and resumes
  // accepting when it was paused at max_connections. Any thread.
  void Release(ConnectionBase* connection, const std::string& peer_ip);
  // The connections open now (Stop(): to drain or close them outside the lock).
  std::vector<std::shared_ptr<ConnectionBase>> OpenConnections();

  const std::shared_ptr<apache::thrift::async::TAsyncProcessor> processor;
  const ThriftServerOptions options;
  const int io_threads;
  const std::shared_ptr<TConfiguration> config;
  const std::shared_ptr<TProtocolFactory> protocols;
  std::shared_ptr<PeerConnectionCounts> peer_counts;  // null: no per-peer limit
  std::atomic<int> port{0};

  mutable std::mutex tls_mu;
  std::shared_ptr<ssl::context> tls_context;  // guarded by tls_mu; null: plaintext

  // Runs every connection. Destroyed before the members above, which the
  // handlers and connections destroyed with its queue may still use.
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor;            // on its own strand; Start() and Stop() alone otherwise
  asio::steady_timer accept_retry;   // on the acceptor's strand: after a failed accept
  std::vector<std::thread> threads;  // Start() and Stop() only
  bool started = false;              // Start() and Stop() only

  // Lock order: connections_mu, then PeerConnectionCounts's own.
  std::mutex connections_mu;
  // guarded by connections_mu: every open connection, which this keeps alive
  // (a connection waiting for its handler's answer has no other owner).
  std::unordered_map<ConnectionBase*, std::shared_ptr<ConnectionBase>> connections;
  bool accept_paused = false;  // guarded by connections_mu: at max_connections
  bool stopping = false;       // guarded by connections_mu
  // Stop() drains: a connection closes after its answer instead of reading on.
  std::atomic<bool> draining{false};
  std::condition_variable drained_cv;  // with connections_mu: connections emptied
};

namespace {

using Core = AsyncThriftServer::Core;
using TlsStream = ssl::stream<tcp::socket>;

// One accepted connection: (TLS handshake,) read a frame, process it, write
// the answer, repeat. Stream is tcp::socket or TlsStream. Every member but
// the const ones is used on the connection's executor only (its own strand
// when there are several I/O threads), or by Stop() while no I/O thread runs.
//
//   [kHandshake] -> kReading -> kProcessing -> kWriting -> kReading ...
//   any phase -> kClosed (error, timeout, malformed input, Stop())
template <class Stream>
class Connection : public ConnectionBase, public std::enable_shared_from_this<Connection<Stream>> {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Connection(std::shared_ptr<Core> core, tcp::socket socket, std::string peer_ip,
             std::shared_ptr<ssl::context> tls_context)
      : core_(std::move(core)),
        tls_context_(std::move(tls_context)),
        stream_(MakeStream(std::move(socket), tls_context_.get())),
        timer_(stream_.get_executor()),
        peer_ip_(std::move(peer_ip)),
        read_buffer_(new uint8_t[kReadBufferBytes]) {
    boost::system::error_code ec;
    const tcp::endpoint remote = stream_.lowest_layer().remote_endpoint(ec);
    identity_.address =
        ec ? peer_ip_ : remote.address().to_string() + ":" + std::to_string(remote.port());
  }

  // Starts serving, on the connection's executor.
  void Start() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      VLOG(1) << "thrift connection from " << self->identity_.address << " on port "
              << self->core_->port.load();
      if constexpr (kTls) {
        self->Handshake();
      } else {
        boost::system::error_code ec;
        self->stream_.non_blocking(true, ec);  // for the write in OnAnswer
        if (ec) {
          self->Close(ec.message());
          return;
        }
        self->ReadFrame();
      }
    });
  }

  void CloseForStop() override { Close("the server stops"); }

  void BeginDrain() override {
    asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->phase_ != Phase::kProcessing && self->phase_ != Phase::kWriting) {
        self->Close("the server stops");
      }
    });
  }

 private:
  enum class Phase {
    kHandshake,   // TLS handshake running (timed)
    kReading,     // waiting for a frame or in the middle of one (timed)
    kProcessing,  // the call is with the processor and its handler (not timed)
    kWriting,     // writing the answer (timed)
    kClosed,      // socket closed; late completions and answers are dropped
  };

  static Stream MakeStream(tcp::socket socket, ssl::context* tls_context) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *tls_context);
    } else {
      (void)tls_context;
      return socket;
    }
  }

  void Handshake() {
    phase_ = Phase::kHandshake;
    ArmTimer();
    stream_.async_handshake(ssl::stream_base::server,
                            [self = this->shared_from_this()](const boost::system::error_code& ec) {
                              self->OnHandshake(ec);
                            });
  }

  void OnHandshake(const boost::system::error_code& ec) {
    if (phase_ == Phase::kClosed) return;
    if (ec) {
      std::string reason = ec.message();
      if constexpr (kTls) {
        // "certificate verify failed" alone does not say why: the chain's
        // verdict does ("certificate revoked", "certificate has expired").
        const long verdict = SSL_get_verify_result(stream_.native_handle());
        if (verdict != X509_V_OK) {
          reason += std::string(" (") + X509_verify_cert_error_string(verdict) + ")";
        }
      }
      const auto d = ServerLogLimiter().Admit("tls " + peer_ip_ + " " + reason, MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "TLS handshake with " << identity_.address << " on port "
                     << core_->port.load() << " failed, connection closed: " << reason
                     << NotTlsHint(reason) << d.Suffix();
      }
      Close("TLS handshake failed");
      return;
    }
    if constexpr (kTls) {
      identity_.authenticated =
          VerifiedPeerNames(stream_.native_handle(), &identity_.common_name, &identity_.sans);
    }
    VLOG(1) << "TLS connection from " << identity_.Describe();
    ReadFrame();
  }

  size_t Buffered() const { return read_end_ - read_begin_; }

  // Reads (or finds in the buffer) the next frame's length.
  void ReadFrame() {
    phase_ = Phase::kReading;
    ArmTimer();
    if (Buffered() >= kFrameHeaderBytes) {
      OnFrameHeader();
      return;
    }
    if (read_begin_ > 0) {
      std::memmove(read_buffer_.get(), read_buffer_.get() + read_begin_, Buffered());
      read_end_ -= read_begin_;
      read_begin_ = 0;
    }
    stream_.async_read_some(
        asio::buffer(read_buffer_.get() + read_end_, kReadBufferBytes - read_end_),
        [self = this->shared_from_this()](const boost::system::error_code& ec, size_t n) {
          self->OnRead(ec, n);
        });
  }

  void OnRead(const boost::system::error_code& ec, size_t n) {
    if (phase_ == Phase::kClosed) return;
    if (ec) {
      Close(ec.message());
      return;
    }
    last_activity_ = Clock::now();
    const bool first = !first_bytes_seen_;
    read_end_ += n;
    first_bytes_seen_ = true;
    if (!kTls && first &&
        LooksLikeTlsRecord(read_buffer_.get() + read_begin_, static_cast<uint32_t>(Buffered()))) {
      const auto d = ServerLogLimiter().Admit("plaintext-port " + peer_ip_, MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "refused " << identity_.address << " on port " << core_->port.load()
                     << ": it started a TLS handshake but this port is plaintext (the client "
                        "speaks TLS on a plaintext port?); connection closed"
                     << d.Suffix();
      }
      Close("TLS client on a plaintext port");
      return;
    }
    ReadFrame();
  }

  void OnFrameHeader() {
    const uint8_t* h = read_buffer_.get() + read_begin_;
    const int32_t size = static_cast<int32_t>((uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) |
                                              (uint32_t{h[2]} << 8) | uint32_t{h[3]});
    read_begin_ += kFrameHeaderBytes;
    if (size <= 0 || size > core_->options.max_message_bytes) {
      const auto d = ServerLogLimiter().Admit("frame " + peer_ip_, MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "frame of " << size << " bytes from " << identity_.address << " on port "
                     << core_->port.load() << " refused (1.." << core_->options.max_message_bytes
                     << " bytes: max_message_bytes); connection closed" << d.Suffix();
      }
      Close("bad frame length");
      return;
    }
    call_ = std::make_shared<Call>(static_cast<uint32_t>(size), core_->processor, core_->config,
                                   core_->protocols);
    const size_t have = std::min(Buffered(), static_cast<size_t>(size));
    std::memcpy(call_->body.get(), read_buffer_.get() + read_begin_, have);
    read_begin_ += have;
    if (read_begin_ == read_end_) read_begin_ = read_end_ = 0;
    if (have == static_cast<size_t>(size)) {
      Process();
      return;
    }
    ReadBody(have);
  }

  // Reads the rest of a large frame straight into the call's buffer, from
  // byte `have` on; every read counts as activity for the timeout.
  void ReadBody(size_t have) {
    stream_.async_read_some(
        asio::buffer(call_->body.get() + have, call_->body_size - have),
        [self = this->shared_from_this(), have](const boost::system::error_code& ec, size_t n) {
          if (self->phase_ == Phase::kClosed) return;
          if (ec) {
            self->Close(ec.message());
            return;
          }
          self->last_activity_ = Clock::now();
          if (have + n == self->call_->body_size) {
            self->Process();
            return;
          }
          self->ReadBody(have + n);
        });
  }

  // Hands the call to the processor. Its cob may run inside process() (then
  // the answer is written from in here) or later on any thread (then it is
  // posted onto this connection's executor).
  void Process() {
    phase_ = Phase::kProcessing;
    std::shared_ptr<Call> call = call_;
    std::weak_ptr<Connection> weak = this->weak_from_this();
    SetCurrentPeerIdentity(identity_);
    try {
      call->processor->process(
          [weak, call](bool ok) {
            if (!call->TryFinish()) return;
            // The connection alive keeps the core and its io_context alive;
            // the posted answer holds the connection weakly, so an answer
            // queued after Stop() keeps nothing alive but its call.
            std::shared_ptr<Connection> connection = weak.lock();
            if (connection == nullptr) return;  // closed: the answer is dropped
            asio::dispatch(connection->stream_.get_executor(), [weak, call, ok] {
              if (std::shared_ptr<Connection> c = weak.lock()) c->OnAnswer(call, ok);
            });
          },
          call->in, call->out);
    } catch (const std::exception& e) {
      // readMessageBegin() on garbage, a skipped unknown call running past
      // its frame, or a handler that threw instead of answering.
      if (call->TryFinish()) OnAnswer(call, false, e.what());
    } catch (...) {
      if (call->TryFinish()) OnAnswer(call, false, "a handler threw a non-std exception");
    }
  }

  void OnAnswer(const std::shared_ptr<Call>& call, bool ok, const std::string& why = "") {
    if (phase_ == Phase::kClosed || call != call_) return;
    if (!ok) {
      const auto d = ServerLogLimiter().Admit("malformed " + peer_ip_, MonotonicMs());
      if (d.log) {
        LOG(WARNING) << "malformed call from " << identity_.address << " on port "
                     << core_->port.load() << (why.empty() ? "" : ": " + why)
                     << "; connection closed" << d.Suffix();
      }
      Close("malformed call");
      return;
    }
    uint8_t* frame = nullptr;
    uint32_t frame_bytes = 0;
    call->output->getBuffer(&frame, &frame_bytes);
    const uint32_t size = frame_bytes - kFrameHeaderBytes;
    frame[0] = static_cast<uint8_t>(size >> 24);
    frame[1] = static_cast<uint8_t>(size >> 16);
    frame[2] = static_cast<uint8_t>(size >> 8);
    frame[3] = static_cast<uint8_t>(size);
    phase_ = Phase::kWriting;
    last_activity_ = Clock::now();
    size_t written = 0;
    if constexpr (!kTls) {
      // Plaintext: one send(2) now (the socket is non-blocking) nearly
      // always takes the whole answer; only a rest waits for the socket.
      boost::system::error_code ec;
      written = stream_.write_some(asio::buffer(frame, frame_bytes), ec);
      if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
        Close(ec.message());
        return;
      }
      if (written == frame_bytes) {
        Written(/*inline_write=*/true);
        return;
      }
    }
    ArmTimer();
    asio::async_write(
        stream_, asio::buffer(frame + written, frame_bytes - written),
        [self = this->shared_from_this(), call](const boost::system::error_code& ec, size_t) {
          if (self->phase_ == Phase::kClosed) return;
          if (ec) {
            self->Close(ec.message());
            return;
          }
          self->Written(/*inline_write=*/false);
        });
  }

  // The answer is written: on to the next frame. After a write made inside
  // OnAnswer (possibly inside process()), a next frame already buffered (a
  // pipelining client) is started from a fresh handler, not recursively.
  void Written(bool inline_write) {
    call_.reset();
    if (core_->draining.load()) {
      Close("the server stops (answered its last call)");
      return;
    }
    last_activity_ = Clock::now();
    if (inline_write && Buffered() >= kFrameHeaderBytes) {
      asio::post(stream_.get_executor(), [self = this->shared_from_this()] {
        if (self->phase_ != Phase::kClosed) self->ReadFrame();
      });
      return;
    }
    ReadFrame();
  }

  // Keeps one timer wait pending while the connection waits for its peer; it
  // fires at last_activity_ + recv_timeout_ms and closes the connection if
  // nothing happened since, else waits again. Not re-armed per read.
  void ArmTimer() {
    if (core_->options.recv_timeout_ms <= 0 || timer_pending_) return;
    timer_pending_ = true;
    timer_.expires_at(last_activity_ + std::chrono::milliseconds(core_->options.recv_timeout_ms));
    timer_.async_wait(
        [self = this->shared_from_this()](const boost::system::error_code&) { self->OnTimer(); });
  }

  void OnTimer() {
    timer_pending_ = false;
    // A call with its handler is not timed; writing its answer re-arms.
    if (phase_ == Phase::kClosed || phase_ == Phase::kProcessing) return;
    const auto timeout = std::chrono::milliseconds(core_->options.recv_timeout_ms);
    if (Clock::now() >= last_activity_ + timeout) {
      Close("nothing received or sent for " + std::to_string(timeout.count()) +
            " ms (recv_timeout_ms)");
      return;
    }
    ArmTimer();
  }

  void Close(const std::string& reason) {
    if (phase_ == Phase::kClosed) return;
    phase_ = Phase::kClosed;
    // Release() drops the core's reference; the caller may hold no other.
    std::shared_ptr<Connection> self = this->shared_from_this();
    boost::system::error_code ignored;
    timer_.cancel(ignored);
    stream_.lowest_layer().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.lowest_layer().close(ignored);
    VLOG(1) << "thrift connection from " << identity_.address << " closed: " << reason;
    core_->Release(this, peer_ip_);
  }

  const std::shared_ptr<Core> core_;                 // keeps the io_context alive
  const std::shared_ptr<ssl::context> tls_context_;  // TLS: before stream_, which uses it
  Stream stream_;
  asio::steady_timer timer_;
  const std::string peer_ip_;
  PeerIdentity identity_;  // set once (address; TLS names after the handshake)
  Phase phase_ = Phase::kReading;
  bool timer_pending_ = false;
  Clock::time_point last_activity_ = Clock::now();  // the peer's last read or write
  bool first_bytes_seen_ = false;
  // Bytes received and not consumed yet: [read_begin_, read_end_).
  const std::unique_ptr<uint8_t[]> read_buffer_;
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
  std::shared_ptr<Call> call_;  // the call being read, processed or answered
};

}  // namespace

void Core::Accept() {
  // One I/O thread serialises every connection by itself; more need a
  // strand per connection.
  asio::any_io_executor executor = io.get_executor();
  if (io_threads > 1) executor = asio::make_strand(io);
  acceptor.async_accept(executor, [this](const boost::system::error_code& ec, tcp::socket socket) {
    OnAccept(ec, std::move(socket));
  });
}

void Core::OnAccept(const boost::system::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;  // Stop()
  if (ec) {
    // E.g. out of descriptors: try again shortly rather than spin.
    const auto d = ServerLogLimiter().Admit("accept " + std::to_string(port.load()), MonotonicMs());
    if (d.log) {
      LOG(WARNING) << "thrift server on port " << port.load() << ": accept failed: " << ec.message()
                   << d.Suffix();
    }
    accept_retry.expires_after(std::chrono::milliseconds(100));
    accept_retry.async_wait([this](const boost::system::error_code& wait) {
      if (!wait && acceptor.is_open()) Accept();
    });
    return;
  }
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  std::string ip = PeerIp(socket.native_handle());
  if (peer_counts != nullptr && !peer_counts->TryAcquire(ip)) {
    LogPeerLimitRefusal(*peer_counts, ip, port.load());
    socket.close(ignored);
  } else if (std::shared_ptr<ssl::context> tls = CurrentTlsContext()) {
    auto connection =
        std::make_shared<Connection<TlsStream>>(shared_from_this(), std::move(socket), ip, tls);
    if (Register(connection, ip)) connection->Start();
  } else {
    auto connection = std::make_shared<Connection<tcp::socket>>(shared_from_this(),
                                                                std::move(socket), ip, nullptr);
    if (Register(connection, ip)) connection->Start();
  }
  {
    std::lock_guard<std::mutex> lock(connections_mu);
    if (stopping) return;
    if (static_cast<int64_t>(connections.size()) >= options.max_connections) {
      accept_paused = true;  // Release() resumes
      return;
    }
  }
  Accept();
}

bool Core::Register(const std::shared_ptr<ConnectionBase>& connection, const std::string& peer_ip) {
  std::lock_guard<std::mutex> lock(connections_mu);
  if (stopping) {
    if (peer_counts != nullptr) peer_counts->Release(peer_ip);
    return false;
  }
  connections.emplace(connection.get(), connection);
  return true;
}

void Core::Release(ConnectionBase* connection, const std::string& peer_ip) {
  std::shared_ptr<ConnectionBase> last;  // destroyed outside the lock
  bool resume = false;
  {
    std::lock_guard<std::mutex> lock(connections_mu);
    auto it = connections.find(connection);
    if (it == connections.end()) return;
    last = std::move(it->second);
    connections.erase(it);
    if (connections.empty() && draining.load()) drained_cv.notify_all();
    if (peer_counts != nullptr) peer_counts->Release(peer_ip);
    if (accept_paused && !stopping &&
        static_cast<int64_t>(connections.size()) < options.max_connections) {
      accept_paused = false;
      resume = true;
    }
  }
  if (resume) asio::post(acceptor.get_executor(), [this] { Accept(); });
}

std::vector<std::shared_ptr<ConnectionBase>> Core::OpenConnections() {
  std::lock_guard<std::mutex> lock(connections_mu);
  std::vector<std::shared_ptr<ConnectionBase>> open;
  open.reserve(connections.size());
  for (const auto& [raw, connection] : connections) open.push_back(connection);
  return open;
}

AsyncThriftServer::AsyncThriftServer(
    std::shared_ptr<apache::thrift::async::TAsyncProcessor> processor, ThriftServerOptions options,
    int io_threads)
    : core_(std::make_shared<Core>(std::move(processor), std::move(options), io_threads)) {}

AsyncThriftServer::~AsyncThriftServer() { Stop(); }

int AsyncThriftServer::port() const { return core_->port.load(); }

bool AsyncThriftServer::tls() const { return core_->CurrentTlsContext() != nullptr; }

Status AsyncThriftServer::Start() {
  Core& c = *core_;
  const ThriftServerOptions& o = c.options;
  if (o.wire != ThriftWire::kFramedBinary) {
    return Status::InvalidArgument("AsyncThriftServer serves the framed binary wire only");
  }
  if (c.started) return Status::InvalidArgument("AsyncThriftServer started twice");
  if (o.tls.enabled()) {
    auto ctx = MakeAsioServerContext(o.tls);
    if (!ctx.ok()) return ctx.status();
    std::lock_guard<std::mutex> lock(c.tls_mu);
    c.tls_context = std::move(ctx).value();
  }
  const std::string where = o.host + ":" + std::to_string(o.port);
  boost::system::error_code ec;
  tcp::resolver resolver(c.io);
  auto endpoints = resolver.resolve(o.host, std::to_string(o.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Status::Unavailable("cannot listen on " + where + ": " + ec.message());
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  c.acceptor.open(endpoint.protocol(), ec);
  if (!ec) c.acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) c.acceptor.bind(endpoint, ec);
  if (!ec) c.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    boost::system::error_code ignored;
    c.acceptor.close(ignored);
    return Status::Unavailable("cannot listen on " + where + ": " + ec.message());
  }
  c.port.store(c.acceptor.local_endpoint().port());
  c.started = true;
  if (std::shared_ptr<ssl::context> tls = c.CurrentTlsContext()) {
    LOG(INFO) << "thrift server on " << o.host << ":" << c.port.load() << " uses TLS: "
              << DescribeTlsCredentials(tls->native_handle(), o.tls, TlsRole::kServer);
  }
  c.work.emplace(c.io.get_executor());
  asio::post(c.acceptor.get_executor(), [core = core_.get()] { core->Accept(); });
  for (int i = 0; i < c.io_threads; ++i) {
    c.threads.emplace_back([core = core_.get()] { core->io.run(); });
    pthread_setname_np(c.threads.back().native_handle(), "rpc-io");
  }
  return Status::Ok();
}

void AsyncThriftServer::Stop() {
  Core& c = *core_;
  if (!c.started) return;
  {
    std::lock_guard<std::mutex> lock(c.connections_mu);
    if (c.stopping) return;
    c.stopping = true;  // Register() refuses new connections from now on
  }
  if (c.options.drain_timeout_ms > 0) {
    // While the I/O threads run: no new connection, the idle ones closed,
    // and the calls with their handlers answered (then their connections
    // close) or the drain's time up.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(c.options.drain_timeout_ms);
    auto closed = std::make_shared<std::promise<void>>();
    std::future<void> listener_closed = closed->get_future();
    asio::post(c.acceptor.get_executor(), [&c, closed] {
      boost::system::error_code ignored;
      c.acceptor.close(ignored);
      c.accept_retry.cancel(ignored);
      closed->set_value();
    });
    if (listener_closed.wait_until(deadline) != std::future_status::ready) {
      LOG(WARNING) << "thrift server on port " << c.port.load()
                   << ": its I/O threads did not run for drain_timeout_ms ("
                   << c.options.drain_timeout_ms << " ms); stopping without a drain";
    }
    c.draining.store(true);
    for (const auto& connection : c.OpenConnections()) connection->BeginDrain();
    std::unique_lock<std::mutex> lock(c.connections_mu);
    if (!c.drained_cv.wait_until(lock, deadline, [&c] { return c.connections.empty(); })) {
      LOG(WARNING) << "thrift server on port " << c.port.load() << ": " << c.connections.size()
                   << " connections still had a call unanswered after drain_timeout_ms ("
                   << c.options.drain_timeout_ms << " ms); closing them";
    }
  }
  c.io.stop();
  for (std::thread& t : c.threads) t.join();
  c.threads.clear();
  // No I/O thread runs: this thread may touch the acceptor and the connections.
  boost::system::error_code ignored;
  c.acceptor.close(ignored);
  c.accept_retry.cancel(ignored);
  for (const auto& connection : c.OpenConnections()) connection->CloseForStop();
  // Runs what is left (the completions of the closed connections' reads,
  // writes and timers, answers already posted) so that they release their
  // connections; closed connections start nothing new, so this ends.
  c.work.reset();
  c.io.restart();
  c.io.run();
}

Status AsyncThriftServer::ReloadTls() {
  Core& c = *core_;
  if (!tls()) return Status::InvalidArgument("this server does not use TLS");
  auto ctx = MakeAsioServerContext(c.options.tls);
  if (!ctx.ok()) {
    LOG(ERROR) << "TLS reload for port " << c.port.load()
               << " failed, keeping the current certificate: " << ctx.status();
    return ctx.status();
  }
  LOG(INFO) << "TLS files reloaded for port " << c.port.load() << ": "
            << DescribeTlsCredentials((*ctx)->native_handle(), c.options.tls, TlsRole::kServer);
  std::lock_guard<std::mutex> lock(c.tls_mu);
  c.tls_context = std::move(ctx).value();
  return Status::Ok();
}

}  // namespace txc
