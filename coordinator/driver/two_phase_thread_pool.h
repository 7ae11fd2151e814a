// A fixed pool of named worker threads running queued closures, one pool per
// job (the 2PC driver's "2pc-fanout" pool for participant calls, its
// "2pc-driver" pool for recovery work).
//
// Thread-safety: Submit may be called from any thread, including a worker of
// this pool. The destructor runs every closure already queued, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace txc {

class TaskPool {
 public:
  // `name` is given to every thread (truncated to 15 characters by Linux).
  TaskPool(std::string name, int threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Queues `task`. After the destructor started, runs it on the caller's thread.
  void Submit(std::function<void()> task);

  // Closures queued and not yet started.
  size_t QueuedForTests();

 private:
  void WorkerLoop();

  const std::string name_;
  std::mutex mu_;  // guards queue_ and stopping_
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace txc
