#include "common/task_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>

#include "common/backoff.h"

namespace txc {
namespace {

// Polls `done` until it holds or 10 s passed.
bool Eventually(const std::function<bool()>& done) {
  const int64_t deadline = MonotonicMs() + 10000;
  while (!done()) {
    if (MonotonicMs() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

std::string ThreadName() {
  char name[16] = {};
  pthread_getname_np(pthread_self(), name, sizeof(name));
  return name;
}

TEST(TaskPoolTest, RunsEveryTaskOnNamedWorkers) {
  std::mutex mu;
  std::set<std::string> names;
  std::atomic<int> ran{0};
  {
    TaskPool pool("pool-test-workers-long", 3);
    for (int i = 0; i < 100; ++i) {
      pool.Submit([&] {
        std::lock_guard<std::mutex> lock(mu);
        names.insert(ThreadName());
        ++ran;
      });
    }
  }
  EXPECT_EQ(ran.load(), 100);
  EXPECT_EQ(names, std::set<std::string>{"pool-test-worke"});  // 15 characters
}

TEST(TaskPoolTest, RunQueuedDrainsAtShutdownAndRunsLateSubmissionsInline) {
  std::atomic<int> ran{0};
  std::atomic<bool> release{false};
  TaskPool pool("drain", 1);
  pool.Submit([&] {
    while (!release.load()) std::this_thread::yield();
  });
  for (int i = 0; i < 5; ++i) pool.Submit([&] { ++ran; });
  release = true;
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 5);
  pool.Submit([&] { ++ran; });  // after shutdown: on this thread
  EXPECT_EQ(ran.load(), 6);
}

TEST(TaskPoolTest, DropQueuedDropsQueuedWorkAndTimers) {
  std::atomic<int> ran{0};
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  TaskPool pool("drop", 1, TaskPool::Options{TaskPool::AtShutdown::kDropQueued, "drop-timer"});
  pool.Submit([&] {
    started = true;
    while (!release.load()) std::this_thread::yield();
  });
  ASSERT_TRUE(Eventually([&] { return started.load(); }));
  for (int i = 0; i < 5; ++i) pool.Submit([&] { ++ran; });
  pool.SubmitAfter(1, [&] { ++ran; });
  pool.SubmitAfter(3600 * 1000, [&] { ++ran; });
  std::thread releaser([&] {
    // Shutdown must not wait for the queued tasks: release the running one
    // only once shutdown has begun dropping (the queue is then empty).
    Eventually([&] { return pool.QueuedForTests() == 0; });
    release = true;
  });
  pool.Shutdown();
  releaser.join();
  pool.Submit([&] { ++ran; });  // after shutdown: dropped
  EXPECT_EQ(ran.load(), 0);
}

TEST(TaskPoolTest, SubmitAfterRunsOnAWorkerOnceDue) {
  std::atomic<int> ran{0};
  std::string name;
  TaskPool pool("later", 1, TaskPool::Options{TaskPool::AtShutdown::kDropQueued, "later-timer"});
  const int64_t start = MonotonicMs();
  std::atomic<int64_t> at{0};
  pool.SubmitAfter(20, [&] {
    name = ThreadName();
    at = MonotonicMs();
    ++ran;
  });
  ASSERT_TRUE(Eventually([&] { return ran.load() == 1; }));
  EXPECT_GE(at.load() - start, 20);  // never early (a lower bound, not a timing claim)
  EXPECT_EQ(name, "later");
}

// Tasks that block until released, counting how many started and ended.
class BlockingTasks {
 public:
  void SubmitTo(TaskPool& pool, int n) {
    for (int i = 0; i < n; ++i) {
      pool.Submit([this] {
        {
          std::unique_lock<std::mutex> lock(mu_);
          ++running_;
          cv_.notify_all();
          cv_.wait(lock, [this] { return release_; });
        }
        ++done_;  // the task's last touch of this object
      });
    }
  }
  bool WaitRunning(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return running_ == n; });
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      release_ = true;
    }
    cv_.notify_all();
  }
  int running() {
    std::lock_guard<std::mutex> lock(mu_);
    return running_;
  }
  int done() const { return done_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int running_ = 0;
  bool release_ = false;
  std::atomic<int> done_{0};
};

// max_threads: blocking tasks each get a worker, up to the limit; past it they queue.
TEST(TaskPoolTest, GrowsForBlockedTasksUpToMaxThreads) {
  TaskPool::Options options;
  options.max_threads = 4;
  TaskPool pool("grow", 1, options);
  BlockingTasks tasks;
  tasks.SubmitTo(pool, 5);
  ASSERT_TRUE(tasks.WaitRunning(4));
  EXPECT_EQ(pool.ThreadCount(), 4u);
  EXPECT_EQ(pool.QueuedForTests(), 1u);  // the fifth waits for a worker
  tasks.Release();
  pool.Shutdown();
  EXPECT_EQ(tasks.done(), 5);
  EXPECT_EQ(tasks.running(), 5);
}

// Workers started past the base count end once idle for idle_exit_ms; the pool
// grows again for the next burst.
TEST(TaskPoolTest, GrownWorkersEndAfterIdlingAndThePoolGrowsAgain) {
  TaskPool::Options options;
  options.max_threads = 4;
  options.idle_exit_ms = 50;
  TaskPool pool("shrink", 1, options);
  for (int burst = 0; burst < 2; ++burst) {
    BlockingTasks tasks;
    tasks.SubmitTo(pool, 4);
    ASSERT_TRUE(tasks.WaitRunning(4)) << "burst " << burst;
    EXPECT_EQ(pool.ThreadCount(), 4u) << "burst " << burst;
    tasks.Release();
    ASSERT_TRUE(Eventually([&] { return tasks.done() == 4; }));
    // The three grown workers end; the base worker stays.
    ASSERT_TRUE(Eventually([&] { return pool.ThreadCount() == 1u; })) << "burst " << burst;
  }
  std::atomic<int> ran{0};
  pool.Submit([&] { ++ran; });
  EXPECT_TRUE(Eventually([&] { return ran.load() == 1; }));
}

}  // namespace
}  // namespace txc
