// async_client_bench: prepare calls per second against one no-op participant,
// the blocking ParticipantClient (a thread per outstanding call) against the
// event-driven AsyncParticipantClient (a few I/O threads), at the same number
// of concurrent calls. Prints numbers; passes or fails nothing.
//
// The participant (a ThriftServer, framed binary, answering VOTE_PREPARED at
// once) runs in a forked child process, so the CPU time and context switches
// printed are the client's alone.
//
//   build/bench/async_client_bench [--concurrency=64] [--ms=3000] [--modes=blocking,async1,async2]
#include <glog/logging.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/cli.h"
#include "common/thrift_server.h"
#include "coordinator/driver/async_participant_client.h"
#include "coordinator/driver/participant_client.h"
#include "gen-cpp/Participant.h"

namespace txc {
namespace {

class NoopParticipant : public wire::ParticipantIf {
 public:
  wire::Vote::type prepare(const wire::BranchRequest&) override {
    return wire::Vote::VOTE_PREPARED;
  }
  wire::Outcome::type commitOnePhase(const wire::BranchRequest&) override {
    return wire::Outcome::OUTCOME_COMMIT;
  }
  void commit(const wire::BranchRequest&) override {}
  void abort(const wire::BranchRequest&) override {}
  void action(wire::StepResult& r, const wire::StepRequest&) override {
    r.outcome = wire::StepOutcome::SUCCESS;
  }
  void compensate(wire::StepResult& r, const wire::StepRequest&) override {
    r.outcome = wire::StepOutcome::SUCCESS;
  }
};

// Serves the no-op participant in a child process; returns its port (or -1).
int StartParticipantProcess(pid_t* pid) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  *pid = fork();
  if (*pid < 0) return -1;
  if (*pid == 0) {
    close(fds[0]);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    ThriftServerOptions options;
    options.host = "127.0.0.1";
    ThriftServer server(
        std::make_shared<wire::ParticipantProcessor>(std::make_shared<NoopParticipant>()), options);
    Status started = server.Start();
    int port = started.ok() ? server.port() : -1;
    if (write(fds[1], &port, sizeof port) != sizeof port) _exit(1);
    for (;;) pause();
  }
  close(fds[1]);
  int port = -1;
  if (read(fds[0], &port, sizeof port) != sizeof port) port = -1;
  close(fds[0]);
  return port;
}

struct Usage {
  double cpu_s = 0;
  int64_t context_switches = 0;
};

Usage Now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  Usage u;
  u.cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
            ru.ru_stime.tv_usec / 1e6;
  u.context_switches = ru.ru_nvcsw + ru.ru_nivcsw;
  return u;
}

struct Measured {
  int64_t calls = 0;
  int64_t errors = 0;
  double seconds = 0;
  Usage used;
};

// Lets the load run 300 ms, then measures `ms` of it.
Measured Measure(const std::atomic<int64_t>& calls, const std::atomic<int64_t>& errors, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int64_t calls0 = calls.load();
  const int64_t errors0 = errors.load();
  const Usage u0 = Now();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  Measured m;
  m.calls = calls.load() - calls0;
  m.errors = errors.load() - errors0;
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const Usage u1 = Now();
  m.used.cpu_s = u1.cpu_s - u0.cpu_s;
  m.used.context_switches = u1.context_switches - u0.context_switches;
  return m;
}

void Print(const std::string& mode, int concurrency, const Measured& m) {
  const double per_call = m.calls > 0 ? 1.0 / static_cast<double>(m.calls) : 0;
  std::printf("| %-26s | %3d | %9.0f | %8.1f | %8.2f | %lld |\n", mode.c_str(), concurrency,
              static_cast<double>(m.calls) / m.seconds, m.used.cpu_s * 1e6 * per_call,
              static_cast<double>(m.used.context_switches) * per_call,
              static_cast<long long>(m.errors));
  std::fflush(stdout);
}

Measured RunBlocking(const std::string& endpoint, int concurrency, int ms) {
  ParticipantClientOptions options;
  ParticipantClient client(options);
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) {
    threads.emplace_back([&, i] {
      BranchRecord branch;
      branch.branch_id = "b" + std::to_string(i);
      branch.endpoint = endpoint;
      branch.resource = "bench";
      BranchCall call;
      call.gtid = "bench-" + std::to_string(i);
      call.branch = &branch;
      call.coordinators = {"127.0.0.1:1"};
      while (!stop) {
        Result<BranchVote> vote = client.Prepare(call);
        if (vote.ok()) {
          ++calls;
        } else {
          ++errors;
        }
      }
    });
  }
  Measured m = Measure(calls, errors, ms);
  stop = true;
  for (auto& t : threads) t.join();
  return m;
}

Measured RunAsync(const std::string& endpoint, int concurrency, int io_threads, int ms) {
  AsyncParticipantClientOptions options;
  options.io_threads = io_threads;
  options.max_calls_per_endpoint = concurrency;
  AsyncParticipantClient client(options);
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> stop{false};
  // Each chain keeps one call outstanding: its callback sends the next.
  std::function<void(int)> next = [&](int i) {
    ParticipantCall call;
    call.endpoint = endpoint;
    call.gtid = "bench-" + std::to_string(i);
    call.branch_id = "b" + std::to_string(i);
    call.resource = "bench";
    call.coordinators = {"127.0.0.1:1"};
    client.Prepare(std::move(call), [&, i](Result<BranchVote> vote) {
      if (vote.ok()) {
        ++calls;
      } else {
        ++errors;
      }
      if (!stop) next(i);
    });
  };
  for (int i = 0; i < concurrency; ++i) next(i);
  Measured m = Measure(calls, errors, ms);
  stop = true;
  for (int waited = 0; client.PendingCalls() > 0 && waited < 10000; waited += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return m;
}

}  // namespace
}  // namespace txc

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  int concurrency = 64;
  int ms = 3000;
  std::string modes = "blocking,async1,async2";
  po::options_description flags("Flags");
  flags.add_options()("concurrency",
                      po::value(&concurrency)
                          ->default_value(64)
                          ->notifier(txc::cli::InRange("concurrency", 1, 4096)),
                      "concurrent calls")(
      "ms", po::value(&ms)->default_value(3000)->notifier(txc::cli::InRange("ms", 100, 600000)),
      "measured time per row, in ms")("modes", po::value(&modes)->default_value(modes),
                                      "rows to run: blocking, async1 (1 I/O thread), async2");
  if (int rc = txc::cli::Parse("async_client_bench", "Usage: async_client_bench [flags]", argc,
                               argv, flags);
      rc >= 0) {
    return rc;
  }
  google::InitGoogleLogging(argv[0]);
  signal(SIGPIPE, SIG_IGN);

  pid_t pid = -1;
  const int port = txc::StartParticipantProcess(&pid);
  if (port <= 0) {
    std::fprintf(stderr, "async_client_bench: cannot start the participant\n");
    return 1;
  }
  const std::string endpoint = "127.0.0.1:" + std::to_string(port);

  std::printf("prepare calls against one no-op participant (separate process), %d ms per row\n\n",
              ms);
  std::printf(
      "| client                     | conc | calls/s | client CPU us/call | ctx switches/call | "
      "errors |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  const auto wanted = [&](const std::string& mode) {
    return ("," + modes + ",").find("," + mode + ",") != std::string::npos;
  };
  if (wanted("blocking")) {
    txc::Print("blocking ParticipantClient", concurrency,
               txc::RunBlocking(endpoint, concurrency, ms));
  }
  if (wanted("async1")) {
    txc::Print("async, 1 I/O thread", concurrency, txc::RunAsync(endpoint, concurrency, 1, ms));
  }
  if (wanted("async2")) {
    txc::Print("async, 2 I/O threads", concurrency, txc::RunAsync(endpoint, concurrency, 2, ms));
  }

  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return 0;
}
