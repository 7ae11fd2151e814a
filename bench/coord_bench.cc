// coord_bench: the coordinator process under load, next to the Thrift echo
// ceiling and the raw store commit rate measured in the same run.
//
//   coord_bench [--stores=sqlite,postgresql] [--clients=1,8,64,256]
//               [--workloads=2pc_begin,2pc_enlist,saga] [--duration_s=5] [--warmup_s=1]
//               [--csv=FILE] [--json=FILE] [--md=FILE]
//               [--steady_seconds=300] [--slow_participant] [--server_models=true] [--tls]
//
// It starts, as separate processes: a throwaway PostgreSQL (tests/harness
// PgCluster, when a PostgreSQL store is measured), two no-op participants
// (noop_participant: SDK hooks that do nothing) and, with --slow_participant,
// a third one answering every call after --slow_delay_ms; an echo_server (the
// coordinator's own ThriftServer class serving a one-call service) for the
// ceiling; and the real `coordinator` binary, once per store, with its HTTP
// port for /metrics. The client threads live in this process, each with its
// own generated Coordinator client (framed binary, one connection).
//
// Workloads (every transaction commits; the participants vote PREPARED):
//   2pc_begin   beginTxn carrying 2 branches (one per participant), commit(WAIT_DECISION)
//   2pc_enlist  beginTxn, enlist x2, commit(WAIT_DECISION)
//   saga        submitSaga of 3 steps (participants 0,1,0), wait_for_completion
//
// Per row, over the measured window (after --warmup_s):
//   txn/s, p50/p95/p99   completed transactions, client-side latency
//   RPCs/txn             client calls + coordinator->participant calls
//                        (txc_participant_calls_total from /metrics)
//   store txns/txn       txc_group_commit_store_transactions_total delta
//   CPU s/1k txn         coordinator utime+stime (/proc/<pid>/stat)
//   threads, peak RSS    coordinator /proc/<pid>/status Threads at the end, VmHWM
//                        reset at the window's start (clear_refs): the row's own peak
//   share of ceiling     txn/s x RPCs/txn / echo calls/s at the same client count
//   machine busy         all CPUs, /proc/stat, during the window (others' load too)
//
// --steady_seconds: one long run per store (--steady_workload) at --steady_clients,
// sampling the coordinator's RSS, threads and CPU per transaction by thread
// every --steady_sample_s.
// --slow_participant: --slow_clients clients run 2PC over participant 0 and
// the slow one while the others run 2PC over participants 0 and 1; compared
// with the same fast clients alone.
// --server_models: the echo ceiling on TThreadedServer (ours) against
// TNonblockingServer (libevent), handler on the I/O threads or on a pool, and
// against an event loop of our own over Boost.Asio (echo_server --model=asio).
// --tls: every store's workloads again, in the same run, with mutual TLS on
// every connection (clients -> coordinator, coordinator -> participants;
// certificates from a throwaway CA made with the openssl CLI): a second
// coordinator per store with --tls_* --participant_tls and two more no-op
// participants with --tls_*. Those rows' store is "<store>+tls"; each client
// keeps one connection, so the handshake is paid once per client.
//
// Exit code 0; 3 when any transaction failed (an error, not an abort); 1 when
// something could not be started; 2 for bad flags. Not a test: timing is only printed.
#include <glog/logging.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/backoff.h"
#include "common/cli.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "coordinator/store/txn_store.h"
#include "gen-cpp/Coordinator.h"
#include "gen-cpp/Echo.h"
#include "tests/harness/http_client.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/test_certs.h"

namespace po = boost::program_options;
using txc::testing::ChildProcess;

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- /proc ------------------------------------------------------------------

struct ProcStats {
  double cpu_s = 0;  // utime + stime
  int threads = 0;
  int64_t rss_kb = 0;
  int64_t hwm_kb = 0;  // peak RSS
  // Per thread (tid): its name and utime + stime, for the CPU by thread.
  std::map<std::string, std::pair<std::string, double>> tasks;
};

// utime + stime (seconds) and the name of /proc/<pid>[/task/<tid>]/stat.
std::pair<std::string, double> ReadStat(const std::string& path) {
  const std::string stat = txc::testing::ReadFileOrEmpty(path);
  const size_t open = stat.find('(');
  const size_t paren = stat.rfind(')');
  if (open == std::string::npos || paren == std::string::npos || paren < open) return {"", 0};
  std::istringstream in(stat.substr(paren + 2));
  std::vector<std::string> f;
  std::string tok;
  while (in >> tok) f.push_back(tok);
  // f[0] is field 3 (state); utime is field 14, stime 15.
  if (f.size() <= 13) return {"", 0};
  const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
  return {stat.substr(open + 1, paren - open - 1),
          (std::strtod(f[11].c_str(), nullptr) + std::strtod(f[12].c_str(), nullptr)) / tick};
}

// The coordinator's CPU per transaction by thread, in µs, between two
// ReadProc samples: the group-commit writer, the group-done thread, the
// participant I/O thread, and the rest (the connection threads, named after
// the process, and the small ones). A thread that ended inside the window is
// missing; one that started inside it counts from zero.
struct ThreadCpu {
  double writer_us = 0, done_us = 0, io_us = 0, rest_us = 0;
};

ThreadCpu CpuByThread(const ProcStats& before, const ProcStats& after, double txns) {
  ThreadCpu t;
  if (txns <= 0) return t;
  for (const auto& [tid, task] : after.tasks) {
    auto was = before.tasks.find(tid);
    const double used =
        (task.second - (was != before.tasks.end() ? was->second.second : 0)) * 1e6 / txns;
    if (task.first == "group-commit") {
      t.writer_us += used;
    } else if (task.first == "group-done") {
      t.done_us += used;
    } else if (task.first == "participant-io") {
      t.io_us += used;
    } else {
      t.rest_us += used;
    }
  }
  return t;
}

ProcStats ReadProc(pid_t pid) {
  ProcStats p;
  const std::string proc = "/proc/" + std::to_string(pid);
  p.cpu_s = ReadStat(proc + "/stat").second;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(proc + "/task", ec)) {
    auto task = ReadStat(entry.path().string() + "/stat");
    if (!task.first.empty()) p.tasks[entry.path().filename().string()] = std::move(task);
  }
  std::istringstream status(
      txc::testing::ReadFileOrEmpty("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(status, line)) {
    auto value = [&](const char* key) -> int64_t {
      return std::strtoll(line.c_str() + std::string(key).size(), nullptr, 10);
    };
    if (line.rfind("Threads:", 0) == 0) p.threads = static_cast<int>(value("Threads:"));
    if (line.rfind("VmRSS:", 0) == 0) p.rss_kb = value("VmRSS:");
    if (line.rfind("VmHWM:", 0) == 0) p.hwm_kb = value("VmHWM:");
  }
  return p;
}

// Resets VmHWM (peak RSS) to the current RSS (Linux: "5" to clear_refs), so
// that a row's peak is its own, not the process's so far. Best effort.
void ResetPeakRss(pid_t pid) {
  std::ofstream clear("/proc/" + std::to_string(pid) + "/clear_refs");
  clear << "5";
}

// Busy and total jiffies of all CPUs (/proc/stat "cpu" line).
struct CpuTimes {
  double busy = 0, total = 0;
};
CpuTimes ReadMachineCpu() {
  std::istringstream in(txc::testing::ReadFileOrEmpty("/proc/stat"));
  std::string cpu;
  double v[10] = {0};
  in >> cpu;
  for (double& x : v) in >> x;
  CpuTimes t;
  for (double x : v) t.total += x;
  t.busy = t.total - v[3] - v[4];  // minus idle and iowait
  return t;
}
// CPU seconds all CPUs of the machine spent busy between two samples.
double BusySeconds(const CpuTimes& a, const CpuTimes& b) {
  return (b.busy - a.busy) / static_cast<double>(sysconf(_SC_CLK_TCK));
}
double BusyPercent(const CpuTimes& a, const CpuTimes& b) {
  const double total = b.total - a.total;
  return total > 0 ? 100.0 * (b.busy - a.busy) / total : 0;
}

std::string LoadAvg() {
  std::string s = txc::testing::ReadFileOrEmpty("/proc/loadavg");
  const size_t cut = s.find(' ', s.find(' ', s.find(' ') + 1) + 1);
  return s.substr(0, cut);
}

// ---- /metrics ---------------------------------------------------------------

// Sum of every sample of the metric `name` (all label sets).
double SumMetric(const std::string& text, const std::string& name) {
  double sum = 0;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind(name, 0) != 0) continue;
    const char next = line.size() > name.size() ? line[name.size()] : '\0';
    if (next != '{' && next != ' ') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  return sum;
}

struct MetricsSnapshot {
  bool ok = false;
  double store_txns = 0;
  double participant_calls = 0;
  double participant_call_errors = 0;
};

// `tls`: the coordinator's HTTPS credentials (its HTTP port follows its
// Thrift port's TLS); empty: plain HTTP.
MetricsSnapshot ScrapeMetrics(int http_port, const txc::TlsOptions& tls) {
  MetricsSnapshot m;
  const txc::testing::HttpResult got = txc::testing::HttpGet(http_port, "/metrics", tls);
  if (got.status != 200) return m;
  const std::string& body = got.body;
  m.ok = true;
  m.store_txns = SumMetric(body, "txc_group_commit_store_transactions_total");
  m.participant_calls = SumMetric(body, "txc_participant_calls_total");
  // Calls whose result is not "ok".
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("txc_participant_calls_total{", 0) == 0 &&
        line.find("result=\"ok\"") == std::string::npos) {
      m.participant_call_errors += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    }
  }
  return m;
}

// ---- load generation --------------------------------------------------------

enum class TxnResult { kOk, kAborted, kFailed };

// One transaction on `client`; adds its client RPCs to *rpcs. Thrift
// exceptions propagate (counted as failed by the caller).
template <typename Client>
using TxnFn = std::function<TxnResult(Client& client, int64_t seq, int* rpcs, std::string* why)>;

template <typename Client>
struct Group {
  std::string name;
  int clients = 0;
  TxnFn<Client> fn;
};

struct GroupResult {
  int64_t ok = 0, aborted = 0, failed = 0;
  int64_t client_rpcs = 0;
  std::vector<int64_t> latency_us;
  std::string first_error;
  int64_t done() const { return ok + aborted; }
  double Percentile(double p) {
    if (latency_us.empty()) return 0;
    std::sort(latency_us.begin(), latency_us.end());
    size_t i = static_cast<size_t>(std::ceil(p / 100.0 * latency_us.size()));
    i = std::min(latency_us.size(), std::max<size_t>(i, 1)) - 1;
    return latency_us[i] / 1000.0;
  }
};

struct LoadHooks {
  std::function<void()> at_start;  // the measured window begins
  std::function<void()> at_end;    // it ends (clients still running)
  std::function<void(double elapsed_s)> every_second;
};

// Runs every group's clients (a thread and a connection each) for warmup_s,
// then measures for duration_s. Only transactions that complete inside the
// measured window count. Returns one result per group and the window length.
template <typename Client>
std::vector<GroupResult> RunLoad(const std::string& endpoint, std::vector<Group<Client>> groups,
                                 double warmup_s, double duration_s, const std::string& label,
                                 const LoadHooks& hooks, double* window_s,
                                 const std::shared_ptr<txc::TlsContext>& tls = nullptr) {
  std::atomic<bool> stop{false}, measuring{false};
  std::atomic<int64_t> completed{0};
  std::atomic<int> ready{0};
  std::vector<std::vector<GroupResult>> per_thread(groups.size());
  std::vector<std::thread> threads;
  std::mutex err_mu;
  auto hp = txc::ParseEndpoint(endpoint);
  CHECK(hp.ok()) << hp.status();
  txc::ConnectOptions co;
  co.connect_timeout_ms = 5000;
  co.rpc_timeout_ms = 60000;
  co.tls = tls;
  int total_clients = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    per_thread[g].resize(groups[g].clients);
    total_clients += groups[g].clients;
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int i = 0; i < groups[g].clients; ++i) {
      threads.emplace_back([&, g, i] {
        GroupResult& r = per_thread[g][i];
        std::unique_ptr<txc::ThriftConnection<Client>> conn;
        txc::BackoffPolicy backoff{10, 1000, 2.0};
        int attempts = 0;
        bool counted = false;
        int64_t seq = 0;
        while (!stop.load()) {
          if (!conn) {
            auto opened = txc::OpenConnection<Client>(*hp, co);
            if (!opened.ok()) {
              if (measuring.load()) ++r.failed;
              if (r.first_error.empty()) r.first_error = opened.status().ToString();
              std::this_thread::sleep_for(std::chrono::milliseconds(
                  txc::BackoffDelayMs(backoff, std::min(++attempts, 10))));
              continue;
            }
            conn = std::move(opened).value();
            attempts = 0;
          }
          int rpcs = 0;
          std::string why;
          TxnResult result;
          const int64_t start = NowNs();
          try {
            result = groups[g].fn(*conn->client, seq++, &rpcs, &why);
          } catch (const std::exception& e) {
            result = TxnResult::kFailed;
            why = e.what();
            try {
              conn->transport->close();
            } catch (...) {
            }
            conn.reset();  // replies on it can no longer be trusted
          }
          const int64_t end = NowNs();
          // A connect returns once the kernel queued it; a client counts as
          // ready once the server answered it (accepted it and gave it a thread).
          if (!counted && result != TxnResult::kFailed) {
            counted = true;
            ready.fetch_add(1);
          }
          if (!measuring.load()) continue;
          completed.fetch_add(1);
          switch (result) {
            case TxnResult::kOk: ++r.ok; break;
            case TxnResult::kAborted: ++r.aborted; break;
            case TxnResult::kFailed: ++r.failed; break;
          }
          if (result != TxnResult::kOk && r.first_error.empty()) r.first_error = why;
          if (result != TxnResult::kFailed) {
            r.client_rpcs += rpcs;
            r.latency_us.push_back((end - start) / 1000);
          }
        }
        if (conn) {
          try {
            conn->transport->close();
          } catch (...) {
          }
        }
      });
    }
  }
  // Every client answered once (or 60 s), then warm-up, then the window.
  if (!txc::testing::WaitUntil([&] { return ready.load() >= total_clients; }, 60000)) {
    fprintf(stderr, "%s: only %d of %d clients got an answer within 60 s\n", label.c_str(),
            ready.load(), total_clients);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(warmup_s * 1000)));
  if (hooks.at_start) hooks.at_start();
  const int64_t t0 = NowNs();
  measuring.store(true);
  const bool tty = isatty(2);
  const int64_t end_ns = t0 + static_cast<int64_t>(duration_s * 1e9);
  int64_t next_tick = t0 + 1000000000LL;
  while (true) {
    const int64_t now = NowNs();
    if (now >= end_ns) break;
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min(next_tick, end_ns) - now));
    if (NowNs() >= next_tick) {
      const double elapsed = (next_tick - t0) / 1e9;
      next_tick += 1000000000LL;
      if (hooks.every_second) hooks.every_second(elapsed);
      if (tty || static_cast<int64_t>(elapsed) % 10 == 0) {
        fprintf(stderr, "%s  %s  %3.0f/%.0f s  %lld done  %.0f/s   %s", tty ? "\r" : "",
                label.c_str(), elapsed, duration_s, static_cast<long long>(completed.load()),
                completed.load() / elapsed, tty ? "" : "\n");
      }
    }
  }
  measuring.store(false);
  const int64_t t1 = NowNs();
  if (hooks.at_end) hooks.at_end();
  stop.store(true);
  for (auto& t : threads) t.join();
  *window_s = (t1 - t0) / 1e9;
  std::vector<GroupResult> out(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    for (GroupResult& r : per_thread[g]) {
      out[g].ok += r.ok;
      out[g].aborted += r.aborted;
      out[g].failed += r.failed;
      out[g].client_rpcs += r.client_rpcs;
      out[g].latency_us.insert(out[g].latency_us.end(), r.latency_us.begin(), r.latency_us.end());
      if (out[g].first_error.empty()) out[g].first_error = r.first_error;
    }
  }
  fprintf(stderr, "%s  %s  done: %.0f/s%s\n", tty ? "\r" : "", label.c_str(),
          out[0].done() / *window_s, "                    ");
  return out;
}

// ---- workloads --------------------------------------------------------------

using CoordClient = txc::wire::CoordinatorClient;
using EchoClient = txc::benchwire::EchoClient;

txc::wire::BranchSpec Branch(const std::string& id, const std::string& endpoint,
                             const std::string& payload) {
  txc::wire::BranchSpec b;
  b.branch_id = id;
  b.endpoint = endpoint;
  b.resource = "noop";
  b.payload = payload;
  return b;
}

TxnFn<CoordClient> TwoPhase(std::string ep0, std::string ep1, bool enlist, std::string payload) {
  return [=](CoordClient& c, int64_t, int* rpcs, std::string* why) {
    txc::wire::BeginRequest begin;
    begin.timeout_ms = 60000;
    std::vector<txc::wire::BranchSpec> branches = {Branch("b0", ep0, payload),
                                                   Branch("b1", ep1, payload)};
    if (!enlist) begin.__set_branches(branches);
    txc::wire::BeginResponse begun;
    c.beginTxn(begun, begin);
    ++*rpcs;
    if (enlist) {
      for (const auto& b : branches) {
        txc::wire::EnlistRequest e;
        e.gtid = begun.gtid;
        e.branch = b;
        c.enlist(e);
        ++*rpcs;
      }
    }
    txc::wire::CommitRequest commit;
    commit.gtid = begun.gtid;
    commit.wait = txc::wire::CommitWait::WAIT_DECISION;
    txc::wire::CommitResponse answer;
    c.commit(answer, commit);
    ++*rpcs;
    if (answer.outcome == txc::wire::Outcome::OUTCOME_COMMIT) return TxnResult::kOk;
    *why = "aborted: " + begun.gtid;
    return TxnResult::kAborted;
  };
}

TxnFn<CoordClient> Saga(std::vector<std::string> eps, std::string payload) {
  return [=](CoordClient& c, int64_t, int* rpcs, std::string* why) {
    txc::wire::SubmitSagaRequest req;
    for (size_t i = 0; i < eps.size(); ++i) {
      txc::wire::SagaStep s;
      s.step_id = "s" + std::to_string(i);
      s.endpoint = eps[i];
      s.action = "act";
      s.compensation = "undo";
      s.payload = payload;
      req.steps.push_back(s);
    }
    req.wait_for_completion = true;
    req.wait_timeout_ms = 60000;
    txc::wire::SubmitSagaResponse answer;
    c.submitSaga(answer, req);
    ++*rpcs;
    if (answer.state == txc::wire::TxnState::SUCCEEDED) return TxnResult::kOk;
    if (answer.state == txc::wire::TxnState::COMPENSATED) {
      *why = "compensated: " + answer.gtid;
      return TxnResult::kAborted;
    }
    *why = "saga " + answer.gtid + " in state " + std::to_string(answer.state) + " after the wait";
    return TxnResult::kFailed;
  };
}

TxnFn<EchoClient> Echo(std::string payload) {
  return [=](EchoClient& c, int64_t, int* rpcs, std::string*) {
    std::string out;
    c.echo(out, payload);
    ++*rpcs;
    return out.size() == payload.size() ? TxnResult::kOk : TxnResult::kFailed;
  };
}

// ---- processes ----------------------------------------------------------------

std::unique_ptr<ChildProcess> StartChild(std::vector<std::string> argv, const std::string& log,
                                         int port) {
  ChildProcess::Options o;
  o.argv = std::move(argv);
  o.log_path = log;
  auto child = ChildProcess::Start(o);
  if (!child.ok()) {
    fprintf(stderr, "cannot start %s: %s\n", o.argv[0].c_str(), child.status().ToString().c_str());
    return nullptr;
  }
  if (!txc::testing::WaitForPort(port, 60000).ok()) {
    fprintf(stderr, "%s did not listen on %d:\n%s\n", o.argv[0].c_str(), port,
            (*child)->LogTail().c_str());
    return nullptr;
  }
  return std::move(child).value();
}

void Stop(std::unique_ptr<ChildProcess>& child) {
  if (!child) return;
  child->Kill(SIGTERM).IgnoreError();
  auto exited = child->Wait(30000);
  if (!exited.ok()) {
    fprintf(stderr, "%s did not stop in 30 s: killed\n", child->options().argv[0].c_str());
  }
  child.reset();
}

// ---- rows -----------------------------------------------------------------------

struct Row {
  std::string store, workload;
  int clients = 0;
  double seconds = 0;
  int64_t ok = 0, aborted = 0, failed = 0;
  double txn_per_s = 0, p50 = 0, p95 = 0, p99 = 0;
  double client_rpcs = 0, participant_rpcs = 0, store_txns = 0;
  double cpu_s_per_1k = 0;
  ThreadCpu by_thread;  // coordinator CPU µs per transaction by thread
  // Machine CPU µs per echo call at this client count (client, server and
  // kernel: the whole machine during the ceiling's window), and the share of
  // the ceiling a coordinator could reach whose only costs were its RPCs (at
  // that price) and its store writer thread, every CPU busy with them:
  // CPUs / (RPCs x echo + writer) transactions/s, as a share of the ceiling.
  double echo_cpu_us_per_call = 0, writer_bound_share = 0;
  int threads = 0;
  double peak_rss_mb = 0, rss_mb = 0;
  double echo_per_s = 0, share = 0, raw_per_s = 0, machine_busy = 0;
  int64_t participant_call_errors = 0;
  std::string first_error;
};

const char* kCsvHeader =
    "store,workload,clients,seconds,committed,aborted,failed,txn_per_s,p50_ms,p95_ms,p99_ms,"
    "rpcs_per_txn,client_rpcs_per_txn,participant_rpcs_per_txn,store_txns_per_txn,"
    "coord_cpu_s_per_1000_txn,coord_threads,coord_peak_rss_mb,coord_rss_mb,echo_calls_per_s,"
    "share_of_ceiling_pct,raw_store_commits_per_s,machine_busy_pct,participant_call_errors,"
    "coord_writer_us_per_txn,coord_group_done_us_per_txn,coord_participant_io_us_per_txn,"
    "coord_other_threads_us_per_txn,echo_machine_cpu_us_per_call,writer_bound_share_pct";

std::string CsvLine(const Row& r) {
  char buf[1024];
  snprintf(buf, sizeof(buf),
           "%s,%s,%d,%.2f,%lld,%lld,%lld,%.1f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%d,%.1f,%.1f,"
           "%.0f,%.1f,%.0f,%.0f,%lld,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f",
           r.store.c_str(), r.workload.c_str(), r.clients, r.seconds, static_cast<long long>(r.ok),
           static_cast<long long>(r.aborted), static_cast<long long>(r.failed), r.txn_per_s, r.p50,
           r.p95, r.p99, r.client_rpcs + r.participant_rpcs, r.client_rpcs, r.participant_rpcs,
           r.store_txns, r.cpu_s_per_1k, r.threads, r.peak_rss_mb, r.rss_mb, r.echo_per_s, r.share,
           r.raw_per_s, r.machine_busy, static_cast<long long>(r.participant_call_errors),
           r.by_thread.writer_us, r.by_thread.done_us, r.by_thread.io_us, r.by_thread.rest_us,
           r.echo_cpu_us_per_call, r.writer_bound_share);
  return buf;
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<int> ParseInts(const std::string& list) {
  std::vector<int> out;
  for (const std::string& s : txc::SplitList(list)) out.push_back(std::atoi(s.c_str()));
  return out;
}

bool Has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;
  signal(SIGPIPE, SIG_IGN);

  std::string stores_flag = "sqlite,postgresql", clients_flag = "1,8,64,256";
  std::string workloads_flag = "2pc_begin,2pc_enlist,saga";
  std::string rpc_servers_flag = "event-loop";
  double duration_s = 5, warmup_s = 1, echo_s = 2, raw_s = 2;
  bool server_models = true, slow_participant = false, table = true, tls_rows = false;
  int steady_seconds = 0, steady_clients = 64, steady_sample_s = 10;
  std::string steady_workload = "2pc_begin";
  int slow_delay_ms = 2000, slow_clients = 8, slow_total_clients = 64;
  double slow_seconds = 20;
  int payload_bytes = 64;
  std::string csv_path, json_path, md_path;
  std::string coordinator_bin = TXC_COORDINATOR_BIN, participant_bin = TXC_NOOP_PARTICIPANT_BIN,
              echo_bin = TXC_ECHO_SERVER_BIN;
  po::options_description desc("Flags");
  desc.add_options()("stores", po::value(&stores_flag)->default_value(stores_flag),
                     "coordinator stores: sqlite,postgresql")(
      "clients", po::value(&clients_flag)->default_value(clients_flag), "client counts")(
      "workloads", po::value(&workloads_flag)->default_value(workloads_flag),
      "2pc_begin (branches in begin), 2pc_enlist (begin + 2 enlists), saga (3 steps)")(
      "duration_s", po::value(&duration_s)->default_value(duration_s), "measured seconds per row")(
      "warmup_s", po::value(&warmup_s)->default_value(warmup_s), "warm-up seconds per row")(
      "echo_s", po::value(&echo_s)->default_value(echo_s), "seconds per echo ceiling measurement")(
      "raw_s", po::value(&raw_s)->default_value(raw_s), "seconds of the raw store commit loop")(
      "table", po::value(&table)->default_value(table),
      "measure the table (false: only the echo ceiling, raw rate and the runs asked for)")(
      "server_models", po::value(&server_models)->default_value(server_models),
      "also measure the echo ceiling on TNonblockingServer")(
      "steady_seconds", po::value(&steady_seconds)->default_value(0),
      "after the table: a 2pc_begin run this long per store (0: none)")(
      "steady_clients", po::value(&steady_clients)->default_value(steady_clients),
      "clients of the steady run")("steady_workload",
                                   po::value(&steady_workload)->default_value(steady_workload),
                                   "workload of the steady run: 2pc_begin or saga")(
      "steady_sample_s", po::value(&steady_sample_s)->default_value(steady_sample_s),
      "sample interval of the steady run (RSS, threads, CPU by thread)")(
      "rpc_servers", po::value(&rpc_servers_flag)->default_value(rpc_servers_flag),
      "coordinator --rpc_server models to measure, comma-separated (event-loop, "
      "thread-per-connection): a coordinator and rows per model")(
      "tls", po::bool_switch(&tls_rows),
      "also run every store's workloads with mutual TLS on every connection (rows "
      "'<store>+tls', same run)")("slow_participant", po::bool_switch(&slow_participant),
                                  "after the table: the slow-participant run per store")(
      "slow_delay_ms", po::value(&slow_delay_ms)->default_value(slow_delay_ms),
      "the slow participant answers after this long")(
      "slow_clients", po::value(&slow_clients)->default_value(slow_clients),
      "clients whose transactions touch the slow participant")(
      "slow_total_clients", po::value(&slow_total_clients)->default_value(slow_total_clients),
      "all clients of the slow-participant run")(
      "slow_seconds", po::value(&slow_seconds)->default_value(slow_seconds),
      "measured seconds of each slow-participant phase")(
      "payload_bytes", po::value(&payload_bytes)->default_value(payload_bytes),
      "branch/step payload and echo size")("csv", po::value(&csv_path), "write the table as CSV")(
      "json", po::value(&json_path), "write everything as JSON")(
      "md", po::value(&md_path), "write the readable tables (also printed) to this file")(
      "coordinator_bin", po::value(&coordinator_bin)->default_value(coordinator_bin), "")(
      "participant_bin", po::value(&participant_bin)->default_value(participant_bin), "")(
      "echo_bin", po::value(&echo_bin)->default_value(echo_bin), "");
  if (int rc = txc::cli::Parse("coord_bench",
                               "Usage: coord_bench [flags]  (coordinator throughput against the "
                               "Thrift ceiling; see bench/README.md)",
                               argc, argv, desc);
      rc >= 0) {
    return rc;
  }
  const std::vector<std::string> stores = txc::SplitList(stores_flag);
  const std::vector<std::string> workloads = txc::SplitList(workloads_flag);
  const std::vector<int> client_counts = ParseInts(clients_flag);
  for (const auto& s : stores) {
    if (s != "sqlite" && s != "postgresql") {
      return txc::cli::UsageError("coord_bench", "unknown store " + s);
    }
  }
  for (const auto& w : workloads) {
    if (w != "2pc_begin" && w != "2pc_enlist" && w != "saga") {
      return txc::cli::UsageError("coord_bench", "unknown workload " + w);
    }
  }
  if (steady_workload != "2pc_begin" && steady_workload != "saga") {
    return txc::cli::UsageError("coord_bench", "--steady_workload: 2pc_begin or saga");
  }
  for (int c : client_counts) {
    if (c < 1 || c > 2000) return txc::cli::UsageError("coord_bench", "client counts: 1..2000");
  }
  if (slow_clients < 1 || slow_clients >= slow_total_clients) {
    return txc::cli::UsageError("coord_bench", "need 1 <= slow_clients < slow_total_clients");
  }
  const std::string payload(static_cast<size_t>(std::max(payload_bytes, 0)), 'x');
  const std::string load_start = LoadAvg();
  const time_t started_at = time(nullptr);
  char when[64];
  strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", gmtime(&started_at));
  std::ostringstream md;  // the readable report

  txc::testing::TempDir dir("txc-coord-bench-");
  std::unique_ptr<txc::testing::PgCluster> pg;
  if (Has(stores, "postgresql")) {
    auto started = txc::testing::PgCluster::Start({});
    if (!started.ok()) {
      fprintf(stderr, "PostgreSQL: %s\n", started.status().ToString().c_str());
      return 1;
    }
    pg = std::move(started).value();
  }

  // Participants: two no-op ones, and the slow one when asked.
  std::vector<std::unique_ptr<ChildProcess>> participants;
  std::vector<std::string> eps;
  for (int i = 0; i < (slow_participant ? 3 : 2); ++i) {
    const int port = txc::testing::FreeLoopbackPort();
    const int delay = i == 2 ? slow_delay_ms : 0;
    auto child = StartChild(
        {participant_bin, "--port=" + std::to_string(port), "--delay_ms=" + std::to_string(delay)},
        dir.Child("participant" + std::to_string(i) + ".log"), port);
    if (!child) return 1;
    participants.push_back(std::move(child));
    eps.push_back("127.0.0.1:" + std::to_string(port));
  }

  // With --tls: a throwaway CA, certificates, and two no-op participants
  // serving mutual TLS.
  std::unique_ptr<txc::testing::TestCa> ca;
  std::map<std::string, txc::testing::TestCa::Issued> certs;
  std::shared_ptr<txc::TlsContext> client_tls;
  std::vector<std::string> tls_eps;
  auto tls_flags = [&](const std::string& name) {
    const auto& c = certs[name];
    return std::vector<std::string>{"--tls_cert=" + c.cert_file, "--tls_key=" + c.key_file,
                                    "--tls_ca=" + ca->ca_file()};
  };
  if (tls_rows) {
    auto made = txc::testing::TestCa::Create("coord-bench-ca");
    if (!made.ok()) {
      fprintf(stderr, "certificates: %s\n", made.status().ToString().c_str());
      return 1;
    }
    ca = std::move(made).value();
    for (const char* name : {"coordinator", "participant", "client"}) {
      auto issued = ca->IssueLoopbackServer(name, name);
      if (!issued.ok()) {
        fprintf(stderr, "certificates: %s\n", issued.status().ToString().c_str());
        return 1;
      }
      certs[name] = *issued;
    }
    auto tls = txc::TlsContext::Create(ca->Options(certs["client"]), txc::TlsRole::kClient);
    if (!tls.ok()) {
      fprintf(stderr, "client TLS: %s\n", tls.status().ToString().c_str());
      return 1;
    }
    client_tls = std::move(tls).value();
    for (int i = 0; i < 2; ++i) {
      const int port = txc::testing::FreeLoopbackPort();
      std::vector<std::string> args = {participant_bin, "--port=" + std::to_string(port)};
      for (const auto& f : tls_flags("participant")) args.push_back(f);
      auto child =
          StartChild(args, dir.Child("tls-participant" + std::to_string(i) + ".log"), port);
      if (!child) return 1;
      participants.push_back(std::move(child));
      tls_eps.push_back("127.0.0.1:" + std::to_string(port));
    }
  }

  // ---- the echo ceiling (and the server models) ----
  struct ModelRow {
    std::string model;
    int clients;
    double calls_per_s, p50, p99, server_cpu_us_per_call;
    int server_threads;
  };
  std::vector<ModelRow> model_rows;
  std::map<int, double> ceiling;      // clients -> echo calls/s on our ThriftServer
  std::map<int, double> echo_cpu_us;  // clients -> machine CPU µs per echo call (ours)
  std::vector<std::pair<std::string, std::vector<std::string>>> models = {
      {"threaded (ThriftServer)", {"--model=threaded"}}};
  if (server_models) {
    models.push_back({"nonblocking, 2 io threads", {"--model=nonblocking", "--io_threads=2"}});
    models.push_back({"nonblocking, 2 io + 16 workers",
                      {"--model=nonblocking", "--io_threads=2", "--workers=16"}});
    models.push_back({"asio event loop, 1 io thread", {"--model=asio", "--io_threads=1"}});
    models.push_back({"asio event loop, 2 io threads", {"--model=asio", "--io_threads=2"}});
    // What one hand-off costs a call: the handler waits for another thread's answer.
    models.push_back({"threaded, handler waits on a hand-off", {"--model=threaded", "--handoff"}});
    // The same hand-off without a waiting thread: answers posted back to the event loop.
    models.push_back({"asio, 1 io thread, answered after a hand-off",
                      {"--model=asio", "--io_threads=1", "--handoff"}});
  }
  for (const auto& [model, args] : models) {
    const int port = txc::testing::FreeLoopbackPort();
    std::vector<std::string> argv_echo = {echo_bin, "--port=" + std::to_string(port)};
    argv_echo.insert(argv_echo.end(), args.begin(), args.end());
    auto echo = StartChild(argv_echo, dir.Child("echo.log"), port);
    if (!echo) return 1;
    for (int clients : client_counts) {
      ProcStats before, after;
      CpuTimes machine_before, machine_after;
      LoadHooks hooks;
      hooks.at_start = [&] {
        before = ReadProc(echo->pid());
        machine_before = ReadMachineCpu();
      };
      hooks.at_end = [&] {
        after = ReadProc(echo->pid());
        machine_after = ReadMachineCpu();
      };
      double window = 0;
      auto r = RunLoad<EchoClient>(
          "127.0.0.1:" + std::to_string(port), {{"echo", clients, Echo(payload)}}, 0.3, echo_s,
          "echo " + model + " " + std::to_string(clients) + " clients", hooks, &window);
      const double rate = r[0].done() / window;
      if (model == models[0].first && r[0].done() > 0) {
        ceiling[clients] = rate;
        echo_cpu_us[clients] = BusySeconds(machine_before, machine_after) * 1e6 / r[0].done();
      }
      model_rows.push_back({model, clients, rate, r[0].Percentile(50), r[0].Percentile(99),
                            r[0].done() > 0 ? (after.cpu_s - before.cpu_s) * 1e6 / r[0].done() : 0,
                            after.threads});
    }
    Stop(echo);
  }

  // ---- per store: raw rate, then the coordinator under each workload ----
  std::vector<Row> rows;
  std::map<std::string, double> raw_rates;
  struct SteadySample {
    std::string store;
    double t, txn_per_s, rss_mb;
    int threads;
    ThreadCpu by_thread;  // coordinator CPU µs per transaction in the interval, by thread
  };
  std::vector<SteadySample> steady;
  struct SlowRow {
    std::string store, phase;
    int fast_clients, slow_clients;
    double fast_per_s, fast_p99;
    int64_t fast_aborted, fast_failed;
    double slow_per_s, slow_p50;
    int64_t slow_aborted, slow_failed;
    int threads;
  };
  std::vector<SlowRow> slow_rows;
  bool any_failed = false;

  for (const std::string& store_kind : stores) {
    std::string location, raw_location;
    if (store_kind == "postgresql") {
      location = pg->ConnectionString(pg->CreateUniqueDatabase("coordinator"));
      raw_location = pg->ConnectionString(pg->CreateUniqueDatabase("raw"));
    } else {
      raw_location = dir.Child("raw-sqlite.db");
    }
    {
      auto raw_store = txc::OpenStore(raw_location);
      if (!raw_store.ok() || !(*raw_store)->Migrate().ok()) {
        fprintf(stderr, "raw store %s: cannot open or migrate\n", store_kind.c_str());
        return 1;
      }
      raw_rates[store_kind] =
          txc::bench::RawCommitRate(raw_store->get(), static_cast<int64_t>(raw_s * 1000),
                                    store_kind, txc::TxnKind::kTwoPhase, txc::TxnState::kAborted);
      fprintf(stderr, "raw %s store: %.0f commits/s\n", store_kind.c_str(), raw_rates[store_kind]);
    }

    // The plain coordinator, then (--tls) a second one with mutual TLS everywhere.
    struct Variant {
      bool tls;
      std::string rpc_server;
    };
    std::vector<Variant> variants;
    for (const bool tls : tls_rows ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
      for (const std::string& model : txc::SplitList(rpc_servers_flag))
        variants.push_back({tls, model});
    }
    for (const Variant& variant : variants) {
      const bool tls = variant.tls;
      // The default model keeps the plain label (earlier results compare by it).
      const bool threaded = variant.rpc_server != "event-loop";
      const std::string store_label =
          store_kind + (tls ? "+tls" : "") + (threaded ? "+" + variant.rpc_server : "");
      std::string variant_location = location;
      if (store_kind == "postgresql" && &variant != &variants.front()) {
        variant_location = pg->ConnectionString(pg->CreateUniqueDatabase("coordinator_variant"));
      }
      const int port = txc::testing::FreeLoopbackPort();
      const int http_port = txc::testing::FreeLoopbackPort();
      std::vector<std::string> cargv = {
          coordinator_bin, "--host=127.0.0.1", "--port=" + std::to_string(port),
          "--http_port=" + std::to_string(http_port),
          "--data_dir=" + dir.Child("coordinator-" + store_label), "--node_id=bench-" + store_label,
          // Every client comes from loopback (up to 2000).
          "--max_connections_per_peer=0", "--rpc_server=" + variant.rpc_server};
      if (!location.empty()) cargv.push_back("--store=" + variant_location);
      if (tls) {
        for (const auto& f : tls_flags("coordinator")) cargv.push_back(f);
        cargv.push_back("--participant_tls");
      }
      auto coordinator = StartChild(cargv, dir.Child("coordinator-" + store_label + ".log"), port);
      if (!coordinator) return 1;
      // The HTTP port is HTTPS, with the client certificate rule, when TLS is on.
      const txc::TlsOptions http_tls = tls ? ca->Options(certs["client"]) : txc::TlsOptions{};
      if (!txc::testing::WaitUntil(
              [&] { return txc::testing::HttpGet(http_port, "/readyz", http_tls).status == 200; },
              60000)) {
        fprintf(stderr, "coordinator (%s) not ready:\n%s\n", store_kind.c_str(),
                coordinator->LogTail().c_str());
        return 1;
      }
      const std::string coord_ep = "127.0.0.1:" + std::to_string(port);
      const pid_t coord_pid = coordinator->pid();

      const std::vector<std::string>& peps = tls ? tls_eps : eps;  // the participants
      const std::shared_ptr<txc::TlsContext> ctls = tls ? client_tls : nullptr;
      for (const std::string& workload : table ? workloads : std::vector<std::string>{}) {
        for (int clients : client_counts) {
          TxnFn<CoordClient> fn =
              workload == "saga" ? Saga({peps[0], peps[1], peps[0]}, payload)
                                 : TwoPhase(peps[0], peps[1], workload == "2pc_enlist", payload);
          MetricsSnapshot m0, m1;
          ProcStats p0, p1;
          CpuTimes c0, c1;
          LoadHooks hooks;
          hooks.at_start = [&] {
            ResetPeakRss(coord_pid);
            m0 = ScrapeMetrics(http_port, http_tls);
            p0 = ReadProc(coord_pid);
            c0 = ReadMachineCpu();
          };
          hooks.at_end = [&] {
            c1 = ReadMachineCpu();
            p1 = ReadProc(coord_pid);
            m1 = ScrapeMetrics(http_port, http_tls);
          };
          double window = 0;
          const std::string label =
              store_label + " " + workload + " " + std::to_string(clients) + " clients";
          auto res = RunLoad<CoordClient>(coord_ep, {{workload, clients, fn}}, warmup_s, duration_s,
                                          label, hooks, &window, ctls);
          GroupResult& g = res[0];
          Row row;
          row.store = store_label;
          row.workload = workload;
          row.clients = clients;
          row.seconds = window;
          row.ok = g.ok;
          row.aborted = g.aborted;
          row.failed = g.failed;
          row.first_error = g.first_error;
          const double done = static_cast<double>(g.done());
          row.txn_per_s = done / window;
          row.p50 = g.Percentile(50);
          row.p95 = g.Percentile(95);
          row.p99 = g.Percentile(99);
          if (done > 0) {
            row.client_rpcs = g.client_rpcs / done;
            if (m0.ok && m1.ok) {
              row.participant_rpcs = (m1.participant_calls - m0.participant_calls) / done;
              row.store_txns = (m1.store_txns - m0.store_txns) / done;
              row.participant_call_errors =
                  static_cast<int64_t>(m1.participant_call_errors - m0.participant_call_errors);
            }
            row.cpu_s_per_1k = (p1.cpu_s - p0.cpu_s) / done * 1000;
            row.by_thread = CpuByThread(p0, p1, done);
          }
          row.threads = p1.threads;
          row.peak_rss_mb = p1.hwm_kb / 1024.0;
          row.rss_mb = p1.rss_kb / 1024.0;
          row.echo_per_s = ceiling.count(clients) ? ceiling[clients] : 0;
          row.share = row.echo_per_s > 0
                          ? 100.0 * row.txn_per_s * (row.client_rpcs + row.participant_rpcs) /
                                row.echo_per_s
                          : 0;
          row.raw_per_s = raw_rates[store_kind];
          row.echo_cpu_us_per_call = echo_cpu_us.count(clients) ? echo_cpu_us[clients] : 0;
          const double rpc_us = (row.client_rpcs + row.participant_rpcs) * row.echo_cpu_us_per_call;
          if (rpc_us > 0 && row.by_thread.writer_us > 0 && row.echo_per_s > 0) {
            // Every CPU busy with nothing but those RPCs and the writer.
            const double bound_txn_per_s = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN)) *
                                           1e6 / (rpc_us + row.by_thread.writer_us);
            row.writer_bound_share =
                100.0 * bound_txn_per_s * (row.client_rpcs + row.participant_rpcs) / row.echo_per_s;
          }
          row.machine_busy = BusyPercent(c0, c1);
          if (row.failed > 0 || row.aborted > 0) {
            fprintf(stderr, "  %lld failed, %lld aborted; first: %s\n",
                    static_cast<long long>(row.failed), static_cast<long long>(row.aborted),
                    row.first_error.c_str());
          }
          if (row.failed > 0) any_failed = true;
          rows.push_back(row);
          if (!coordinator->IsRunning()) {
            fprintf(stderr, "coordinator (%s) died:\n%s\n", store_kind.c_str(),
                    coordinator->LogTail().c_str());
            return 1;
          }
        }
      }

      if (slow_participant && !tls) {
        const int fast = slow_total_clients - slow_clients;
        for (bool with_slow : {false, true}) {
          std::vector<Group<CoordClient>> groups = {
              {"fast", fast, TwoPhase(eps[0], eps[1], false, payload)}};
          if (with_slow) {
            groups.push_back({"slow", slow_clients, TwoPhase(eps[0], eps[2], false, payload)});
          }
          double window = 0;
          LoadHooks hooks;
          int threads = 0;
          hooks.at_end = [&] { threads = ReadProc(coord_pid).threads; };
          auto res = RunLoad<CoordClient>(
              coord_ep, groups, std::max(warmup_s, with_slow ? slow_delay_ms * 2 / 1000.0 : 0.0),
              slow_seconds,
              store_kind + (with_slow ? " fast+slow" : " fast only") + " participants", hooks,
              &window);
          SlowRow s{store_kind,
                    with_slow ? "with slow" : "fast only",
                    fast,
                    with_slow ? slow_clients : 0,
                    res[0].done() / window,
                    res[0].Percentile(99),
                    res[0].aborted,
                    res[0].failed,
                    with_slow ? res[1].done() / window : 0,
                    with_slow ? res[1].Percentile(50) : 0,
                    with_slow ? res[1].aborted : 0,
                    with_slow ? res[1].failed : 0,
                    threads};
          if (s.fast_failed > 0 || s.fast_aborted > 0) {
            fprintf(stderr, "  fast transactions: %lld failed, %lld aborted; first: %s\n",
                    static_cast<long long>(s.fast_failed), static_cast<long long>(s.fast_aborted),
                    res[0].first_error.c_str());
          }
          if (with_slow && (s.slow_failed > 0 || s.slow_aborted > 0)) {
            fprintf(stderr, "  slow transactions: %lld failed, %lld aborted; first: %s\n",
                    static_cast<long long>(s.slow_failed), static_cast<long long>(s.slow_aborted),
                    res[1].first_error.c_str());
          }
          slow_rows.push_back(s);
        }
      }

      if (steady_seconds > 0 && !tls) {
        int64_t last_done = 0;
        double last_t = 0;
        // Throughput per sample interval from the coordinator's own counter of
        // finished transactions (RunLoad's counter is internal to it).
        auto finished = [&] {
          const txc::testing::HttpResult got =
              txc::testing::HttpGet(http_port, "/metrics", http_tls);
          return got.status == 200 ? SumMetric(got.body, "txc_transactions_finished_total") : 0.0;
        };
        double base = 0;
        ProcStats last_proc;
        LoadHooks hooks;
        hooks.at_start = [&] {
          base = finished();
          last_proc = ReadProc(coord_pid);
          steady.push_back({store_kind, 0, 0, last_proc.rss_kb / 1024.0, last_proc.threads, {}});
        };
        hooks.every_second = [&](double t) {
          if (static_cast<int>(std::lround(t)) % steady_sample_s != 0) return;
          const ProcStats p = ReadProc(coord_pid);
          const int64_t now_done = static_cast<int64_t>(finished() - base);
          steady.push_back({store_kind, t, (now_done - last_done) / (t - last_t), p.rss_kb / 1024.0,
                            p.threads,
                            CpuByThread(last_proc, p, static_cast<double>(now_done - last_done))});
          last_done = now_done;
          last_t = t;
          last_proc = p;
        };
        double window = 0;
        auto res = RunLoad<CoordClient>(
            coord_ep,
            {{"steady", steady_clients,
              steady_workload == "saga" ? Saga({eps[0], eps[1], eps[0]}, payload)
                                        : TwoPhase(eps[0], eps[1], false, payload)}},
            warmup_s, steady_seconds, store_kind + " steady", hooks, &window);
        if (res[0].failed > 0) any_failed = true;
        fprintf(stderr, "steady %s: %lld committed, %lld aborted, %lld failed\n",
                store_kind.c_str(), static_cast<long long>(res[0].ok),
                static_cast<long long>(res[0].aborted), static_cast<long long>(res[0].failed));
      }

      Stop(coordinator);
    }
  }
  for (auto& p : participants) Stop(p);
  const std::string load_end = LoadAvg();

  // ---- output ----
  char line[2048];
  md << "## coord_bench, " << when << "\n\n"
     << "Clients, coordinator, participants (no-op SDK hooks), echo server and PostgreSQL as "
        "separate processes on loopback; "
     << duration_s << " s measured per row after " << warmup_s
     << " s warm-up. Load average (1/5/15 min) at start " << load_start << ", at end " << load_end
     << "; `busy` is all CPUs of the machine during the row (other agents' work included).\n\n";
  md << "Echo ceiling (64-byte echo, the coordinator's ThriftServer, same run), calls/s:";
  for (auto& [c, r] : ceiling) md << " " << c << " clients " << static_cast<int64_t>(r) << ";";
  md << " raw store commits/s (1-row Apply loop, same run):";
  for (auto& [s, r] : raw_rates) md << " " << s << " " << static_cast<int64_t>(r) << ";";
  md << "\n\n";
  md << "| store | workload | clients | txn/s | p50 ms | p95 ms | p99 ms | RPCs/txn | store "
        "txns/txn | coord CPU s/1k txn | threads | peak RSS MB | echo calls/s | share of "
        "ceiling | raw store commits/s | busy | committed | aborted | failed |\n"
     << "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const Row& r : rows) {
    snprintf(line, sizeof(line),
             "| %s | %s | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f | %d | %.1f | %.0f | "
             "%.1f %% | %.0f | %.0f %% | %lld | %lld | %lld |\n",
             r.store.c_str(), r.workload.c_str(), r.clients, r.txn_per_s, r.p50, r.p95, r.p99,
             r.client_rpcs + r.participant_rpcs, r.store_txns, r.cpu_s_per_1k, r.threads,
             r.peak_rss_mb, r.echo_per_s, r.share, r.raw_per_s, r.machine_busy,
             static_cast<long long>(r.ok), static_cast<long long>(r.aborted),
             static_cast<long long>(r.failed));
    md << line;
  }
  md << "\n### Coordinator CPU by thread (µs per transaction, same windows)\n\n"
     << "The writer is the one serial thread of the write path; `other` is the connection "
        "threads (a thread per client connection) and the small ones (sweeper, checkpointer, "
        "HTTP). From /proc/<pid>/task/*/stat: tick-sampled, read the writer, group-done and "
        "participant-io columns as figures and `other` as an estimate.\n\n"
     << "`echo µs/call` is the whole machine's CPU (client, server, kernel) per echo call in "
        "the ceiling's window at that client count. `writer bound` is the share of the ceiling "
        "a coordinator could reach if it cost nothing but its RPCs (each at the echo's price) "
        "and its store writer thread, with every CPU of the machine busy with them: CPUs / "
        "(RPCs x echo + writer) transactions/s, against the ceiling. Nothing else "
        "(handlers, participant I/O, hand-offs, logic) is in it: it is an upper bound, not a "
        "forecast.\n\n"
     << "| store | workload | clients | writer | group-done | participant-io | other | total | "
        "echo µs/call | writer bound | share reached |\n"
     << "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const Row& r : rows) {
    const ThreadCpu& t = r.by_thread;
    snprintf(line, sizeof(line),
             "| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.1f %% | %.1f %% |\n",
             r.store.c_str(), r.workload.c_str(), r.clients, t.writer_us, t.done_us, t.io_us,
             t.rest_us, t.writer_us + t.done_us + t.io_us + t.rest_us, r.echo_cpu_us_per_call,
             r.writer_bound_share, r.share);
    md << line;
  }
  md << "\n### Server model (64-byte echo, " << echo_s << " s per row)\n\n"
     << "| server | clients | calls/s | p50 ms | p99 ms | server CPU µs/call | server threads "
        "|\n|---|--:|--:|--:|--:|--:|--:|\n";
  for (const ModelRow& m : model_rows) {
    snprintf(line, sizeof(line), "| %s | %d | %.0f | %.3f | %.3f | %.1f | %d |\n", m.model.c_str(),
             m.clients, m.calls_per_s, m.p50, m.p99, m.server_cpu_us_per_call, m.server_threads);
    md << line;
  }
  if (!slow_rows.empty()) {
    md << "\n### Slow participant (one answering after " << slow_delay_ms
       << " ms; 2pc_begin)\n\n| store | phase | fast clients | fast txn/s | fast p99 ms | fast "
          "aborted | fast failed | slow clients | slow txn/s | slow p50 ms | slow aborted | "
          "slow failed | coord threads |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (const SlowRow& s : slow_rows) {
      snprintf(line, sizeof(line),
               "| %s | %s | %d | %.0f | %.2f | %lld | %lld | %d | %.1f | %.0f | %lld | %lld | "
               "%d |\n",
               s.store.c_str(), s.phase.c_str(), s.fast_clients, s.fast_per_s, s.fast_p99,
               static_cast<long long>(s.fast_aborted), static_cast<long long>(s.fast_failed),
               s.slow_clients, s.slow_per_s, s.slow_p50, static_cast<long long>(s.slow_aborted),
               static_cast<long long>(s.slow_failed), s.threads);
      md << line;
    }
  }
  if (!steady.empty()) {
    md << "\n### Steady run (" << steady_workload << ", " << steady_clients << " clients, "
       << steady_seconds
       << " s)\n\nCoordinator CPU µs per transaction of each interval, by thread, as in the "
          "table above (tick-sampled).\n\n| store | t s | txn/s (interval) | RSS MB | threads | "
          "writer | group-done | participant-io | other |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n";
    for (const SteadySample& s : steady) {
      const ThreadCpu& c = s.by_thread;
      snprintf(line, sizeof(line), "| %s | %.0f | %.0f | %.1f | %d | %.0f | %.0f | %.0f | %.0f |\n",
               s.store.c_str(), s.t, s.txn_per_s, s.rss_mb, s.threads, c.writer_us, c.done_us,
               c.io_us, c.rest_us);
      md << line;
    }
  }
  printf("%s", md.str().c_str());
  if (!md_path.empty()) std::ofstream(md_path) << md.str();
  if (!csv_path.empty()) {
    std::ofstream csv(csv_path);
    csv << kCsvHeader << "\n";
    for (const Row& r : rows) csv << CsvLine(r) << "\n";
  }
  if (!json_path.empty()) {
    std::ofstream js(json_path);
    js << "{\"started\":\"" << when << "\",\"loadavg_start\":\"" << load_start
       << "\",\"loadavg_end\":\"" << load_end << "\",\"duration_s\":" << duration_s
       << ",\"ceiling\":{";
    bool first = true;
    for (auto& [c, r] : ceiling) {
      js << (first ? "" : ",") << "\"" << c << "\":" << r;
      first = false;
    }
    js << "},\"raw_store_commits_per_s\":{";
    first = true;
    for (auto& [s, r] : raw_rates) {
      js << (first ? "" : ",") << "\"" << s << "\":" << r;
      first = false;
    }
    js << "},\"rows\":[";
    std::vector<std::string> names = txc::SplitList(kCsvHeader);
    for (size_t i = 0; i < rows.size(); ++i) {
      std::vector<std::string> values = txc::SplitList(CsvLine(rows[i]));
      js << (i ? "," : "") << "{";
      for (size_t k = 0; k < names.size() && k < values.size(); ++k) {
        const bool text = k < 2;
        js << (k ? "," : "") << "\"" << names[k] << "\":" << (text ? "\"" : "") << values[k]
           << (text ? "\"" : "");
      }
      js << ",\"first_error\":\"" << JsonEscape(rows[i].first_error) << "\"}";
    }
    js << "],\"server_models\":[";
    for (size_t i = 0; i < model_rows.size(); ++i) {
      const ModelRow& m = model_rows[i];
      js << (i ? "," : "") << "{\"server\":\"" << m.model << "\",\"clients\":" << m.clients
         << ",\"calls_per_s\":" << m.calls_per_s << ",\"p50_ms\":" << m.p50
         << ",\"p99_ms\":" << m.p99 << ",\"server_cpu_us_per_call\":" << m.server_cpu_us_per_call
         << ",\"server_threads\":" << m.server_threads << "}";
    }
    js << "],\"slow_participant\":[";
    for (size_t i = 0; i < slow_rows.size(); ++i) {
      const SlowRow& s = slow_rows[i];
      js << (i ? "," : "") << "{\"store\":\"" << s.store << "\",\"phase\":\"" << s.phase
         << "\",\"fast_clients\":" << s.fast_clients << ",\"fast_txn_per_s\":" << s.fast_per_s
         << ",\"fast_p99_ms\":" << s.fast_p99 << ",\"fast_aborted\":" << s.fast_aborted
         << ",\"fast_failed\":" << s.fast_failed << ",\"slow_clients\":" << s.slow_clients
         << ",\"slow_txn_per_s\":" << s.slow_per_s << ",\"slow_p50_ms\":" << s.slow_p50
         << ",\"slow_aborted\":" << s.slow_aborted << ",\"slow_failed\":" << s.slow_failed
         << ",\"coord_threads\":" << s.threads << "}";
    }
    js << "],\"steady\":[";
    for (size_t i = 0; i < steady.size(); ++i) {
      const SteadySample& s = steady[i];
      js << (i ? "," : "") << "{\"store\":\"" << s.store << "\",\"t_s\":" << s.t
         << ",\"txn_per_s\":" << s.txn_per_s << ",\"rss_mb\":" << s.rss_mb
         << ",\"threads\":" << s.threads << ",\"coord_writer_us_per_txn\":" << s.by_thread.writer_us
         << ",\"coord_group_done_us_per_txn\":" << s.by_thread.done_us
         << ",\"coord_participant_io_us_per_txn\":" << s.by_thread.io_us
         << ",\"coord_other_threads_us_per_txn\":" << s.by_thread.rest_us << "}";
    }
    js << "]}\n";
  }
  return any_failed ? 3 : 0;
}
