// SagaDriver against a real SQLite store, the real GroupCommitter and real
// Thrift participants served in this process by a scripted handler (so each
// outcome, retry and failure is chosen by the test). The SDK services in
// separate processes are exercised by saga_process_test.
#include "coordinator/driver/saga_driver.h"

#include <glog/logging.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/backoff.h"
#include "common/thrift_server.h"
#include "coordinator/store/faulty_store.h"
#include "coordinator/store/group_commit.h"
#include "coordinator/store/txn_store.h"
#include "gen-cpp/Participant.h"
#include "tests/harness/process.h"

namespace txc {
namespace {

using wire::StepOutcome;

// Answers action/compensate as scripted per step id (SUCCESS when nothing is
// scripted) and records every call. Thread-safe.
class ScriptedSteps : public wire::ParticipantIf {
 public:
  wire::Vote::type prepare(const wire::BranchRequest&) override { return wire::Vote::VOTE_ABORT; }
  wire::Outcome::type commitOnePhase(const wire::BranchRequest&) override {
    return wire::Outcome::OUTCOME_ABORT;
  }
  void commit(const wire::BranchRequest&) override {}
  void abort(const wire::BranchRequest&) override {}
  void action(wire::StepResult& out, const wire::StepRequest& req) override {
    Handle(out, req, "action");
  }
  void compensate(wire::StepResult& out, const wire::StepRequest& req) override {
    Handle(out, req, "compensate");
  }

  // Outcomes returned, in order, for (kind, step id); then `fallback`.
  void Script(const std::string& kind, const std::string& step, std::vector<StepOutcome::type> outs,
              StepOutcome::type fallback = StepOutcome::SUCCESS) {
    std::lock_guard<std::mutex> lock(mu_);
    scripts_[kind + ":" + step] = {std::deque<StepOutcome::type>(outs.begin(), outs.end()),
                                   fallback};
  }
  // Called (outside the lock) before answering.
  void SetHook(std::function<void(const std::string& kind, const wire::StepRequest&)> hook) {
    std::lock_guard<std::mutex> lock(mu_);
    hook_ = std::move(hook);
  }
  void SetDelayMs(int64_t ms) { delay_ms_ = ms; }
  std::vector<std::string> Calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int max_concurrent() const { return max_concurrent_.load(); }

 private:
  void Handle(wire::StepResult& out, const wire::StepRequest& req, const std::string& kind) {
    const int now = ++concurrent_;
    int seen = max_concurrent_.load();
    while (now > seen && !max_concurrent_.compare_exchange_weak(seen, now)) {
    }
    std::function<void(const std::string&, const wire::StepRequest&)> hook;
    StepOutcome::type outcome = StepOutcome::SUCCESS;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls_.push_back(kind + ":" + req.step_id);
      hook = hook_;
      auto it = scripts_.find(kind + ":" + req.step_id);
      if (it != scripts_.end()) {
        if (!it->second.first.empty()) {
          outcome = it->second.first.front();
          it->second.first.pop_front();
        } else {
          outcome = it->second.second;
        }
      }
    }
    if (hook) hook(kind, req);
    if (delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
    out.outcome = outcome;
    out.message = outcome == StepOutcome::FAILURE ? "scripted refusal" : "";
    --concurrent_;
  }

  std::mutex mu_;  // guards the members below
  std::map<std::string, std::pair<std::deque<StepOutcome::type>, StepOutcome::type>> scripts_;
  std::vector<std::string> calls_;
  std::function<void(const std::string&, const wire::StepRequest&)> hook_;
  std::atomic<int64_t> delay_ms_{0};
  std::atomic<int> concurrent_{0};
  std::atomic<int> max_concurrent_{0};
};

class SagaDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenStore(dir_.Child("coordinator.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->Migrate().ok());
    // The driver and its log see the store through FaultyStore (no fault
    // unless a test injects one); the test reads the real store.
    faulty_ = std::make_unique<FaultyStore>(store_.get());
    log_ = std::make_unique<GroupCommitter>(faulty_.get(), GroupCommitOptions{});
    participant_ = std::make_shared<ScriptedSteps>();
    server_ = std::make_unique<ThriftServer>(
        std::make_shared<wire::ParticipantProcessor>(participant_), ThriftServerOptions{});
    ASSERT_TRUE(server_->Start().ok());
    endpoint_ = "127.0.0.1:" + std::to_string(server_->port());
    StartDriver();
  }
  void TearDown() override {
    driver_.reset();
    server_.reset();
    log_.reset();
  }

  void StartDriver(int32_t park_after = 10, int driver_threads = 2) {
    driver_.reset();
    SagaDriverOptions o;
    o.driver_threads = driver_threads;
    o.park_after_attempts = park_after;
    o.compensation_backoff = BackoffPolicy{5, 20, 2.0};
    o.call_timeout_ms = 2000;
    o.progress_log_ms = progress_log_ms_;
    o.lease_live = [this] { return lease_live_.load(); };
    driver_ = std::make_unique<SagaDriver>(faulty_.get(), log_.get(), node_, o);
  }

  BranchRecord Step(const std::string& id, std::vector<std::string> deps,
                    const std::string& endpoint = "") {
    BranchRecord s;
    s.branch_id = id;
    s.endpoint = endpoint.empty() ? endpoint_ : endpoint;
    s.action = "do_" + id;
    s.compensation = "undo_" + id;
    s.payload = "payload-" + id;
    s.depends_on = std::move(deps);
    s.max_attempts = 3;
    s.initial_backoff_ms = 5;
    s.max_backoff_ms = 20;
    return s;
  }
  std::vector<BranchRecord> Chain4() {
    return {Step("a", {}), Step("b", {"a"}), Step("c", {"b"}), Step("d", {"c"})};
  }
  SagaSpec Spec(const std::string& gtid, std::vector<BranchRecord> steps, bool wait = true) {
    SagaSpec spec;
    spec.gtid = gtid;
    spec.steps = std::move(steps);
    spec.wait_for_completion = wait;
    spec.wait_timeout_ms = 20000;
    return spec;
  }
  // A saga record as a driver logs it on submit: owned by (owner, epoch),
  // created now with a 10-minute deadline, `steps`' fingerprint as payload.
  TxnRecord SagaRecord(const std::string& gtid, TxnState state, const std::string& owner,
                       int64_t epoch, const std::vector<BranchRecord>& steps) {
    const int64_t now = NowUnixMs();
    TxnRecord txn;
    txn.gtid = gtid;
    txn.kind = TxnKind::kSaga;
    txn.state = state;
    txn.owner = owner;
    txn.epoch = epoch;
    txn.created_ms = now;
    txn.deadline_ms = now + 600000;
    txn.payload = SagaFingerprint(steps);
    return txn;
  }
  // Logs `txn` and its `steps` in one batch, as a crashed driver left them:
  // step i gets the gtid, ordinal i, `states[i]` and, when `attempts` is not
  // empty, `attempts[i]`.
  Status LogSaga(const TxnRecord& txn, std::vector<BranchRecord> steps,
                 const std::vector<BranchState>& states, const std::vector<int32_t>& attempts) {
    WriteBatch batch;
    batch.insert_txns.push_back(txn);
    for (size_t i = 0; i < steps.size(); ++i) {
      steps[i].gtid = txn.gtid;
      steps[i].ordinal = static_cast<int32_t>(i);
      steps[i].state = states[i];
      if (!attempts.empty()) steps[i].attempts = attempts[i];
      batch.insert_branches.push_back(steps[i]);
    }
    return log_->Write(batch);
  }
  std::map<std::string, BranchRecord> Steps(const std::string& gtid) {
    auto steps = store_->GetBranches(gtid);
    EXPECT_TRUE(steps.ok());
    std::map<std::string, BranchRecord> out;
    if (steps.ok()) {
      for (auto& s : *steps) out[s.branch_id] = s;
    }
    return out;
  }
  TxnState StoredState(const std::string& gtid) {
    auto txn = store_->GetTxn(gtid);
    return txn.ok() ? txn->state : TxnState::kActive;
  }
  bool WaitForState(const std::string& gtid, TxnState state) {
    return testing::WaitUntil([&] { return StoredState(gtid) == state; }, 20000);
  }

  // Most tests check that each step is logged before it acts: they log
  // progress step by step. SagaLazyProgressTest does not.
  int64_t progress_log_ms_ = 0;
  std::atomic<bool> lease_live_{true};  // what the driver is told of its lease
  testing::TempDir dir_{"saga-driver-test-"};
  NodeInfo node_{"node-1", "127.0.0.1:7400", 1};
  std::unique_ptr<TxnStore> store_;
  std::unique_ptr<FaultyStore> faulty_;
  std::unique_ptr<GroupCommitter> log_;
  std::shared_ptr<ScriptedSteps> participant_;
  std::unique_ptr<ThriftServer> server_;
  std::string endpoint_;
  std::unique_ptr<SagaDriver> driver_;
};

TEST_F(SagaDriverTest, HappyPathRunsInOrderAndLogsEachStepBeforeActing) {
  std::vector<std::string> violations;
  std::mutex mu;
  participant_->SetHook([&](const std::string& kind, const wire::StepRequest& req) {
    // Log before act: this step is durably RUNNING and every earlier one DONE.
    auto steps = Steps(req.gtid);
    const std::string order = "abcd";
    for (auto& [id, s] : steps) {
      const bool earlier = order.find(id) < order.find(req.step_id);
      const bool ok = id == req.step_id ? s.state == BranchState::kStepRunning
                                        : (!earlier || s.state == BranchState::kDone);
      if (!ok || kind != "action") {
        std::lock_guard<std::mutex> lock(mu);
        violations.push_back(kind + " " + req.step_id + " while " + id + " is " +
                             BranchStateName(s.state));
      }
    }
  });
  auto r = driver_->SubmitSaga(Spec("happy-1", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "action:d"}));
  EXPECT_TRUE(violations.empty()) << violations[0];
  EXPECT_EQ(StoredState("happy-1"), TxnState::kSucceeded);
  for (auto& [id, s] : Steps("happy-1")) {
    EXPECT_EQ(s.state, BranchState::kDone) << id;
    EXPECT_EQ(s.attempts, 1) << id;
  }
  EXPECT_EQ(driver_->ActiveForTests(), 0u);
}

TEST_F(SagaDriverTest, SubmitWithoutWaitReturnsAtOnceAndFinishesBehind) {
  auto r = driver_->SubmitSaga(Spec("", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->gtid.empty());
  EXPECT_EQ(r->state, TxnState::kRunning);
  EXPECT_EQ(r->owner, node_.node_id);
  EXPECT_TRUE(WaitForState(r->gtid, TxnState::kSucceeded));
}

TEST_F(SagaDriverTest, BusinessFailureCompensatesAttemptedStepsInReverseOrder) {
  participant_->Script("action", "c", {StepOutcome::FAILURE});
  auto r = driver_->SubmitSaga(Spec("fail-c", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCompensated);
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "compensate:c",
                                      "compensate:b", "compensate:a"}));
  auto steps = Steps("fail-c");
  EXPECT_EQ(steps["a"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["c"].state, BranchState::kStepCompensated);
  EXPECT_NE(steps["c"].last_error.find("action refused"), std::string::npos);
  EXPECT_EQ(steps["d"].state, BranchState::kSkipped);
}

TEST_F(SagaDriverTest, RetryLaterIsRetriedWithinThePolicy) {
  participant_->Script("action", "b", {StepOutcome::RETRY_LATER, StepOutcome::RETRY_LATER});
  auto r = driver_->SubmitSaga(Spec("retry-b", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  auto steps = Steps("retry-b");
  EXPECT_EQ(steps["b"].attempts, 3);
  EXPECT_EQ(steps["b"].state, BranchState::kDone);
}

TEST_F(SagaDriverTest, ExhaustedRetriesFailTheStepAndCompensate) {
  participant_->Script("action", "b", {}, StepOutcome::RETRY_LATER);
  auto r = driver_->SubmitSaga(Spec("exhaust-b", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCompensated);
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:b", "action:b",
                                      "compensate:b", "compensate:a"}));
  auto steps = Steps("exhaust-b");
  EXPECT_NE(steps["b"].last_error.find("attempts exhausted"), std::string::npos)
      << steps["b"].last_error;
  EXPECT_EQ(steps["c"].state, BranchState::kSkipped);
}

TEST_F(SagaDriverTest, UnreachableParticipantParksThenResumeFinishes) {
  StartDriver(/*park_after=*/3);
  // A port nobody listens on: the action fails by transport error, and so does
  // its compensation, until the service comes back.
  const int dead_port = testing::FreeLoopbackPort();
  const std::string dead = "127.0.0.1:" + std::to_string(dead_port);
  auto r = driver_->SubmitSaga(Spec("park-1", {Step("a", {}), Step("b", {"a"}, dead)}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kParked);
  auto txn = store_->GetTxn("park-1");
  ASSERT_TRUE(txn.ok());
  EXPECT_EQ(txn->state, TxnState::kParked);
  EXPECT_GT(txn->next_attempt_ms, NowUnixMs());  // the sweeper's next look, not now
  EXPECT_EQ(txn->attempts, 1);                   // parked rounds, for operators
  auto steps = Steps("park-1");
  EXPECT_EQ(steps["b"].state, BranchState::kStepCompensating);
  EXPECT_EQ(steps["b"].attempts, 3);
  EXPECT_EQ(steps["a"].state, BranchState::kDone);  // waits for b, in reverse order

  // Still parked after a resume while the service is down; never dropped.
  driver_->Resume(*txn);
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return Steps("park-1")["b"].attempts == 4 && driver_->ActiveForTests() == 0; }, 10000));
  EXPECT_EQ(StoredState("park-1"), TxnState::kParked);

  // The service comes back: the next resume compensates everything.
  ThriftServerOptions so;
  so.port = dead_port;
  ThriftServer back(std::make_shared<wire::ParticipantProcessor>(participant_), so);
  ASSERT_TRUE(back.Start().ok());
  txn = store_->GetTxn("park-1");
  ASSERT_TRUE(txn.ok());
  driver_->Resume(*txn);
  EXPECT_TRUE(WaitForState("park-1", TxnState::kCompensated));
  steps = Steps("park-1");
  EXPECT_EQ(steps["a"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["b"].state, BranchState::kStepCompensated);
  back.Stop();
}

TEST_F(SagaDriverTest, IndependentStepsRunConcurrently) {
  participant_->SetDelayMs(100);
  auto r = driver_->SubmitSaga(
      Spec("dag-1", {Step("a", {}), Step("b", {}), Step("c", {}), Step("d", {"a", "b", "c"})}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_GE(participant_->max_concurrent(), 2);
  auto calls = participant_->Calls();
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls.back(), "action:d");
}

TEST_F(SagaDriverTest, ResubmissionIsIdempotentAndADifferentDefinitionIsRefused) {
  auto first = driver_->SubmitSaga(Spec("resubmit-1", Chain4()));
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = driver_->SubmitSaga(Spec("resubmit-1", Chain4()));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state, TxnState::kSucceeded);
  EXPECT_EQ(participant_->Calls().size(), 4u);  // nothing ran twice

  auto other = Chain4();
  other[2].payload = "something else";
  auto refused = driver_->SubmitSaga(Spec("resubmit-1", other));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(StoredState("resubmit-1"), TxnState::kSucceeded);
}

// Clients retrying a submission at once: a resubmission that finds the
// definition in the store before the first submitter registered its run takes
// the saga up; the first submitter must then not run its first wave too.
TEST_F(SagaDriverTest, ConcurrentSubmissionsOfOneSagaSendEachActionOnce) {
  constexpr int kSagas = 30;
  constexpr int kSubmitters = 8;
  for (int i = 0; i < kSagas; ++i) {
    const std::string gtid = "concurrent-" + std::to_string(i);
    std::vector<std::future<Result<TxnRecord>>> submits;
    for (int t = 0; t < kSubmitters; ++t) {
      submits.push_back(std::async(std::launch::async, [this, gtid] {
        return driver_->SubmitSaga(Spec(gtid, {Step("a", {}), Step("b", {"a"})}));
      }));
    }
    for (auto& submit : submits) {
      Result<TxnRecord> r = submit.get();
      ASSERT_TRUE(r.ok()) << gtid << ": " << r.status();
      EXPECT_EQ(r->state, TxnState::kSucceeded) << gtid;
    }
  }
  const auto calls = participant_->Calls();
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "action:a"), kSagas);
  EXPECT_EQ(std::count(calls.begin(), calls.end(), "action:b"), kSagas);
}

TEST_F(SagaDriverTest, ResumeFinishesWhatACrashLeftRunning) {
  // As a crash right after "b RUNNING" was logged leaves it.
  const auto steps = Chain4();
  TxnRecord txn = SagaRecord("crashed-1", TxnState::kRunning, node_.node_id, node_.epoch, steps);
  txn.next_attempt_ms = txn.created_ms;
  ASSERT_TRUE(LogSaga(txn, steps,
                      {BranchState::kDone, BranchState::kStepRunning, BranchState::kPending,
                       BranchState::kPending},
                      {1, 1, 0, 0})
                  .ok());
  driver_->Resume(txn);
  driver_->Resume(txn);  // a second resume while it runs is a no-op
  EXPECT_TRUE(WaitForState("crashed-1", TxnState::kSucceeded));
  EXPECT_EQ(participant_->Calls(), (std::vector<std::string>{"action:b", "action:c", "action:d"}));
  EXPECT_EQ(Steps("crashed-1")["b"].attempts, 2);  // redelivered as attempt 2
}

TEST_F(SagaDriverTest, ResubmittingASagaNobodyDrivesTakesItUp) {
  // Logged, but the process that logged it never got to run it.
  auto steps = Chain4();
  TxnRecord txn = SagaRecord("orphan-1", TxnState::kRunning, node_.node_id, node_.epoch, steps);
  txn.next_attempt_ms = txn.created_ms + 3600 * 1000;  // the sweeper would not look for an hour
  ASSERT_TRUE(
      LogSaga(txn, steps, std::vector<BranchState>(steps.size(), BranchState::kPending), {}).ok());
  auto r = driver_->SubmitSaga(Spec("orphan-1", steps));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_EQ(participant_->Calls().size(), 4u);
}

// Two replicas on one store: A (the fixture's driver, node-1, live lease) and B.
TEST_F(SagaDriverTest, ResubmissionAtAnotherReplicaWaitsForTheOwnersRun) {
  auto lease_a = store_->AcquireLease("node-1", "127.0.0.1:7400", 60000, NowUnixMs());
  auto lease_b = store_->AcquireLease("node-2", "127.0.0.1:7401", 60000, NowUnixMs());
  ASSERT_TRUE(lease_a.ok() && lease_b.ok());
  node_.epoch = lease_a->epoch;
  StartDriver();
  SagaDriverOptions o;
  o.driver_threads = 2;
  SagaDriver driver_b(store_.get(), log_.get(),
                      NodeInfo{"node-2", "127.0.0.1:7401", lease_b->epoch}, o);
  participant_->SetDelayMs(50);
  auto at_a = driver_->SubmitSaga(Spec("two-replicas-1", Chain4(), /*wait=*/false));
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  // The client's answer was lost; it resubmits at B and waits for the end.
  auto at_b = driver_b.SubmitSaga(Spec("two-replicas-1", Chain4(), /*wait=*/true));
  ASSERT_TRUE(at_b.ok()) << at_b.status();
  EXPECT_EQ(at_b->state, TxnState::kSucceeded);
  EXPECT_EQ(store_->GetTxn("two-replicas-1")->owner, "node-1");  // A drove it alone
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "action:d"}));
}

TEST_F(SagaDriverTest, ResubmissionAtAnotherReplicaTakesOverASagaOfADeadReplica) {
  // Logged by a replica whose lease is gone (it died before running it).
  auto steps = Chain4();
  TxnRecord txn = SagaRecord("dead-owner-1", TxnState::kRunning, "node-dead", 3, steps);
  txn.next_attempt_ms = txn.created_ms + 3600 * 1000;
  ASSERT_TRUE(
      LogSaga(txn, steps, std::vector<BranchState>(steps.size(), BranchState::kPending), {}).ok());
  auto r = driver_->SubmitSaga(Spec("dead-owner-1", steps));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_EQ(store_->GetTxn("dead-owner-1")->owner, node_.node_id);
  EXPECT_EQ(participant_->Calls().size(), 4u);
}

TEST_F(SagaDriverTest, ResumeFinishesAnInterruptedCompensation) {
  const auto steps = Chain4();
  const TxnRecord txn =
      SagaRecord("crashed-2", TxnState::kCompensating, node_.node_id, node_.epoch, steps);
  ASSERT_TRUE(LogSaga(txn, steps,
                      {BranchState::kDone, BranchState::kStepCompensating,
                       BranchState::kStepCompensated, BranchState::kSkipped},
                      {1, 1, 1, 1})
                  .ok());
  driver_->Resume(txn);
  EXPECT_TRUE(WaitForState("crashed-2", TxnState::kCompensated));
  EXPECT_EQ(participant_->Calls(), (std::vector<std::string>{"compensate:b", "compensate:a"}));
}

TEST_F(SagaDriverTest, ResumeIgnoresSagasOfOtherOwners) {
  TxnRecord txn;
  txn.gtid = "foreign-1";
  txn.kind = TxnKind::kSaga;
  txn.state = TxnState::kRunning;
  txn.owner = "node-2";
  txn.epoch = 7;
  txn.deadline_ms = NowUnixMs() + 600000;
  WriteBatch batch;
  batch.insert_txns.push_back(txn);
  auto s = Step("a", {});
  s.gtid = txn.gtid;
  s.state = BranchState::kPending;
  batch.insert_branches.push_back(s);
  ASSERT_TRUE(log_->Write(batch).ok());
  driver_->Resume(txn);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_TRUE(participant_->Calls().empty());
  EXPECT_EQ(StoredState("foreign-1"), TxnState::kRunning);
}

TEST_F(SagaDriverTest, WaitTimeoutAnswersWithTheCurrentState) {
  participant_->SetDelayMs(100);
  auto spec = Spec("slow-1", Chain4());
  spec.wait_timeout_ms = 50;
  auto r = driver_->SubmitSaga(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kRunning);
  EXPECT_TRUE(WaitForState("slow-1", TxnState::kSucceeded));
}

// ---- every failure path of a step write (FaultyStore, deterministic) ----
//
// The fault is injected from the participant's hook while it handles the call
// named by the test, so it hits exactly the write of that call's outcome (the
// saga's only write in flight then). Throughout, log before act is checked at
// the participant: an action arrives only for a step durably RUNNING with
// that very attempt number, a compensation only for a step durably
// COMPENSATING with its attempt. So no action runs twice without the barrier
// seeing a new, logged attempt of the same step, and no compensation runs for
// a step whose start was not recorded.
class SagaStepWriteFaultTest : public SagaDriverTest {
 protected:
  // Installs the log-before-act check; `fault` (if set) is injected into the
  // next ApplyGroup while `call` ("action:b", ...) is handled the first time.
  void Arm(const std::string& call, std::optional<StoreFault> fault) {
    participant_->SetHook([this, call, fault](const std::string& kind,
                                              const wire::StepRequest& req) {
      auto steps = Steps(req.gtid);
      const BranchRecord& s = steps[req.step_id];
      const BranchState want =
          kind == "action" ? BranchState::kStepRunning : BranchState::kStepCompensating;
      if (s.state != want || s.attempts != req.attempt) {
        std::lock_guard<std::mutex> lock(mu_);
        violations_.push_back(kind + ":" + req.step_id + " attempt " + std::to_string(req.attempt) +
                              " while stored " + BranchStateName(s.state) + " attempts " +
                              std::to_string(s.attempts));
      }
      std::lock_guard<std::mutex> lock(mu_);
      if (fault && kind + ":" + req.step_id == call && !injected_) {
        injected_ = true;
        faulty_->Inject(StoreOp::kApplyGroup, *fault);
      }
    });
  }
  // Waits until the failed write let the run go, then resumes it as the sweeper would.
  void ResumeAfterRelease(const std::string& gtid) {
    ASSERT_TRUE(testing::WaitUntil([&] { return driver_->ActiveForTests() == 0; }, 10000));
    auto txn = store_->GetTxn(gtid);
    ASSERT_TRUE(txn.ok()) << txn.status();
    driver_->Resume(*txn);
  }
  std::vector<std::string> Violations() {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }
  int CallsOf(const std::string& call) {
    auto calls = participant_->Calls();
    return static_cast<int>(std::count(calls.begin(), calls.end(), call));
  }

  std::mutex mu_;  // guards the members below
  std::vector<std::string> violations_;
  bool injected_ = false;
};

TEST_F(SagaStepWriteFaultTest, DefinitionWriteFailsNothingStoredNothingSent) {
  Arm("", std::nullopt);
  faulty_->Inject(StoreOp::kApplyGroup, StoreFault::Fail(Status::Unavailable("store down")));
  auto r = driver_->SubmitSaga(Spec("fault-def", Chain4()));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store_->GetTxn("fault-def").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(participant_->Calls().empty());
  // The client resubmits: the saga runs once.
  r = driver_->SubmitSaga(Spec("fault-def", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_EQ(participant_->Calls().size(), 4u);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, OutcomeAndNextStartWriteFailsThenResumeRedeliversTheLoggedStep) {
  // a's DONE and b's start are one batch; it fails: b is never sent, a's
  // outcome is unknown to the log, so a is redelivered as logged attempt 2.
  Arm("action:a", StoreFault::Fail(Status::Unavailable("store down")));
  auto r = driver_->SubmitSaga(Spec("fault-outcome", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-outcome"));
  EXPECT_TRUE(WaitForState("fault-outcome", TxnState::kSucceeded));
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:a", "action:b", "action:c", "action:d"}));
  EXPECT_EQ(Steps("fault-outcome")["a"].attempts, 2);
  EXPECT_EQ(Steps("fault-outcome")["b"].attempts, 1);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, IndeterminateOutcomeWriteThatAppliedIsNotRunAgain) {
  // The commit reply is lost but the batch applied: a is DONE and b RUNNING
  // (attempt 1, never sent). The resume re-reads: a is not redelivered; b is
  // sent as attempt 2, so the barrier sees a new logged attempt.
  Arm("action:a", StoreFault::IndeterminateApplied());
  auto r = driver_->SubmitSaga(Spec("fault-indet", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-indet"));
  EXPECT_TRUE(WaitForState("fault-indet", TxnState::kSucceeded));
  EXPECT_EQ(CallsOf("action:a"), 1);
  EXPECT_EQ(CallsOf("action:b"), 1);
  EXPECT_EQ(Steps("fault-indet")["b"].attempts, 2);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, IndeterminateOutcomeWriteThatDidNotApplyRedelivers) {
  Arm("action:b", StoreFault::IndeterminateNotApplied());
  auto r = driver_->SubmitSaga(Spec("fault-indet-no", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-indet-no"));
  EXPECT_TRUE(WaitForState("fault-indet-no", TxnState::kSucceeded));
  EXPECT_EQ(CallsOf("action:a"), 1);
  EXPECT_EQ(CallsOf("action:b"), 2);
  EXPECT_EQ(Steps("fault-indet-no")["b"].attempts, 2);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, FinalStateWriteFailsThenResumeFinishes) {
  // d's DONE rides with SUCCEEDED; the write fails: the saga stays RUNNING
  // with d RUNNING until the resume redelivers d and logs SUCCEEDED.
  Arm("action:d", StoreFault::Fail(Status::Unavailable("store down")));
  auto r = driver_->SubmitSaga(Spec("fault-final", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-final"));
  EXPECT_TRUE(WaitForState("fault-final", TxnState::kSucceeded));
  EXPECT_EQ(CallsOf("action:d"), 2);
  EXPECT_EQ(CallsOf("action:c"), 1);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, CompensationStartWriteFailsNothingIsCompensatedUnrecorded) {
  // b refuses; the write of b FAILED -> COMPENSATING with the switch fails.
  // Nothing was compensated; after the resume b's action is redelivered
  // (refused again by the barrier's first outcome) and then b, a compensated.
  participant_->Script("action", "b", {}, StepOutcome::FAILURE);
  Arm("action:b", StoreFault::Fail(Status::Unavailable("store down")));
  auto r = driver_->SubmitSaga(Spec("fault-comp-start", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-comp-start"));
  EXPECT_TRUE(WaitForState("fault-comp-start", TxnState::kCompensated));
  EXPECT_EQ(participant_->Calls(), (std::vector<std::string>{"action:a", "action:b", "action:b",
                                                             "compensate:b", "compensate:a"}));
  auto steps = Steps("fault-comp-start");
  EXPECT_EQ(steps["c"].state, BranchState::kSkipped);
  EXPECT_EQ(steps["d"].state, BranchState::kSkipped);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaStepWriteFaultTest, CompensationOutcomeWriteFailsThenResumeRedeliversIt) {
  participant_->Script("action", "c", {}, StepOutcome::FAILURE);
  Arm("compensate:b", StoreFault::Fail(Status::Unavailable("store down")));
  auto r = driver_->SubmitSaga(Spec("fault-comp-out", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_NO_FATAL_FAILURE(ResumeAfterRelease("fault-comp-out"));
  EXPECT_TRUE(WaitForState("fault-comp-out", TxnState::kCompensated));
  EXPECT_EQ(CallsOf("compensate:b"), 2);
  EXPECT_EQ(CallsOf("compensate:a"), 1);
  EXPECT_EQ(Steps("fault-comp-out")["b"].attempts, 2);
  EXPECT_TRUE(Violations().empty()) << Violations()[0];
}

TEST_F(SagaDriverTest, NoPoolThreadWaitsOnTheWriter) {
  StartDriver(/*park_after=*/10, /*driver_threads=*/1);
  // B: as a crash left it, to be resumed while A's write hangs in the store.
  const auto steps = Chain4();
  TxnRecord b = SagaRecord("writer-b", TxnState::kRunning, node_.node_id, node_.epoch, steps);
  ASSERT_TRUE(LogSaga(b, steps, std::vector<BranchState>(4, BranchState::kPending), {}).ok());
  std::atomic<bool> held{false};
  participant_->SetHook([&](const std::string& kind, const wire::StepRequest& req) {
    if (req.gtid == "writer-a" && kind + ":" + req.step_id == "action:a" && !held.exchange(true)) {
      faulty_->Hold(StoreOp::kApplyGroup);  // a's outcome write will hang
    }
  });
  const int writes_before = faulty_->Calls(StoreOp::kApplyGroup);
  ASSERT_TRUE(driver_->SubmitSaga(Spec("writer-a", Chain4(), /*wait=*/false)).ok());
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return faulty_->Calls(StoreOp::kApplyGroup) >= writes_before + 2; }, 10000));
  // The one pool thread is not parked on that write: it loads B meanwhile.
  const int loads = faulty_->Calls(StoreOp::kGetBranches);
  driver_->Resume(b);
  EXPECT_TRUE(
      testing::WaitUntil([&] { return faulty_->Calls(StoreOp::kGetBranches) > loads; }, 10000));
  faulty_->Open(StoreOp::kApplyGroup);
  EXPECT_TRUE(WaitForState("writer-a", TxnState::kSucceeded));
  EXPECT_TRUE(WaitForState("writer-b", TxnState::kSucceeded));
}

// A cancel accepted while a resubmission's write is in flight (nothing takes
// the saga up then) is not lost: the run registered after it compensates.
TEST_F(SagaDriverTest, CancelDuringAResubmissionIsFedToTheRunThatTakesTheSagaUp) {
  const auto steps = Chain4();
  TxnRecord txn =
      SagaRecord("cancel-submit", TxnState::kRunning, node_.node_id, node_.epoch, steps);
  ASSERT_TRUE(LogSaga(txn, steps, std::vector<BranchState>(4, BranchState::kPending), {}).ok());
  const int writes_before = faulty_->Calls(StoreOp::kApplyGroup);
  faulty_->Hold(StoreOp::kApplyGroup);  // the resubmission's definition write hangs
  auto resubmit = std::async(std::launch::async,
                             [&] { return driver_->SubmitSaga(Spec("cancel-submit", steps)); });
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return faulty_->Calls(StoreOp::kApplyGroup) > writes_before; }, 10000));
  EXPECT_TRUE(driver_->Cancel("cancel-submit").ok());
  faulty_->Open(StoreOp::kApplyGroup);
  Result<TxnRecord> r = resubmit.get();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCompensated);
  EXPECT_TRUE(WaitForState("cancel-submit", TxnState::kCompensated));
}

TEST_F(SagaDriverTest, CancelCompensatesARunningSaga) {
  // b is retried for as long as it takes: only the cancel ends it.
  participant_->Script("action", "b", {}, StepOutcome::RETRY_LATER);
  auto steps_def = Chain4();
  steps_def[1].max_attempts = 1000;
  auto r = driver_->SubmitSaga(Spec("cancel-1", steps_def, /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return Steps("cancel-1")["b"].state == BranchState::kStepRunning; }, 10000));
  ASSERT_TRUE(driver_->Cancel("cancel-1").ok());
  EXPECT_TRUE(WaitForState("cancel-1", TxnState::kCompensated));
  auto steps = Steps("cancel-1");
  EXPECT_EQ(steps["a"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["b"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["c"].state, BranchState::kSkipped);
  EXPECT_TRUE(driver_->Cancel("cancel-1").ok());  // already compensated: a no-op
  ASSERT_TRUE(driver_->SubmitSaga(Spec("cancel-2", {Step("a", {})})).ok());
  EXPECT_EQ(driver_->Cancel("cancel-2").code(), StatusCode::kIllegalTransition);  // SUCCEEDED
}

TEST_F(SagaDriverTest, AResumedSagaCompensatesTheStepsItsLogShowsPending) {
  // As a crash leaves a run whose forward progress was logged lazily: only a
  // is logged RUNNING, though b, c and d may have been sent. The deadline has
  // passed, so the resumed run compensates: every step, the last first.
  const auto steps = Chain4();
  TxnRecord txn = SagaRecord("lazy-crash", TxnState::kRunning, node_.node_id, node_.epoch, steps);
  txn.deadline_ms = NowUnixMs() - 1;
  txn.flags = kFlagLazyProgress;
  ASSERT_TRUE(LogSaga(txn, steps,
                      {BranchState::kStepRunning, BranchState::kPending, BranchState::kPending,
                       BranchState::kPending},
                      {1, 0, 0, 0})
                  .ok());
  driver_->Resume(txn);
  EXPECT_TRUE(WaitForState("lazy-crash", TxnState::kCompensated));
  EXPECT_EQ(participant_->Calls(), (std::vector<std::string>{"compensate:d", "compensate:c",
                                                             "compensate:b", "compensate:a"}));
  for (auto& [id, s] : Steps("lazy-crash")) {
    EXPECT_EQ(s.state, BranchState::kStepCompensated) << id;
  }
}

class SagaLazyProgressTest : public SagaDriverTest {
 protected:
  SagaLazyProgressTest() { progress_log_ms_ = 10000; }
};

TEST_F(SagaLazyProgressTest, ASagaThatEndsQuicklyLogsItsDefinitionAndItsEndOnly) {
  const int writes_before = faulty_->Calls(StoreOp::kApplyGroup);
  auto r = driver_->SubmitSaga(Spec("lazy-happy", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "action:d"}));
  EXPECT_EQ(faulty_->Calls(StoreOp::kApplyGroup) - writes_before, 2);
  EXPECT_EQ(StoredState("lazy-happy"), TxnState::kSucceeded);
  for (auto& [id, s] : Steps("lazy-happy")) {
    EXPECT_EQ(s.state, BranchState::kDone) << id;
    EXPECT_EQ(s.attempts, 1) << id;
  }
  EXPECT_EQ(driver_->ActiveForTests(), 0u);
}

TEST_F(SagaLazyProgressTest, WhileItsLeaseIsNotKnownToBeLiveEveryStepIsLoggedBeforeItActs) {
  // Renewals late, or the process was paused: each step's write is fenced
  // before its action goes out, so a replica whose saga was taken over
  // meanwhile sends nothing more.
  lease_live_ = false;
  const int writes_before = faulty_->Calls(StoreOp::kApplyGroup);
  auto r = driver_->SubmitSaga(Spec("lazy-no-lease", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  // The definition, a..c DONE with the next started, d DONE with SUCCEEDED.
  EXPECT_EQ(faulty_->Calls(StoreOp::kApplyGroup) - writes_before, 5);
}

TEST_F(SagaLazyProgressTest, AtShutdownTheProgressThatWaitedIsLoggedAndEveryStepAfter) {
  // b's action waits until the test lets it answer.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  participant_->SetHook([released](const std::string& kind, const wire::StepRequest& req) {
    if (kind == "action" && req.step_id == "b") released.wait();
  });
  auto r = driver_->SubmitSaga(Spec("lazy-shutdown", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        auto calls = participant_->Calls();
        return std::find(calls.begin(), calls.end(), "action:b") != calls.end();
      },
      10000));
  EXPECT_EQ(Steps("lazy-shutdown")["a"].state, BranchState::kStepRunning);  // a's DONE waits
  EXPECT_TRUE(driver_->LogAllProgress(5000));
  auto steps = Steps("lazy-shutdown");
  EXPECT_EQ(steps["a"].state, BranchState::kDone);
  EXPECT_EQ(steps["b"].state, BranchState::kStepRunning);
  // From now on each step is logged before its action: c is RUNNING in the
  // store when its action arrives.
  std::atomic<bool> c_logged_first{false};
  participant_->SetHook([&](const std::string& kind, const wire::StepRequest& req) {
    if (kind == "action" && req.step_id == "c") {
      c_logged_first = Steps(req.gtid)["c"].state == BranchState::kStepRunning;
    }
  });
  release.set_value();
  EXPECT_TRUE(WaitForState("lazy-shutdown", TxnState::kSucceeded));
  EXPECT_TRUE(c_logged_first.load());
}

TEST_F(SagaLazyProgressTest, ProgressIsLoggedOnceItWaitedProgressLogMs) {
  progress_log_ms_ = 100;
  StartDriver();
  // c's action waits until the store shows a and b DONE and c RUNNING.
  std::atomic<bool> seen{false};
  participant_->SetHook([&](const std::string& kind, const wire::StepRequest& req) {
    if (kind != "action" || req.step_id != "c") return;
    seen = testing::WaitUntil(
        [&] {
          auto steps = Steps(req.gtid);
          return steps["a"].state == BranchState::kDone && steps["b"].state == BranchState::kDone &&
                 steps["c"].state == BranchState::kStepRunning;
        },
        1500);
  });
  auto r = driver_->SubmitSaga(Spec("lazy-slow", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kSucceeded);
  EXPECT_TRUE(seen.load());
}

TEST_F(SagaLazyProgressTest, AFailedFinalWriteIsRedoneFromTheLogByTheResume) {
  // d's answer would log SUCCEEDED with every step's progress; that write
  // fails. The store still shows a RUNNING and b, c, d PENDING: the resume
  // sends the actions again (the barrier answers them with their first
  // outcome) and logs SUCCEEDED.
  std::atomic<bool> injected{false};
  participant_->SetHook([&](const std::string& kind, const wire::StepRequest& req) {
    if (kind == "action" && req.step_id == "d" && !injected.exchange(true)) {
      faulty_->Inject(StoreOp::kApplyGroup, StoreFault::Fail(Status::Unavailable("store down")));
    }
  });
  auto r = driver_->SubmitSaga(Spec("lazy-final", Chain4(), /*wait=*/false));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(testing::WaitUntil([&] { return injected.load(); }, 10000));
  ASSERT_TRUE(testing::WaitUntil([&] { return driver_->ActiveForTests() == 0; }, 10000));
  auto steps = Steps("lazy-final");
  EXPECT_EQ(steps["a"].state, BranchState::kStepRunning);
  EXPECT_EQ(steps["d"].state, BranchState::kPending);
  auto txn = store_->GetTxn("lazy-final");
  ASSERT_TRUE(txn.ok()) << txn.status();
  driver_->Resume(*txn);
  EXPECT_TRUE(WaitForState("lazy-final", TxnState::kSucceeded));
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "action:d", "action:a",
                                      "action:b", "action:c", "action:d"}));
}

TEST_F(SagaLazyProgressTest, ARefusalLogsTheProgressThatWaitedBeforeCompensating) {
  participant_->Script("action", "c", {}, StepOutcome::FAILURE);
  auto r = driver_->SubmitSaga(Spec("lazy-refused", Chain4()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->state, TxnState::kCompensated);
  EXPECT_EQ(participant_->Calls(),
            (std::vector<std::string>{"action:a", "action:b", "action:c", "compensate:c",
                                      "compensate:b", "compensate:a"}));
  auto steps = Steps("lazy-refused");
  EXPECT_EQ(steps["a"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["c"].state, BranchState::kStepCompensated);
  EXPECT_EQ(steps["d"].state, BranchState::kSkipped);  // this run knew it never sent d
}

}  // namespace
}  // namespace txc
