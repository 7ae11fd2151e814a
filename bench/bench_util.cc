#include "bench/bench_util.h"

#include <glog/logging.h>
#include <signal.h>

#include "common/backoff.h"

namespace txc::bench {

double RawCommitRate(TxnStore* store, int64_t duration_ms, const std::string& tag, TxnKind kind,
                     TxnState state) {
  const int64_t start = MonotonicMs();
  const int64_t end = start + duration_ms;
  int64_t n = 0;
  while (MonotonicMs() < end) {
    WriteBatch batch;
    TxnRecord txn;
    txn.gtid = "raw-" + tag + "-" + std::to_string(n);
    txn.kind = kind;
    txn.state = state;
    txn.owner = "bench";
    txn.created_ms = NowUnixMs();
    txn.deadline_ms = txn.created_ms;
    txn.next_attempt_ms = txn.created_ms + 3600 * 1000;
    batch.insert_txns.push_back(txn);
    Status s = store->Apply(batch);
    if (!s.ok()) {
      LOG(ERROR) << "raw apply: " << s;
      break;
    }
    ++n;
  }
  const double seconds = (MonotonicMs() - start) / 1000.0;
  return seconds > 0 ? n / seconds : 0;
}

Result<std::unique_ptr<CoordinatorServer>> StartCoordinator(const std::string& store_kind,
                                                            const std::string& data_dir,
                                                            const std::string& store) {
  CoordinatorServerOptions o;
  o.host = "127.0.0.1";
  o.port = 0;
  o.node_id = "bench-" + store_kind;
  o.data_dir = data_dir;
  o.store = store;
  auto server = std::make_unique<CoordinatorServer>(o);
  TXC_RETURN_IF_ERROR(server->Start());
  return server;
}

void StopChildren(const std::vector<std::unique_ptr<testing::ChildProcess>>& children) {
  for (const auto& c : children) {
    c->Kill(SIGTERM).IgnoreError();
    c->Wait(10000).status().IgnoreError();
  }
}

}  // namespace txc::bench
