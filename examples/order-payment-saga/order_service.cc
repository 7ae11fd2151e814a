// The order service: owns orders.db. Saga steps it serves:
//   create_order  / cancel_order     an order row 'pending' / 'cancelled'
//   confirm_order / unconfirm_order  'pending' -> 'confirmed' / back to 'pending'
// Runs under the SDK's SQLite barrier: duplicates are no-ops, a compensation
// without its action is a recorded no-op, an action after its compensation is refused.
#include <stdexcept>

#include "examples/order-payment-saga/shop.h"

namespace {

using txc::participant::StepResult;

class OrderService : public shop::OrderStepHooks {
 public:
  using OrderStepHooks::OrderStepHooks;

 protected:
  StepResult Act(const std::string& step, sqlite3* db, const shop::Order& order) override {
    txc::Status s;
    if (step == "create_order") {
      s = shop::Exec(db,
                     "INSERT INTO orders (id, customer, item, qty, amount, status) "
                     "VALUES (?, ?, ?, ?, ?, 'pending') ON CONFLICT (id) DO NOTHING",
                     {order.id, order.customer, order.item, order.qty, order.amount});
    } else if (step == "confirm_order") {
      s = shop::Exec(db,
                     "UPDATE orders SET status = 'confirmed' WHERE id = ? AND status = 'pending'",
                     {order.id});
    } else {
      return StepResult::Failure("unknown action " + step);
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());  // -> RETRY_LATER, rolled back
    return StepResult::Success();
  }

  StepResult Undo(const std::string& step, sqlite3* db, const shop::Order& order) override {
    txc::Status s;
    if (step == "cancel_order") {
      s = shop::Exec(db, "UPDATE orders SET status = 'cancelled' WHERE id = ?", {order.id});
    } else if (step == "unconfirm_order") {
      s = shop::Exec(db,
                     "UPDATE orders SET status = 'pending' WHERE id = ? AND status = 'confirmed'",
                     {order.id});
    } else {
      return StepResult::RetryLater("unknown compensation " + step);
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success();
  }
};

}  // namespace

int main(int argc, char** argv) {
  const char* schema =
      "CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, customer TEXT NOT NULL, "
      "item TEXT NOT NULL, qty INTEGER NOT NULL, amount INTEGER NOT NULL, status TEXT NOT NULL)";
  return shop::ServiceMain(argc, argv, "order", "", schema, nullptr, [](int64_t action_delay_ms) {
    return std::make_shared<OrderService>(action_delay_ms);
  });
}
