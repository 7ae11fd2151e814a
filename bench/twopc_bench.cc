// twopc_bench: throughput and latency of the 2PC bank transfer (two
// participants, each a `bank` process on its own PostgreSQL database), at 1
// and 32 concurrent clients, with the coordinator's store on SQLite and on
// PostgreSQL. Next to each: store transactions per global transaction (from
// the GroupCommitter's counters) and the raw commit rate of the same store
// measured in the same run (a single-row Apply loop).
//
//   twopc_bench [--transfers_1=400] [--transfers_32=4000] [--raw_ms=2000]
//
// Starts its own throwaway PostgreSQL (tests/harness), the coordinator
// in-process (CoordinatorServer), and two bank processes. Not a test: it only
// reports numbers.
#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/cli.h"
#include "coordinator/server/coordinator_server.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace po = boost::program_options;
using txc::testing::ChildProcess;

namespace {

struct Row {
  std::string store;
  int clients = 0;
  bool branches_in_begin = false;
  double txn_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double store_txns_per_global = 0;
  double raw_commits_per_s = 0;
  int64_t committed = 0, aborted = 0, failed = 0;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;
  int transfers_1 = 400, transfers_32 = 4000;
  int64_t raw_ms = 2000;
  std::string bank_bin;
  std::string stores = "sqlite,postgresql";
  bool also_branches_in_begin = false;
  po::options_description desc("Flags");
  desc.add_options()("transfers_1", po::value<int>(&transfers_1)->default_value(400),
                     "transfers with 1 client")(
      "transfers_32", po::value<int>(&transfers_32)->default_value(4000),
      "transfers with 32 clients")("raw_ms", po::value<int64_t>(&raw_ms)->default_value(2000),
                                   "duration of the raw store commit loop")(
      "bank_bin", po::value<std::string>(&bank_bin)->default_value(TXC_BANK_BIN),
      "the bank executable")("stores", po::value<std::string>(&stores)->default_value(stores),
                             "coordinator stores to measure: sqlite,postgresql")(
      "also_branches_in_begin", po::bool_switch(&also_branches_in_begin),
      "also measure with both branches enlisted by beginTxn (two round trips less)");
  po::variables_map vm;
  if (int rc = txc::cli::Parse(
          "twopc_bench",
          "Usage: twopc_bench [flags]  (2PC bank-transfer throughput; see bench/README.md)", argc,
          argv, desc, &vm);
      rc >= 0) {
    return rc;
  }

  auto pg_or = txc::testing::PgCluster::Start({});
  if (!pg_or.ok()) {
    fprintf(stderr, "PostgreSQL: %s\n", pg_or.status().ToString().c_str());
    return 1;
  }
  auto pg = std::move(pg_or).value();
  txc::testing::TempDir dir("txc-twopc-bench-");
  const std::string db_a = pg->ConnectionString(pg->CreateUniqueDatabase("bank_a"));
  const std::string db_b = pg->ConnectionString(pg->CreateUniqueDatabase("bank_b"));
  const std::string db_store = pg->ConnectionString(pg->CreateUniqueDatabase("coordinator"));
  constexpr int kAccounts = 1000;

  std::vector<Row> rows;
  for (const std::string store_kind : {"sqlite", "postgresql"}) {
    if (stores.find(store_kind) == std::string::npos) continue;
    auto started = txc::bench::StartCoordinator(store_kind, dir.Child("coordinator-" + store_kind),
                                                store_kind == "postgresql" ? db_store : "");
    if (!started.ok()) {
      fprintf(stderr, "coordinator (%s): %s\n", store_kind.c_str(),
              started.status().ToString().c_str());
      return 1;
    }
    txc::CoordinatorServer& server = **started;
    const std::string coordinator = "127.0.0.1:" + std::to_string(server.port());

    std::vector<std::unique_ptr<ChildProcess>> banks;
    std::vector<std::string> endpoints;
    for (int i = 0; i < 2; ++i) {
      const int port = txc::testing::FreeLoopbackPort();
      ChildProcess::Options b;
      b.argv = {bank_bin,
                "--port=" + std::to_string(port),
                "--db=" + (i == 0 ? db_a : db_b),
                "--coordinators=" + coordinator,
                std::string("--name=bank_") + static_cast<char>('a' + i),
                "--accounts=" + std::to_string(kAccounts),
                "--initial_balance=1000000"};
      b.log_path = dir.Child("bank_" + std::to_string(i) + "_" + store_kind + ".log");
      auto child = ChildProcess::Start(b);
      if (!child.ok() || !txc::testing::WaitForPort(port, 30000).ok()) {
        fprintf(stderr, "bank %d did not start\n", i);
        return 1;
      }
      banks.push_back(std::move(child).value());
      endpoints.push_back("127.0.0.1:" + std::to_string(port));
    }

    const double raw = txc::bench::RawCommitRate(server.store(), raw_ms, store_kind,
                                                 txc::TxnKind::kTwoPhase, txc::TxnState::kAborted);
    std::vector<std::pair<int, bool>> runs = {{1, false}, {32, false}};
    if (also_branches_in_begin) {
      runs.push_back({1, true});
      runs.push_back({32, true});
    }
    for (auto [clients, in_begin] : runs) {
      bank::TransferOptions t;
      t.branches_in_begin = in_begin;
      t.coordinators = {coordinator};
      t.bank_a = endpoints[0];
      t.bank_b = endpoints[1];
      t.accounts = kAccounts;
      t.clients = clients;
      t.transfers = clients == 1 ? transfers_1 : transfers_32;
      t.seed = clients;
      // Warm-up: connections, prepared statements.
      bank::TransferOptions warm = t;
      warm.transfers = std::max(clients * 2, 20);
      (void)bank::RunTransfers(warm);

      const auto before = server.log()->GetStats();
      auto stats = bank::RunTransfers(t);
      const auto after = server.log()->GetStats();
      if (!stats.ok()) {
        fprintf(stderr, "transfers: %s\n", stats.status().ToString().c_str());
        return 1;
      }
      Row row;
      row.store = store_kind;
      row.clients = clients;
      row.branches_in_begin = in_begin;
      const int64_t done = stats->committed + stats->aborted;
      row.txn_per_s = stats->seconds > 0 ? done / stats->seconds : 0;
      row.p50_ms = stats->PercentileMs(50);
      row.p99_ms = stats->PercentileMs(99);
      row.store_txns_per_global =
          done > 0 ? static_cast<double>(after.groups - before.groups) / done : 0;
      row.raw_commits_per_s = raw;
      row.committed = stats->committed;
      row.aborted = stats->aborted;
      row.failed = stats->failed;
      rows.push_back(row);
      fprintf(stderr, "%s, %d clients: %.0f txn/s (%s)\n", store_kind.c_str(), clients,
              row.txn_per_s, stats->first_error.c_str());
    }
    txc::bench::StopChildren(banks);
    server.Stop();
  }

  printf("\n2PC bank transfer, 2 participants (bank processes on PostgreSQL), WAIT_DECISION\n");
  printf(
      "| store      | clients | enlist   | global txn/s | p50 ms | p99 ms | store txns / global "
      "txn |"
      " raw store commits/s (1-row Apply loop) | committed | aborted | failed |\n");
  printf(
      "|------------|--------:|----------|-------------:|-------:|-------:|------------------------"
      ":|"
      "----------------------------------------:|----------:|--------:|-------:|\n");
  for (const Row& r : rows) {
    printf(
        "| %-10s | %7d | %-8s | %12.0f | %6.2f | %6.2f | %23.2f | %39.0f | %9lld | %7lld | %6lld "
        "|\n",
        r.store.c_str(), r.clients, r.branches_in_begin ? "in begin" : "2 calls", r.txn_per_s,
        r.p50_ms, r.p99_ms, r.store_txns_per_global, r.raw_commits_per_s,
        static_cast<long long>(r.committed), static_cast<long long>(r.aborted),
        static_cast<long long>(r.failed));
  }
  return 0;
}
