// The inventory service: owns inventory.db. Saga step it serves:
//   reserve_stock / release_stock: available -= qty and a reservation row, or
//   FAILURE "out of stock" / the reservation removed and the stock given back.
#include <glog/logging.h>

#include <chrono>
#include <thread>

#include "examples/order-payment-saga/shop.h"
#include "txc/participant/barrier.h"

namespace {

using txc::participant::SqliteDbOf;
using txc::participant::StepContext;
using txc::participant::StepResult;

class InventoryService : public txc::participant::Participant {
 public:
  explicit InventoryService(int64_t action_delay_ms) : action_delay_ms_(action_delay_ms) {}

  StepResult Action(const StepContext& ctx) override {
    if (action_delay_ms_ > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(action_delay_ms_));
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr) return StepResult::RetryLater("no barrier transaction");
    if (!order.ok()) return StepResult::Failure(order.status().message());
    if (ctx.name != "reserve_stock") return StepResult::Failure("unknown action " + ctx.name);
    auto available =
        shop::QueryInt(db, "SELECT available FROM stock WHERE item = ?", {order->item});
    if (available.status().code() == txc::StatusCode::kNotFound) {
      return StepResult::Failure("unknown item " + order->item);
    }
    if (!available.ok()) throw std::runtime_error(available.status().ToString());
    if (*available < order->qty) {
      return StepResult::Failure("out of stock: " + order->item + " has " +
                                 std::to_string(*available) + ", wanted " +
                                 std::to_string(order->qty));
    }
    txc::Status s = shop::Exec(db, "UPDATE stock SET available = available - ? WHERE item = ?",
                               {order->qty, order->item});
    if (s.ok()) {
      s = shop::Exec(db, "INSERT INTO reservations (order_id, item, qty) VALUES (?, ?, ?)",
                     {order->id, order->item, order->qty});
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("reserved");
  }

  StepResult Compensate(const StepContext& ctx) override {
    sqlite3* db = SqliteDbOf(ctx);
    auto order = shop::DecodeOrder(ctx.payload);
    if (db == nullptr || !order.ok()) return StepResult::RetryLater("cannot compensate now");
    if (ctx.name != "release_stock")
      return StepResult::RetryLater("unknown compensation " + ctx.name);
    auto qty = shop::QueryInt(db, "SELECT qty FROM reservations WHERE order_id = ?", {order->id});
    if (qty.status().code() == txc::StatusCode::kNotFound)
      return StepResult::Success("nothing reserved");
    if (!qty.ok()) throw std::runtime_error(qty.status().ToString());
    txc::Status s = shop::Exec(db, "UPDATE stock SET available = available + ? WHERE item = ?",
                               {*qty, order->item});
    if (s.ok()) s = shop::Exec(db, "DELETE FROM reservations WHERE order_id = ?", {order->id});
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("released");
  }

 private:
  const int64_t action_delay_ms_;
};

}  // namespace

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  shop::ServiceFlags flags = shop::ParseFlags(argc, argv);
  if (flags.seed.empty()) flags.seed = "widget:200:500,gadget:120:1500,gizmo:60:4000";
  const char* schema =
      "CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, available INTEGER NOT NULL, "
      "price INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS initial_stock (item TEXT PRIMARY KEY, qty INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, item TEXT NOT NULL, "
      "qty INTEGER NOT NULL)";
  const std::string seed = flags.seed;
  return shop::RunService(
      "inventory", flags, schema,
      [seed](sqlite3* db) {
        for (const auto& row : shop::ParseSeed(seed)) {
          if (row.size() != 3)
            return txc::Status::InvalidArgument("--seed wants item:qty:price,...");
          const int64_t qty = std::stoll(row[1]), price = std::stoll(row[2]);
          TXC_RETURN_IF_ERROR(
              shop::Exec(db, "INSERT INTO stock (item, available, price) VALUES (?, ?, ?)",
                         {row[0], qty, price}));
          TXC_RETURN_IF_ERROR(
              shop::Exec(db, "INSERT INTO initial_stock (item, qty) VALUES (?, ?)", {row[0], qty}));
        }
        return txc::Status::Ok();
      },
      std::make_shared<InventoryService>(flags.action_delay_ms));
}
