// noop_participant: a participant built on the SDK whose hooks do nothing (2PC
// votes PREPARED, Saga actions and compensations succeed), for coord_bench.
// With --delay_ms every hook first sleeps that long (the slow participant).
//
//   noop_participant --port=7001 [--host=127.0.0.1] [--delay_ms=0]
//
// Runs until SIGTERM/SIGINT; exit 0 then, 1 when it cannot listen, 2 for bad flags.
#include <glog/logging.h>
#include <signal.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.h"
#include "common/thrift_util.h"
#include "txc/participant/participant.h"
#include "txc/participant/participant_server.h"

namespace po = boost::program_options;
using namespace txc::participant;  // NOLINT: a bench binary

namespace {

class NoopParticipant : public Participant {
 public:
  explicit NoopParticipant(int delay_ms) : delay_ms_(delay_ms) {}
  Vote Prepare(const BranchContext&) override {
    Delay();
    return Vote::kPrepared;
  }
  Outcome CommitOnePhase(const BranchContext&) override {
    Delay();
    return Outcome::kCommit;
  }
  void Commit(const BranchContext&) override { Delay(); }
  void Abort(const BranchContext&) override { Delay(); }
  std::vector<PreparedBranch> Recover() override { return {}; }
  StepResult Action(const StepContext&) override {
    Delay();
    return StepResult::Success();
  }
  StepResult Compensate(const StepContext&) override {
    Delay();
    return StepResult::Success();
  }

 private:
  void Delay() const {
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
  }
  const int delay_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  int port = 0, delay_ms = 0;
  std::string host = "127.0.0.1";
  po::options_description desc("Flags");
  desc.add_options()("port", po::value<int>(&port)->default_value(0), "port to listen on")(
      "host", po::value<std::string>(&host)->default_value(host), "address to listen on")(
      "delay_ms", po::value<int>(&delay_ms)->default_value(0),
      "every hook sleeps this long before answering (a slow participant)");
  txc::cli::TlsFlags tls;
  txc::cli::AddTlsFlags(desc, &tls);
  po::variables_map vm;
  if (int rc = txc::cli::Parse("noop_participant",
                               "Usage: noop_participant --port=N [--delay_ms=0]  (hooks that do "
                               "nothing; for coord_bench)",
                               argc, argv, desc, &vm);
      rc >= 0) {
    return rc;
  }
  txc::RouteThriftLogsToGlog();
  signal(SIGPIPE, SIG_IGN);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  ParticipantServerOptions o;
  o.host = host;
  o.port = port;
  o.run_recovery = false;  // Recover() holds nothing
  o.tls = tls.Options();
  ParticipantServer server(std::make_shared<NoopParticipant>(delay_ms), o);
  txc::Status s = server.Start();
  if (!s.ok()) {
    LOG(ERROR) << "noop_participant cannot start: " << s;
    return 1;
  }
  LOG(INFO) << "noop_participant on " << server.endpoint() << ", delay " << delay_ms << " ms";
  while (true) {
    timespec tick{1, 0};
    const int sig = sigtimedwait(&stop, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) break;
  }
  server.Stop();
  return 0;
}
