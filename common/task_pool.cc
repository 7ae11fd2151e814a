#include "common/task_pool.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/backoff.h"

namespace txc {
namespace {

void NameThisThread(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace

TaskPool::TaskPool(std::string name, int threads, Options options)
    : name_(std::move(name)), options_(std::move(options)), base_threads_(std::max(1, threads)) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < base_threads_; ++i) StartWorker();
  if (!options_.timer_name.empty()) {
    timer_ = std::thread([this] {
      NameThisThread(options_.timer_name);
      TimerLoop();
    });
  }
}

TaskPool::~TaskPool() { Shutdown(); }

void TaskPool::StartWorker() {
  // An exited worker only returns once it left mu_: joining here cannot wait on us.
  for (auto& t : exited_) t.join();
  exited_.clear();
  Worker self = workers_.emplace(workers_.end());
  // The new thread takes mu_ before it touches `self`, so after this assignment.
  *self = std::thread([this, self] {
    NameThisThread(name_);
    WorkerLoop(self);
  });
}

size_t TaskPool::ThreadCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.size();
}

void TaskPool::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    if (options_.at_shutdown == AtShutdown::kDropQueued) queue_.clear();
    timers_.clear();
  }
  cv_.notify_all();
  timer_cv_.notify_all();
  // Stopping: no worker starts or leaves workers_ any more.
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  for (auto& worker : exited_) {
    if (worker.joinable()) worker.join();
  }
  if (timer_.joinable()) timer_.join();
}

void TaskPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(task));
      if (queue_.size() > static_cast<size_t>(idle_) &&
          workers_.size() < static_cast<size_t>(options_.max_threads)) {
        StartWorker();
      }
      cv_.notify_one();
      return;
    }
  }
  if (options_.at_shutdown == AtShutdown::kRunQueued) task();
}

void TaskPool::SubmitAfter(int64_t delay_ms, std::function<void()> task) {
  if (options_.timer_name.empty()) {
    Submit(std::move(task));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    timers_.emplace(MonotonicMs() + delay_ms, std::move(task));
  }
  timer_cv_.notify_one();
}

size_t TaskPool::QueuedForTests() {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size();
}

void TaskPool::WorkerLoop(Worker self) {
  const auto idle_exit = std::chrono::milliseconds(std::max<int64_t>(1, options_.idle_exit_ms));
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++idle_;
      const bool woken =
          cv_.wait_for(lock, idle_exit, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (!woken) {
        if (workers_.size() <= static_cast<size_t>(base_threads_)) continue;
        // Idle past idle_exit_ms and more workers than the base: this one ends.
        exited_.push_back(std::move(*self));
        workers_.erase(self);
        return;
      }
      // Stopping: kRunQueued drains the queue first; kDropQueued cleared it.
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void TaskPool::TimerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    if (timers_.empty()) {
      timer_cv_.wait(lock);
      continue;
    }
    const int64_t due = timers_.begin()->first;
    const int64_t now = MonotonicMs();
    if (due > now) {
      timer_cv_.wait_for(lock, std::chrono::milliseconds(due - now));
      continue;
    }
    queue_.push_back(std::move(timers_.begin()->second));
    timers_.erase(timers_.begin());
    cv_.notify_one();
  }
}

}  // namespace txc
