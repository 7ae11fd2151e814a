#include "examples/bank-transfer-2pc/transfer_workload.h"

#include <glog/logging.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <pqxx/pqxx>
#include <random>
#include <thread>

#include "common/backoff.h"
#include "examples/bank-transfer-2pc/bank_payload.h"
#include "txc/participant/coordinator_client.h"

namespace bank {

double TransferStats::PercentileMs(double p) const {
  if (latencies_us.empty()) return 0;
  size_t index = static_cast<size_t>(p / 100.0 * (latencies_us.size() - 1) + 0.5);
  return latencies_us[std::min(index, latencies_us.size() - 1)] / 1000.0;
}

txc::Result<TransferStats> RunTransfers(const TransferOptions& options) {
  if (options.coordinators.empty() || options.bank_a.empty() || options.bank_b.empty() ||
      options.accounts < 1 || options.clients < 1 || options.max_amount < 1) {
    return txc::Status::InvalidArgument("transfer options incomplete");
  }
  txc::participant::CoordinatorClientOptions co;
  co.endpoints = options.coordinators;
  co.rpc_timeout_ms = static_cast<int>(options.rpc_timeout_ms);
  co.call_deadline_ms = options.rpc_timeout_ms * 2;
  co.tls = options.tls;
  TXC_ASSIGN_OR_RETURN(auto client, txc::participant::CoordinatorClient::Create(co));

  std::atomic<int> next{0};
  std::mutex mu;  // guards stats
  TransferStats stats;
  const int64_t start = txc::MonotonicMs();
  auto worker = [&](int id) {
    std::mt19937_64 rng(options.seed * 1000003 + id);
    std::uniform_int_distribution<int> account(0, options.accounts - 1);
    std::uniform_int_distribution<int64_t> amount(1, options.max_amount);
    std::vector<int64_t> latencies;
    int64_t committed = 0, aborted = 0, failed = 0;
    std::string first_error;
    while (next.fetch_add(1) < options.transfers) {
      const bool a_to_b = rng() % 2 == 0;
      const int64_t amt = amount(rng);
      txc::wire::BranchSpec debit, credit;
      debit.branch_id = "debit";
      debit.endpoint = a_to_b ? options.bank_a : options.bank_b;
      debit.resource = a_to_b ? "bank_a" : "bank_b";
      debit.payload = DebitPayload(account(rng), amt);
      credit.branch_id = "credit";
      credit.endpoint = a_to_b ? options.bank_b : options.bank_a;
      credit.resource = a_to_b ? "bank_b" : "bank_a";
      credit.payload = CreditPayload(account(rng), amt);

      const auto t0 = std::chrono::steady_clock::now();
      txc::wire::BeginRequest begin;
      begin.timeout_ms = options.txn_timeout_ms;
      if (options.branches_in_begin) begin.__set_branches({debit, credit});
      auto begun = client->Begin(begin);
      txc::Status s = begun.status();
      txc::Result<txc::wire::CommitResponse> committed_or = txc::Status::Internal("not run");
      if (s.ok() && !options.branches_in_begin) {
        txc::wire::EnlistRequest e;
        e.gtid = begun->gtid;
        e.branch = debit;
        s = client->Enlist(e);
        if (s.ok()) {
          e.branch = credit;
          s = client->Enlist(e);
        }
      }
      if (s.ok()) {
        txc::wire::CommitRequest c;
        c.gtid = begun->gtid;
        c.wait = options.wait_completion ? txc::wire::CommitWait::WAIT_COMPLETION
                                         : txc::wire::CommitWait::WAIT_DECISION;
        c.wait_timeout_ms = options.rpc_timeout_ms / 2;
        committed_or = client->Commit(c);
        s = committed_or.status();
      }
      const int64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - t0)
                             .count();
      if (!s.ok()) {
        ++failed;
        if (first_error.empty()) first_error = s.ToString();
        continue;
      }
      latencies.push_back(us);
      if (committed_or->outcome == txc::wire::Outcome::OUTCOME_COMMIT) {
        ++committed;
      } else {
        ++aborted;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    stats.committed += committed;
    stats.aborted += aborted;
    stats.failed += failed;
    stats.latencies_us.insert(stats.latencies_us.end(), latencies.begin(), latencies.end());
    if (stats.first_error.empty()) stats.first_error = first_error;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < options.clients; ++i) threads.emplace_back(worker, i);
  for (auto& t : threads) t.join();
  stats.seconds = (txc::MonotonicMs() - start) / 1000.0;
  std::sort(stats.latencies_us.begin(), stats.latencies_us.end());
  return stats;
}

txc::Result<int64_t> TotalBalance(const std::string& conninfo) {
  try {
    pqxx::connection conn(conninfo);
    pqxx::nontransaction n(conn);
    return n.exec1("SELECT coalesce(sum(balance), 0) FROM account")[0].as<int64_t>();
  } catch (const std::exception& e) {
    return txc::Status::Unavailable(std::string("total balance: ") + e.what());
  }
}

txc::Result<int64_t> PreparedCount(const std::string& conninfo) {
  try {
    pqxx::connection conn(conninfo);
    pqxx::nontransaction n(conn);
    return n.exec1("SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")[0]
        .as<int64_t>();
  } catch (const std::exception& e) {
    return txc::Status::Unavailable(std::string("prepared count: ") + e.what());
  }
}

}  // namespace bank
