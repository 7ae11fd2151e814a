// Shared pieces of the order-payment saga example: the order payload, small
// SQLite helpers, the service main loop, and the client library (placing
// orders through the coordinator and checking the invariant over the three
// services' databases), which tests/saga reuses.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/tls.h"
#include "gen-cpp/Coordinator.h"
#include "txc/participant/participant.h"

namespace shop {

// ---- the order every step of one saga carries as payload ---------------------
struct Order {
  std::string id;        // also the saga's gtid
  std::string customer;  // payment account
  std::string item;      // inventory item
  int64_t qty = 0;
  int64_t amount = 0;  // qty * price, in cents
};
std::string EncodeOrder(const Order& order);  // "id=..;customer=..;item=..;qty=..;amount=.."
txc::Result<Order> DecodeOrder(const std::string& payload);

// ---- SQLite helpers ------------------------------------------------------------
// Runs SQL with positional text/int parameters; kInternal with the message on error.
using SqlArg = std::variant<int64_t, std::string>;
txc::Status Exec(sqlite3* db, const std::string& sql, const std::vector<SqlArg>& args = {});
// First column of the first row as an integer; kNotFound when there is no row.
txc::Result<int64_t> QueryInt(sqlite3* db, const std::string& sql,
                              const std::vector<SqlArg>& args = {});
// Every row, every column as text.
txc::Result<std::vector<std::vector<std::string>>> QueryRows(sqlite3* db, const std::string& sql,
                                                             const std::vector<SqlArg>& args = {});

// An open SQLite handle, closed on destruction.
struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
txc::Result<Db> OpenDb(const std::string& path, bool read_only);

// ---- a service process -----------------------------------------------------------
struct ServiceFlags {
  std::string db;               // --db: the service's SQLite file
  int port = 0;                 // --port: 0 picks a free one
  std::string port_file;        // --port_file: the bound port is written here once serving
  std::string coordinator;      // --coordinator: host:port (comma-separated replicas)
  std::string seed;             // --seed: "name:number,..." initial rows if the db is new
  int64_t action_delay_ms = 0;  // --action_delay_ms: sleep inside every action (tests)
  // --tls_cert/--tls_key/--tls_ca: mutual TLS on the service's port (callers,
  // i.e. the coordinator, need a certificate from the CA) and for its
  // recovery calls to the coordinator.
  txc::TlsOptions tls{};
};
// Parses a service's command line (common/cli.h: --flag value or --flag=value,
// --help). Returns -1 when main should go on, else its exit code (0 after
// --help, 2 after a bad flag or value).
int ParseFlags(const std::string& program, int argc, char** argv, ServiceFlags* flags);

// Opens/creates the database (WAL), applies the barrier migration and
// `schema_sql`, calls `seed` inside one transaction when the database was new,
// then serves `hooks` under a SQLite barrier until SIGTERM/SIGINT. Returns the
// process exit code.
int RunService(const std::string& name, const ServiceFlags& flags, const std::string& schema_sql,
               const std::function<txc::Status(sqlite3*)>& seed,
               std::shared_ptr<txc::participant::Participant> hooks);

// Parses "a:1:x,b:2:y" into rows of fields.
std::vector<std::vector<std::string>> ParseSeed(const std::string& seed);

// The hooks every service shares: Action sleeps --action_delay_ms, then hands
// the barrier's SQLite transaction and the decoded order to Act (no
// transaction: RETRY_LATER; a bad payload: FAILURE); Compensate hands them to
// Undo (either missing: RETRY_LATER).
class OrderStepHooks : public txc::participant::Participant {
 public:
  explicit OrderStepHooks(int64_t action_delay_ms) : action_delay_ms_(action_delay_ms) {}
  txc::participant::StepResult Action(const txc::participant::StepContext& ctx) final;
  txc::participant::StepResult Compensate(const txc::participant::StepContext& ctx) final;

 protected:
  // `step` is the step's action / compensation name.
  virtual txc::participant::StepResult Act(const std::string& step, sqlite3* db,
                                           const Order& order) = 0;
  virtual txc::participant::StepResult Undo(const std::string& step, sqlite3* db,
                                            const Order& order) = 0;

 private:
  const int64_t action_delay_ms_;
};

// The whole main() of a service: glog to stderr, ParseFlags (`default_seed`
// when --seed is not given), then RunService with `seed` called on the parsed
// seed rows and the hooks `make_hooks(--action_delay_ms)` returns.
int ServiceMain(
    int argc, char** argv, const std::string& name, const std::string& default_seed,
    const std::string& schema_sql,
    const std::function<txc::Status(sqlite3*, const std::vector<std::string>& row)>& seed_row,
    const std::function<std::shared_ptr<OrderStepHooks>(int64_t action_delay_ms)>& make_hooks);

// ---- the client --------------------------------------------------------------------
struct ShopEndpoints {
  std::string coordinator;                // host:port (comma-separated replicas)
  std::string order, payment, inventory;  // participant endpoints
  std::string order_db, payment_db, inventory_db;
  txc::TlsOptions tls{};  // TLS to the coordinator when enabled() (--tls_cert/key/ca)
};

// What happened to one order.
struct OrderResult {
  Order order;
  std::string saga_state;   // SUCCEEDED, COMPENSATED, ... or "UNKNOWN: <error>"
  std::string failed_step;  // the step that failed ("" when none)
  std::string failure;      // its last error
};

struct PlaceOptions {
  int orders = 200;
  int concurrency = 16;
  uint64_t seed = 1;
  std::string id_prefix = "order";     // gtids are <id_prefix>-<n>
  int64_t wait_timeout_ms = 30000;     // per submitSaga
  int64_t finish_timeout_ms = 120000;  // polling for sagas still running after that
  // Retry policy of every step.
  int32_t max_attempts = 5;
  int32_t initial_backoff_ms = 100;
  int32_t max_backoff_ms = 2000;
};

// The four-step order saga for one order.
std::vector<std::string>
SagaStepIds();  // create_order, reserve_stock, charge_payment, confirm_order

// Reads customers and items from the databases, places `orders` random orders
// (some exceed the stock, some the balance), `concurrency` at a time, each as
// one saga with gtid = order id, and waits until every saga ended.
txc::Result<std::vector<OrderResult>> PlaceOrders(const ShopEndpoints& endpoints,
                                                  const PlaceOptions& options);

// The submitSaga request of one order (gtid = order id, wait_for_completion).
txc::wire::SubmitSagaRequest MakeOrderSagaRequest(const ShopEndpoints& endpoints,
                                                  const Order& order, const PlaceOptions& options);

// Submits one order's saga (wait_for_completion) and waits for it to end.
OrderResult PlaceOne(const ShopEndpoints& endpoints, const Order& order,
                     const PlaceOptions& options);

struct InvariantReport {
  bool ok = false;
  int64_t confirmed = 0;     // order confirmed, stock reserved, payment taken
  int64_t out_of_stock = 0;  // cancelled by the inventory step
  int64_t declined = 0;      // cancelled by the payment step
  int64_t cancelled_other = 0;
  int64_t unfinished = 0;               // saga not SUCCEEDED/COMPENSATED
  std::vector<std::string> violations;  // empty when ok
  std::string Summary() const;
};

// Checks, over the three databases: every order is confirmed with stock
// reserved and payment taken (and its saga SUCCEEDED), or cancelled/absent with
// no reservation and no payment (saga COMPENSATED); stock and money are
// conserved (available + reserved = initial; balance + charged = initial).
InvariantReport CheckInvariant(const ShopEndpoints& endpoints,
                               const std::vector<OrderResult>& results);

}  // namespace shop
