#include "examples/order-payment-saga/shop.h"

#include <glog/logging.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/backoff.h"
#include "common/cli.h"
#include "common/strings.h"
#include "common/thrift_util.h"
#include "migrations/migrator.h"
#include "txc/participant/barrier.h"
#include "txc/participant/coordinator_client.h"
#include "txc/participant/participant_server.h"

namespace shop {

using txc::Result;
using txc::Status;

// ---- payload -------------------------------------------------------------------

std::string EncodeOrder(const Order& o) {
  return "id=" + o.id + ";customer=" + o.customer + ";item=" + o.item +
         ";qty=" + std::to_string(o.qty) + ";amount=" + std::to_string(o.amount);
}

Result<Order> DecodeOrder(const std::string& payload) {
  Order o;
  std::stringstream in(payload);
  std::string kv;
  try {
    while (std::getline(in, kv, ';')) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) continue;
      const std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
      if (k == "id") o.id = v;
      if (k == "customer") o.customer = v;
      if (k == "item") o.item = v;
      if (k == "qty") o.qty = std::stoll(v);
      if (k == "amount") o.amount = std::stoll(v);
    }
  } catch (const std::exception& e) {
    return Status::InvalidArgument("bad order payload: " + payload);
  }
  if (o.id.empty() || o.customer.empty() || o.item.empty() || o.qty <= 0 || o.amount < 0) {
    return Status::InvalidArgument("incomplete order payload: " + payload);
  }
  return o;
}

// ---- SQLite --------------------------------------------------------------------

namespace {

Result<sqlite3_stmt*> Prepare(sqlite3* db, const std::string& sql,
                              const std::vector<SqlArg>& args) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return Status::Internal(std::string("sqlite prepare: ") + sqlite3_errmsg(db) + " in " + sql);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    const int idx = static_cast<int>(i + 1);
    if (std::holds_alternative<int64_t>(args[i])) {
      sqlite3_bind_int64(stmt, idx, std::get<int64_t>(args[i]));
    } else {
      const std::string& s = std::get<std::string>(args[i]);
      sqlite3_bind_text(stmt, idx, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    }
  }
  return stmt;
}

}  // namespace

Status Exec(sqlite3* db, const std::string& sql, const std::vector<SqlArg>& args) {
  if (args.empty()) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string m = err ? err : "?";
      sqlite3_free(err);
      return Status::Internal("sqlite: " + m);
    }
    return Status::Ok();
  }
  auto stmt = Prepare(db, sql, args);
  if (!stmt.ok()) return stmt.status();
  int rc;
  while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
  }
  sqlite3_finalize(*stmt);
  if (rc != SQLITE_DONE) return Status::Internal(std::string("sqlite: ") + sqlite3_errmsg(db));
  return Status::Ok();
}

Result<std::vector<std::vector<std::string>>> QueryRows(sqlite3* db, const std::string& sql,
                                                        const std::vector<SqlArg>& args) {
  auto stmt = Prepare(db, sql, args);
  if (!stmt.ok()) return stmt.status();
  std::vector<std::vector<std::string>> rows;
  int rc;
  while ((rc = sqlite3_step(*stmt)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int c = 0; c < sqlite3_column_count(*stmt); ++c) {
      const unsigned char* t = sqlite3_column_text(*stmt, c);
      row.push_back(t ? reinterpret_cast<const char*>(t) : "");
    }
    rows.push_back(std::move(row));
  }
  sqlite3_finalize(*stmt);
  if (rc != SQLITE_DONE) return Status::Internal(std::string("sqlite: ") + sqlite3_errmsg(db));
  return rows;
}

Result<int64_t> QueryInt(sqlite3* db, const std::string& sql, const std::vector<SqlArg>& args) {
  auto stmt = Prepare(db, sql, args);
  if (!stmt.ok()) return stmt.status();
  int rc = sqlite3_step(*stmt);
  if (rc == SQLITE_ROW) {
    int64_t v = sqlite3_column_int64(*stmt, 0);
    sqlite3_finalize(*stmt);
    return v;
  }
  sqlite3_finalize(*stmt);
  if (rc == SQLITE_DONE) return Status::NotFound("no row");
  return Status::Internal(std::string("sqlite: ") + sqlite3_errmsg(db));
}

Result<Db> OpenDb(const std::string& path, bool read_only) {
  sqlite3* raw = nullptr;
  const int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &raw, flags, nullptr) != SQLITE_OK) {
    std::string m = raw ? sqlite3_errmsg(raw) : "out of memory";
    sqlite3_close(raw);
    return Status::Unavailable("cannot open " + path + ": " + m);
  }
  Db db(raw);
  sqlite3_busy_timeout(raw, 5000);
  if (!read_only) {
    TXC_RETURN_IF_ERROR(Exec(raw, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"));
  }
  return db;
}

// ---- service process -------------------------------------------------------------

int ParseFlags(const std::string& program, int argc, char** argv, ServiceFlags* f) {
  namespace po = boost::program_options;
  po::options_description flags("Flags");
  flags.add_options()("db", po::value(&f->db)->required()->notifier(txc::cli::NotEmpty("db")),
                      "the service's SQLite database file (created when missing)")(
      "port", po::value(&f->port)->default_value(0)->notifier(txc::cli::InRange("port", 0, 65535)),
      "port to serve on (0: any free port)")("port_file", po::value(&f->port_file),
                                             "write the bound port here once serving")(
      "coordinator", po::value(&f->coordinator),
      "coordinator replicas host:port,host:port (for the participant's recovery)")(
      "seed", po::value(&f->seed), "initial rows when the database is new, name:number,...")(
      "action_delay_ms",
      po::value(&f->action_delay_ms)
          ->default_value(0)
          ->notifier(txc::cli::InRange64("action_delay_ms", 0, 600000)),
      "sleep this long inside every action (tests)");
  txc::cli::TlsFlags tls;
  txc::cli::AddTlsFlags(flags, &tls);
  const int rc =
      txc::cli::Parse(program, "Usage: " + program + " --db=FILE [flags]", argc, argv, flags);
  f->tls = tls.Options();
  return rc;
}

std::vector<std::vector<std::string>> ParseSeed(const std::string& seed) {
  std::vector<std::vector<std::string>> rows;
  for (const std::string& entry : txc::SplitList(seed)) {
    std::vector<std::string> fields;
    std::stringstream e(entry);
    std::string field;
    while (std::getline(e, field, ':')) fields.push_back(field);
    rows.push_back(std::move(fields));
  }
  return rows;
}

int RunService(const std::string& name, const ServiceFlags& flags, const std::string& schema_sql,
               const std::function<Status(sqlite3*)>& seed,
               std::shared_ptr<txc::participant::Participant> hooks) {
  if (flags.db.empty()) {
    LOG(ERROR) << name << ": --db=<sqlite file> is required";
    return 2;
  }
  // Block the stop signals before any thread starts; main waits for them below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);  // re-read the TLS files
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  {
    auto db = OpenDb(flags.db, /*read_only=*/false);
    if (!db.ok()) {
      LOG(ERROR) << name << ": " << db.status();
      return 1;
    }
    Status s = txc::MigrateSqlite(db->get(), "participant");
    if (s.ok()) s = Exec(db->get(), "BEGIN IMMEDIATE");
    if (s.ok()) {
      auto existed =
          QueryInt(db->get(), "SELECT count(*) FROM sqlite_master WHERE name = 'shop_seeded'");
      const bool fresh = existed.ok() && *existed == 0;
      s = Exec(db->get(), schema_sql);
      if (s.ok() && fresh) {
        s = seed(db->get());
        if (s.ok()) s = Exec(db->get(), "CREATE TABLE shop_seeded (at_ms INTEGER)");
      }
      if (s.ok()) {
        s = Exec(db->get(), "COMMIT");
      } else {
        Exec(db->get(), "ROLLBACK").IgnoreError();
      }
    }
    if (!s.ok()) {
      LOG(ERROR) << name << ": cannot prepare " << flags.db << ": " << s;
      return s.code() == txc::StatusCode::kInvalidArgument ? 2 : 1;  // a bad --seed
    }
  }

  txc::participant::ParticipantServerOptions o;
  o.host = "127.0.0.1";
  o.port = flags.port;
  o.coordinators = txc::SplitList(flags.coordinator);
  o.barrier = std::make_shared<txc::participant::SqliteBarrierStore>(flags.db);
  o.tls = flags.tls;
  o.coordinator_client.tls = flags.tls;
  txc::participant::ParticipantServer server(std::move(hooks), o);
  Status started = server.Start();
  if (!started.ok()) {
    LOG(ERROR) << name << ": cannot start: " << started;
    return 1;
  }
  if (!flags.port_file.empty()) {
    const std::string tmp = flags.port_file + ".tmp";
    std::ofstream(tmp) << server.port() << "\n";
    std::rename(tmp.c_str(), flags.port_file.c_str());
  }
  LOG(INFO) << name << " service serving on " << server.endpoint() << " with " << flags.db;
  int sig = 0;
  while (sigwait(&stop, &sig) == 0 && sig == SIGHUP) {
    Status reloaded = server.ReloadTls();
    if (reloaded.ok()) {
      LOG(INFO) << name << ": TLS files reloaded";
    } else {
      LOG(ERROR) << name << ": TLS reload failed (previous files stay): " << reloaded;
    }
  }
  LOG(INFO) << name << " service stopping (signal " << sig << ")";
  server.Stop();
  return 0;
}

txc::participant::StepResult OrderStepHooks::Action(const txc::participant::StepContext& ctx) {
  if (action_delay_ms_ > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(action_delay_ms_));
  sqlite3* db = txc::participant::SqliteDbOf(ctx);
  auto order = DecodeOrder(ctx.payload);
  if (db == nullptr) return txc::participant::StepResult::RetryLater("no barrier transaction");
  if (!order.ok()) return txc::participant::StepResult::Failure(order.status().message());
  return Act(ctx.name, db, *order);
}

txc::participant::StepResult OrderStepHooks::Compensate(const txc::participant::StepContext& ctx) {
  sqlite3* db = txc::participant::SqliteDbOf(ctx);
  auto order = DecodeOrder(ctx.payload);
  if (db == nullptr || !order.ok())
    return txc::participant::StepResult::RetryLater("cannot compensate now");
  return Undo(ctx.name, db, *order);
}

int ServiceMain(
    int argc, char** argv, const std::string& name, const std::string& default_seed,
    const std::string& schema_sql,
    const std::function<Status(sqlite3*, const std::vector<std::string>& row)>& seed_row,
    const std::function<std::shared_ptr<OrderStepHooks>(int64_t action_delay_ms)>& make_hooks) {
  ServiceFlags flags;
  if (int rc = ParseFlags(name + "_service", argc, argv, &flags); rc >= 0) return rc;
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  txc::RouteThriftLogsToGlog();
  if (flags.seed.empty()) flags.seed = default_seed;
  const std::string seed = flags.seed;
  return RunService(
      name, flags, schema_sql,
      [&seed, &seed_row](sqlite3* db) {
        if (!seed_row) return Status::Ok();
        for (const auto& row : ParseSeed(seed)) TXC_RETURN_IF_ERROR(seed_row(db, row));
        return Status::Ok();
      },
      make_hooks(flags.action_delay_ms));
}

// ---- client ------------------------------------------------------------------------

std::vector<std::string> SagaStepIds() {
  return {"create_order", "reserve_stock", "charge_payment", "confirm_order"};
}

namespace {

txc::wire::SagaStep MakeStep(const std::string& id, const std::string& endpoint,
                             const std::string& action, const std::string& compensation,
                             const std::string& payload, const PlaceOptions& options) {
  txc::wire::SagaStep s;
  s.__set_step_id(id);
  s.__set_endpoint(endpoint);
  s.__set_action(action);
  s.__set_compensation(compensation);
  s.__set_payload(payload);
  txc::wire::RetryPolicy p;
  p.__set_max_attempts(options.max_attempts);
  p.__set_initial_backoff_ms(options.initial_backoff_ms);
  p.__set_max_backoff_ms(options.max_backoff_ms);
  s.__set_retry_policy(p);
  return s;
}

bool FinalSagaState(int state) {
  return state == txc::wire::TxnState::SUCCEEDED || state == txc::wire::TxnState::COMPENSATED;
}

std::string StateName(int state) {
  auto it = txc::wire::_TxnState_VALUES_TO_NAMES.find(state);
  return it == txc::wire::_TxnState_VALUES_TO_NAMES.end() ? "?" : it->second;
}

Result<std::unique_ptr<txc::participant::CoordinatorClient>> MakeClient(
    const ShopEndpoints& endpoints, const PlaceOptions& options) {
  txc::participant::CoordinatorClientOptions co;
  co.endpoints = txc::SplitList(endpoints.coordinator);
  co.rpc_timeout_ms = static_cast<int>(options.wait_timeout_ms + 5000);
  co.call_deadline_ms = options.finish_timeout_ms;
  co.max_attempts = 1000;  // bounded by call_deadline_ms
  co.backoff = txc::BackoffPolicy{100, 1000, 2.0};
  co.tls = endpoints.tls;
  return txc::participant::CoordinatorClient::Create(co);
}

OrderResult PlaceWith(txc::participant::CoordinatorClient* client, const ShopEndpoints& ep,
                      const Order& order, const PlaceOptions& options) {
  OrderResult r;
  r.order = order;
  txc::wire::SubmitSagaRequest req = MakeOrderSagaRequest(ep, order, options);
  const int64_t deadline = txc::MonotonicMs() + options.finish_timeout_ms;
  int state = 0;
  std::string last_error;
  // Submit (retry-safe: the gtid makes it idempotent), then poll until it ended.
  for (int attempt = 1;; ++attempt) {
    auto resp = client->SubmitSaga(req);
    if (resp.ok()) {
      state = resp->state;
      break;
    }
    last_error = resp.status().ToString();
    if (resp.status().code() == txc::StatusCode::kInvalidArgument ||
        resp.status().code() == txc::StatusCode::kIllegalTransition ||
        txc::MonotonicMs() > deadline) {
      r.saga_state = "UNKNOWN: " + last_error;
      return r;
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(txc::BackoffDelayMs({100, 1000, 2.0}, attempt)));
  }
  txc::wire::TxnStatus status;
  for (int attempt = 1;; ++attempt) {
    auto st = client->GetStatus(order.id);
    if (st.ok()) {
      status = *st;
      state = status.state;
      if (FinalSagaState(state)) break;
    } else {
      last_error = st.status().ToString();
    }
    if (txc::MonotonicMs() > deadline) {
      r.saga_state = st.ok() ? StateName(state) : "UNKNOWN: " + last_error;
      return r;
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(txc::BackoffDelayMs({50, 500, 2.0}, attempt)));
  }
  r.saga_state = StateName(state);
  for (const auto& b : status.branches) {
    if (b.last_error.rfind("action refused", 0) == 0 ||
        b.last_error.rfind("attempts exhausted", 0) == 0) {
      r.failed_step = b.branch_id;
      r.failure = b.last_error;
      break;
    }
  }
  return r;
}

}  // namespace

txc::wire::SubmitSagaRequest MakeOrderSagaRequest(const ShopEndpoints& ep, const Order& order,
                                                  const PlaceOptions& options) {
  const std::string payload = EncodeOrder(order);
  txc::wire::SubmitSagaRequest req;
  req.__set_gtid(order.id);
  req.steps = {
      MakeStep("create_order", ep.order, "create_order", "cancel_order", payload, options),
      MakeStep("reserve_stock", ep.inventory, "reserve_stock", "release_stock", payload, options),
      MakeStep("charge_payment", ep.payment, "charge", "refund", payload, options),
      MakeStep("confirm_order", ep.order, "confirm_order", "unconfirm_order", payload, options)};
  req.__set_wait_for_completion(true);
  req.__set_wait_timeout_ms(options.wait_timeout_ms);
  return req;
}

OrderResult PlaceOne(const ShopEndpoints& endpoints, const Order& order,
                     const PlaceOptions& options) {
  auto client = MakeClient(endpoints, options);
  if (!client.ok()) {
    OrderResult r;
    r.order = order;
    r.saga_state = "UNKNOWN: " + client.status().ToString();
    return r;
  }
  return PlaceWith(client->get(), endpoints, order, options);
}

Result<std::vector<OrderResult>> PlaceOrders(const ShopEndpoints& endpoints,
                                             const PlaceOptions& options) {
  std::vector<std::pair<std::string, int64_t>> items;  // item, price
  std::vector<std::string> customers;
  {
    TXC_ASSIGN_OR_RETURN(Db inv, OpenDb(endpoints.inventory_db, /*read_only=*/true));
    TXC_ASSIGN_OR_RETURN(auto rows,
                         QueryRows(inv.get(), "SELECT item, price FROM stock ORDER BY item"));
    for (auto& r : rows) items.emplace_back(r[0], std::stoll(r[1]));
    TXC_ASSIGN_OR_RETURN(Db pay, OpenDb(endpoints.payment_db, /*read_only=*/true));
    TXC_ASSIGN_OR_RETURN(auto accts,
                         QueryRows(pay.get(), "SELECT customer FROM accounts ORDER BY customer"));
    for (auto& r : accts) customers.push_back(r[0]);
  }
  if (items.empty() || customers.empty()) {
    return Status::InvalidArgument("the inventory or payment database has no rows");
  }
  std::mt19937_64 rng(options.seed);
  std::vector<Order> orders;
  for (int i = 0; i < options.orders; ++i) {
    Order o;
    o.id = options.id_prefix + "-" + std::to_string(i);
    o.customer = customers[rng() % customers.size()];
    const auto& item = items[rng() % items.size()];
    o.item = item.first;
    o.qty = 1 + static_cast<int64_t>(rng() % 5);
    o.amount = o.qty * item.second;
    orders.push_back(o);
  }
  TXC_ASSIGN_OR_RETURN(auto client, MakeClient(endpoints, options));
  std::vector<OrderResult> results(orders.size());
  std::atomic<size_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < std::max(1, options.concurrency); ++t) {
    threads.emplace_back([&] {
      for (size_t i = next++; i < orders.size(); i = next++) {
        results[i] = PlaceWith(client.get(), endpoints, orders[i], options);
      }
    });
  }
  for (auto& t : threads) t.join();
  return results;
}

std::string InvariantReport::Summary() const {
  std::ostringstream out;
  out << "confirmed=" << confirmed << " cancelled_out_of_stock=" << out_of_stock
      << " cancelled_declined=" << declined << " cancelled_other=" << cancelled_other
      << " unfinished=" << unfinished << " invariant=" << (ok ? "OK" : "FAILED");
  for (size_t i = 0; i < violations.size() && i < 20; ++i)
    out << "\n  violation: " << violations[i];
  if (violations.size() > 20) out << "\n  ... " << violations.size() - 20 << " more";
  return out.str();
}

InvariantReport CheckInvariant(const ShopEndpoints& ep, const std::vector<OrderResult>& results) {
  InvariantReport rep;
  auto fail = [&](const std::string& v) { rep.violations.push_back(v); };
  auto orders_db = OpenDb(ep.order_db, true);
  auto inv_db = OpenDb(ep.inventory_db, true);
  auto pay_db = OpenDb(ep.payment_db, true);
  if (!orders_db.ok() || !inv_db.ok() || !pay_db.ok()) {
    fail("cannot open the databases");
    return rep;
  }
  sqlite3* odb = orders_db->get();
  sqlite3* idb = inv_db->get();
  sqlite3* pdb = pay_db->get();

  for (const OrderResult& r : results) {
    const Order& o = r.order;
    auto status_rows = QueryRows(odb, "SELECT status FROM orders WHERE id = ?", {o.id});
    auto res_rows = QueryRows(idb, "SELECT item, qty FROM reservations WHERE order_id = ?", {o.id});
    auto pay_rows =
        QueryRows(pdb, "SELECT customer, amount FROM payments WHERE order_id = ?", {o.id});
    if (!status_rows.ok() || !res_rows.ok() || !pay_rows.ok()) {
      fail(o.id + ": cannot read its rows");
      continue;
    }
    const std::string status = status_rows->empty() ? "absent" : (*status_rows)[0][0];
    const bool reserved = !res_rows->empty();
    const bool paid = !pay_rows->empty();
    if (r.saga_state != "SUCCEEDED" && r.saga_state != "COMPENSATED") {
      ++rep.unfinished;
      fail(o.id + ": saga " + r.saga_state);
      continue;
    }
    if (status == "confirmed") {
      ++rep.confirmed;
      if (r.saga_state != "SUCCEEDED") fail(o.id + ": confirmed but saga " + r.saga_state);
      if (!reserved || (*res_rows)[0][0] != o.item || std::stoll((*res_rows)[0][1]) != o.qty) {
        fail(o.id + ": confirmed without its stock reservation");
      }
      if (!paid || (*pay_rows)[0][0] != o.customer || std::stoll((*pay_rows)[0][1]) != o.amount) {
        fail(o.id + ": confirmed without its payment");
      }
    } else if (status == "cancelled" || status == "absent") {
      if (r.saga_state != "COMPENSATED") fail(o.id + ": " + status + " but saga " + r.saga_state);
      if (reserved) fail(o.id + ": cancelled but stock still reserved");
      if (paid) fail(o.id + ": cancelled but payment kept");
      if (r.failed_step == "reserve_stock") {
        ++rep.out_of_stock;
      } else if (r.failed_step == "charge_payment") {
        ++rep.declined;
      } else {
        ++rep.cancelled_other;
      }
    } else {
      fail(o.id + ": order left " + status + " (saga " + r.saga_state + ")");
    }
  }

  // Every reservation and payment belongs to a confirmed order (any run).
  auto confirmed_rows = QueryRows(odb, "SELECT id FROM orders WHERE status = 'confirmed'");
  std::set<std::string> confirmed;
  if (confirmed_rows.ok()) {
    for (auto& row : *confirmed_rows) confirmed.insert(row[0]);
  }
  if (auto rows = QueryRows(idb, "SELECT order_id FROM reservations"); rows.ok()) {
    for (auto& row : *rows) {
      if (!confirmed.count(row[0])) fail(row[0] + ": stock reserved for an order not confirmed");
    }
  }
  if (auto rows = QueryRows(pdb, "SELECT order_id FROM payments"); rows.ok()) {
    for (auto& row : *rows) {
      if (!confirmed.count(row[0])) fail(row[0] + ": payment kept for an order not confirmed");
    }
  }
  // Conservation.
  auto stock = QueryRows(idb,
                         "SELECT i.item, i.qty, s.available, "
                         "(SELECT coalesce(sum(qty), 0) FROM reservations r WHERE r.item = i.item) "
                         "FROM initial_stock i JOIN stock s ON s.item = i.item");
  if (!stock.ok()) {
    fail("cannot read stock: " + stock.status().ToString());
  } else {
    for (auto& row : *stock) {
      const int64_t initial = std::stoll(row[1]), available = std::stoll(row[2]),
                    reserved = std::stoll(row[3]);
      if (available < 0 || available + reserved != initial) {
        fail("stock of " + row[0] + ": available " + row[2] + " + reserved " + row[3] +
             " != initial " + row[1]);
      }
    }
  }
  auto money = QueryRows(pdb,
                         "SELECT i.customer, i.amount, a.balance, "
                         "(SELECT coalesce(sum(amount), 0) FROM payments p "
                         "WHERE p.customer = i.customer) "
                         "FROM initial_balance i JOIN accounts a ON a.customer = i.customer");
  if (!money.ok()) {
    fail("cannot read balances: " + money.status().ToString());
  } else {
    for (auto& row : *money) {
      const int64_t initial = std::stoll(row[1]), balance = std::stoll(row[2]),
                    charged = std::stoll(row[3]);
      if (balance < 0 || balance + charged != initial) {
        fail("balance of " + row[0] + ": " + row[2] + " + charged " + row[3] + " != initial " +
             row[1]);
      }
    }
  }
  rep.ok = rep.violations.empty();
  return rep;
}

}  // namespace shop
