// Helper for crash_durability_test: writes transactions through a
// GroupCommitter from several threads and prints each gtid on stdout (one
// write(2) per line) as soon as its Write() returned OK, until killed or done.
//
//   store_write_child <location> <gtid-prefix> <threads> <max-records>
#include <glog/logging.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  if (argc != 5) {
    fprintf(stderr, "usage: %s <location> <gtid-prefix> <threads> <max-records>\n", argv[0]);
    return 2;
  }
  const std::string location = argv[1];
  const std::string prefix = argv[2];
  const int threads = atoi(argv[3]);
  const int64_t max_records = atoll(argv[4]);
  auto store = txc::OpenStore(location);
  if (!store.ok()) {
    fprintf(stderr, "OpenStore: %s\n", store.status().ToString().c_str());
    return 2;
  }
  txc::GroupCommitter committer(store->get(), txc::GroupCommitOptions{});
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < threads; ++w) {
    workers.emplace_back([&] {
      while (!failed) {
        int64_t i = next++;
        if (i >= max_records) return;
        const std::string gtid = prefix + "-" + std::to_string(i);
        txc::WriteBatch batch;
        txc::TxnRecord t;
        t.gtid = gtid;
        t.owner = "crash-child";
        t.epoch = 1;
        t.created_ms = 1;
        t.payload = std::string("\0ack\0", 5) + gtid;
        batch.insert_txns.push_back(t);
        for (const char* id : {"b1", "b2"}) {
          txc::BranchRecord b;
          b.gtid = gtid;
          b.branch_id = id;
          b.payload = std::string("\0", 1) + id;
          batch.insert_branches.push_back(b);
        }
        txc::Status s = committer.Write(std::move(batch));
        if (!s.ok()) {
          fprintf(stderr, "write %s: %s\n", gtid.c_str(), s.ToString().c_str());
          failed = true;
          return;
        }
        const std::string line = gtid + "\n";
        if (write(STDOUT_FILENO, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
          failed = true;
          return;
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  return failed ? 1 : 0;
}
