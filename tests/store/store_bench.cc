// Raw store commit rates (a measurement, not a test):
//   store_bench sqlite|postgresql [seconds]
// Starts its own throwaway store (a temp SQLite file or a PgCluster) and
// reports (1) a single-row Apply loop: one transaction insert per store
// commit, from one thread; (2) the same through a GroupCommitter from 32
// threads: batches/s and batches per commit.
#include <glog/logging.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"

namespace {

txc::WriteBatch Batch(const std::string& gtid) {
  txc::WriteBatch b;
  txc::TxnRecord t;
  t.gtid = gtid;
  t.owner = "bench";
  t.epoch = 1;
  t.payload = std::string(100, 'p');
  b.insert_txns.push_back(t);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  if (argc < 2) {
    fprintf(stderr, "usage: %s sqlite|postgresql [seconds]\n", argv[0]);
    return 2;
  }
  const std::string backend = argv[1];
  const double seconds = argc > 2 ? atof(argv[2]) : 3.0;
  txc::testing::TempDir dir("txc-bench-");
  std::unique_ptr<txc::testing::PgCluster> pg;
  std::string location = dir.Child("bench.db");
  if (backend != "sqlite") {
    auto started = txc::testing::PgCluster::Start({});
    if (!started.ok()) {
      fprintf(stderr, "%s\n", started.status().ToString().c_str());
      return 1;
    }
    pg = std::move(started).value();
    location = pg->ConnectionString("postgres");
  }
  auto store = txc::OpenStore(location);
  if (!store.ok() || !(*store)->Migrate().ok()) {
    fprintf(stderr, "cannot open/migrate %s\n", location.c_str());
    return 1;
  }

  // (1) single-row Apply loop.
  int64_t n = 0;
  int64_t start = txc::MonotonicMs();
  const int64_t end1 = start + static_cast<int64_t>(seconds * 1000);
  while (txc::MonotonicMs() < end1) {
    txc::Status s = (*store)->Apply(Batch("single-" + std::to_string(n++)));
    if (!s.ok()) {
      fprintf(stderr, "%s\n", s.ToString().c_str());
      return 1;
    }
  }
  double elapsed = (txc::MonotonicMs() - start) / 1000.0;
  printf("%s single-row Apply loop: %.0f commits/s (%lld in %.1f s)\n", backend.c_str(),
         n / elapsed, static_cast<long long>(n), elapsed);

  // (2) GroupCommitter, 32 writer threads.
  const txc::StoreStats before = (*store)->Stats();
  std::atomic<int64_t> done{0};
  {
    txc::GroupCommitter committer(store->get(), txc::GroupCommitOptions{});
    start = txc::MonotonicMs();
    const int64_t end2 = start + static_cast<int64_t>(seconds * 1000);
    std::vector<std::thread> threads;
    for (int w = 0; w < 32; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; txc::MonotonicMs() < end2; ++i) {
          if (committer.Write(Batch("gc-" + std::to_string(w) + "-" + std::to_string(i))).ok()) {
            ++done;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  elapsed = (txc::MonotonicMs() - start) / 1000.0;
  const txc::StoreStats after = (*store)->Stats();
  printf("%s group commit, 32 writers: %.0f batches/s, %.1f batches per commit\n", backend.c_str(),
         done / elapsed,
         static_cast<double>(after.batches - before.batches) /
             std::max<int64_t>(1, after.commits - before.commits));
  return 0;
}
