#include "common/callback_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <future>
#include <thread>

namespace txc {
namespace {

TEST(CallbackGateTest, RunsUntilClosedThenDrops) {
  CallbackGate gate;
  int sum = 0;
  std::function<void(int)> add = gate.Wrap([&sum](int v) { sum += v; });
  add(2);
  add(3);
  EXPECT_EQ(sum, 5);
  gate.Close();
  add(100);
  EXPECT_EQ(sum, 5);
}

TEST(CallbackGateTest, CloseWaitsForACallbackAlreadyRunning) {
  CallbackGate gate;
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> finished{false};
  std::function<void()> slow = gate.Wrap([&] {
    entered.set_value();
    released.wait();
    finished.store(true);
  });
  std::thread runner(slow);
  entered.get_future().wait();
  std::atomic<bool> closed{false};
  std::thread closer([&] {
    gate.Close();
    closed.store(true);
  });
  // Close cannot return while the callback runs; it returns once it ends.
  EXPECT_FALSE(closed.load());
  release.set_value();
  closer.join();
  EXPECT_TRUE(finished.load());
  EXPECT_TRUE(closed.load());
  runner.join();
}

TEST(CallbackGateTest, WrappedCallableOutlivesTheGate) {
  std::function<void()> late;
  bool ran = false;
  {
    CallbackGate gate;
    late = gate.Wrap([&ran] { ran = true; });
    gate.Close();
  }
  late();  // the gate's state is shared: safe, and dropped
  EXPECT_FALSE(ran);
}

}  // namespace
}  // namespace txc
