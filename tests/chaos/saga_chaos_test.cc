// Chaos for sagas: three coordinator replicas on one PostgreSQL store (short
// lease TTL), the order-payment example's three services (order, payment,
// inventory), and a continuous load of orders -- each a four-step saga --
// from several client threads, some with every replica, some knowing one
// replica only. For TXC_CHAOS_SECONDS (default 30) seeded random faults
// (TXC_CHAOS_SEED): SIGKILL a replica and restart it before or after its lease
// TTL, SIGSTOP a replica beyond its TTL then SIGCONT, SIGKILL a service and
// restart it. Then everything is healed and, with a deadline, every saga must
// be final. Checked (ARCHITECTURE.md invariants 2, 4, 6, 7):
//   - per order: the saga SUCCEEDED with all its effects (order confirmed,
//     stock reserved, payment taken), or COMPENSATED with none; stock and money
//     conserved (shop::CheckInvariant);
//   - what a client was told (a final state) is what the store holds;
//   - every submit got an answer (no NotOwner loops);
//   - no process exited except by the test's signals;
//   - no committed store write by a stale (node, epoch) (audit trigger).
// Replay a failure with the seed it prints: see docs/testing.md.
#include <glog/logging.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "examples/order-payment-saga/shop.h"
#include "tests/chaos/chaos_harness.h"
#include "tests/harness/pg_cluster.h"
#include "tests/harness/process.h"
#include "tests/harness/suite_tls.h"

namespace txc {
namespace {

using chaos::ManagedProcess;

constexpr int kReplicas = 3;
constexpr int64_t kLeaseTtlMs = 1500;
constexpr int kClientsWithAllReplicas = 3;
constexpr int kClientsWithOneReplica = 3;
constexpr int64_t kClientRetryMs = 60000;
constexpr int64_t kSettleTimeoutMs = 180000;
// item:stock:price and customer:balance. gadget runs out, poor is declined.
constexpr char kInventorySeed[] = "widget:1000000:100,gadget:40:500";
constexpr char kPaymentSeed[] = "rich:1000000000,poor:3000";

struct ClientSaga {
  shop::Order order;
  bool accepted = false;  // submitSaga answered
  int told_state = 0;     // a final state the client was told, else 0
  chaos::CallTrace trace;
};

class SagaChaosTest : public chaos::ChaosTest {
 protected:
  void SetUp() override {
    SetUpReplicas("saga", 30, "txc-chaos-saga-", "chaos_saga_store", TXC_COORDINATOR_BIN, kReplicas,
                  kLeaseTtlMs, {});
    ep_.coordinator = AllReplicas();
    ep_.order_db = dir_->Child("order.db");
    ep_.payment_db = dir_->Child("payment.db");
    ep_.inventory_db = dir_->Child("inventory.db");
    ep_.tls = testing::SuiteTls::Get().ClientTls();  // the processes' get theirs in the harness
    for (const std::string name : {"order", "payment", "inventory"}) {
      const int port = testing::FreeLoopbackPort();
      std::vector<std::string> argv = {name == "order"     ? TXC_ORDER_SERVICE_BIN
                                       : name == "payment" ? TXC_PAYMENT_SERVICE_BIN
                                                           : TXC_INVENTORY_SERVICE_BIN,
                                       "--db=" + dir_->Child(name + ".db"),
                                       "--port=" + std::to_string(port),
                                       "--coordinator=" + ep_.coordinator};
      if (name == "inventory") argv.push_back(std::string("--seed=") + kInventorySeed);
      if (name == "payment") argv.push_back(std::string("--seed=") + kPaymentSeed);
      const std::string endpoint = AddParticipant(name, port, argv)->endpoint();
      (name == "order" ? ep_.order : name == "payment" ? ep_.payment : ep_.inventory) = endpoint;
    }
    ASSERT_NO_FATAL_FAILURE(StartAll());
  }

  // One client thread: orders until `stop_`, each submitted (asking again
  // with the same gtid until it is accepted).
  void ClientLoop(int id, std::vector<std::string> endpoints) {
    auto made = chaos::MakeClient(std::move(endpoints));
    ASSERT_TRUE(made.ok()) << made.status();
    auto client = std::move(made).value();
    std::mt19937_64 rng(config_.seed * 7919 + id);
    shop::PlaceOptions options;
    options.max_attempts = 4;
    options.initial_backoff_ms = 100;
    options.max_backoff_ms = 1000;
    for (int n = 0; !stop_.load(); ++n) {
      ClientSaga saga;
      saga.order.id = "chaos-" + std::to_string(config_.seed) + "-" + std::to_string(id) + "-" +
                      std::to_string(n);
      saga.order.customer = rng() % 5 == 0 ? "poor" : "rich";
      const bool gadget = rng() % 4 == 0;
      saga.order.item = gadget ? "gadget" : "widget";
      saga.order.qty = 1 + static_cast<int64_t>(rng() % 3);
      saga.order.amount = saga.order.qty * (gadget ? 500 : 100);
      wire::SubmitSagaRequest req = shop::MakeOrderSagaRequest(ep_, saga.order, options);
      req.__set_wait_for_completion(rng() % 2 == 0);
      req.__set_wait_timeout_ms(3000);
      auto submitted = chaos::RetryUntilAnswered(&saga.trace, kClientRetryMs,
                                                 [&] { return client->SubmitSaga(req); });
      if (submitted.ok()) {
        saga.accepted = true;
        if (chaos::FinalState(submitted->state)) saga.told_state = submitted->state;
      }
      std::lock_guard<std::mutex> lock(mu_);
      sagas_.push_back(saga);
    }
  }

  shop::ShopEndpoints ep_;
  std::mutex mu_;
  std::vector<ClientSaga> sagas_;  // guarded by mu_
};

TEST_F(SagaChaosTest, EveryOrderEndsWithAllEffectsOrNone) {
  std::vector<std::thread> clients = StartClients(
      kClientsWithAllReplicas, kClientsWithOneReplica,
      [this](int id, std::vector<std::string> endpoints) { ClientLoop(id, std::move(endpoints)); });
  // resolve_ms: from the heal until the store first had nothing unfinished;
  // clients_ms: until every client had its answers (or gave up).
  int64_t unfinished = -1;
  const Settling run = RunFaultsAndSettle(&clients, kSettleTimeoutMs, [&] {
    auto n = audit_->UnfinishedCount();
    unfinished = n.ok() ? *n : -1;
    return unfinished == 0;
  });
  EXPECT_TRUE(run.settled) << "after " << run.settle_ms << " ms: " << unfinished
                           << " sagas unfinished in the store";

  auto states = audit_->AllStates();
  ASSERT_TRUE(states.ok()) << states.status();
  std::vector<shop::OrderResult> results;
  std::vector<std::string> violations;
  int64_t no_answer = 0, not_owner_unresolved = 0, not_owner_answers = 0, succeeded = 0,
          compensated = 0;
  for (const ClientSaga& s : sagas_) {
    not_owner_answers += s.trace.not_owner_answers;
    if (!s.accepted) {
      ++no_answer;
      if (s.trace.last_code == StatusCode::kNotOwner) ++not_owner_unresolved;
      if (violations.size() < 30) {
        violations.push_back(s.order.id + ": submit never answered: " + s.trace.last_error);
      }
    }
    auto it = states->find(s.order.id);
    if (it == states->end()) continue;  // never logged: CheckInvariant sees no effects of it
    shop::OrderResult r;
    r.order = s.order;
    r.saga_state = it->second == wire::TxnState::SUCCEEDED     ? "SUCCEEDED"
                   : it->second == wire::TxnState::COMPENSATED ? "COMPENSATED"
                                                               : std::to_string(it->second);
    if (it->second == wire::TxnState::SUCCEEDED) ++succeeded;
    if (it->second == wire::TxnState::COMPENSATED) ++compensated;
    if (s.told_state != 0 && s.told_state != it->second && violations.size() < 30) {
      violations.push_back(s.order.id + ": client told state " + std::to_string(s.told_state) +
                           ", store holds " + std::to_string(it->second));
    }
    results.push_back(r);
  }
  // Which step failed, for the counts (as shop::PlaceOrders reports them).
  auto reader = chaos::MakeClient(replica_endpoints_);
  ASSERT_TRUE(reader.ok()) << reader.status();
  for (shop::OrderResult& r : results) {
    if (r.saga_state != "COMPENSATED") continue;
    auto status = (*reader)->GetStatus(r.order.id);
    if (!status.ok()) continue;
    for (const auto& b : status->branches) {
      if (b.last_error.rfind("action refused", 0) == 0 ||
          b.last_error.rfind("attempts exhausted", 0) == 0) {
        r.failed_step = b.branch_id;
        r.failure = b.last_error;
        break;
      }
    }
  }
  shop::InvariantReport report = shop::CheckInvariant(ep_, results);
  auto stale = audit_->StaleWrites();
  ASSERT_TRUE(stale.ok()) << stale.status();
  auto ownership = audit_->OwnershipChanges();
  ASSERT_TRUE(ownership.ok()) << ownership.status();

  std::printf(
      "[chaos] saga seed %llu: %.1f s of faults; %zu sagas submitted, %zu in the store "
      "(SUCCEEDED %lld, COMPENSATED %lld); submits never answered %lld (NotOwner at the end: "
      "%lld; NotOwner answers on the way: %lld)\n[chaos] %s\n"
      "%s",
      static_cast<unsigned long long>(config_.seed), (run.healed_ms - run.start_ms) / 1000.0,
      sagas_.size(), states->size(), static_cast<long long>(succeeded),
      static_cast<long long>(compensated), static_cast<long long>(no_answer),
      static_cast<long long>(not_owner_unresolved), static_cast<long long>(not_owner_answers),
      report.Summary().c_str(), RecoverySummary(run, *ownership).c_str());
  std::fflush(stdout);

  EXPECT_TRUE(report.ok) << report.Summary();
  EXPECT_EQ(report.unfinished, 0);
  EXPECT_EQ(not_owner_unresolved, 0) << "submits whose retries ended in NotOwner";
  EXPECT_TRUE(violations.empty()) << violations.size() << " violations, e.g.:\n"
                                  << [&] {
                                       std::string s;
                                       for (const auto& v : violations) s += "  " + v + "\n";
                                       return s;
                                     }();
  ExpectNoUnexpectedExits();
  ExpectNoStaleWrites(*stale);
  EXPECT_GT(succeeded, 0);
}

// The window lazy progress leaves, in real processes: replica-0 stops itself
// (pause point saga.before_unlogged_send) just before sending a step's action
// that nothing was logged for, stays stopped past its lease while another
// replica claims the saga and finishes it, then sends that action late. The
// barrier must keep the order all-or-nothing, the old owner's writes must be
// fenced, and every replica must answer the final state.
class SagaPausedOwnerTest : public SagaChaosTest {
 protected:
  void SetUp() override {
    replica_flags_[0] = {"--pause_points=saga.before_unlogged_send"};
    SagaChaosTest::SetUp();
  }
};

TEST_F(SagaPausedOwnerTest, PausedOwnerSendsItsUnloggedActionLate) {
  constexpr char kPaused[] = "pause point 'saga.before_unlogged_send' reached";
  constexpr char kResumed[] = "pause point 'saga.before_unlogged_send': resumed";
  auto owner = chaos::MakeClient({replica_endpoints_[0]});
  ASSERT_TRUE(owner.ok()) << owner.status();
  // Orders go to replica-0 one at a time until one stops it before an action
  // nothing was logged for (usually the first order's second step; a replica
  // whose renewals ran late logs each step first, and the next order tries again).
  std::vector<shop::Order> orders;
  bool paused = false;
  for (int n = 0; n < 10 && !paused; ++n) {
    shop::Order order{"paused-owner-" + std::to_string(config_.seed) + "-" + std::to_string(n),
                      "rich", "widget", 2, 200};
    wire::SubmitSagaRequest req = shop::MakeOrderSagaRequest(ep_, order, shop::PlaceOptions{});
    req.__set_wait_for_completion(false);
    chaos::CallTrace trace;
    auto submitted =
        chaos::RetryUntilAnswered(&trace, 30000, [&] { return (*owner)->SubmitSaga(req); });
    ASSERT_TRUE(submitted.ok()) << submitted.status();
    orders.push_back(order);
    paused = testing::WaitUntil(
        [&] { return replicas_[0]->LogTail(50000).find(kPaused) != std::string::npos; }, 5000);
  }
  ASSERT_TRUE(paused) << "the pause point was never reached";
  ASSERT_TRUE(replicas_[0]->Pause().ok());  // already stopped; marks it paused for Resume
  const std::string& gtid = orders.back().id;

  // Another replica claims the saga once replica-0's lease expired and ends it.
  auto others = chaos::MakeClient({replica_endpoints_[1], replica_endpoints_[2]});
  ASSERT_TRUE(others.ok()) << others.status();
  int final_state = 0;
  std::string final_owner;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto status = (*others)->GetStatus(gtid);
        if (!status.ok() || !chaos::FinalState(status->state)) return false;
        final_state = status->state;
        final_owner = status->owner;
        return true;
      },
      60000))
      << "the saga did not end at another replica";
  EXPECT_NE(final_owner, "replica-0");

  // replica-0 wakes up and sends the action it had decided on; its next write
  // is refused, it gives its lease up, takes it again and answers the final state.
  ASSERT_TRUE(replicas_[0]->Resume().ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return replicas_[0]->LogTail(50000).find(kResumed) != std::string::npos; }, 10000));
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto status = (*owner)->GetStatus(gtid);
        return status.ok() && status->state == final_state;
      },
      30000))
      << "replica-0 did not come back answering the final state";

  // Every order ends, with all its effects or none, once the late action was
  // answered.
  std::vector<shop::OrderResult> results;
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        results.clear();
        for (const shop::Order& order : orders) {
          auto status = (*others)->GetStatus(order.id);
          if (!status.ok() || !chaos::FinalState(status->state)) return false;
          shop::OrderResult r;
          r.order = order;
          r.saga_state = status->state == wire::TxnState::SUCCEEDED     ? "SUCCEEDED"
                         : status->state == wire::TxnState::COMPENSATED ? "COMPENSATED"
                                                                        : "OTHER";
          results.push_back(r);
        }
        return true;
      },
      60000));
  chaos::SleepMs(2000);
  shop::InvariantReport report = shop::CheckInvariant(ep_, results);
  EXPECT_TRUE(report.ok) << report.Summary();
  EXPECT_EQ(report.unfinished, 0);
  auto stale = audit_->StaleWrites();
  ASSERT_TRUE(stale.ok()) << stale.status();
  ExpectNoStaleWrites(*stale);
  auto ownership = audit_->OwnershipChanges();
  ASSERT_TRUE(ownership.ok()) << ownership.status();
  EXPECT_GE(ownership->first, 1) << "no takeover by another replica";
  for (const auto& process : replicas_) EXPECT_EQ(process->CheckUnexpectedExit(), "");
  for (const auto& process : participants_) EXPECT_EQ(process->CheckUnexpectedExit(), "");
  std::printf("[chaos] paused owner: %zu orders; saga %s ended %s at %s; %s\n", orders.size(),
              gtid.c_str(), results.back().saga_state.c_str(), final_owner.c_str(),
              report.Summary().c_str());
}

}  // namespace
}  // namespace txc
