// The payment service: owns payment.db. Saga step it serves:
//   charge / refund: balance -= amount and a payment row, or FAILURE
//   "insufficient balance" / the payment removed and the money given back.
#include <stdexcept>

#include "common/strings.h"
#include "examples/order-payment-saga/shop.h"

namespace {

using txc::participant::StepResult;

class PaymentService : public shop::OrderStepHooks {
 public:
  using OrderStepHooks::OrderStepHooks;

 protected:
  StepResult Act(const std::string& step, sqlite3* db, const shop::Order& order) override {
    if (step != "charge") return StepResult::Failure("unknown action " + step);
    auto balance =
        shop::QueryInt(db, "SELECT balance FROM accounts WHERE customer = ?", {order.customer});
    if (balance.status().code() == txc::StatusCode::kNotFound) {
      return StepResult::Failure("unknown customer " + order.customer);
    }
    if (!balance.ok()) throw std::runtime_error(balance.status().ToString());
    if (*balance < order.amount) {
      return StepResult::Failure("insufficient balance: " + order.customer + " has " +
                                 std::to_string(*balance) + ", needs " +
                                 std::to_string(order.amount));
    }
    txc::Status s = shop::Exec(db, "UPDATE accounts SET balance = balance - ? WHERE customer = ?",
                               {order.amount, order.customer});
    if (s.ok()) {
      s = shop::Exec(db, "INSERT INTO payments (order_id, customer, amount) VALUES (?, ?, ?)",
                     {order.id, order.customer, order.amount});
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("charged");
  }

  StepResult Undo(const std::string& step, sqlite3* db, const shop::Order& order) override {
    if (step != "refund") return StepResult::RetryLater("unknown compensation " + step);
    auto amount = shop::QueryInt(db, "SELECT amount FROM payments WHERE order_id = ?", {order.id});
    if (amount.status().code() == txc::StatusCode::kNotFound)
      return StepResult::Success("nothing charged");
    if (!amount.ok()) throw std::runtime_error(amount.status().ToString());
    txc::Status s = shop::Exec(db, "UPDATE accounts SET balance = balance + ? WHERE customer = ?",
                               {*amount, order.customer});
    if (s.ok()) s = shop::Exec(db, "DELETE FROM payments WHERE order_id = ?", {order.id});
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("refunded");
  }
};

}  // namespace

int main(int argc, char** argv) {
  const char* schema =
      "CREATE TABLE IF NOT EXISTS accounts (customer TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS initial_balance (customer TEXT PRIMARY KEY, amount INTEGER NOT "
      "NULL);"
      "CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL, "
      "amount INTEGER NOT NULL)";
  return shop::ServiceMain(
      argc, argv, "payment", "alice:200000,bob:60000,carol:5000,dave:400000", schema,
      [](sqlite3* db, const std::vector<std::string>& row) {
        if (row.size() != 2)
          return txc::Status::InvalidArgument("--seed wants customer:balance,...");
        auto balance = txc::ParseInt64(row[1]);
        if (!balance.ok() || *balance < 0) {
          return txc::Status::InvalidArgument("--seed: bad balance '" + row[1] + "' of " + row[0]);
        }
        TXC_RETURN_IF_ERROR(shop::Exec(db, "INSERT INTO accounts (customer, balance) VALUES (?, ?)",
                                       {row[0], *balance}));
        return shop::Exec(db, "INSERT INTO initial_balance (customer, amount) VALUES (?, ?)",
                          {row[0], *balance});
      },
      [](int64_t action_delay_ms) { return std::make_shared<PaymentService>(action_delay_ms); });
}
