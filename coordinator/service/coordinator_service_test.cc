#include "coordinator/service/coordinator_service.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <set>
#include <thread>

#include "common/backoff.h"
#include "coordinator/core/validation.h"
#include "coordinator/store/faulty_store.h"
#include "tests/harness/process.h"

namespace txc {
namespace {

const std::vector<TxnState> kAllStates = {
    TxnState::kActive,       TxnState::kPreparing,   TxnState::kCommitting, TxnState::kCommitted,
    TxnState::kAborting,     TxnState::kAborted,     TxnState::kRunning,    TxnState::kSucceeded,
    TxnState::kCompensating, TxnState::kCompensated, TxnState::kParked};

// A real SQLite store in a fresh temporary directory, with a group committer
// and a CoordinatorService on top.
class CoordinatorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/txc-service-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/coordinator.db";
    auto store = OpenStore(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    auto lease = store_->AcquireLease("node-a", "127.0.0.1:7400", 60000, NowUnixMs());
    ASSERT_TRUE(lease.ok()) << lease.status();
    node_ = NodeInfo{"node-a", "127.0.0.1:7400", lease->epoch};
    log_ = std::make_unique<GroupCommitter>(store_.get(), GroupCommitOptions{});
    service_ = std::make_unique<CoordinatorService>(store_.get(), log_.get(), node_);
  }

  void TearDown() override {
    service_.reset();
    log_.reset();
    store_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int64_t CountAll() {
    auto n = store_->CountInStates(kAllStates);
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  static BranchRecord Branch(const std::string& id,
                             const std::string& endpoint = "127.0.0.1:9001") {
    BranchRecord b;
    b.branch_id = id;
    b.endpoint = endpoint;
    b.resource = "accounts";
    b.payload = std::string("\0\1payload-", 10) + id;
    return b;
  }

  // A valid saga step.
  static BranchRecord SagaStep(const std::string& id) {
    BranchRecord s;
    s.branch_id = id;
    s.endpoint = "127.0.0.1:9";
    s.action = "act";
    s.compensation = "undo";
    s.max_attempts = 3;
    s.initial_backoff_ms = 10;
    s.max_backoff_ms = 100;
    return s;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<TxnStore> store_;
  NodeInfo node_;
  std::unique_ptr<GroupCommitter> log_;
  std::unique_ptr<CoordinatorService> service_;
};

TEST_F(CoordinatorServiceTest, BeginIsDurableAndActive) {
  BeginOptions options;
  options.timeout_ms = 5000;
  const int64_t before = NowUnixMs();
  auto txn = service_->Begin(options);
  ASSERT_TRUE(txn.ok()) << txn.status();
  EXPECT_TRUE(ValidateId("gtid", txn->gtid).ok()) << txn->gtid;
  EXPECT_EQ(txn->state, TxnState::kActive);
  EXPECT_EQ(txn->kind, TxnKind::kTwoPhase);
  EXPECT_EQ(txn->owner, "node-a");
  EXPECT_EQ(txn->epoch, node_.epoch);
  EXPECT_GE(txn->created_ms, before);
  EXPECT_EQ(txn->deadline_ms, txn->created_ms + 5000);
  EXPECT_EQ(txn->next_attempt_ms, txn->deadline_ms);

  // Another connection to the same file sees it: it was committed before Begin returned.
  auto other = OpenStore(path_);
  ASSERT_TRUE(other.ok());
  auto stored = (*other)->GetTxn(txn->gtid);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->state, TxnState::kActive);
  EXPECT_EQ(stored->owner, "node-a");
  EXPECT_EQ(stored->epoch, node_.epoch);
  EXPECT_EQ(stored->deadline_ms, txn->deadline_ms);
  EXPECT_EQ(stored->next_attempt_ms, txn->deadline_ms);

  // The sweeper's query finds it once the deadline passed, not before.
  auto due_now = store_->ListDue({TxnState::kActive}, "node-a", node_.epoch, NowUnixMs(), 10);
  ASSERT_TRUE(due_now.ok());
  EXPECT_TRUE(due_now->empty());
  auto due_later =
      store_->ListDue({TxnState::kActive}, "node-a", node_.epoch, txn->deadline_ms, 10);
  ASSERT_TRUE(due_later.ok());
  ASSERT_EQ(due_later->size(), 1u);
  EXPECT_EQ((*due_later)[0].gtid, txn->gtid);
}

TEST_F(CoordinatorServiceTest, BeginWithBranchesWritesThemRegistered) {
  BeginOptions options;
  options.branches = {Branch("b1"), Branch("b2", "[::1]:9002")};
  options.branches[1].ordinal = 77;                    // ignored: the order given is the order kept
  options.branches[1].state = BranchState::kPrepared;  // ignored: begins REGISTERED
  auto txn = service_->Begin(options);
  ASSERT_TRUE(txn.ok()) << txn.status();
  auto view = service_->GetStatus(txn->gtid);
  ASSERT_TRUE(view.ok()) << view.status();
  ASSERT_EQ(view->branches.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const BranchRecord& b = view->branches[i];
    EXPECT_EQ(b.gtid, txn->gtid);
    EXPECT_EQ(b.ordinal, i);
    EXPECT_EQ(b.state, BranchState::kRegistered);
    EXPECT_EQ(b.payload, options.branches[i].payload);
    EXPECT_EQ(b.endpoint, options.branches[i].endpoint);
    EXPECT_EQ(b.resource, "accounts");
  }
  EXPECT_EQ(view->branches[0].branch_id, "b1");
  EXPECT_EQ(view->branches[1].branch_id, "b2");
}

// A saga submission is validated here, once, before it reaches any driver:
// each refusal is InvalidArgument naming the field and writes nothing.
TEST_F(CoordinatorServiceTest, BadSagaSubmissionsAreRefusedBeforeDispatch) {
  auto refusal = [&](SagaSpec spec) {
    auto r = service_->SubmitSaga(spec);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status();
    return r.status().message();
  };
  SagaSpec good;
  good.gtid = "saga-1";
  good.steps = {SagaStep("a"), SagaStep("b")};
  good.steps[1].depends_on = {"a"};
  // Valid: passes validation and meets the missing driver.
  EXPECT_EQ(service_->SubmitSaga(good).status().code(), StatusCode::kUnavailable);

  SagaSpec s = good;
  s.steps.clear();
  EXPECT_EQ(refusal(s).rfind("steps:", 0), 0u);
  s = good;
  s.steps[1].branch_id = "a";
  EXPECT_EQ(refusal(s).rfind("steps[1].step_id", 0), 0u);
  s = good;
  s.steps[1].compensation = "";
  EXPECT_EQ(refusal(s).rfind("steps[1].compensation", 0), 0u);
  s = good;
  s.steps[0].initial_backoff_ms = 0;
  EXPECT_EQ(refusal(s).rfind("steps[0].retry_policy.initial_backoff_ms", 0), 0u);
  s = good;
  s.steps[0].max_attempts = 0;
  EXPECT_EQ(refusal(s).rfind("steps[0].retry_policy.max_attempts", 0), 0u);
  s = good;
  s.steps[0].depends_on = {"b"};
  EXPECT_EQ(refusal(s).rfind("steps[0].depends_on", 0), 0u);
  s = good;
  s.steps[0].payload.assign(kMaxPayloadBytes + 1, 'x');
  EXPECT_EQ(refusal(s).rfind("steps[0].payload", 0), 0u);
  s = good;
  s.gtid = "has space";
  EXPECT_EQ(refusal(s).rfind("gtid", 0), 0u);
  s = good;
  s.timeout_ms = 0;
  EXPECT_EQ(refusal(s).rfind("timeout_ms", 0), 0u);
  s = good;
  s.wait_timeout_ms = -1;
  EXPECT_EQ(refusal(s).rfind("wait_timeout_ms", 0), 0u);
  EXPECT_EQ(CountAll(), 0);
}

TEST_F(CoordinatorServiceTest, BadInputIsRefusedAndWritesNothing) {
  auto code = [&](const BeginOptions& o) { return service_->Begin(o).status().code(); };
  BeginOptions o;
  o.timeout_ms = 0;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.timeout_ms = kMaxTimeoutMs + 1;
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = BeginOptions{};
  o.idempotency_key = std::string(kMaxIdBytes + 1, 'k');
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.idempotency_key = "has space";
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o = BeginOptions{};
  o.branches = {Branch("b1", "no-port")};
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.branches = {Branch("b1"), Branch("b1")};
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.branches = {Branch(std::string(kMaxIdBytes + 1, 'x'))};
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.branches = {Branch("b1")};
  o.branches[0].payload.assign(kMaxPayloadBytes + 1, 'p');
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  o.branches.assign(kMaxBranches + 1, Branch("b"));
  EXPECT_EQ(code(o), StatusCode::kInvalidArgument);
  EXPECT_EQ(CountAll(), 0);
}

TEST_F(CoordinatorServiceTest, SameIdempotencyKeySameTransaction) {
  BeginOptions o;
  o.idempotency_key = "order-17";
  auto first = service_->Begin(o);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = service_->Begin(o);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(first->gtid, second->gtid);
  EXPECT_EQ(second->idempotency_key, "order-17");
  o.idempotency_key = "order-18";
  auto third = service_->Begin(o);
  ASSERT_TRUE(third.ok());
  EXPECT_NE(third->gtid, first->gtid);
  EXPECT_EQ(CountAll(), 2);
}

// A key reused for a different begin must not answer with the first
// transaction as if the new branches were in it.
TEST_F(CoordinatorServiceTest, AKeyReusedForADifferentBeginIsRefusedAndChangesNothing) {
  BeginOptions o;
  o.idempotency_key = "order-19";
  o.branches = {Branch("b1")};
  auto first = service_->Begin(o);
  ASSERT_TRUE(first.ok()) << first.status();
  auto same = service_->Begin(o);  // a retry
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->gtid, first->gtid);

  BeginOptions other_branch = o;
  other_branch.branches = {Branch("zz")};
  BeginOptions other_payload = o;
  other_payload.branches[0].payload = "something else";
  BeginOptions other_timeout = o;
  other_timeout.timeout_ms = o.timeout_ms + 1000;
  for (const BeginOptions& differs : {other_branch, other_payload, other_timeout}) {
    auto refused = service_->Begin(differs);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status();
    EXPECT_EQ(refused.status().message().rfind("idempotency_key: ", 0), 0u) << refused.status();
    EXPECT_NE(refused.status().message().find(first->gtid), std::string::npos);
  }
  auto branches = store_->GetBranches(first->gtid);
  ASSERT_TRUE(branches.ok());
  ASSERT_EQ(branches->size(), 1u);
  EXPECT_EQ((*branches)[0].branch_id, "b1");
  EXPECT_EQ(CountAll(), 1);
}

// The answer counts the branches moved, not every branch now at the new address.
TEST_F(CoordinatorServiceTest, RebindCountsTheBranchesItMoved) {
  const std::string a = "127.0.0.1:9001", b = "127.0.0.1:9002";
  BeginOptions o;
  o.branches = {Branch("b0", a), Branch("b1", b), Branch("b2", b)};
  auto first = service_->Begin(o);
  ASSERT_TRUE(first.ok()) << first.status();
  o.branches = {Branch("c0", a), Branch("c1", a), Branch("c2", b)};
  auto second = service_->Begin(o);
  ASSERT_TRUE(second.ok()) << second.status();
  const AdminContext ctx{"127.0.0.1:5555", "participant moved"};

  auto one = service_->Rebind(first->gtid, a, b, ctx);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->transactions, 1);
  EXPECT_EQ(one->branches, 1);
  auto again = service_->Rebind(first->gtid, a, b, ctx);  // nothing left at a
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->transactions, 0);
  EXPECT_EQ(again->branches, 0);

  auto sweep = service_->Rebind("", a, b, ctx);  // every transaction: only the second has any
  ASSERT_TRUE(sweep.ok()) << sweep.status();
  EXPECT_EQ(sweep->transactions, 1);
  EXPECT_EQ(sweep->branches, 2);
}

TEST_F(CoordinatorServiceTest, RacingBeginsWithOneKeyGetOneTransaction) {
  // Several rounds so that the losing path (both miss the lookup, one insert
  // is refused, the loser re-reads) is actually taken.
  for (int round = 0; round < 5; ++round) {
    constexpr int kThreads = 8;
    std::vector<std::string> gtids(kThreads);
    std::vector<Status> errors(kThreads);
    std::vector<std::thread> threads;
    BeginOptions o;
    o.idempotency_key = "race-" + std::to_string(round);
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        auto txn = service_->Begin(o);
        if (txn.ok()) {
          gtids[i] = txn->gtid;
        } else {
          errors[i] = txn.status();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
      ASSERT_TRUE(errors[i].ok()) << errors[i];
      EXPECT_EQ(gtids[i], gtids[0]);
    }
  }
  EXPECT_EQ(CountAll(), 5);
}

TEST_F(CoordinatorServiceTest, GtidsAreUniqueAndCarryTheNode) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {
    std::string g = service_->NewGtid();
    ASSERT_TRUE(ValidateId("gtid", g).ok()) << g;
    ASSERT_TRUE(seen.insert(g).second) << "duplicate " << g;
  }
  EXPECT_EQ(service_->NewGtid().rfind("node-a-", 0), 0u);
  // A node id with odd characters and a long one still give valid gtids.
  CoordinatorService odd(store_.get(), log_.get(),
                         NodeInfo{"host name:7400/" + std::string(300, 'z'), "h:1", 1});
  std::string g = odd.NewGtid();
  EXPECT_TRUE(ValidateId("gtid", g).ok()) << g;
  EXPECT_EQ(g.rfind("host_name_7400_", 0), 0u) << g;
}

TEST_F(CoordinatorServiceTest, StatusOfUnknownOrMalformedGtid) {
  EXPECT_EQ(service_->GetStatus("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service_->GetStatus("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(service_->GetStatus(std::string(kMaxIdBytes + 1, 'g')).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorServiceTest, ProtocolOpsWithoutDriversAnswerUnavailable) {
  auto txn = service_->Begin({});
  ASSERT_TRUE(txn.ok());
  EXPECT_EQ(service_->Enlist(txn->gtid, Branch("b1")).code(), StatusCode::kUnavailable);
  EXPECT_EQ(service_->Commit(txn->gtid, CommitWait::kDecision, 100).status().code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(service_->Rollback(txn->gtid).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(service_->QueryOutcome(txn->gtid, "b1").status().code(), StatusCode::kUnavailable);
  SagaSpec saga;  // valid: an invalid one is refused before dispatch
  saga.steps = {SagaStep("s1")};
  EXPECT_EQ(service_->SubmitSaga(saga).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(service_->SubmitSaga(SagaSpec{}).status().code(), StatusCode::kInvalidArgument);
  // Unknown and malformed ids are still told apart.
  EXPECT_EQ(service_->Enlist("unknown", Branch("b1")).code(), StatusCode::kNotFound);
  EXPECT_EQ(service_->Commit("unknown", CommitWait::kDecision, 1).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(service_->Rollback("unknown").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(service_->Enlist(txn->gtid, Branch("b1", "bad")).code(), StatusCode::kInvalidArgument);
  // Nothing changed.
  auto view = service_->GetStatus(txn->gtid);
  ASSERT_TRUE(view.ok());
  EXPECT_EQ(view->txn.state, TxnState::kActive);
  EXPECT_TRUE(view->branches.empty());
}

// Records what the service forwards (the seam, not a stand-in for the driver's logic).
class RecordingTwoPhaseOps : public TwoPhaseOps {
 public:
  Status Enlist(const std::string& gtid, const BranchRecord& branch) override {
    calls.push_back("enlist " + gtid + " " + branch.branch_id);
    return Status::IllegalTransition("recorded");
  }
  Result<TxnRecord> Commit(const std::string& gtid, CommitWait wait, int64_t timeout) override {
    calls.push_back("commit " + gtid + " " + std::to_string(wait == CommitWait::kCompletion) + " " +
                    std::to_string(timeout));
    TxnRecord t;
    t.gtid = gtid;
    t.state = TxnState::kCommitting;
    return t;
  }
  Result<TxnRecord> Rollback(const std::string& gtid) override {
    calls.push_back("rollback " + gtid);
    return Status::NotOwner("recorded");
  }
  Result<Outcome> QueryOutcome(const std::string& gtid, const std::string& branch) override {
    calls.push_back("query " + gtid + " " + branch);
    return Outcome::kPending;
  }
  void Resume(const TxnRecord&) override {}
  std::vector<std::string> calls;
};

TEST_F(CoordinatorServiceTest, ProtocolOpsAreForwardedOnceSet) {
  RecordingTwoPhaseOps ops;
  service_->SetTwoPhaseOps(&ops);
  EXPECT_EQ(service_->Enlist("g1", Branch("b1")).code(), StatusCode::kIllegalTransition);
  auto c = service_->Commit("g1", CommitWait::kCompletion, 250);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state, TxnState::kCommitting);
  EXPECT_EQ(service_->Rollback("g1").status().code(), StatusCode::kNotOwner);
  auto q = service_->QueryOutcome("g1", "b1");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, Outcome::kPending);
  EXPECT_EQ(ops.calls, (std::vector<std::string>{"enlist g1 b1", "commit g1 1 250", "rollback g1",
                                                 "query g1 b1"}));
  service_->SetTwoPhaseOps(nullptr);
  EXPECT_EQ(service_->Rollback("g1").status().code(), StatusCode::kNotFound);
}

// The replica list comes from a cache its own thread refreshes: asking never
// waits for the store, even while the store hangs.
TEST_F(CoordinatorServiceTest, ReplicaListNeverWaitsForTheStore) {
  FaultyStore faulty(store_.get());
  CoordinatorServiceOptions options;
  options.replica_cache_ms = 10;
  CoordinatorService service(&faulty, log_.get(), node_, options);
  faulty.Hold(StoreOp::kListLeases);
  ASSERT_TRUE(testing::WaitUntil([&] { return faulty.Calls(StoreOp::kListLeases) >= 2; }, 5000));
  // The cache thread is stuck in ListLeases: the list still answers at once.
  const int64_t start = MonotonicMs();
  EXPECT_EQ(service.CoordinatorEndpoints(), std::vector<std::string>{"127.0.0.1:7400"});
  EXPECT_EQ(service.EndpointOfNode("node-b"), "");
  EXPECT_EQ(service.Health().replicas.size(), 1u);
  EXPECT_LT(MonotonicMs() - start, 1000);
  ASSERT_TRUE(store_->AcquireLease("node-b", "10.0.0.2:7400", 60000, NowUnixMs()).ok());
  faulty.Open(StoreOp::kListLeases);
  // Once the store answers again, the next refresh finds node-b.
  EXPECT_TRUE(testing::WaitUntil(
      [&] { return service.EndpointOfNode("node-b") == "10.0.0.2:7400"; }, 5000));
  EXPECT_EQ(service.CoordinatorEndpoints().size(), 2u);
}

TEST_F(CoordinatorServiceTest, HealthAndLiveReplicas) {
  const int64_t now = NowUnixMs();
  ASSERT_TRUE(store_->AcquireLease("node-b", "10.0.0.2:7400", 60000, now).ok());
  ASSERT_TRUE(store_->AcquireLease("node-c", "10.0.0.3:7400", 1, now - 10000).ok());  // expired
  // The cache was read when the service started: node-b is not in it yet.
  EXPECT_EQ(service_->EndpointOfNode("node-b"), "");
  service_->RefreshReplicas();
  HealthInfo h = service_->Health();
  EXPECT_EQ(h.node_id, "node-a");
  EXPECT_EQ(h.store_kind, "sqlite");
  EXPECT_TRUE(h.serving);
  EXPECT_EQ(h.epoch, node_.epoch);
  std::set<std::string> replicas(h.replicas.begin(), h.replicas.end());
  EXPECT_EQ(replicas, (std::set<std::string>{"127.0.0.1:7400", "10.0.0.2:7400"}));
  EXPECT_EQ(service_->EndpointOfNode("node-b"), "10.0.0.2:7400");
  EXPECT_EQ(service_->EndpointOfNode("node-c"), "");
  EXPECT_EQ(service_->EndpointOfNode("node-a"), "127.0.0.1:7400");
}

TEST_F(CoordinatorServiceTest, NotServingRefusesNewWork) {
  service_->SetServing(false);
  EXPECT_EQ(service_->Begin({}).status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(service_->Health().serving);
  EXPECT_EQ(CountAll(), 0);
  service_->SetServing(true);
  EXPECT_TRUE(service_->Begin({}).ok());
}

}  // namespace
}  // namespace txc
