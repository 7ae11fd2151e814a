// echo_server: the Thrift ceiling for coord_bench. One call, `echo`, that
// returns its argument, served either
//   --model=threaded     by txc::ThriftServer: the coordinator's own server
//                        (TThreadedServer, a thread per connection, framed
//                        binary, our message limits and transport factory), or
//   --model=nonblocking  by Thrift's TNonblockingServer over libevent (framed
//                        binary, the same protocol factory), --io_threads I/O
//                        threads, calls processed on the I/O thread unless
//                        --workers > 0 (then on a pool of that many threads).
//
//   echo_server --port=N [--model=threaded|nonblocking] [--io_threads=2] [--workers=0]
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

#include <boost/program_options.hpp>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

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

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  int port = 0, io_threads = 2, workers = 0;
  std::string model = "threaded", host = "127.0.0.1";
  po::options_description desc("Flags");
  desc.add_options()("port", po::value<int>(&port)->default_value(0), "port to listen on")(
      "host", po::value<std::string>(&host)->default_value(host), "address (threaded model)")(
      "model", po::value<std::string>(&model)->default_value(model), "threaded | nonblocking")(
      "io_threads", po::value<int>(&io_threads)->default_value(io_threads),
      "nonblocking: libevent I/O threads")(
      "workers", po::value<int>(&workers)->default_value(workers),
      "nonblocking: worker threads running the handler (0: on the I/O thread)");
  if (int rc = txc::cli::Parse("echo_server",
                               "Usage: echo_server --port=N [--model=threaded|nonblocking]", argc,
                               argv, desc);
      rc >= 0) {
    return rc;
  }
  if (model != "threaded" && model != "nonblocking") {
    return txc::cli::UsageError("echo_server", "--model must be threaded or nonblocking");
  }
  txc::RouteThriftLogsToGlog();
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  auto processor = std::make_shared<txc::benchwire::EchoProcessor>(std::make_shared<EchoHandler>());
  std::unique_ptr<txc::ThriftServer> threaded;
#if TXC_HAVE_THRIFT_NB
  std::shared_ptr<apache::thrift::server::TNonblockingServer> nonblocking;
#endif
  std::thread serve_thread;
  if (model == "threaded") {
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
#if TXC_HAVE_THRIFT_NB
  if (nonblocking) {
    nonblocking->stop();
    serve_thread.join();
  }
#endif
  return 0;
}
