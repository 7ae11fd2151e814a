// Raw store commit rates (a measurement, not a test):
//   store_bench sqlite|postgresql [seconds]
// Starts its own throwaway store (a temp SQLite file or a PgCluster) and
// reports (1) a single-row Apply loop: one transaction insert per store
// commit, from one thread; (2) the same through a GroupCommitter from 32
// threads: batches/s and batches per commit; (3) the writes of 2PC
// transactions as the driver makes them (begin with 2 branches, PREPARING,
// the decision with the votes, the final state with the acks), applied in
// groups that hold every stage at once like the coordinator's under load:
// the writer thread's CPU per transaction (the thread's own clock, so other
// processes' load does not count), a figure to compare store changes by.
#include <glog/logging.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/ids.h"
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

txc::TxnUpdate Move(const std::string& gtid, txc::TxnState from, txc::TxnState to) {
  txc::TxnUpdate u;
  u.gtid = gtid;
  u.expected_owner = "bench";
  u.expected_epoch = 1;
  u.expected_states = {from};
  u.state = to;
  return u;
}

txc::BranchUpdate MoveBranch(const std::string& gtid, const std::string& branch,
                             txc::BranchState from, txc::BranchState to) {
  txc::BranchUpdate u;
  u.gtid = gtid;
  u.branch_id = branch;
  u.expected_owner = "bench";
  u.expected_epoch = 1;
  if (from != to) u.expected_states = {from};
  u.state = to;
  return u;
}

// Stage `stage` (0 begin .. 3 final) of the 2PC transaction `gtid`.
txc::WriteBatch TwoPhaseStage(const std::string& gtid, int stage, int64_t now_ms) {
  using txc::BranchState;
  using txc::TxnState;
  txc::WriteBatch b;
  switch (stage) {
    case 0: {
      txc::TxnRecord t;
      t.gtid = gtid;
      t.kind = txc::TxnKind::kTwoPhase;
      t.state = TxnState::kActive;
      t.owner = "bench";
      t.epoch = 1;
      t.created_ms = now_ms;
      t.deadline_ms = now_ms + 60000;
      t.next_attempt_ms = t.deadline_ms;
      b.insert_txns.push_back(t);
      for (int i = 0; i < 2; ++i) {
        txc::BranchRecord br;
        br.gtid = gtid;
        br.branch_id = "b" + std::to_string(i);
        br.ordinal = i;
        br.endpoint = "127.0.0.1:700" + std::to_string(i);
        br.resource = "noop";
        br.state = BranchState::kRegistered;
        b.insert_branches.push_back(br);
      }
      break;
    }
    case 1: {
      txc::TxnUpdate u = Move(gtid, TxnState::kActive, TxnState::kPreparing);
      u.flags = 1;
      u.next_attempt_ms = now_ms + 10000;
      u.expected_branch_count = 2;
      b.txn_updates.push_back(u);
      break;
    }
    case 2:
    case 3: {
      const bool decision = stage == 2;
      for (int i = 0; i < 2; ++i) {
        txc::BranchUpdate bu = decision
                                   ? MoveBranch(gtid, "b" + std::to_string(i),
                                                BranchState::kRegistered, BranchState::kPrepared)
                                   : MoveBranch(gtid, "b" + std::to_string(i),
                                                BranchState::kPrepared, BranchState::kPrepared);
        if (!decision) {
          bu.expected_states.clear();
          bu.state = BranchState::kBranchCommitted;
          bu.attempts = 1;
        }
        b.branch_updates.push_back(bu);
      }
      txc::TxnUpdate u = decision ? Move(gtid, TxnState::kPreparing, TxnState::kCommitting)
                                  : Move(gtid, TxnState::kCommitting, TxnState::kCommitted);
      if (decision) u.next_attempt_ms = now_ms + 10000;
      b.txn_updates.push_back(u);
      break;
    }
  }
  return b;
}

// This thread's user and system CPU so far, in microseconds.
std::pair<double, double> ThreadCpuUs() {
  rusage ru{};
  getrusage(RUSAGE_THREAD, &ru);
  return {ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec,
          ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec};
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

  // (3) 2PC-shaped groups: each holds kPerStage transactions at each of the
  // four stages (the coordinator's groups at 64 clients hold ~4 transactions'
  // worth of writes).
  constexpr int kPerStage = 4;
  std::vector<std::string> gtids;
  int64_t groups = 0;
  double user_us = 0;
  double sys_us = 0;
  start = txc::MonotonicMs();
  const int64_t end3 = start + static_cast<int64_t>(seconds * 1000);
  for (int64_t round = 0; txc::MonotonicMs() < end3 || round < 4; ++round) {
    for (int i = 0; i < kPerStage; ++i) gtids.push_back(txc::NewId("bench"));
    std::vector<txc::WriteBatch> batches;
    const int64_t now_ms = txc::NowUnixMs();
    for (int stage = 0; stage < 4; ++stage) {
      const int64_t first = static_cast<int64_t>(gtids.size()) - kPerStage * (stage + 1);
      if (first < 0) continue;
      for (int i = 0; i < kPerStage; ++i) {
        batches.push_back(TwoPhaseStage(gtids[first + i], stage, now_ms));
      }
    }
    std::vector<const txc::WriteBatch*> ptrs;
    for (const auto& b : batches) ptrs.push_back(&b);
    const auto cpu0 = ThreadCpuUs();
    std::vector<txc::Status> statuses = (*store)->ApplyGroup(ptrs);
    const auto cpu1 = ThreadCpuUs();
    if (round >= 4) {  // every stage present from the fourth round on
      user_us += cpu1.first - cpu0.first;
      sys_us += cpu1.second - cpu0.second;
      ++groups;
    }
    for (const auto& st : statuses) {
      if (!st.ok()) {
        fprintf(stderr, "2pc-shaped group: %s\n", st.ToString().c_str());
        return 1;
      }
    }
  }
  elapsed = (txc::MonotonicMs() - start) / 1000.0;
  const double txns = static_cast<double>(groups * kPerStage);
  printf(
      "%s 2pc-shaped groups (%d txns per stage, 4 stages): writer CPU per txn %.1f us user + "
      "%.1f us system, %.0f txns/s on one thread (%lld groups)\n",
      backend.c_str(), kPerStage, user_us / txns, sys_us / txns, txns / elapsed,
      static_cast<long long>(groups));
  return 0;
}
