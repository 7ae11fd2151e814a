// The operations plane end to end: a coordinator process (SQLite store), the
// order-payment example's services as participants, and txcctl as the
// operator's only tool. A saga parked because a participant is down is found
// with `txcctl list --state PARKED` and brought to an end with retry, resolve
// or rebind; a running saga is cancelled; illegal actions are typed errors
// that change nothing; list pages and filters. Every process and txcctl use
// the suite's transport (suite_tls.h: mutual TLS under TXC_TEST_TLS=1).
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/thrift_util.h"
#include "examples/order-payment-saga/shop.h"
#include "gen-cpp/Coordinator.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"
#include "tests/saga/shop_processes.h"

namespace txc {
namespace {

using testing::ChildProcess;

constexpr int64_t kWaitMs = 60000;
constexpr char kInventorySeed[] = "widget:1000:100";
constexpr char kPaymentSeed[] = "rich:100000000,poor:50";

// How often `what` occurs in `text`.
int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

struct Cli {
  int exit_code = -1;
  std::string out, err;
};

class AdminProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    coordinator_port_ = testing::FreeLoopbackPort();
    ep_.coordinator = "127.0.0.1:" + std::to_string(coordinator_port_);
    ep_.order_db = dir_.Child("order.db");
    ep_.payment_db = dir_.Child("payment.db");
    ep_.inventory_db = dir_.Child("inventory.db");
    ep_.tls = testing::SuiteTls::Get().ClientTls();
  }

  void StartCoordinator() {
    ChildProcess::Options o;
    // Two compensation deliveries park a saga; parked sagas are not retried
    // by the sweeper within the test, only by the operator.
    o.argv = {TXC_COORDINATOR_BIN,
              "--host=127.0.0.1",
              "--port=" + std::to_string(coordinator_port_),
              "--data_dir=" + dir_.Child("coord"),
              "--sweep_interval_ms=100",
              "--saga_park_after_attempts=2",
              "--saga_parked_retry_ms=3600000",
              "-v"};
    testing::SuiteTls::Get().AppendCoordinatorFlags(&o.argv);
    o.log_path = dir_.Child("coordinator.log");
    auto child = ChildProcess::Start(o);
    ASSERT_TRUE(child.ok()) << child.status();
    coordinator_ = std::move(child).value();
    ASSERT_TRUE(testing::WaitForPort(coordinator_port_, 20000).ok()) << coordinator_->LogTail();
  }

  // Starts (or restarts, on the same port and database) one service; new_port:
  // on a port it never had.
  void StartService(const std::string& name, std::vector<std::string> extra = {},
                    bool new_port = false) {
    shop_.Start(name, std::move(extra), new_port);
  }

  void StopService(const std::string& name) { shop_.Stop(name); }

  // Submits an order's saga without waiting (steps retried twice, quickly).
  void Submit(const std::string& id, const std::string& customer, int64_t amount = 100) {
    shop::Order order{id, customer, "widget", 1, amount};
    shop::PlaceOptions options;
    options.max_attempts = 2;
    options.initial_backoff_ms = 20;
    options.max_backoff_ms = 50;
    wire::SubmitSagaRequest req = shop::MakeOrderSagaRequest(ep_, order, options);
    req.__set_wait_for_completion(false);
    auto conn = OpenConnection<wire::CoordinatorClient>(HostPort{"127.0.0.1", coordinator_port_},
                                                        testing::SuiteTls::Get().Connect());
    ASSERT_TRUE(conn.ok()) << conn.status();
    wire::SubmitSagaResponse r;
    (*conn)->client->submitSaga(r, req);
    ASSERT_EQ(r.gtid, id);
  }

  Cli Txcctl(std::vector<std::string> args) {
    ChildProcess::Options o;
    o.argv = {TXC_TXCCTL_BIN, "--coordinator=" + ep_.coordinator};
    testing::SuiteTls::Get().AppendTxcctlFlags(&o.argv);
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = dir_.Child("txcctl.out");
    o.log_path = dir_.Child("txcctl.err");
    Cli r;
    auto child = ChildProcess::Start(o);
    EXPECT_TRUE(child.ok()) << child.status();
    if (!child.ok()) return r;
    auto exit = (*child)->Wait(kWaitMs);
    EXPECT_TRUE(exit.ok()) << exit.status();
    if (exit.ok()) r.exit_code = exit->exit_code;
    r.out = testing::ReadFileOrEmpty(o.stdout_path);
    r.err = testing::ReadFileOrEmpty(o.log_path);
    return r;
  }

  // The state column of `txcctl status --json` ("" when it fails).
  std::string State(const std::string& gtid) {
    Cli r = Txcctl({"status", gtid, "--json"});
    const std::string key = "\"state\": \"";
    size_t at = r.out.find(key);
    if (r.exit_code != 0 || at == std::string::npos) return "";
    at += key.size();
    return r.out.substr(at, r.out.find('"', at) - at);
  }

  void WaitForState(const std::string& gtid, const std::string& state) {
    ASSERT_TRUE(testing::WaitUntil([&] { return State(gtid) == state; }, kWaitMs))
        << gtid << " is " << State(gtid) << ", not " << state << "\n"
        << Txcctl({"status", gtid}).out << Logs();
  }

  std::string Logs() {
    std::string out;
    if (coordinator_) out += "--- coordinator ---\n" + coordinator_->LogTail(3000);
    out += shop_.LogTails(1000);
    return out;
  }

  // A saga parked: inventory is down, so reserving stock fails and its
  // (null) compensation cannot be delivered either.
  void ParkOne(const std::string& id) {
    StopService("inventory");
    Submit(id, "rich");
    WaitForState(id, "PARKED");
  }

  void StartAll() {
    StartService("order");
    StartService("inventory");
    StartService("payment");
    StartCoordinator();
  }

  testing::TempDir dir_{"admin-process-test-"};
  int coordinator_port_ = 0;
  std::unique_ptr<ChildProcess> coordinator_;
  testing::ShopProcesses shop_{&dir_, &ep_, kInventorySeed, kPaymentSeed};
  shop::ShopEndpoints ep_;
};

TEST_F(AdminProcessTest, ParkedSagaIsListedAndRetriedAfterTheParticipantIsBack) {
  StartAll();
  ParkOne("o-park");
  Cli listed = Txcctl({"list", "--state", "PARKED"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_NE(listed.out.find("o-park"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("PARKED"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("(1 rows)"), std::string::npos) << listed.out;
  // While the participant is down, a retry parks it again (nothing lost).
  StartService("inventory");
  Cli retried = Txcctl({"retry", "o-park", "--reason", "inventory is back"});
  ASSERT_EQ(retried.exit_code, 0) << retried.err;
  WaitForState("o-park", "COMPENSATED");
  Cli status = Txcctl({"status", "o-park"});
  EXPECT_NE(status.out.find("retry by 127.0.0.1:"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("PARKED -> COMPENSATING"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("reason=\"inventory is back\""), std::string::npos) << status.out;
  // A finished saga: retry is an illegal transition (exit 5) and changes nothing.
  Cli before = Txcctl({"status", "o-park", "--json"});
  Cli again = Txcctl({"retry", "o-park"});
  EXPECT_EQ(again.exit_code, 5) << again.out << again.err;
  EXPECT_NE(again.err.find("IllegalTransition"), std::string::npos) << again.err;
  EXPECT_EQ(again.err.find("Thrift"), std::string::npos) << again.err;
  EXPECT_EQ(Txcctl({"status", "o-park", "--json"}).out, before.out);
  // Cancel of a compensated saga: already where a cancel leads, nothing written.
  EXPECT_EQ(Txcctl({"cancel", "o-park"}).exit_code, 0);
  EXPECT_EQ(Txcctl({"status", "o-park", "--json"}).out, before.out);
  EXPECT_EQ(Txcctl({"retry", "no-such-saga"}).exit_code, 4);
  EXPECT_EQ(Txcctl({"resolve", "o-park", "reserve_stock", "--as", "aborted"}).exit_code, 5);
  EXPECT_EQ(Txcctl({"resolve", "o-park"}).exit_code, 2);
}

TEST_F(AdminProcessTest, ResolvedByHandWithAnAuditRecord) {
  StartAll();
  ParkOne("o-resolve");
  // Not a step of this saga: NotFound, nothing written.
  EXPECT_EQ(Txcctl({"resolve", "o-resolve", "nope", "--as", "compensated"}).exit_code, 4);
  // 2PC outcomes do not apply to a saga step: InvalidArgument (exit 1).
  EXPECT_EQ(Txcctl({"resolve", "o-resolve", "reserve_stock", "--as", "committed"}).exit_code, 1);
  EXPECT_EQ(State("o-resolve"), "PARKED");
  Cli resolved = Txcctl(
      {"resolve", "o-resolve", "reserve_stock", "--as", "compensated", "--reason", "checked"});
  ASSERT_EQ(resolved.exit_code, 0) << resolved.err;
  WaitForState("o-resolve", "COMPENSATED");
  Cli status = Txcctl({"status", "o-resolve", "--json"});
  EXPECT_NE(status.out.find("\"action\": \"resolve\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"reason\": \"checked\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"target\": \"reserve_stock\""), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("\"finished_unix_ms\": 1"), std::string::npos) << status.out;
  // The operator's retry of the same resolve: already so, nothing written.
  Cli again = Txcctl({"resolve", "o-resolve", "reserve_stock", "--as", "compensated"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  Cli after = Txcctl({"status", "o-resolve", "--json"});
  EXPECT_EQ(Count(after.out, "\"action\": \"resolve\""), 1) << after.out;
}

TEST_F(AdminProcessTest, RebindToTheParticipantsNewPortFinishesTheSaga) {
  StartAll();
  ParkOne("o-rebind");
  const std::string old_endpoint = ep_.inventory;
  StartService("inventory", {}, /*new_port=*/true);
  ASSERT_NE(ep_.inventory, old_endpoint);
  Cli listed = Txcctl({"list", "--endpoint", old_endpoint, "--json"});
  EXPECT_NE(listed.out.find("o-rebind"), std::string::npos) << listed.out;
  Cli rebound =
      Txcctl({"rebind", "--all", "--from", old_endpoint, "--to", ep_.inventory, "--json"});
  ASSERT_EQ(rebound.exit_code, 0) << rebound.err;
  EXPECT_NE(rebound.out.find("\"transactions\": 1"), std::string::npos) << rebound.out;
  // The rebind itself has the saga driven again, now at the new address.
  WaitForState("o-rebind", "COMPENSATED");
  Cli status = Txcctl({"status", "o-rebind"});
  EXPECT_NE(status.out.find("endpoint=" + ep_.inventory), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("rebind by 127.0.0.1:"), std::string::npos) << status.out;
  // Rebinding again finds nothing to move.
  Cli again = Txcctl({"rebind", "o-rebind", "--from", old_endpoint, "--to", ep_.inventory});
  EXPECT_EQ(again.exit_code, 5) << again.out << again.err;  // finished
  EXPECT_EQ(Txcctl({"rebind", "--all", "--from", "nonsense", "--to", ep_.inventory}).exit_code, 1);
}

TEST_F(AdminProcessTest, CancelARunningSagaCompensatesIt) {
  StartService("order");
  StartService("inventory");
  StartService("payment", {"--action_delay_ms=5000"});
  StartCoordinator();
  Submit("o-cancel", "rich");
  WaitForState("o-cancel", "RUNNING");
  Cli cancelled = Txcctl({"cancel", "o-cancel", "--reason", "customer called"});
  ASSERT_EQ(cancelled.exit_code, 0) << cancelled.err;
  Cli watched = Txcctl({"watch", "o-cancel", "--timeout", "60s"});
  EXPECT_EQ(watched.exit_code, 0) << watched.out << watched.err;
  EXPECT_NE(watched.out.find("COMPENSATED"), std::string::npos) << watched.out;
  EXPECT_EQ(State("o-cancel"), "COMPENSATED");
  // Nothing half-done: no stock held, no money taken. The cancel came while
  // the payment was in flight, before the saga's progress was logged (it is
  // logged lazily): every step the log showed PENDING must be compensated,
  // not skipped. The delayed charge lands (or is refused) within its 5 s.
  const shop::Order order{"o-cancel", "rich", "widget", 1, 100};
  shop::InvariantReport report;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        report = shop::CheckInvariant(ep_, {shop::OrderResult{order, "COMPENSATED", "", ""}});
        return report.ok;
      },
      20000))
      << report.Summary();
  // Cancel again (a retry): already so, answered with the status, nothing written.
  Cli again = Txcctl({"cancel", "o-cancel"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  EXPECT_NE(again.out.find("COMPENSATED"), std::string::npos) << again.out;
  EXPECT_EQ(State("o-cancel"), "COMPENSATED");
}

TEST_F(AdminProcessTest, ListPagesAndFilters) {
  StartAll();
  for (int i = 0; i < 5; ++i) Submit("o-list-" + std::to_string(i), "rich");
  for (int i = 0; i < 5; ++i) WaitForState("o-list-" + std::to_string(i), "SUCCEEDED");
  // Default: unfinished only -> none.
  Cli unfinished = Txcctl({"list"});
  EXPECT_NE(unfinished.out.find("(0 rows)"), std::string::npos) << unfinished.out;
  // Every state, two at a time, cursor by cursor: each saga once, oldest first.
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    std::vector<std::string> args = {"list", "--all", "--limit", "2", "--json"};
    if (!cursor.empty()) args.insert(args.end(), {"--cursor", cursor});
    Cli r = Txcctl(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    for (size_t at = r.out.find("\"gtid\": \""); at != std::string::npos;
         at = r.out.find("\"gtid\": \"", at + 1)) {
      const size_t start = at + 9;
      seen.push_back(r.out.substr(start, r.out.find('"', start) - start));
    }
    const std::string key = "\"next_cursor\": \"";
    size_t c = r.out.find(key);
    if (c == std::string::npos) break;
    cursor = r.out.substr(c + key.size(), r.out.find('"', c + key.size()) - c - key.size());
  }
  EXPECT_EQ(seen.size(), 5u);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::unique(seen.begin(), seen.end()), seen.end());
  auto count = [&](std::vector<std::string> args) {
    Cli r = Txcctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    size_t n = 0;
    for (size_t at = r.out.find("\"gtid\""); at != std::string::npos;
         at = r.out.find("\"gtid\"", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(count({"list", "--all", "--json", "--kind", "saga"}), 5u);
  EXPECT_EQ(count({"list", "--all", "--json", "--kind", "2pc"}), 0u);
  EXPECT_EQ(count({"list", "--all", "--json", "--gtid-prefix", "o-list-3"}), 1u);
  EXPECT_EQ(count({"list", "--all", "--json", "--endpoint", ep_.payment}), 5u);
  EXPECT_EQ(count({"list", "--all", "--json", "--endpoint", "127.0.0.1:1"}), 0u);
  EXPECT_EQ(count({"list", "--all", "--json", "--state", "SUCCEEDED"}), 5u);
  EXPECT_EQ(count({"list", "--all", "--json", "--older-than", "1h"}), 0u);
  EXPECT_EQ(count({"list", "--all", "--json", "--owner", "nobody"}), 0u);
  EXPECT_EQ(Txcctl({"list", "--state", "NOPE"}).exit_code, 2);
  EXPECT_EQ(Txcctl({"list", "--cursor", "garbage"}).exit_code, 1);
  EXPECT_EQ(Txcctl({"list", "--limit", "0"}).exit_code, 1);
}

}  // namespace
}  // namespace txc
