// The payment service: owns payment.db. Saga step it serves:
//   charge / refund: balance -= amount and a payment row, or FAILURE
//   "insufficient balance" / the payment removed and the money given back.
#include <glog/logging.h>

#include <chrono>
#include <thread>

#include "examples/order-payment-saga/shop.h"
#include "txc/participant/barrier.h"

namespace {

using txc::participant::SqliteDbOf;
using txc::participant::StepContext;
using txc::participant::StepResult;

class PaymentService : public txc::participant::Participant {
 public:
  explicit PaymentService(int64_t action_delay_ms) : action_delay_ms_(action_delay_ms) {}

  StepResult Action(const StepContext& ctx) override {
    if (action_delay_ms_ > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(action_delay_ms_));
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr) return StepResult::RetryLater("no barrier transaction");
    if (!order.ok()) return StepResult::Failure(order.status().message());
    if (ctx.name != "charge") return StepResult::Failure("unknown action " + ctx.name);
    auto balance =
        shop::QueryInt(db, "SELECT balance FROM accounts WHERE customer = ?", {order->customer});
    if (balance.status().code() == txc::StatusCode::kNotFound) {
      return StepResult::Failure("unknown customer " + order->customer);
    }
    if (!balance.ok()) throw std::runtime_error(balance.status().ToString());
    if (*balance < order->amount) {
      return StepResult::Failure("insufficient balance: " + order->customer + " has " +
                                 std::to_string(*balance) + ", needs " +
                                 std::to_string(order->amount));
    }
    txc::Status s = shop::Exec(db, "UPDATE accounts SET balance = balance - ? WHERE customer = ?",
                               {order->amount, order->customer});
    if (s.ok()) {
      s = shop::Exec(db, "INSERT INTO payments (order_id, customer, amount) VALUES (?, ?, ?)",
                     {order->id, order->customer, order->amount});
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("charged");
  }

  StepResult Compensate(const StepContext& ctx) override {
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr || !order.ok()) return StepResult::RetryLater("cannot compensate now");
    if (ctx.name != "refund") return StepResult::RetryLater("unknown compensation " + ctx.name);
    auto amount = shop::QueryInt(db, "SELECT amount FROM payments WHERE order_id = ?", {order->id});
    if (amount.status().code() == txc::StatusCode::kNotFound)
      return StepResult::Success("nothing charged");
    if (!amount.ok()) throw std::runtime_error(amount.status().ToString());
    txc::Status s = shop::Exec(db, "UPDATE accounts SET balance = balance + ? WHERE customer = ?",
                               {*amount, order->customer});
    if (s.ok()) s = shop::Exec(db, "DELETE FROM payments WHERE order_id = ?", {order->id});
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("refunded");
  }

 private:
  const int64_t action_delay_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  shop::ServiceFlags flags = shop::ParseFlags(argc, argv);
  if (flags.seed.empty()) flags.seed = "alice:200000,bob:60000,carol:5000,dave:400000";
  const char* schema =
      "CREATE TABLE IF NOT EXISTS accounts (customer TEXT PRIMARY KEY, balance INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS initial_balance (customer TEXT PRIMARY KEY, amount INTEGER NOT "
      "NULL);"
      "CREATE TABLE IF NOT EXISTS payments (order_id TEXT PRIMARY KEY, customer TEXT NOT NULL, "
      "amount INTEGER NOT NULL)";
  const std::string seed = flags.seed;
  return shop::RunService(
      "payment", flags, schema,
      [seed](sqlite3* db) {
        for (const auto& row : shop::ParseSeed(seed)) {
          if (row.size() != 2)
            return txc::Status::InvalidArgument("--seed wants customer:balance,...");
          const int64_t balance = std::stoll(row[1]);
          TXC_RETURN_IF_ERROR(shop::Exec(
              db, "INSERT INTO accounts (customer, balance) VALUES (?, ?)", {row[0], balance}));
          TXC_RETURN_IF_ERROR(
              shop::Exec(db, "INSERT INTO initial_balance (customer, amount) VALUES (?, ?)",
                         {row[0], balance}));
        }
        return txc::Status::Ok();
      },
      std::make_shared<PaymentService>(flags.action_delay_ms));
}
