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
    : name_(std::move(name)), options_(std::move(options)) {
  if (threads < 1) threads = 1;
  std::lock_guard<std::mutex> lock(mu_);
  workers_.reserve(std::max(threads, options_.max_threads));
  for (int i = 0; i < threads; ++i) StartWorker();
  if (!options_.timer_name.empty()) {
    timer_ = std::thread([this] {
      NameThisThread(options_.timer_name);
      TimerLoop();
    });
  }
}

TaskPool::~TaskPool() { Shutdown(); }

void TaskPool::StartWorker() {
  workers_.emplace_back([this] {
    NameThisThread(name_);
    WorkerLoop();
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
  for (auto& worker : workers_) {
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

void TaskPool::WorkerLoop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
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
