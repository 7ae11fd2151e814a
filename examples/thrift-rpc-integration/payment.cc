// rpc_integration_payment: the Payment service (payment.thrift, no transaction
// field). charge() debits an account in its own PostgreSQL database through
// PgTxnResource, auto-enlisted in the caller's global transaction.
//
//   rpc_integration_payment --port 7621 --participant_port 7622
//       --db "host=... dbname=payment" --coordinators 127.0.0.1:7400 --seed alice=100,bob=5
#include "gen-cpp/Payment.h"

#include "examples/thrift-rpc-integration/downstream_main.h"

namespace {

using txc::participant::PgTxnResource;

class PaymentHandler : public txc::shop::PaymentIf {
 public:
  explicit PaymentHandler(std::shared_ptr<PgTxnResource> db) : db_(std::move(db)) {}

  void charge(const std::string& account, int64_t amount) override {
    bool insufficient = false;
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      pqxx::result r =
          t.exec_params("UPDATE account SET balance = balance - $1 WHERE id = $2 AND balance >= $1",
                        amount, account);
      if (r.affected_rows() != 1) {
        insufficient = true;
        throw std::runtime_error("insufficient funds");
      }
    });
    if (!s.ok()) {
      txc::shop::PaymentRefused e;
      e.message = insufficient ? account + ": insufficient funds" : s.ToString();
      LOG(INFO) << "charge " << amount << " to " << account << ": " << e.message;
      throw e;
    }
    LOG(INFO) << "charge " << amount << " to " << account << ": ok";
  }

  int64_t balance(const std::string& account) override {
    int64_t balance = 0;
    txc::Status s = db_->Run([&](pqxx::transaction_base& t) {
      pqxx::result r = t.exec_params("SELECT balance FROM account WHERE id = $1", account);
      if (!r.empty()) balance = r[0][0].as<int64_t>();
    });
    if (!s.ok()) throw std::runtime_error(s.ToString());
    return balance;
  }

 private:
  std::shared_ptr<PgTxnResource> db_;
};

}  // namespace

int main(int argc, char** argv) {
  return rpc_integration::RunDownstream(
      "rpc_integration_payment", "payment", argc, argv,
      "CREATE TABLE IF NOT EXISTS account (id text PRIMARY KEY, balance bigint NOT NULL "
      "CHECK (balance >= 0))",
      [](pqxx::work& w, const std::string& id, int64_t balance) {
        w.exec_params("INSERT INTO account VALUES ($1, $2) ON CONFLICT DO NOTHING", id, balance);
      },
      [](std::shared_ptr<PgTxnResource> db) {
        return std::make_shared<txc::shop::PaymentProcessor>(
            std::make_shared<PaymentHandler>(std::move(db)));
      });
}
