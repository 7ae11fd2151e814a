// The order service: owns orders.db. Saga steps it serves:
//   create_order  / cancel_order     an order row 'pending' / 'cancelled'
//   confirm_order / unconfirm_order  'pending' -> 'confirmed' / back to 'pending'
// Runs under the SDK's SQLite barrier: duplicates are no-ops, a compensation
// without its action is a recorded no-op, an action after its compensation is refused.
#include <glog/logging.h>

#include <chrono>
#include <thread>

#include "examples/order-payment-saga/shop.h"
#include "txc/participant/barrier.h"

namespace {

using txc::participant::SqliteDbOf;
using txc::participant::StepContext;
using txc::participant::StepResult;

class OrderService : public txc::participant::Participant {
 public:
  explicit OrderService(int64_t action_delay_ms) : action_delay_ms_(action_delay_ms) {}

  StepResult Action(const StepContext& ctx) override {
    if (action_delay_ms_ > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(action_delay_ms_));
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr) return StepResult::RetryLater("no barrier transaction");
    if (!order.ok()) return StepResult::Failure(order.status().message());
    txc::Status s;
    if (ctx.name == "create_order") {
      s = shop::Exec(db,
                     "INSERT INTO orders (id, customer, item, qty, amount, status) "
                     "VALUES (?, ?, ?, ?, ?, 'pending') ON CONFLICT (id) DO NOTHING",
                     {order->id, order->customer, order->item, order->qty, order->amount});
    } else if (ctx.name == "confirm_order") {
      s = shop::Exec(db,
                     "UPDATE orders SET status = 'confirmed' WHERE id = ? AND status = 'pending'",
                     {order->id});
    } else {
      return StepResult::Failure("unknown action " + ctx.name);
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());  // -> RETRY_LATER, rolled back
    return StepResult::Success();
  }

  StepResult Compensate(const StepContext& ctx) override {
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr || !order.ok()) return StepResult::RetryLater("cannot compensate now");
    txc::Status s;
    if (ctx.name == "cancel_order") {
      s = shop::Exec(db, "UPDATE orders SET status = 'cancelled' WHERE id = ?", {order->id});
    } else if (ctx.name == "unconfirm_order") {
      s = shop::Exec(db,
                     "UPDATE orders SET status = 'pending' WHERE id = ? AND status = 'confirmed'",
                     {order->id});
    } else {
      return StepResult::RetryLater("unknown compensation " + ctx.name);
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success();
  }

 private:
  const int64_t action_delay_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  shop::ServiceFlags flags = shop::ParseFlags(argc, argv);
  const char* schema =
      "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, "
      "item TEXT NOT NULL, qty INTEGER NOT NULL, amount INTEGER NOT NULL, status TEXT NOT NULL)";
  return shop::RunService(
      "order", flags, schema, [](sqlite3*) { return txc::Status::Ok(); },
      std::make_shared<OrderService>(flags.action_delay_ms));
}
