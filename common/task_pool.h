// The one pool facility: a fixed set of named worker threads running queued
// closures, and optionally a timer thread that queues a closure once its delay
// passed. The 2PC driver's "2pc-fanout" and "2pc-driver" pools and the saga
// driver's "saga-worker" pool (with its "saga-timer") are instances.
//
// What happens to queued work at shutdown is the owner's choice:
//   kRunQueued  Shutdown runs every closure already queued, then joins; a
//               closure submitted after that runs on the caller's thread
//               (nothing is lost: the 2PC driver's fan-out relies on it).
//   kDropQueued Shutdown drops queued closures and pending timers (a running
//               closure finishes first) and joins; later submissions are
//               dropped (the saga driver's work is re-found by recovery).
// Delayed closures (SubmitAfter) need a timer_name; without one they are
// queued at once. Pending timers are never run at shutdown.
//
// Thread-safety: Submit/SubmitAfter from any thread, including a worker of
// this pool. Shutdown (and the destructor) from the owner's thread only, not
// from a worker; idempotent.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace txc {

class TaskPool {
 public:
  enum class AtShutdown { kRunQueued, kDropQueued };

  struct Options {
    AtShutdown at_shutdown = AtShutdown::kRunQueued;
    // Non-empty: a timer thread of that name serves SubmitAfter.
    std::string timer_name;
    // For work that may block (e.g. calls that wait for an answer): when a
    // task is queued and no worker is idle to take it, another worker is
    // started, up to this many in all. 0 (or less than `threads`): the fixed
    // count.
    int max_threads = 0;
    // A worker started past `threads` that found nothing to do for this long
    // ends, so a burst of blocking work does not leave its threads behind.
    int64_t idle_exit_ms = 60000;
  };

  // `name` is given to every worker thread (truncated to 15 characters by Linux).
  TaskPool(std::string name, int threads) : TaskPool(std::move(name), threads, Options{}) {}
  TaskPool(std::string name, int threads, Options options);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Queues `task` (after Shutdown: see AtShutdown).
  void Submit(std::function<void()> task);
  // Queues `task` once `delay_ms` passed (MonotonicMs clock).
  void SubmitAfter(int64_t delay_ms, std::function<void()> task);

  void Shutdown();

  // Closures queued and not yet started.
  size_t QueuedForTests();
  // Worker threads running now.
  size_t ThreadCount();

 private:
  using Worker = std::list<std::thread>::iterator;
  // `self` is this worker's entry in workers_ (moved to exited_ when it ends
  // for idling).
  void WorkerLoop(Worker self);
  void TimerLoop();
  // Starts one more worker (mu_ held); joins the workers that ended for idling.
  void StartWorker();

  const std::string name_;
  const Options options_;
  const int base_threads_;  // workers that never end for idling
  std::mutex mu_;           // guards everything below but timer_
  std::condition_variable cv_;
  std::condition_variable timer_cv_;
  std::deque<std::function<void()>> queue_;
  std::multimap<int64_t, std::function<void()>> timers_;  // due (MonotonicMs) -> task
  bool stopping_ = false;
  int idle_ = 0;                     // workers waiting for a task
  std::list<std::thread> workers_;   // running (list: each worker keeps its own entry)
  std::vector<std::thread> exited_;  // ended for idling, not joined yet
  std::thread timer_;
};

}  // namespace txc
