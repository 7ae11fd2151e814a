// transfer: runs random transfers between two banks through the coordinator,
// then checks that the money total is unchanged and prints a summary.
//
//   transfer --coordinators=127.0.0.1:7000 --bank_a=127.0.0.1:7101 --bank_b=127.0.0.1:7102
//            --bank_a_db="dbname=bank_a ..." --bank_b_db="dbname=bank_b ..."
//            --transfers=1000 --clients=8
//
// Exit code 0 when the total holds, 1 when it does not (or cannot be read).
#include <glog/logging.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>
#include <thread>

#include "common/backoff.h"
#include "common/cli.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "examples/bank-transfer-2pc/transfer_workload.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  bank::TransferOptions o;
  std::string coordinators, db_a, db_b;
  int64_t settle_timeout_ms = 30000;
  po::options_description desc("Flags");
  desc.add_options()("coordinators", po::value<std::string>(&coordinators)->required(),
                     "coordinator replicas host:port,host:port")(
      "bank_a", po::value<std::string>(&o.bank_a)->required(), "bank A participant host:port")(
      "bank_b", po::value<std::string>(&o.bank_b)->required(), "bank B participant host:port")(
      "bank_a_db", po::value<std::string>(&db_a)->required(), "bank A database (libpq string)")(
      "bank_b_db", po::value<std::string>(&db_b)->required(), "bank B database (libpq string)")(
      "accounts",
      po::value<int>(&o.accounts)
          ->default_value(100)
          ->notifier(txc::cli::InRange("accounts", 1, 100000000)),
      "accounts per bank")("max_amount",
                           po::value<int64_t>(&o.max_amount)
                               ->default_value(100)
                               ->notifier(txc::cli::InRange64("max_amount", 1, int64_t{1} << 40)),
                           "largest transfer")(
      "transfers",
      po::value<int>(&o.transfers)
          ->default_value(1000)
          ->notifier(txc::cli::InRange("transfers", 0, 1000000000)),
      "transfers in total")(
      "clients",
      po::value<int>(&o.clients)->default_value(4)->notifier(txc::cli::InRange("clients", 1, 1024)),
      "concurrent clients")("wait_completion", po::bool_switch(&o.wait_completion),
                            "commit waits for phase 2")("branches_in_begin",
                                                        po::bool_switch(&o.branches_in_begin),
                                                        "enlist both branches in beginTxn")(
      "seed", po::value<uint64_t>(&o.seed)->default_value(1), "random seed")(
      "settle_timeout_ms",
      po::value<int64_t>(&settle_timeout_ms)
          ->default_value(30000)
          ->notifier(txc::cli::InRange64("settle_timeout_ms", 0, 3600000)),
      "how long to wait for phase 2 to finish before checking the total");
  txc::cli::TlsFlags tls;
  txc::cli::AddTlsFlags(desc, &tls);
  if (int rc =
          txc::cli::Parse("transfer",
                          "Usage: transfer --coordinators=H:P,... "
                          "--bank_a=H:P --bank_b=H:P --bank_a_db=CONNINFO --bank_b_db=CONNINFO "
                          "[flags]",
                          argc, argv, desc);
      rc >= 0) {
    return rc;
  }
  txc::RouteThriftLogsToGlog();
  o.coordinators = txc::SplitList(coordinators);
  o.tls = tls.Options();

  auto before_a = bank::TotalBalance(db_a);
  auto before_b = bank::TotalBalance(db_b);
  if (!before_a.ok() || !before_b.ok()) {
    std::cerr << "cannot read balances: " << before_a.status() << " " << before_b.status() << "\n";
    return 1;
  }
  const int64_t before = *before_a + *before_b;

  auto stats = bank::RunTransfers(o);
  if (!stats.ok()) {
    std::cerr << "transfer: " << stats.status() << "\n";
    return 2;
  }

  // Phase 2 may still be running behind WAIT_DECISION answers: wait until no
  // branch is left prepared in either bank.
  const int64_t settle_deadline = txc::MonotonicMs() + settle_timeout_ms;
  int64_t prepared = -1;
  while (txc::MonotonicMs() < settle_deadline) {
    auto pa = bank::PreparedCount(db_a);
    auto pb = bank::PreparedCount(db_b);
    if (pa.ok() && pb.ok()) {
      prepared = *pa + *pb;
      if (prepared == 0) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto after_a = bank::TotalBalance(db_a);
  auto after_b = bank::TotalBalance(db_b);
  if (!after_a.ok() || !after_b.ok()) {
    std::cerr << "cannot read balances: " << after_a.status() << " " << after_b.status() << "\n";
    return 1;
  }
  const int64_t after = *after_a + *after_b;
  const int64_t total = stats->committed + stats->aborted;
  printf("transfers: %d in %.2f s with %d clients: %.0f txn/s\n", o.transfers, stats->seconds,
         o.clients, stats->seconds > 0 ? total / stats->seconds : 0.0);
  printf("committed: %lld  aborted: %lld  failed: %lld\n", static_cast<long long>(stats->committed),
         static_cast<long long>(stats->aborted), static_cast<long long>(stats->failed));
  printf("latency: p50 %.2f ms  p99 %.2f ms\n", stats->PercentileMs(50), stats->PercentileMs(99));
  if (!stats->first_error.empty()) printf("first error: %s\n", stats->first_error.c_str());
  printf("bank A: %lld  bank B: %lld  total before: %lld  after: %lld  still prepared: %lld\n",
         static_cast<long long>(*after_a), static_cast<long long>(*after_b),
         static_cast<long long>(before), static_cast<long long>(after),
         static_cast<long long>(prepared));
  if (after != before || prepared != 0) {
    printf("MONEY NOT CONSERVED\n");
    return 1;
  }
  printf("money conserved\n");
  return 0;
}
