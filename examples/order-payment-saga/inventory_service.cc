// The inventory service: owns inventory.db. Saga step it serves:
//   reserve_stock / release_stock: available -= qty and a reservation row, or
//   FAILURE "out of stock" / the reservation removed and the stock given back.
#include <stdexcept>

#include "common/strings.h"
#include "examples/order-payment-saga/shop.h"

namespace {

using txc::participant::StepResult;

class InventoryService : public shop::OrderStepHooks {
 public:
  using OrderStepHooks::OrderStepHooks;

 protected:
  StepResult Act(const std::string& step, sqlite3* db, const shop::Order& order) override {
    if (step != "reserve_stock") return StepResult::Failure("unknown action " + step);
    auto available = shop::QueryInt(db, "SELECT available FROM stock WHERE item = ?", {order.item});
    if (available.status().code() == txc::StatusCode::kNotFound) {
      return StepResult::Failure("unknown item " + order.item);
    }
    if (!available.ok()) throw std::runtime_error(available.status().ToString());
    if (*available < order.qty) {
      return StepResult::Failure("out of stock: " + order.item + " has " +
                                 std::to_string(*available) + ", wanted " +
                                 std::to_string(order.qty));
    }
    txc::Status s = shop::Exec(db, "UPDATE stock SET available = available - ? WHERE item = ?",
                               {order.qty, order.item});
    if (s.ok()) {
      s = shop::Exec(db, "INSERT INTO reservations (order_id, item, qty) VALUES (?, ?, ?)",
                     {order.id, order.item, order.qty});
    }
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("reserved");
  }

  StepResult Undo(const std::string& step, sqlite3* db, const shop::Order& order) override {
    if (step != "release_stock") return StepResult::RetryLater("unknown compensation " + step);
    auto qty = shop::QueryInt(db, "SELECT qty FROM reservations WHERE order_id = ?", {order.id});
    if (qty.status().code() == txc::StatusCode::kNotFound)
      return StepResult::Success("nothing reserved");
    if (!qty.ok()) throw std::runtime_error(qty.status().ToString());
    txc::Status s = shop::Exec(db, "UPDATE stock SET available = available + ? WHERE item = ?",
                               {*qty, order.item});
    if (s.ok()) s = shop::Exec(db, "DELETE FROM reservations WHERE order_id = ?", {order.id});
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return StepResult::Success("released");
  }
};

}  // namespace

int main(int argc, char** argv) {
  const char* schema =
      "CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, available INTEGER NOT NULL, "
      "price INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS initial_stock (item TEXT PRIMARY KEY, qty INTEGER NOT NULL);"
      "CREATE TABLE IF NOT EXISTS reservations (order_id TEXT PRIMARY KEY, item TEXT NOT NULL, "
      "qty INTEGER NOT NULL)";
  return shop::ServiceMain(
      argc, argv, "inventory", "widget:200:500,gadget:120:1500,gizmo:60:4000", schema,
      [](sqlite3* db, const std::vector<std::string>& row) {
        if (row.size() != 3) return txc::Status::InvalidArgument("--seed wants item:qty:price,...");
        auto qty_or = txc::ParseInt64(row[1]);
        auto price_or = txc::ParseInt64(row[2]);
        if (!qty_or.ok() || *qty_or < 0 || !price_or.ok() || *price_or < 0) {
          return txc::Status::InvalidArgument("--seed: bad quantity or price in '" + row[0] + ":" +
                                              row[1] + ":" + row[2] + "'");
        }
        const int64_t qty = *qty_or, price = *price_or;
        TXC_RETURN_IF_ERROR(
            shop::Exec(db, "INSERT INTO stock (item, available, price) VALUES (?, ?, ?)",
                       {row[0], qty, price}));
        return shop::Exec(db, "INSERT INTO initial_stock (item, qty) VALUES (?, ?)", {row[0], qty});
      },
      [](int64_t action_delay_ms) { return std::make_shared<InventoryService>(action_delay_ms); });
}
