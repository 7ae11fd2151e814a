// The bank-transfer workload: N random transfers between accounts of two
// banks, each a global 2PC transaction (begin, enlist a debit at one bank and
// a credit at the other, commit), run by C concurrent clients. Used by the
// `transfer` client, the 2PC process tests and the bench.
//
// Thread-safety: RunTransfers may be called from any thread; it starts its own.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tls.h"

namespace bank {

struct TransferOptions {
  std::vector<std::string> coordinators;  // "host:port" of every coordinator replica
  txc::TlsOptions tls{};                  // TLS to the coordinators when enabled()
  std::string bank_a;                     // endpoint of bank A's participant server
  std::string bank_b;
  int accounts = 100;        // accounts 0..accounts-1 in each bank
  int64_t max_amount = 100;  // each transfer moves 1..max_amount
  int transfers = 1000;      // in total, over all clients
  int clients = 4;
  bool wait_completion = false;    // WAIT_COMPLETION instead of WAIT_DECISION
  bool branches_in_begin = false;  // enlist both branches in beginTxn (one round trip less)
  int64_t txn_timeout_ms = 10000;
  int64_t rpc_timeout_ms = 10000;
  uint64_t seed = 1;
};

struct TransferStats {
  int64_t committed = 0;
  int64_t aborted = 0;  // e.g. insufficient funds: a participant voted ABORT
  int64_t failed = 0;   // no answer (coordinator unreachable, ...): outcome left to recovery
  double seconds = 0;
  std::vector<int64_t> latencies_us;  // of committed and aborted transfers, sorted
  std::string first_error;

  double PercentileMs(double p) const;
};

// Runs the transfers. kInvalidArgument for bad options; per-transfer errors
// are counted in `failed`, not returned.
txc::Result<TransferStats> RunTransfers(const TransferOptions& options);

// Sum of all balances of a bank's database (libpq connection string).
txc::Result<int64_t> TotalBalance(const std::string& conninfo);
// Prepared transactions (PREPARE TRANSACTION, not yet decided) in that database.
txc::Result<int64_t> PreparedCount(const std::string& conninfo);

}  // namespace bank
