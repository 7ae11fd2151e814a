// echo_server: the Thrift ceiling for coord_bench. One call, `echo`, that
// returns its argument, served either
//   --model=threaded     by txc::ThriftServer: the coordinator's own server
//                        (TThreadedServer, a thread per connection, framed
//                        binary, our message limits and transport factory), or
//   --model=nonblocking  by Thrift's TNonblockingServer over libevent (framed
//                        binary, the same protocol factory), --io_threads I/O
//                        threads, calls processed on the I/O thread unless
//                        --workers > 0 (then on a pool of that many threads),
//   --model=asio         by an event loop of our own over Boost.Asio: framed
//                        binary read from each connection into one buffer, every
//                        complete frame run through the generated processor on
//                        the I/O thread (pipelined calls answered in one write),
//                        --io_threads threads running one io_context. Plaintext
//                        only: what the coordinator's server would cost as an
//                        event loop, before TLS and limits per peer.
//
//   --handoff            the handler does not answer by itself: one other thread
//                        does, taking what is queued in one go (as the group-commit
//                        writer takes a group).
//                        threaded: the connection thread queues the call and
//                        sleeps until that thread hands the answer back, as a
//                        coordinator connection thread waits for its group commit.
//                        asio (--io_threads=1): the I/O thread queues the frame and
//                        goes on; the other thread runs the calls it took and posts
//                        all their answers back to the io_context in one post,
//                        which writes them: no thread waits per call, as in a
//                        coordinator that answers asynchronously.
//                        The difference to the same model without --handoff is
//                        what such a hand-off costs per call on this machine.
//
//   echo_server --port=N [--model=threaded|nonblocking|asio] [--io_threads=2] [--workers=0]
//               [--handoff]
//
// Runs until SIGTERM/SIGINT; exit 0 then, 1 when it cannot listen, 2 for bad flags.
#include <glog/logging.h>
#include <signal.h>
#if TXC_HAVE_THRIFT_NB
#include <thrift/concurrency/ThreadFactory.h>
#include <thrift/concurrency/ThreadManager.h>
#include <thrift/server/TNonblockingServer.h>
#include <thrift/transport/TNonblockingServerSocket.h>
#endif

#include <thrift/protocol/TProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/program_options.hpp>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.h"
#include "common/thrift_server.h"
#include "common/thrift_util.h"
#include "gen-cpp/Echo.h"

namespace po = boost::program_options;

namespace {

class EchoHandler : public txc::benchwire::EchoIf {
 public:
  void echo(std::string& out, const std::string& data) override { out = data; }
};

// --handoff: every call is answered by one other thread, which takes what is
// queued in one go (as the group-commit writer takes a group) and fulfils each
// caller's promise; the connection thread sleeps on its future meanwhile.
class HandoffEchoHandler : public txc::benchwire::EchoIf {
 public:
  HandoffEchoHandler() : worker_([this] { Run(); }) {}
  ~HandoffEchoHandler() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    worker_.join();
  }

  void echo(std::string& out, const std::string& data) override {
    std::promise<std::string> answer;
    std::future<std::string> answered = answer.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(data, std::move(answer));
    }
    cv_.notify_one();
    out = answered.get();
  }

 private:
  void Run() {
    std::deque<std::pair<std::string, std::promise<std::string>>> taken;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        taken.swap(queue_);
      }
      for (auto& [data, answer] : taken) answer.set_value(std::move(data));
      taken.clear();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::string, std::promise<std::string>>> queue_;  // guarded by mu_
  bool stopping_ = false;                                                // guarded by mu_
  std::thread worker_;
};

// Runs framed calls through the generated processor: each reply is appended,
// framed, to `out`. One per thread that runs calls (not thread-safe).
class FrameRunner {
 public:
  FrameRunner(std::shared_ptr<apache::thrift::TProcessor> processor, int64_t max_frame_bytes)
      : processor_(std::move(processor)),
        in_buffer_(std::make_shared<apache::thrift::transport::TMemoryBuffer>()),
        out_buffer_(std::make_shared<apache::thrift::transport::TMemoryBuffer>()),
        in_protocol_(txc::MakeProtocolFactory(max_frame_bytes)->getProtocol(in_buffer_)),
        out_protocol_(txc::MakeProtocolFactory(max_frame_bytes)->getProtocol(out_buffer_)) {}

  // False (and a WARNING) when the call cannot be read: close the connection.
  bool Run(const uint8_t* body, uint32_t size, std::string* out) {
    in_buffer_->resetBuffer(const_cast<uint8_t*>(body), size,
                            apache::thrift::transport::TMemoryBuffer::OBSERVE);
    out_buffer_->resetBuffer();
    try {
      processor_->process(in_protocol_, out_protocol_, nullptr);
    } catch (const std::exception& e) {
      LOG(WARNING) << "echo_server (asio): bad call, closing: " << e.what();
      return false;
    }
    uint8_t* reply = nullptr;
    uint32_t reply_size = 0;
    out_buffer_->getBuffer(&reply, &reply_size);
    const char header[4] = {static_cast<char>(reply_size >> 24),
                            static_cast<char>(reply_size >> 16), static_cast<char>(reply_size >> 8),
                            static_cast<char>(reply_size)};
    out->append(header, 4);
    out->append(reinterpret_cast<const char*>(reply), reply_size);
    return true;
  }

 private:
  std::shared_ptr<apache::thrift::TProcessor> processor_;
  std::shared_ptr<apache::thrift::transport::TMemoryBuffer> in_buffer_, out_buffer_;
  std::shared_ptr<apache::thrift::protocol::TProtocol> in_protocol_, out_protocol_;
};

class AsioConnection;

// --model=asio --handoff: the one other thread that answers. It takes every
// queued frame in one go, runs each, and posts all the answers back to the
// io_context in one post (which writes them). Needs a single I/O thread: the
// posts then run in order, one at a time.
class AsioHandoff {
 public:
  AsioHandoff(boost::asio::io_context& io, std::shared_ptr<apache::thrift::TProcessor> processor,
              int64_t max_frame_bytes)
      : io_(io), runner_(std::move(processor), max_frame_bytes), worker_([this] { Run(); }) {}
  ~AsioHandoff() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    worker_.join();
  }

  void Queue(std::shared_ptr<AsioConnection> conn, std::string frame) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(std::move(conn), std::move(frame));
    }
    cv_.notify_one();
  }

 private:
  void Run();

  boost::asio::io_context& io_;
  FrameRunner runner_;  // used by worker_ only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<AsioConnection>, std::string>> queue_;  // guarded by mu_
  bool stopping_ = false;                                                      // guarded by mu_
  std::thread worker_;
};

// One connection of the Asio model: reads into `in_`, answers every complete
// frame in it with one write, then reads again. One operation at a time per
// connection, so no strand is needed even with several I/O threads. With a
// hand-off the frames go to it and the answers come back through Answered().
class AsioConnection : public std::enable_shared_from_this<AsioConnection> {
 public:
  AsioConnection(boost::asio::ip::tcp::socket socket,
                 std::shared_ptr<apache::thrift::TProcessor> processor, int64_t max_frame_bytes,
                 AsioHandoff* handoff)
      : socket_(std::move(socket)),
        runner_(std::move(processor), max_frame_bytes),
        max_frame_bytes_(max_frame_bytes),
        handoff_(handoff),
        in_(16 * 1024) {}

  void Read() {
    if (in_.size() - have_ < 4096) in_.resize(in_.size() * 2);
    socket_.async_read_some(
        boost::asio::buffer(in_.data() + have_, in_.size() - have_),
        [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
          if (ec) return;  // closed or reset: the connection goes with its last reference
          self->have_ += n;
          self->Answer();
        });
  }

  // On the I/O thread: the hand-off's answer to one of this connection's frames.
  void Answered(const std::string& framed_reply) {
    out_.append(framed_reply);
    if (--handed_off_ == 0) Write();
  }

 private:
  void Answer() {
    out_.clear();
    size_t off = 0;
    while (have_ - off >= 4) {
      const uint8_t* h = in_.data() + off;
      const int64_t size = static_cast<int32_t>((uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) |
                                                (uint32_t{h[2]} << 8) | uint32_t{h[3]});
      if (size <= 0 || size > max_frame_bytes_) {
        LOG(WARNING) << "echo_server (asio): frame of " << size << " bytes, closing";
        return;
      }
      if (have_ - off - 4 < static_cast<size_t>(size)) {
        if (in_.size() < static_cast<size_t>(size) + 4) in_.resize(static_cast<size_t>(size) + 4);
        break;
      }
      const uint8_t* body = in_.data() + off + 4;
      if (handoff_ != nullptr) {
        ++handed_off_;
        handoff_->Queue(shared_from_this(), std::string(reinterpret_cast<const char*>(body),
                                                        static_cast<size_t>(size)));
      } else if (!runner_.Run(body, static_cast<uint32_t>(size), &out_)) {
        return;
      }
      off += 4 + static_cast<size_t>(size);
    }
    if (off > 0) {
      std::memmove(in_.data(), in_.data() + off, have_ - off);
      have_ -= off;
    }
    if (handed_off_ > 0) return;  // Answered() writes
    if (out_.empty()) {
      Read();
      return;
    }
    Write();
  }

  void Write() {
    boost::asio::async_write(
        socket_, boost::asio::buffer(out_),
        [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
          if (!ec) self->Read();
        });
  }

  boost::asio::ip::tcp::socket socket_;
  FrameRunner runner_;
  const int64_t max_frame_bytes_;
  AsioHandoff* const handoff_;  // null: answered on the I/O thread
  int handed_off_ = 0;          // frames at the hand-off, not answered yet
  std::vector<uint8_t> in_;
  size_t have_ = 0;
  std::string out_;
};

void AsioHandoff::Run() {
  std::deque<std::pair<std::shared_ptr<AsioConnection>, std::string>> taken;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      taken.swap(queue_);
    }
    auto answers =
        std::make_shared<std::vector<std::pair<std::shared_ptr<AsioConnection>, std::string>>>();
    answers->reserve(taken.size());
    for (auto& [conn, frame] : taken) {
      std::string reply;
      if (!runner_.Run(reinterpret_cast<const uint8_t*>(frame.data()),
                       static_cast<uint32_t>(frame.size()), &reply)) {
        continue;  // that connection is never answered: it closes when its client gives up
      }
      answers->emplace_back(std::move(conn), std::move(reply));
    }
    taken.clear();
    boost::asio::post(io_, [answers] {
      for (auto& [conn, reply] : *answers) conn->Answered(reply);
    });
  }
}

void Accept(boost::asio::ip::tcp::acceptor& acceptor,
            const std::shared_ptr<apache::thrift::TProcessor>& processor, AsioHandoff* handoff) {
  acceptor.async_accept([&acceptor, processor, handoff](const boost::system::error_code& ec,
                                                        boost::asio::ip::tcp::socket socket) {
    if (ec == boost::asio::error::operation_aborted) return;
    if (!ec) {
      boost::system::error_code ignored;
      socket.set_option(boost::asio::ip::tcp::no_delay(true), ignored);
      std::make_shared<AsioConnection>(std::move(socket), processor, txc::kDefaultMaxMessageBytes,
                                       handoff)
          ->Read();
    }
    Accept(acceptor, processor, handoff);
  });
}

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  int port = 0, io_threads = 2, workers = 0;
  bool handoff = false;
  std::string model = "threaded", host = "127.0.0.1";
  po::options_description desc("Flags");
  desc.add_options()("port", po::value<int>(&port)->default_value(0), "port to listen on")(
      "host", po::value<std::string>(&host)->default_value(host),
      "address (threaded and asio models)")("model",
                                            po::value<std::string>(&model)->default_value(model),
                                            "threaded | nonblocking | asio")(
      "io_threads", po::value<int>(&io_threads)->default_value(io_threads),
      "nonblocking: libevent I/O threads; asio: threads running the io_context")(
      "workers", po::value<int>(&workers)->default_value(workers),
      "nonblocking: worker threads running the handler (0: on the I/O thread)")(
      "handoff", po::bool_switch(&handoff),
      "each call answered by one other thread (threaded: the connection thread waits; asio: "
      "answers posted back to the I/O thread)");
  if (int rc = txc::cli::Parse("echo_server",
                               "Usage: echo_server --port=N [--model=threaded|nonblocking|asio]",
                               argc, argv, desc);
      rc >= 0) {
    return rc;
  }
  if (model != "threaded" && model != "nonblocking" && model != "asio") {
    return txc::cli::UsageError("echo_server", "--model must be threaded, nonblocking or asio");
  }
  if (io_threads < 1) return txc::cli::UsageError("echo_server", "--io_threads must be >= 1");
  if (handoff && model == "nonblocking") {
    return txc::cli::UsageError("echo_server", "--handoff needs --model=threaded or asio");
  }
  if (handoff && model == "asio" && io_threads != 1) {
    return txc::cli::UsageError("echo_server", "--model=asio --handoff needs --io_threads=1");
  }
  txc::RouteThriftLogsToGlog();
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::shared_ptr<txc::benchwire::EchoIf> handler;
  if (handoff && model == "threaded") {
    handler = std::make_shared<HandoffEchoHandler>();
  } else {
    handler = std::make_shared<EchoHandler>();
  }
  auto processor = std::make_shared<txc::benchwire::EchoProcessor>(handler);
  std::unique_ptr<txc::ThriftServer> threaded;
#if TXC_HAVE_THRIFT_NB
  std::shared_ptr<apache::thrift::server::TNonblockingServer> nonblocking;
#endif
  std::thread serve_thread;
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor acceptor(io);
  std::vector<std::thread> io_runners;
  std::unique_ptr<AsioHandoff> asio_handoff;  // destroyed after the I/O thread stopped
  if (model == "asio") {
    boost::system::error_code ec;
    const boost::asio::ip::tcp::endpoint at(boost::asio::ip::make_address(host, ec),
                                            static_cast<uint16_t>(port));
    if (!ec) acceptor.open(at.protocol(), ec);
    if (!ec) acceptor.set_option(boost::asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(at, ec);
    if (!ec) acceptor.listen(boost::asio::socket_base::max_listen_connections, ec);
    if (ec) {
      LOG(ERROR) << "echo_server cannot listen on " << host << ":" << port << ": " << ec.message();
      return 1;
    }
    if (handoff) {
      asio_handoff = std::make_unique<AsioHandoff>(io, processor, txc::kDefaultMaxMessageBytes);
    }
    Accept(acceptor, processor, asio_handoff.get());
    for (int i = 0; i < io_threads; ++i) io_runners.emplace_back([&io] { io.run(); });
  } else if (model == "threaded") {
    txc::ThriftServerOptions o;
    o.host = host;
    o.port = port;
    o.max_connections_per_peer = 0;  // every benchmark client comes from loopback
    threaded = std::make_unique<txc::ThriftServer>(processor, o);
    txc::Status s = threaded->Start();
    if (!s.ok()) {
      LOG(ERROR) << "echo_server cannot start: " << s;
      return 1;
    }
  } else {
#if TXC_HAVE_THRIFT_NB
    using apache::thrift::concurrency::ThreadFactory;
    using apache::thrift::concurrency::ThreadManager;
    auto socket = std::make_shared<apache::thrift::transport::TNonblockingServerSocket>(port);
    std::shared_ptr<ThreadManager> pool;
    if (workers > 0) {
      pool = ThreadManager::newSimpleThreadManager(workers);
      pool->threadFactory(std::make_shared<ThreadFactory>());
      pool->start();
    }
    nonblocking = std::make_shared<apache::thrift::server::TNonblockingServer>(
        processor, txc::MakeProtocolFactory(), socket, pool);
    nonblocking->setNumIOThreads(io_threads);
    serve_thread = std::thread([&] {
      try {
        nonblocking->serve();
      } catch (const std::exception& e) {
        LOG(ERROR) << "echo_server (nonblocking) stopped: " << e.what();
        std::_Exit(1);
      }
    });
#else
    LOG(ERROR) << "echo_server was built without libthriftnb (Debian: libthrift-dev, libevent-dev)";
    return 1;
#endif
  }
  LOG(INFO) << "echo_server (" << model << ") on port " << port;
  while (true) {
    timespec tick{1, 0};
    const int sig = sigtimedwait(&stop, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
  }
  if (threaded) threaded->Stop();
  if (!io_runners.empty()) {
    io.stop();
    for (auto& t : io_runners) t.join();
  }
#if TXC_HAVE_THRIFT_NB
  if (nonblocking) {
    nonblocking->stop();
    serve_thread.join();
  }
#endif
  return 0;
}
