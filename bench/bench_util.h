// Pieces the benchmarks (twopc_bench, saga_bench) share: the raw store commit
// loop, starting the in-process coordinator on one store, and stopping the
// participant processes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/core/states.h"
#include "coordinator/server/coordinator_server.h"
#include "coordinator/store/txn_store.h"
#include "tests/harness/process.h"

namespace txc::bench {

// Single-row Apply loop for `duration_ms`: one final transaction row of `kind`
// in `state` ("raw-<tag>-<n>") inserted per store transaction. Returns commits
// per second (stops at the first error, logged).
double RawCommitRate(TxnStore* store, int64_t duration_ms, const std::string& tag, TxnKind kind,
                     TxnState state);

// Starts a coordinator on 127.0.0.1 (a free port), node id "bench-<store_kind>",
// data in `data_dir`, its store `store` ("" for the default SQLite store).
Result<std::unique_ptr<CoordinatorServer>> StartCoordinator(const std::string& store_kind,
                                                            const std::string& data_dir,
                                                            const std::string& store);

// SIGTERM to every child, then waits up to 10 s for each.
void StopChildren(const std::vector<std::unique_ptr<testing::ChildProcess>>& children);

}  // namespace txc::bench
