// saga_bench: throughput and latency of the 4-step order saga
// (examples/order-payment-saga: create order -> reserve stock -> charge payment
// -> confirm order; three service processes, each on its own SQLite database
// under the SDK barrier) at 1 and 32 concurrent clients, with the
// coordinator's store on SQLite and on PostgreSQL. Each client submits with
// wait_for_completion, so the latency is the whole saga. Next to each: store
// transactions per saga (GroupCommitter groups), WriteBatches the saga driver
// logged per saga, and the raw commit rate of the same store measured in the
// same run (a single-row Apply loop).
//
//   saga_bench [--sagas_1=300] [--sagas_32=3000] [--raw_ms=2000] [--no_pg]
//
// Starts the coordinator in-process (CoordinatorServer), a throwaway
// PostgreSQL (tests/harness) for the PostgreSQL rows, and the three services.
// Not a test: it only reports numbers.
#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/backoff.h"
#include "common/cli.h"
#include "coordinator/server/coordinator_server.h"
#include "examples/order-payment-saga/shop.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "txc/participant/coordinator_client.h"

namespace po = boost::program_options;
using txc::testing::ChildProcess;

namespace {

struct Row {
  std::string store;
  int clients = 0;
  double sagas_per_s = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double store_txns_per_saga = 0;
  double batches_per_saga = 0;
  double raw_commits_per_s = 0;
  int64_t succeeded = 0, other = 0;
};

struct RunStats {
  std::vector<double> latencies_ms;
  int64_t succeeded = 0, other = 0;
  double seconds = 0;
  std::string first_error;
  double Percentile(double p) {
    if (latencies_ms.empty()) return 0;
    std::sort(latencies_ms.begin(), latencies_ms.end());
    size_t i = static_cast<size_t>(p / 100.0 * (latencies_ms.size() - 1) + 0.5);
    return latencies_ms[std::min(i, latencies_ms.size() - 1)];
  }
};

RunStats RunSagas(txc::participant::CoordinatorClient* client, const shop::ShopEndpoints& ep,
                  const std::string& prefix, int clients, int sagas) {
  RunStats stats;
  std::mutex mu;
  std::atomic<int> next{0};
  shop::PlaceOptions options;
  const int64_t start = txc::MonotonicMs();
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      for (int i = next++; i < sagas; i = next++) {
        shop::Order order{prefix + "-" + std::to_string(i), "rich", "widget", 1, 100};
        auto req = shop::MakeOrderSagaRequest(ep, order, options);
        const int64_t t0 = txc::MonotonicMs();
        auto resp = client->SubmitSaga(req);
        const double ms = static_cast<double>(txc::MonotonicMs() - t0);
        std::lock_guard<std::mutex> lock(mu);
        if (resp.ok() && resp->state == txc::wire::TxnState::SUCCEEDED) {
          ++stats.succeeded;
          stats.latencies_ms.push_back(ms);
        } else {
          ++stats.other;
          if (stats.first_error.empty()) {
            stats.first_error =
                resp.ok() ? "state " + std::to_string(resp->state) : resp.status().ToString();
          }
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  stats.seconds = (txc::MonotonicMs() - start) / 1000.0;
  return stats;
}

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 2;
  int sagas_1 = 300, sagas_32 = 3000;
  int64_t raw_ms = 2000;
  po::options_description desc("Flags");
  desc.add_options()("sagas_1", po::value<int>(&sagas_1)->default_value(300),
                     "sagas with 1 client")(
      "sagas_32", po::value<int>(&sagas_32)->default_value(3000), "sagas with 32 clients")(
      "raw_ms", po::value<int64_t>(&raw_ms)->default_value(2000),
      "duration of the raw store commit loop")("no_pg", "SQLite store only");
  po::variables_map vm;
  if (int rc = txc::cli::Parse(
          "saga_bench", "Usage: saga_bench [flags]  (order-saga throughput; see bench/README.md)",
          argc, argv, desc, &vm);
      rc >= 0) {
    return rc;
  }
  const bool with_pg = vm.count("no_pg") == 0;

  txc::testing::TempDir dir("txc-saga-bench-");
  std::unique_ptr<txc::testing::PgCluster> pg;
  std::string pg_store;
  if (with_pg) {
    auto pg_or = txc::testing::PgCluster::Start({});
    if (!pg_or.ok()) {
      fprintf(stderr, "PostgreSQL: %s\n", pg_or.status().ToString().c_str());
      return 1;
    }
    pg = std::move(pg_or).value();
    pg_store = pg->ConnectionString(pg->CreateUniqueDatabase("coordinator"));
  }

  std::vector<Row> rows;
  std::vector<std::string> kinds = {"sqlite"};
  if (with_pg) kinds.push_back("postgresql");
  for (const std::string& store_kind : kinds) {
    auto started = txc::bench::StartCoordinator(store_kind, dir.Child("coordinator-" + store_kind),
                                                store_kind == "postgresql" ? pg_store : "");
    if (!started.ok()) {
      fprintf(stderr, "coordinator (%s): %s\n", store_kind.c_str(),
              started.status().ToString().c_str());
      return 1;
    }
    txc::CoordinatorServer& server = **started;
    shop::ShopEndpoints ep;
    ep.coordinator = "127.0.0.1:" + std::to_string(server.port());

    std::vector<std::unique_ptr<ChildProcess>> services;
    for (const std::string name : {"order", "payment", "inventory"}) {
      const int port = txc::testing::FreeLoopbackPort();
      ChildProcess::Options s;
      s.argv = {name == "order"     ? TXC_ORDER_SERVICE_BIN
                : name == "payment" ? TXC_PAYMENT_SERVICE_BIN
                                    : TXC_INVENTORY_SERVICE_BIN,
                "--db=" + dir.Child(name + "-" + store_kind + ".db"),
                "--port=" + std::to_string(port), "--coordinator=" + ep.coordinator};
      if (name == "payment") s.argv.push_back("--seed=rich:1000000000000");
      if (name == "inventory") s.argv.push_back("--seed=widget:1000000000:100");
      s.log_path = dir.Child(name + "-" + store_kind + ".log");
      auto child = ChildProcess::Start(s);
      if (!child.ok() || !txc::testing::WaitForPort(port, 30000).ok()) {
        fprintf(stderr, "%s service did not start\n", name.c_str());
        return 1;
      }
      services.push_back(std::move(child).value());
      const std::string endpoint = "127.0.0.1:" + std::to_string(port);
      if (name == "order") ep.order = endpoint;
      if (name == "payment") ep.payment = endpoint;
      if (name == "inventory") ep.inventory = endpoint;
    }

    txc::participant::CoordinatorClientOptions co;
    co.endpoints = {ep.coordinator};
    co.rpc_timeout_ms = 60000;
    auto client = txc::participant::CoordinatorClient::Create(co);
    if (!client.ok()) return 1;

    const double raw = txc::bench::RawCommitRate(server.store(), raw_ms, store_kind,
                                                 txc::TxnKind::kSaga, txc::TxnState::kSucceeded);
    for (int clients : {1, 32}) {
      const std::string prefix = store_kind + "-" + std::to_string(clients);
      (void)RunSagas(client->get(), ep, prefix + "-warm", clients, std::max(clients * 2, 20));
      const auto groups_before = server.log()->GetStats().groups;
      const auto batches_before = server.saga_driver()->GetStats().batches_written;
      RunStats stats =
          RunSagas(client->get(), ep, prefix, clients, clients == 1 ? sagas_1 : sagas_32);
      const auto groups_after = server.log()->GetStats().groups;
      const auto batches_after = server.saga_driver()->GetStats().batches_written;
      Row row;
      row.store = store_kind;
      row.clients = clients;
      const int64_t done = stats.succeeded + stats.other;
      row.sagas_per_s = stats.seconds > 0 ? stats.succeeded / stats.seconds : 0;
      row.p50_ms = stats.Percentile(50);
      row.p99_ms = stats.Percentile(99);
      row.store_txns_per_saga =
          done > 0 ? static_cast<double>(groups_after - groups_before) / done : 0;
      row.batches_per_saga =
          done > 0 ? static_cast<double>(batches_after - batches_before) / done : 0;
      row.raw_commits_per_s = raw;
      row.succeeded = stats.succeeded;
      row.other = stats.other;
      rows.push_back(row);
      fprintf(stderr, "%s, %d clients: %.0f sagas/s %s\n", store_kind.c_str(), clients,
              row.sagas_per_s, stats.first_error.c_str());
    }
    txc::bench::StopChildren(services);
    server.Stop();
  }

  printf(
      "\nSaga: 4-step order saga, 3 services (processes, SQLite + barrier), wait_for_completion\n");
  printf(
      "| store      | clients | sagas/s | p50 ms | p99 ms | store txns / saga |"
      " driver batches / saga | raw store commits/s (1-row Apply loop) | succeeded | other |\n");
  printf(
      "|------------|--------:|--------:|-------:|-------:|------------------:|"
      "---------------------:|----------------------------------------:|----------:|------:|\n");
  for (const Row& r : rows) {
    printf("| %-10s | %7d | %7.0f | %6.2f | %6.2f | %17.2f | %20.2f | %39.0f | %9lld | %5lld |\n",
           r.store.c_str(), r.clients, r.sagas_per_s, r.p50_ms, r.p99_ms, r.store_txns_per_saga,
           r.batches_per_saga, r.raw_commits_per_s, static_cast<long long>(r.succeeded),
           static_cast<long long>(r.other));
  }
  return 0;
}
