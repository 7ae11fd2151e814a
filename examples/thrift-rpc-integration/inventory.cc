// rpc_integration_inventory: the Inventory service (inventory.thrift, no
// transaction field). reserve() takes stock out of its own PostgreSQL database
// through PgTxnResource: inside the caller's global transaction (context from
// the txc-ctx header) the database enlists itself once and the change stays in
// the transaction's local PostgreSQL transaction until the coordinator's
// prepare and commit (or abort).
//
//   rpc_integration_inventory --port 7611 --participant_port 7612
//       --db "host=... dbname=inventory" --coordinators 127.0.0.1:7400 --seed apple=10,pear=3
#include "gen-cpp/Inventory.h"

#include "examples/thrift-rpc-integration/downstream_main.h"

namespace {

using txc::participant::PgTxnResource;

class InventoryHandler : public txc::shop::InventoryIf {
 public:
  explicit InventoryHandler(std::shared_ptr<PgTxnResource> db) : db_(std::move(db)) {}

  void reserve(const std::string& item, int32_t quantity) override {
    bool short_of_stock = false;
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      pqxx::result r = t.exec_params(
          "UPDATE stock SET qty = qty - $1 WHERE item = $2 AND qty >= $1", quantity, item);
      if (r.affected_rows() != 1) {
        short_of_stock = true;
        throw std::runtime_error("not enough " + item);  // undoes this call only
      }
    });
    if (!s.ok()) {
      txc::shop::OutOfStock e;
      e.message = short_of_stock ? "not enough " + item : s.ToString();
      LOG(INFO) << "reserve " << quantity << " x " << item << ": " << e.message;
      throw e;
    }
    LOG(INFO) << "reserve " << quantity << " x " << item << ": ok";
  }

  int32_t available(const std::string& item) override {
    int32_t qty = 0;
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      pqxx::result r = t.exec_params("SELECT qty FROM stock WHERE item = $1", item);
      if (!r.empty()) qty = r[0][0].as<int32_t>();
    });
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return qty;
  }

 private:
  std::shared_ptr<PgTxnResource> db_;
};

}  // namespace

int main(int argc, char** argv) {
  return rpc_integration::RunDownstream(
      "rpc_integration_inventory", "inventory", argc, argv,
      "CREATE TABLE IF NOT EXISTS stock (item text PRIMARY KEY, qty int NOT NULL "
      "CHECK (qty >= 0))",
      [](pqxx::work& w, const std::string& item, int64_t qty) {
        w.exec_params("INSERT INTO stock VALUES ($1, $2) ON CONFLICT DO NOTHING", item, qty);
      },
      [](std::shared_ptr<PgTxnResource> db) {
        return std::make_shared<txc::shop::InventoryProcessor>(
            std::make_shared<InventoryHandler>(std::move(db)));
      });
}
