// Sagas end to end in real processes: the `coordinator` executable (embedded
// SQLite store) and the order-payment example's three services (each its own
// process and SQLite database, on the participant SDK with its barrier). The
// test places orders through the wire API and checks the invariant over the
// three databases: every order confirmed with stock reserved and payment taken,
// or cancelled with stock and money restored. Every connection uses the
// suite's transport (suite_tls.h: mutual TLS under TXC_TEST_TLS=1).
#include <glog/logging.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/crash_point.h"
#include "examples/order-payment-saga/shop.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "tests/saga/shop_processes.h"
#include "txc/participant/coordinator_client.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr char kInventorySeed[] = "widget:1000:100,gadget:3:500";
constexpr char kPaymentSeed[] = "rich:100000000,poor:50";

class SagaProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coordinator_port_ = testing::FreeLoopbackPort();
    ep_.coordinator = "127.0.0.1:" + std::to_string(coordinator_port_);
    ep_.order_db = dir_.Child("order.db");
    ep_.payment_db = dir_.Child("payment.db");
    ep_.inventory_db = dir_.Child("inventory.db");
    ep_.tls = testing::SuiteTls::Get().ClientTls();
  }

  void StartCoordinator(const std::string& crash_point = "") {
    ChildProcess::Options o;
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(coordinator_port_),
              "--data_dir=" + dir_.Child("coord"),
              "--sweep_interval_ms=100",
              "-v"};
    testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    if (!crash_point.empty()) o.env = {{"TXC_CRASH_POINTS", crash_point}};
    o.log_path = dir_.Child("coordinator.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(coordinator_port_, 20000).ok()) << coordinator_->LogTail();
  }

  // Starts (or restarts, on the same port and database) one service.
  void StartService(const std::string& name, std::vector<std::string> extra = {}) {
    shop_.Start(name, std::move(extra));
  }

  void StartAll(std::vector<std::string> payment_extra = {}) {
    StartService("order");
    StartService("inventory");
    StartService("payment", payment_extra);
    StartCoordinator();
  }

  shop::OrderResult Place(const std::string& id, const std::string& customer,
                          const std::string& item, int64_t qty, int64_t price) {
    shop::Order o{id, customer, item, qty, qty * price};
    shop::PlaceOptions options;
    options.finish_timeout_ms = 60000;
    return shop::PlaceOne(ep_, o, options);
  }

  std::unique_ptr<participant::CoordinatorClient> Client() {
    participant::CoordinatorClientOptions o;
    o.endpoints = {ep_.coordinator};
    o.tls = testing::SuiteTls::Get().ClientTls();
    auto c = participant::CoordinatorClient::Create(o);
    EXPECT_TRUE(c.ok());
    return std::move(c).value();
  }

  std::string Logs() {
    std::string out;
    if (coordinator_) out += "--- coordinator ---\n" + coordinator_->LogTail(3000);
    out += shop_.LogTails(1500);
    return out;
  }

  testing::TempDir dir_{"saga-process-test-"};
  int coordinator_port_ = 0;
  std::unique_ptr<ChildProcess> coordinator_;
  testing::ShopProcesses shop_{&dir_, &ep_, kInventorySeed, kPaymentSeed};
  shop::ShopEndpoints ep_;
};

TEST_F(SagaProcessTest, HappyPathConfirmsTheOrder) {
  StartAll();
  auto r = Place("happy-1", "rich", "widget", 2, 100);
  EXPECT_EQ(r.saga_state, "SUCCEEDED") << Logs();
  auto report = shop::CheckInvariant(ep_, {r});
  EXPECT_TRUE(report.ok) << report.Summary();
  EXPECT_EQ(report.confirmed, 1);
}

TEST_F(SagaProcessTest, DeclinedPaymentReleasesStockAndCancelsTheOrder) {
  StartAll();
  auto r = Place("declined-1", "poor", "widget", 2, 100);
  EXPECT_EQ(r.saga_state, "COMPENSATED") << Logs();
  EXPECT_EQ(r.failed_step, "charge_payment");
  EXPECT_NE(r.failure.find("insufficient balance"), std::string::npos) << r.failure;
  auto report = shop::CheckInvariant(ep_, {r});
  EXPECT_TRUE(report.ok) << report.Summary();
  EXPECT_EQ(report.declined, 1);
  auto db = shop::OpenDb(ep_.inventory_db, true);
  ASSERT_TRUE(db.ok());
  auto available = shop::QueryInt(db->get(), "SELECT available FROM stock WHERE item = 'widget'");
  ASSERT_TRUE(available.ok());
  EXPECT_EQ(*available, 1000);  // reserved, then released
}

TEST_F(SagaProcessTest, OutOfStockCancelsTheOrder) {
  StartAll();
  auto r = Place("oos-1", "rich", "gadget", 5, 500);
  EXPECT_EQ(r.saga_state, "COMPENSATED") << Logs();
  EXPECT_EQ(r.failed_step, "reserve_stock");
  auto report = shop::CheckInvariant(ep_, {r});
  EXPECT_TRUE(report.ok) << report.Summary();
  EXPECT_EQ(report.out_of_stock, 1);
  auto db = shop::OpenDb(ep_.order_db, true);
  ASSERT_TRUE(db.ok());
  auto rows = shop::QueryRows(db->get(), "SELECT status FROM orders WHERE id = 'oos-1'");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0][0], "cancelled");
}

TEST_F(SagaProcessTest, ManyConcurrentOrdersKeepTheInvariant) {
  StartAll();
  shop::PlaceOptions options;
  options.orders = 60;
  options.concurrency = 12;
  options.id_prefix = "many";
  auto results = shop::PlaceOrders(ep_, options);
  ASSERT_TRUE(results.ok()) << results.status();
  auto report = shop::CheckInvariant(ep_, *results);
  EXPECT_TRUE(report.ok) << report.Summary() << Logs();
  EXPECT_EQ(report.unfinished, 0);
  EXPECT_GT(report.confirmed, 0);
  EXPECT_GT(report.declined + report.out_of_stock, 0);
}

TEST_F(SagaProcessTest, ServiceKilledMidSagaAndRestarted) {
  StartAll({"--action_delay_ms=300"});
  shop::PlaceOptions options;
  options.orders = 16;
  options.concurrency = 8;
  options.id_prefix = "killed";
  options.max_attempts = 8;
  options.finish_timeout_ms = 90000;
  Result<std::vector<shop::OrderResult>> results = Status::Internal("not run");
  std::thread placer([&] { results = shop::PlaceOrders(ep_, options); });
  // Wait until a charge is in flight at the payment service, then kill it.
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  ASSERT_TRUE(shop_["payment"].Kill(SIGKILL).ok());
  auto exit = shop_["payment"].Wait(10000);
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(exit->signaled());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  StartService("payment");
  placer.join();
  ASSERT_TRUE(results.ok()) << results.status();
  auto report = shop::CheckInvariant(ep_, *results);
  EXPECT_TRUE(report.ok) << report.Summary() << Logs();
  EXPECT_EQ(report.unfinished, 0);
}

class SagaCrashTest : public SagaProcessTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(SagaCrashTest, CoordinatorCrashedAtCrashPointAndRestarted) {
  StartService("order");
  StartService("inventory");
  StartService("payment");
  StartCoordinator(GetParam());
  shop::PlaceOptions options;
  options.orders = 30;
  options.concurrency = 6;
  options.id_prefix = "crash";
  options.finish_timeout_ms = 90000;
  Result<std::vector<shop::OrderResult>> results = Status::Internal("not run");
  std::thread placer([&] { results = shop::PlaceOrders(ep_, options); });
  ASSERT_TRUE(testing::WaitUntil([&] { return !coordinator_->IsRunning(); }, 60000))
      << "crash point " << GetParam() << " was never reached\n"
      << Logs();
  auto exit = coordinator_->Wait(1000);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, kCrashExitCode) << exit->ToString() << Logs();
  StartCoordinator();  // same data dir and node id: a new epoch takes the sagas over
  placer.join();
  ASSERT_TRUE(results.ok()) << results.status();
  auto report = shop::CheckInvariant(ep_, *results);
  EXPECT_TRUE(report.ok) << report.Summary() << Logs();
  EXPECT_EQ(report.unfinished, 0);
}

INSTANTIATE_TEST_SUITE_P(CrashPoints, SagaCrashTest,
                         ::testing::Values("saga.after_step_started", "saga.after_unlogged_send",
                                           "saga.after_action_logged",
                                           "saga.after_compensation_started",
                                           "saga.mid_compensation", "saga.before_final_state"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string n = info.param;
                           for (char& c : n) {
                             if (c == '.') c = '_';
                           }
                           return n;
                         });

TEST_F(SagaProcessTest, ResubmissionIsIdempotentAndADifferentDefinitionIsATypedError) {
  StartAll();
  auto client = Client();
  shop::PlaceOptions options;
  shop::Order order{"resubmit-1", "rich", "widget", 1, 100};
  auto req = shop::MakeOrderSagaRequest(ep_, order, options);
  auto first = client->SubmitSaga(req);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state, wire::TxnState::SUCCEEDED);
  auto again = client->SubmitSaga(req);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->gtid, "resubmit-1");
  EXPECT_EQ(again->state, wire::TxnState::SUCCEEDED);
  // Ran once: one payment, stock taken once.
  auto report = shop::CheckInvariant(ep_, {shop::OrderResult{order, "SUCCEEDED", "", ""}});
  EXPECT_TRUE(report.ok) << report.Summary();
  auto db = shop::OpenDb(ep_.inventory_db, true);
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*shop::QueryInt(db->get(), "SELECT available FROM stock WHERE item = 'widget'"), 999);

  auto other = req;
  other.steps[2].payload = "id=resubmit-1;customer=rich;item=widget;qty=1;amount=1";
  auto refused = client->SubmitSaga(other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kIllegalTransition) << refused.status();
  auto status = client->GetStatus("resubmit-1");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, wire::TxnState::SUCCEEDED);
}

TEST_F(SagaProcessTest, BadDefinitionsAreRejectedAndNothingIsStored) {
  StartAll();
  auto client = Client();
  shop::PlaceOptions options;
  shop::Order order{"bad-0", "rich", "widget", 1, 100};
  auto good = shop::MakeOrderSagaRequest(ep_, order, options);
  std::vector<wire::SubmitSagaRequest> bad;
  {
    auto r = good;
    r.steps.clear();
    bad.push_back(r);
  }
  {
    auto r = good;
    r.steps[0].__set_depends_on({"confirm_order"});  // forward: a cycle
    bad.push_back(r);
  }
  {
    auto r = good;
    r.steps[1].step_id = "create_order";  // duplicate id
    bad.push_back(r);
  }
  {
    auto r = good;
    r.steps[2].endpoint = "not-an-endpoint";
    bad.push_back(r);
  }
  {
    auto r = good;
    r.steps[3].payload.assign(1024 * 1024 + 1, 'x');
    bad.push_back(r);
  }
  {
    auto r = good;
    r.steps[1].retry_policy.max_attempts = 0;
    bad.push_back(r);
  }
  // The rules docs/saga.md explains, with the field each refusal names.
  std::vector<std::string> fields = {"steps",
                                     "steps[0].depends_on",
                                     "steps[1].step_id",
                                     "steps[2].endpoint",
                                     "steps[3].payload",
                                     "steps[1].retry_policy.max_attempts"};
  {
    auto r = good;
    r.steps[2].compensation = "";  // a compensation is required
    bad.push_back(r);
    fields.push_back("steps[2].compensation");
  }
  {
    auto r = good;
    r.steps[1].retry_policy.initial_backoff_ms = 0;  // backoff is at least 1 ms
    r.steps[1].__isset.retry_policy = true;
    bad.push_back(r);
    fields.push_back("steps[1].retry_policy.initial_backoff_ms");
  }
  for (size_t i = 0; i < bad.size(); ++i) {
    bad[i].__set_gtid("bad-" + std::to_string(i));
    auto r = client->SubmitSaga(bad[i]);
    ASSERT_FALSE(r.ok()) << i;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << i << ": " << r.status();
    EXPECT_NE(r.status().message().find("(field " + fields[i] + ")"), std::string::npos)
        << i << ": " << r.status();
    EXPECT_EQ(client->GetStatus(bad[i].gtid).status().code(), StatusCode::kNotFound) << i;
  }
  // The coordinator still serves.
  auto ok = client->SubmitSaga(good);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->state, wire::TxnState::SUCCEEDED);
}

}  // namespace
}  // namespace txc
