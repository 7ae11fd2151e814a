// CoordinatorAsyncHandler: the Coordinator service's asynchronous face
// (wire::CoordinatorCobSvIf, served by the event-loop front end,
// common/async_thrift_server.h) over the one CoordinatorHandler, which keeps
// every rule (authorization, allow-list, validation, error mapping).
//
// Where a call is run:
// * beginTxn without an idempotency key, enlist and commit(WAIT_DECISION) of
//   a transaction this replica began and holds in memory, and the first
//   submitSaga of a gtid (the hot path): on the event loop's thread, up to
//   the durable write; the answer is given by the thread that learns it (the
//   group commit's "group-done" thread, the thread that publishes the
//   decision, or the saga worker that ends the run). No thread waits for it.
// * Every other call (and a hot call whose record moved on: kConflict, or
//   whose answer is an error, whose wire exception may need a store read):
//   on the "rpc-pool" workers, through the synchronous CoordinatorHandler,
//   with the caller's identity made current there. The pool grows while all
//   its workers are busy (calls such as submitSaga with wait_for_completion
//   wait for their answer), up to max_threads; further calls queue.
//
// Every hot call has a deadline: commit its wait_timeout_ms, beginTxn
// begin_answer_timeout_ms (the group commit takes back a queued write
// earlier; this bounds a store call that hangs), submitSaga its
// wait_timeout_ms (with wait_for_completion) plus begin_answer_timeout_ms. Whichever comes first,
// the answer or the deadline, answers the call; the deadline answers the Unavailable "ask again"
// the synchronous path gives (commit: still deciding; beginTxn: outcome unknown, retry with an
// idempotency key). Deadlines are checked every deadline_scan_ms by the pool's "rpc-timer".
//
// Thread-safety: the methods may be called from any thread. The destructor
// (after the server stopped) drops answers still to come.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>

#include "common/callback_gate.h"
#include "common/task_pool.h"
#include "coordinator/rpc/coordinator_handler.h"
#include "gen-cpp/Coordinator.h"

namespace txc {

struct CoordinatorAsyncHandlerOptions {
  int pool_threads = 4;    // "rpc-pool" workers started at once
  int max_threads = 4096;  // at most this many (one per call waiting for its answer)
  int64_t begin_answer_timeout_ms = 60000;
  int64_t deadline_scan_ms = 50;
};

class CoordinatorAsyncHandler : public wire::CoordinatorCobSvIf {
 public:
  using ExnCob = std::function<void(apache::thrift::TDelayedException*)>;

  // `handler` must outlive this object.
  explicit CoordinatorAsyncHandler(CoordinatorHandler* handler,
                                   CoordinatorAsyncHandlerOptions options = {});
  ~CoordinatorAsyncHandler() override;

  void beginTxn(std::function<void(const wire::BeginResponse&)> cob, ExnCob exn,
                const wire::BeginRequest& req) override;
  void enlist(std::function<void()> cob, ExnCob exn, const wire::EnlistRequest& req) override;
  void commit(std::function<void(const wire::CommitResponse&)> cob, ExnCob exn,
              const wire::CommitRequest& req) override;
  void rollback(std::function<void(const wire::CommitResponse&)> cob, ExnCob exn,
                const wire::Gtid& gtid) override;
  void status(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
              const wire::Gtid& gtid) override;
  void submitSaga(std::function<void(const wire::SubmitSagaResponse&)> cob, ExnCob exn,
                  const wire::SubmitSagaRequest& req) override;
  void queryOutcome(std::function<void(const wire::Outcome::type&)> cob, ExnCob exn,
                    const wire::Gtid& gtid, const wire::BranchId& branch_id) override;
  void health(std::function<void(const wire::HealthResponse&)> cob, ExnCob exn) override;
  void listTxns(std::function<void(const wire::ListTxnsResponse&)> cob, ExnCob exn,
                const wire::ListTxnsRequest& req) override;
  void retryNow(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
                const wire::AdminRequest& req) override;
  void cancelSaga(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
                  const wire::AdminRequest& req) override;
  void resolveBranch(std::function<void(const wire::TxnStatus&)> cob, ExnCob exn,
                     const wire::ResolveRequest& req) override;
  void rebindEndpoint(std::function<void(const wire::RebindResponse&)> cob, ExnCob exn,
                      const wire::RebindRequest& req) override;

  // Closes the gate (answers still to come are dropped), stops the pool
  // (joining calls that run) and drops the calls still waiting for their
  // answer or deadline. Idempotent. The owner must call it, from its own
  // thread, once the server stopped and before dropping its reference: each
  // call the server handed out keeps the processor, and so this handler,
  // alive (a waiting call's cob held here would be a cycle until then), so
  // the last reference may go on any thread, a pool worker's included, where
  // the destructor must not join the pool.
  void Shutdown();

  // Hot calls whose answer or deadline is still to come (tests, metrics).
  size_t PendingHotCalls();
  // Pool workers started so far.
  size_t PoolThreads() { return pool_.ThreadCount(); }

 private:
  // One hot call: exactly one of its answer and its deadline answers it.
  struct Hot {
    std::atomic<bool> answered{false};
    std::function<void()> on_deadline;  // answers the call with its timeout error
    std::multimap<int64_t, std::shared_ptr<Hot>>::iterator slot;  // guarded by mu_
    bool listed = false;                                          // guarded by mu_
    bool Claim() { return !answered.exchange(true); }
  };
  using Done = std::function<void(Result<TxnRecord>)>;
  // A hot call: how it starts, how its answer and its full synchronous form
  // are written, and its deadline.
  template <typename Response>
  struct HotCall {
    std::function<void(const Response&)> cob;
    ExnCob exn;
    int64_t deadline_ms = 0;  // MonotonicMs()
    // Writes the answer when the deadline comes first (on the pool; throws
    // wire exceptions).
    std::function<void(Response&)> at_deadline;
    std::function<bool(Done)> start;  // false: not taken (then `full` on the pool)
    std::function<void(Response&, const Result<TxnRecord>&)> answer;  // throws wire exceptions
    std::function<void(Response&)> full;  // the synchronous handler's call
  };
  template <typename Response>
  void RunHot(HotCall<Response> call);
  // Runs `call(out)` on the pool with the caller's identity, then answers.
  template <typename Response, typename Call>
  void OnPool(std::function<void(const Response&)> cob, ExnCob exn, Call call);
  std::shared_ptr<Hot> Track(int64_t deadline_ms, std::function<void()> on_deadline);
  void Untrack(const std::shared_ptr<Hot>& hot);
  void ScanDeadlines();

  CoordinatorHandler* const handler_;
  const CoordinatorAsyncHandlerOptions options_;
  std::mutex mu_;
  std::multimap<int64_t, std::shared_ptr<Hot>> deadlines_;  // guarded by mu_
  std::atomic<bool> shut_down_{false};
  CallbackGate gate_;  // answers arriving after the destructor started are dropped
  TaskPool pool_;      // last: stopped first
};

}  // namespace txc
